"""Wavelets view: 2-level subbands of an image (or of the frequency branch's input) and their energy.

Image sources (final image, x_t, the clean prediction) use pytorch-wavelets with a choice of
wavelet family (Haar is exactly the model's transform, up to the model's uniform 1/4 factor,
which does not change energy fractions). The frequency branch's input is always Haar: those
are the coefficients the model actually scans (traced `freq_bands`).
"""

from __future__ import annotations

import secrets
import warnings
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from dimsum.models.wavelets import SUBBAND_MEANING, SUBBANDS_L1

from ..render import (
    colorize,
    fit_factor,
    labelled,
    labelled_grid,
    normalized_rgb,
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


def image_tiles(l1: list[np.ndarray], l2: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Band mosaics of an RGB image: LL in colour, details as magnitude (magma).

    Level 1: the three detail bands share one scale (their brightness compares energy).
    Level 2: each tile has its own scale (structure; the chart compares energies).
    """
    vmax = max(float(np.percentile(_magnitude(b), 99.5)) for b in l1[1:]) or 1e-12
    tiles1 = [normalized_rgb(l1[0])] + [colorize(_magnitude(b), 0.0, vmax) for b in l1[1:]]
    tiles2 = [normalized_rgb(l2[0])] + [colorize(_magnitude(b)) for b in l2[1:]]
    return mosaics(tiles1, tiles2)


def mosaics(tiles1: list[np.ndarray], tiles2: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Titled, captioned mosaics: level 1 as 2x2, level 2 as 4x4 (level-1-major rows)."""
    f1 = fit_factor(tiles1[0].shape[0], 176)
    f2 = fit_factor(tiles2[0].shape[0], 112)
    m1 = labelled_grid([upscale(t, f1) for t in tiles1], L1_LABELS, cols=2, size=12)
    m2 = labelled_grid([upscale(t, f2) for t in tiles2], L2_LABELS, cols=4, size=11)
    return (
        labelled(m1, "Level 1: 4 subbands (details share one scale)", size=15),
        labelled(m2, "Level 2: 16 packet subbands, level-1 / level-2 band", size=15),
    )


def scalar_tiles(
    l1: list[np.ndarray], l2: list[np.ndarray], signed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Band mosaics of one scalar map per band ((h, w) each)."""

    def tile(b: np.ndarray, shared: float | None = None) -> np.ndarray:
        if signed:
            m = shared or float(np.abs(b).max()) or 1e-12
            return colorize(b, -m, m, cmap="RdBu_r")
        return colorize(b, 0.0, shared) if shared else colorize(b)

    detail = max(float(np.abs(b).max()) for b in l1[1:]) or 1e-12
    tiles1 = [tile(l1[0])] + [tile(b, detail) for b in l1[1:]]
    tiles2 = [tile(b) for b in l2]
    return mosaics(tiles1, tiles2)


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
            name="level 2",
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(type="log", title_text="energy fraction", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(tickangle=-50, row=1, col=2)
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        showlegend=False,
        height=340,
        margin=dict(l=50, r=10, t=60, b=90),
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
            tiles = scalar_tiles([b[0] for b in l1], [b[0] for b in l2], signed=True)
            what = "first principal component of the channels (red/blue = sign)"
        else:
            tiles = scalar_tiles(
                list(fi.meanabs_l1[image]), list(fi.meanabs_l2[image]), signed=False
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
        caption = f"**{title}**, image {image + 1}, wavelet `{wave}`."
    fig = energy_figure(
        np.asarray(e1), np.asarray(e2), "Energy per subband (" + title.split(" —")[0] + ")"
    )
    tag = secrets.token_hex(6)
    p1 = write_png(tiles[0], record.folder / f"wavelets_l1_{tag}.png")
    p2 = write_png(tiles[1], record.folder / f"wavelets_l2_{tag}.png")
    return p1, p2, fig, caption
