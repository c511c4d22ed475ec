"""Wavelets view: 2-level subbands of an image (or of the frequency branch's input) and their energy.

Image sources (final image, x_t, the clean prediction) use pytorch-wavelets with a choice of
wavelet family (Haar is exactly the model's transform, up to the model's uniform 1/4 factor,
which does not change energy fractions). The frequency branch's input is always Haar: those
are the coefficients the model actually scans (traced `freq_bands`).
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from dimsum.models.wavelets import SUBBAND_MEANING, SUBBANDS_L1

from ..render import (
    colorbar,
    colorize,
    fit_factor,
    labelled,
    labelled_grid,
    normalized_rgb,
    stack_rows,
    upscale,
    write_png,
)
from ..state import RunRecord, ViewError

WAVELETS = ("haar", "db2", "db4", "sym4", "coif1", "bior2.2", "bior4.4")
SOURCES = {
    "final": "Final image",
    "x_t": "Noisy state x_t at the step",
    "x1": "Clean prediction x̂₁ at the step",
    "freq": "Frequency-branch input at the block",
}
FREQ_MODES = {"meanabs": "mean |coefficient| over channels", "pc1": "first principal component"}
# Short names of the level-1 bands for the 16 packet labels "level-1 / level-2".
SHORT = {"LL": "approx", "LH": "cols", "HL": "rows", "HH": "diag"}
L1_LABELS = [f"{SUBBAND_MEANING[b].split(' (')[0]} ({b})" for b in SUBBANDS_L1]
L2_LABELS = [f"{SHORT[a]} / {SHORT[b]}" for a in SUBBANDS_L1 for b in SUBBANDS_L1]
L2_CODES = [f"{a}.{b}" for a in SUBBANDS_L1 for b in SUBBANDS_L1]
BAND_COLORS = ("#4c6ef5", "#f59f00", "#12b886", "#e64980")  # per level-1 parent


@lru_cache(maxsize=len(WAVELETS))
def _dwt(wave: str):
    with warnings.catch_warnings():  # pytorch-wavelets imports pkg_resources (deprecated)
        warnings.simplefilter("ignore")
        from pytorch_wavelets import DWTForward

    return DWTForward(J=1, wave=wave, mode="zero").double()


def check_wave(wave: object) -> str:
    if not isinstance(wave, str) or wave not in WAVELETS:
        from dimsum.validation import InputError

        raise InputError(f"wavelet={str(wave)[:40]!r}: must be one of {list(WAVELETS)}")
    return wave


def dwt_level(x: torch.Tensor, wave: str) -> list[torch.Tensor]:
    """One 2-D DWT of (C, H, W) -> [LL, LH, HL, HH], each (C, h, w) (pytorch-wavelets order
    yh = (cH, cV, cD) = (LH, HL, HH), checked against PyWavelets)."""
    with torch.no_grad():
        yl, yh = _dwt(wave)(x[None].double())
    return [yl[0], yh[0][0, :, 0], yh[0][0, :, 1], yh[0][0, :, 2]]


def packet(x: np.ndarray, wave: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(C, H, W) -> (4 level-1 bands, 16 level-2 packet bands in level-1-major order)."""
    l1 = dwt_level(torch.from_numpy(np.ascontiguousarray(x)), wave)
    l2 = [band for parent in l1 for band in dwt_level(parent, wave)]
    return [b.numpy() for b in l1], [b.numpy() for b in l2]


def energy_fractions(bands: list[np.ndarray]) -> np.ndarray:
    e = np.array([float(np.square(b, dtype=np.float64).sum()) for b in bands])
    return e / max(e.sum(), 1e-30)


def _magnitude(band: np.ndarray) -> np.ndarray:
    return np.sqrt(np.square(band).sum(0))


# What the detail tiles' colours measure (the colour bars' labels)
IMAGE_UNIT = "|coefficient| over R, G, B (pixel values scaled to [-1, 1])"
FREQ_UNITS = {
    "meanabs": "mean |coefficient| over the block's channels (feature units)",
    "pc1": "projection on the channels' first principal component (feature units)",
}


@dataclass(frozen=True)
class Scale:
    """One colour scale shared by the tiles it is drawn under."""

    vmin: float
    vmax: float
    label: str
    cmap: str = "magma"

    def tile(self, values: np.ndarray) -> np.ndarray:
        return colorize(values, self.vmin, self.vmax, cmap=self.cmap)


def _robust_max(maps: list[np.ndarray]) -> float:
    """The 99.5th percentile over all tiles of one scale (a few hot pixels do not wash it out)."""
    return float(np.percentile(np.concatenate([m.ravel() for m in maps]), 99.5)) or 1e-12


