"""Interventions view: what the controls offer, and the drawing of one comparison.

The comparison itself is `dimsum.interventions.compare` (run through `app.sampling.gpu_compare`);
this module turns it into the tab's pictures: the difference image on one signed scale with its
legend, the per-subband energy bar chart (original vs changed, 16 Haar packet subbands grouped
as approximation / coarse / fine detail) and a summary with each group's change in %.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dimsum.interventions import (
    BAND_GROUPS,
    KIND_MEANING,
    KINDS,
    Comparison,
    Intervention,
    SubbandEnergy,
    difference_rgb,
)
from dimsum.models.dimsum import DiMSUM
from dimsum.models.scan_orders import attention_after

HELP = (
    "Re-run **the session's last run** (same seeds, class, sampler, steps and guidance) with one "
    "part of the network changed, for the chosen blocks and a range of flow time *t* "
    "(t = 0 is pure noise, t = 1 the finished image). Only the changed run is computed: the "
    "original images are the ones you generated."
)

# One word per replacement, for the radio's labels.
REPLACEMENT_LABELS = {
    "zeros": "zeros",
    "other": "the other branch's output",
    "raster": "raster order (row by row)",
    "spatial": "this layer's spatial-branch order",
}

WHAT_TO_TRY = """**What to try** (measured on the embedded emoji model, 8 images, Heun 20,
guidance 4; see `docs/interventions.md`)

- **Frequency branch off, early vs late.** Off for t 0-0.5, the image becomes a different one
  (colours and layout move, outlines never form). Off for t 0.5-1, layout and colours stay but
  fine detail loses ~44% of its energy while coarse detail gains ~35%: 2x2-pixel blocks and
  frayed outlines. The wavelet branch writes the detail *inside* the 2x2 patches.
- **Spatial branch off, early vs late.** Early, the layout goes (approximation ~-51%); late,
  fine detail drops by a third, less than with the frequency branch off late.
