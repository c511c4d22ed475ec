"""Branches view: what the spatial branch, the frequency branch, their fusion and the whole block
output at one (step, block), as per-token feature-norm maps on one shared colour scale (or,
on request, principal-component colour maps, explained in the caption), with the subband
energy spectrum of each output."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..features import BRANCH_OUTPUTS
from ..render import colorbar, colorize, fit_factor, labelled, stack_rows, upscale, write_png
from ..state import RunRecord, ViewError
from .wavelets import ENERGY_HOVER, L2_CODES, L2_LABELS, energy_axis

TITLES = {
    "spatial_out": "Spatial branch output",
    "freq_out": "Frequency branch output",
    "fusion_out": "Cross-attention fusion output",
    "block_out": "Block output",
}
SHORT_TITLES = {
    "spatial_out": "Spatial branch",
    "freq_out": "Frequency branch",
    "fusion_out": "Fusion",
    "block_out": "Block output",
}
SERIES_COLORS = {
    "spatial_out": "#1c7ed6",
    "freq_out": "#e8590c",
    "fusion_out": "#2b8a3e",
    "block_out": "#5f3dc4",
}


# What the Branches maps show ("Show" control): the norm maps are the default, read directly;
# the principal-component maps need the explanation in their caption.
MAPS = {
    "norm": "feature strength per token (norm)",
    "pca": "feature similarity (principal components as colour)",
}
NORM_UNIT = "feature norm per token"


def norm_range(record: RunRecord, step: int, block: int) -> tuple[float, float]:
    """One colour scale for every output and image at (step, block): comparable maps."""
    outputs = record.blocks[(step, block)].outputs
    norms = [m.norm for m in outputs.values()]
    return (
        float(min(n.min() for n in norms)),
        float(np.percentile(np.concatenate([n.ravel() for n in norms]), 99.5)),
    )


def _panel(
    record: RunRecord, step: int, block: int, name: str, image: int, show: str
) -> np.ndarray | None:
    summary = record.blocks[(step, block)].outputs.get(name)
    if summary is None:
        return None
    factor = fit_factor(summary.pca_rgb.shape[1], 200)
    if show == "pca":
        return labelled(upscale(summary.pca_rgb[image], factor), SHORT_TITLES[name], size=14)
    lo, hi = norm_range(record, step, block)
    heat = upscale(colorize(summary.norm[image], lo, hi, cmap="viridis"), factor)
    bar = colorbar(lo, hi, NORM_UNIT, heat.shape[1], cmap="viridis", size=11)
    return labelled(stack_rows([heat, bar], pad=4), SHORT_TITLES[name], size=14)


def spectrum_figure(record: RunRecord, step: int, block: int, image: int) -> go.Figure:
    """Grouped bars: energy fraction per packet subband of each output at this block."""
    fig = go.Figure()
    outputs = record.blocks[(step, block)].outputs
    for name in BRANCH_OUTPUTS:
        if name in outputs:
            fig.add_trace(
                go.Bar(
                    x=L2_LABELS,
                    y=outputs[name].spectrum[image],
                    name=TITLES[name],
                    marker_color=SERIES_COLORS[name],
                    hovertext=[f"{TITLES[name]}, {c}" for c in L2_CODES],
                    hovertemplate=ENERGY_HOVER,
                )
            )
    for k in range(1, 4):  # separators between the level-1 groups
        fig.add_vline(x=4 * k - 0.5, line=dict(color="#ced4da", width=1))
    fig.update_layout(
        barmode="group",
        title=dict(
            text=f"Energy per Haar packet subband, block {block}, step {step}", font=dict(size=14)
        ),
        yaxis=energy_axis(*(outputs[n].spectrum[image] for n in outputs)),
        xaxis=dict(
            tickangle=-50, title=dict(text="Haar packet subband (level-1 band / level-2 band)")
        ),
        height=380,
        margin=dict(l=70, r=10, t=50, b=120),
        template="plotly_white",
        legend=dict(orientation="h", y=1.12, font=dict(size=11)),
    )
    return fig


def render(
    record: RunRecord, step: int, block: int, image: int, show: str = "norm"
) -> tuple[list[str | None], go.Figure, str]:
    """(4 PNG paths in BRANCH_OUTPUTS order (None if absent), spectrum figure, caption)."""
    s = record.nearest_traced(step)
    if (s, block) not in record.blocks:
        raise ViewError(
            f"block {block} was not traced in this run (traced blocks: {record.traced_blocks})"
        )

    def make() -> tuple[list[str | None], go.Figure, str]:
        paths: list[str | None] = []
        for name in BRANCH_OUTPUTS:
            panel = _panel(record, s, block, name, image, show)
            file = f"branch_{show}_{name}_{s}_{block}_{image}.png"
            paths.append(None if panel is None else write_png(panel, record.folder / file))
        outputs = record.blocks[(s, block)].outputs
        explained = ", ".join(
            f"{TITLES[n].split()[0].lower()} {100 * m.explained:.0f}%" for n, m in outputs.items()
        )
        where = f"**Block {block} at step {s} (t = {record.t[s]:.2f})**, image {image + 1}" + (
            f" (nearest traced step to {step})" if s != step else ""
        )
        if show == "pca":
            what = (
                "Each token's features, a vector of many channels, squeezed to 3 numbers (the "
                "directions in which tokens differ most: principal components) shown as red, "
                "green and blue: **tokens of similar colour have similar features**; the colours "
                "themselves mean nothing and are not comparable between maps "
                f"(variance kept: {explained})."
            )
        else:
            what = (
                "Each token coloured by the **strength of its features** (the length of its "
                "channel vector): dark = weak, yellow = strong. All four maps and all images "
                "share one colour scale (the bar under each map), so brightness compares "
                "directly across branches."
            )
        caption = f"{where}. {what}"
        return paths, spectrum_figure(record, s, block, image), caption

    return record.cached(("branches", s, block, image, show), make)