def image_tiles(l1: list[np.ndarray], l2: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Band mosaics of an RGB image: the approximation in colour, details as magnitude (magma).

    Each level's detail tiles share one colour scale, drawn as a colour bar under the mosaic,
    so their brightness compares directly (the chart compares their energies).
    """
    mags1 = [_magnitude(b) for b in l1[1:]]
    mags2 = [_magnitude(b) for b in l2[1:]]
    s1 = Scale(0.0, _robust_max(mags1), IMAGE_UNIT)
    s2 = Scale(0.0, _robust_max(mags2), IMAGE_UNIT)
    tiles1 = [normalized_rgb(l1[0])] + [s1.tile(m) for m in mags1]
    tiles2 = [normalized_rgb(l2[0])] + [s2.tile(m) for m in mags2]
    return mosaics(tiles1, tiles2, s1, s2)


def mosaics(
    tiles1: list[np.ndarray], tiles2: list[np.ndarray], scale1: Scale, scale2: Scale
) -> tuple[np.ndarray, np.ndarray]:
    """Titled, captioned mosaics with their colour bars: level 1 as 2x2, level 2 as 4x4."""
    f1 = fit_factor(tiles1[0].shape[0], 176)
    f2 = fit_factor(tiles2[0].shape[0], 112)
    m1 = labelled_grid([upscale(t, f1) for t in tiles1], L1_LABELS, cols=2, size=12)
    m2 = labelled_grid([upscale(t, f2) for t in tiles2], L2_LABELS, cols=4, size=11)
    m1 = stack_rows(
        [m1, colorbar(scale1.vmin, scale1.vmax, scale1.label, m1.shape[1], scale1.cmap)]
    )
    m2 = stack_rows(
        [m2, colorbar(scale2.vmin, scale2.vmax, scale2.label, m2.shape[1], scale2.cmap)]
    )
    return (
        labelled(m1, "Level 1: 4 subbands (details on one colour scale)", size=14),
        labelled(m2, "Level 2: 16 packet subbands (details on one scale)", size=14),
    )


def scalar_tiles(
    l1: list[np.ndarray], l2: list[np.ndarray], signed: bool, label: str
) -> tuple[np.ndarray, np.ndarray]:
    """Band mosaics of one scalar map per band ((h, w) each): the detail tiles of each level
    share one scale (signed maps: symmetric, red/blue = sign); the approximation has its own."""

    def scale(maps: list[np.ndarray]) -> Scale:
        if signed:
            m = _robust_max([np.abs(b) for b in maps])
            return Scale(-m, m, label, "RdBu_r")
        return Scale(0.0, _robust_max(maps), label)

    s1, s2 = scale(l1[1:]), scale(l2[1:])
    own1, own2 = scale([l1[0]]), scale([l2[0]])
    tiles1 = [own1.tile(l1[0])] + [s1.tile(b) for b in l1[1:]]
    tiles2 = [own2.tile(l2[0])] + [s2.tile(b) for b in l2[1:]]
    return mosaics(tiles1, tiles2, s1, s2)


ENERGY_TITLE = "share of total energy (%, log scale)"
ENERGY_HOVER = "%{x}: %{y:.3%} of the energy<extra>%{hovertext}</extra>"


def percent_label(fraction: float) -> str:
    """0.001 -> '0.1%', 1 -> '100%' (decade tick labels of the energy charts)."""
    return f"{100 * fraction:.10g}%"


def energy_axis(*series: np.ndarray | list[float], title: str = ENERGY_TITLE) -> dict:
    """A plotly log y-axis for energy fractions with one labelled tick per decade.

    Plotly's own log ticks label the minor ticks too ("5 2 0.1 5 2 0.01"), which reads as
    nonsense to a newcomer; here every tick is a decade written as a percentage.
    """
    values = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in series])
    values = values[np.isfinite(values) & (values > 0)]
    lo = int(np.floor(np.log10(values.min()))) if values.size else -4
    lo = max(lo, -12)
    decades = [10.0**k for k in range(lo, 1)]
    return dict(
        type="log",
        title=dict(text=title),
        tickmode="array",
        tickvals=decades,
        ticktext=[percent_label(v) for v in decades],
        range=[lo - 0.05, 0.05],
        minor=dict(showgrid=False, ticks=""),
    )


def energy_figure(l1: np.ndarray, l2: np.ndarray, title: str) -> go.Figure:
    """Bar charts of energy fractions: 4 level-1 bands and the 16 packet bands (log scale)."""
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.28, 0.72], subplot_titles=("level 1", "level 2 (packet)")
    )
    fig.add_trace(
        go.Bar(
            x=[SHORT[b] for b in SUBBANDS_L1],
            y=l1,
            marker_color=list(BAND_COLORS),
            hovertext=[f"{b}: {SUBBAND_MEANING[b]}" for b in SUBBANDS_L1],
            hovertemplate=ENERGY_HOVER,
            name="level 1",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=L2_LABELS,
            y=l2,
            marker_color=[BAND_COLORS[i // 4] for i in range(16)],
            hovertext=[f"{c}: {lab}" for c, lab in zip(L2_CODES, L2_LABELS, strict=True)],
            hovertemplate=ENERGY_HOVER,
            name="level 2",
        ),
        row=1,
        col=2,
    )
    axis = energy_axis(l1, l2)
    fig.update_yaxes(**axis, row=1, col=1)
    fig.update_yaxes(**{**axis, "title": None}, row=1, col=2)
    fig.update_xaxes(title_text="level-1 subband", row=1, col=1)
    fig.update_xaxes(tickangle=-50, title_text="level-1 band / level-2 band", row=1, col=2)
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        showlegend=False,
        height=340,
        margin=dict(l=70, r=10, t=60, b=110),
        template="plotly_white",
    )
    return fig


def render(
    record: RunRecord, source: str, step: int, block: int, image: int, wave: str, freq_mode: str
) -> tuple[str, str, go.Figure, str]:
    """(level-1 mosaic PNG path, level-2 mosaic PNG path, energy figure, caption markdown)."""
    key = (
        "wavelets",
        source,
        step if source != "final" else -1,
        block if source == "freq" else -1,
        image,
        wave,
        freq_mode,
    )
    return record.cached(key, lambda: _render(record, source, step, block, image, wave, freq_mode))


def _render(
    record: RunRecord, source: str, step: int, block: int, image: int, wave: str, freq_mode: str
) -> tuple[str, str, go.Figure, str]:
    t = record.t
    if source == "freq":
        s = record.nearest_traced(step)
        summary = record.blocks.get((s, block))
        if summary is None or summary.freq_input is None:
            raise ViewError(
                f"no frequency-branch trace for block {block} (this model's blocks have no wavelet branch, or the block was not traced)"
            )
        fi = summary.freq_input
        if freq_mode == "pc1":
            l1, l2 = packet(fi.pc1[image][None].astype(np.float64), "haar")
            tiles = scalar_tiles(
                [b[0] for b in l1], [b[0] for b in l2], signed=True, label=FREQ_UNITS["pc1"]
            )
            what = "first principal component of the channels (red/blue = sign)"
        else:
            tiles = scalar_tiles(
                list(fi.meanabs_l1[image]),
                list(fi.meanabs_l2[image]),
                signed=False,
                label=FREQ_UNITS["meanabs"],
            )
            what = "mean |coefficient| over channels"
        e1, e2 = fi.spectrum_l1[image], fi.spectrum[image]
        title = f"Frequency-branch input, block {block}, step {s} (t = {t[s]:.2f})"
        caption = (
            f"**{title}** — Haar packet of the {fi.pc1.shape[-1]}×{fi.pc1.shape[-1]} feature map the "
            f"frequency branch receives (exactly the coefficients its Mamba scans), shown as {what}."
            + (f" Nearest traced step to {step}." if s != step else "")
        )
    else:
        if source == "final":
            x = record.images[image].astype(np.float64).transpose(2, 0, 1) / 127.5 - 1
            title = "Final image"
        else:
            states, s = record.display_rgb("x_t" if source == "x_t" else "x1", step)
            x = states[image].astype(np.float64)
            name = "x_t" if source == "x_t" else "x̂₁ (clean prediction)"
            title = f"{name} at step {s} (t = {t[s]:.2f})"
            if s != step:
                title += f" — nearest stored step to {step}"
        l1, l2 = packet(x, wave)
        tiles = image_tiles(l1, l2)
        e1, e2 = energy_fractions(l1), energy_fractions(l2)
        caption = (
            f"**{title}**, image {image + 1}, wavelet `{wave}`. Detail tiles: brightness = "
            "coefficient magnitude, one colour scale per level (colour bars under the mosaics); "
            "the approximation tiles show the image itself, on their own scale."
        )
    fig = energy_figure(
        np.asarray(e1), np.asarray(e2), "Energy per subband (" + title.split(" —")[0] + ")"
    )
    tag = secrets.token_hex(6)
    p1 = write_png(tiles[0], record.folder / f"wavelets_l1_{tag}.png")
    p2 = write_png(tiles[1], record.folder / f"wavelets_l2_{tag}.png")
    return p1, p2, fig, caption