- **One branch in place of the other** (frequency off, replaced by the other branch's output):
  fine detail more than doubles while coarse detail drops: pixel noise, not structure.
- **Fusion as plain addition:** the branches never read each other; images grey out.
- **Attention skipped:** the one step that mixes all tokens at once; without it every image
  collapses to a near-uniform tile.
- **Frequency scan in raster order:** the gentlest change, slightly softer outlines; a good
  contrast to switching the branch off.
- Narrow the **blocks** (block 0 against the last block) to ask which depth needs a branch, and
  the **t range** to ask when."""

# Presets for the "what to try" buttons: label -> (kind, replacement, t0, t1); all blocks.
PRESETS: dict[str, tuple[str, str | None, float, float]] = {
    "Frequency off, early (t 0-0.5)": ("freq-off", "zeros", 0.0, 0.5),
    "Frequency off, late (t 0.5-1)": ("freq-off", "zeros", 0.5, 1.0),
    "Spatial off, early (t 0-0.5)": ("spatial-off", "zeros", 0.0, 0.5),
    "Spatial off, late (t 0.5-1)": ("spatial-off", "zeros", 0.5, 1.0),
    "Fusion as addition": ("fusion-add", None, 0.0, 1.0),
    "Frequency scan in raster order": ("freq-raster", "raster", 0.0, 1.0),
}

GROUP_COLOURS = {"approximation": "#f2f2f2", "coarse detail": "#e6eef8", "fine detail": "#fbeee6"}
ORIGINAL_COLOUR, CHANGED_COLOUR = "#8c8c8c", "#e8711a"


def kind_choices() -> list[tuple[str, str]]:
    """(label, kind) for the kind radio: the kind with its one-line meaning."""
    return [(f"{kind}: {KIND_MEANING[kind]}", kind) for kind in KINDS]


def replacement_choices(kind: str) -> list[tuple[str, str]]:
    """(label, replacement) accepted by `kind` (empty: it takes none)."""
    return [(REPLACEMENT_LABELS.get(r, r), r) for r in KINDS.get(kind, ())]


def attention_blocks(model: DiMSUM) -> list[int]:
    """The blocks after which the shared attention block runs (empty: the model has none)."""
    if not hasattr(model, "attn_block"):
        return []
    depth, every = len(model.blocks), model.config.attn_every
    return [b for b in range(depth) if attention_after(b, every)]


def block_choices(model: DiMSUM) -> list[tuple[str, int]]:
    """(label, index) per block; blocks followed by the shared attention block say so."""
    after = set(attention_blocks(model))
    return [
        (f"block {b}" + (" (+ attention after)" if b in after else ""), b)
        for b in range(len(model.blocks))
    ]


def evaluation_times(method: str, recorded: np.ndarray) -> np.ndarray | None:
    """The flow times at which a run without a trajectory evaluates the network, from its
    recorded step times: Heun every grid time (its corrector reaches t = 1), Euler all but the
    last; None for dopri5 (adaptive: its evaluations are not the recorded times)."""
    if method == "heun":
        return recorded
    if method == "euler":
        return recorded[:-1]
    return None


def evaluations_in_range(times: np.ndarray | None, iv: Intervention) -> int | None:
    """How many of the evaluation times lie in the intervention's t range (None: unknown)."""
    if times is None:
        return None
    return int(sum(iv.active_at(float(t)) for t in times))


# ---- drawing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Drawing:
    difference: np.ndarray  # (N, H, W, 3) uint8, red = brighter, blue = darker
    scale: float  # the difference image's full scale, in 0-255 pixel levels
    mean_change: float  # mean absolute pixel change, 0-255


def draw_difference(comparison: Comparison) -> Drawing:
    """The difference pictures on one scale for all images (the largest |change|)."""
    d = comparison.diff.mean(axis=-1)  # what difference_rgb colours
    scale = float(max(np.abs(d).max(), 1e-6))
    return Drawing(
        difference=difference_rgb(comparison.diff, scale),
        scale=scale * 255,
        mean_change=float(np.abs(comparison.diff).mean() * 255),
    )


def legend_html(scale: float) -> str:
    """The difference image's colour bar: blue (darker) - white (unchanged) - red (brighter)."""
    s = f"{scale:.0f}" if scale >= 1 else f"{scale:.2g}"
    return f"""<div class="iv-legend" role="img" aria-label="colour scale of the difference image">
<div class="iv-bar" style="height:14px;border-radius:3px;border:1px solid #bbb;
background:linear-gradient(to right,#2166bf,#ffffff,#d62728)"></div>
<div style="display:flex;justify-content:space-between;font-size:0.85rem">
<span>−{html.escape(s)}<br><b>blue</b>: changed image darker</span>
<span style="text-align:center">0<br>white: unchanged</span>
<span style="text-align:right">+{html.escape(s)}<br><b>red</b>: changed image brighter</span>
</div>
<div style="font-size:0.8rem;color:var(--body-text-color-subdued)">Change in pixel levels
(0-255, mean over R, G, B), one scale for every image: full colour = the largest change.</div>
</div>"""


def _decades(values: np.ndarray) -> tuple[list[float], list[str]]:
    """Log-axis ticks one per decade, labelled with their real values."""
    positive = values[values > 0]
    lo = int(np.floor(np.log10(positive.min()))) if positive.size else -4
    hi = int(np.ceil(np.log10(positive.max()))) if positive.size else 0
    ticks = [10.0**k for k in range(lo, hi + 1)]
    return ticks, [f"{t:g}" for t in ticks]


def energy_figure(energy: SubbandEnergy) -> go.Figure:
    """Mean energy per subband, original vs changed (log axis, one tick per decade), the 16
    subbands grouped as approximation / coarse detail / fine detail."""
    order = [n for names in BAND_GROUPS.values() for n in names]
    idx = [energy.names.index(n) for n in order]
    group_of = {n: g for g, names in BAND_GROUPS.items() for n in names}
    x = [[group_of[n] for n in order], order]  # plotly multicategory: group, subband
    before = energy.original.mean(0)[idx]
    after = energy.changed.mean(0)[idx]
    change = (after - before) / np.maximum(before, 1e-12) * 100
    hover = "%{x[1]}: %{y:.3g}<extra>%{fullData.name}</extra>"
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=x, y=before, name="original", marker_color=ORIGINAL_COLOUR, hovertemplate=hover)
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=after,
            name="changed",
            marker_color=CHANGED_COLOUR,
            customdata=change,
            hovertemplate="%{x[1]}: %{y:.3g} (%{customdata:+.0f}%)<extra>changed</extra>",
        )
    )
    ticks, labels = _decades(np.concatenate([before, after]))
    groups = energy.group_change()
    title = " · ".join(f"{g} {v * 100:+.1f}%" for g, v in groups.items())
    fig.update_layout(
        barmode="group",
        title=dict(text=f"Energy per Haar packet subband — {title}", font=dict(size=13)),
        yaxis=dict(
            type="log",
            title="mean energy per pixel (image in [-1, 1], squared)",
            tickvals=ticks,
            ticktext=labels,
        ),
        xaxis=dict(title="2-level Haar packet subband (level-1 band . level-2 band)"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        height=400,
        template="plotly_white",
        margin=dict(l=60, r=10, t=70, b=110),
    )
    return fig


def summary_markdown(
    iv: Intervention, energy: SubbandEnergy, drawing: Drawing, seconds: float, in_range: int | None
) -> str:
    """One paragraph: the intervention, the group changes in %, the pixel change and the time."""
    groups = energy.group_change()
    parts = ", ".join(f"**{g}** {v * 100:+.1f}%" for g, v in groups.items())
    blocks = "all blocks" if iv.blocks is None else "blocks " + ", ".join(map(str, iv.blocks))
    text = (
        f"`{iv}`: {KIND_MEANING[iv.kind]}, {blocks}, t {iv.t_range[0]:g} to {iv.t_range[1]:g}.  \n"
        f"Energy change: {parts}. Mean pixel change {drawing.mean_change:.1f} (of 255). "
        f"Re-run in {seconds:.2f} s."
    )
    if in_range == 0:
        text += (
            "  \n⚠️ No network evaluation of this run falls in this t range, so nothing changed: "
            "widen the range."
        )
    return text
