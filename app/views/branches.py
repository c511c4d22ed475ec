"""Branches view: what the spatial branch, the frequency branch, their fusion and the whole block
output at one (step, block), as PCA->RGB maps and per-token norm maps, with the subband energy
spectrum of each output."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..features import BRANCH_OUTPUTS
from ..render import colorize, fit_factor, labelled, stack_rows, upscale, write_png
from ..state import RunRecord, ViewError
from .wavelets import L2_CODES, L2_LABELS

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


def _panel(record: RunRecord, step: int, block: int, name: str, image: int) -> np.ndarray | None:
    summary = record.blocks[(step, block)].outputs.get(name)
    if summary is None:
        return None
    factor = fit_factor(summary.pca_rgb.shape[1], 160)
    norm = summary.norm
    # One norm scale for all images of the run at this (step, block, tensor): comparable.
    lo, hi = float(norm.min()), float(norm.max())
    maps = stack_rows(
        [
            upscale(summary.pca_rgb[image], factor),
            upscale(colorize(norm[image], lo, hi, cmap="viridis"), factor),
        ],
        pad=6,
    )
    return labelled(maps, SHORT_TITLES[name], size=14)


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
                    hovertext=L2_CODES,
                )
            )
    for k in range(1, 4):  # separators between the level-1 groups
        fig.add_vline(x=4 * k - 0.5, line=dict(color="#ced4da", width=1))
    fig.update_layout(
        barmode="group",
        title=dict(
            text=f"Energy per Haar packet subband, block {block}, step {step}", font=dict(size=14)
        ),
        yaxis=dict(type="log", title="energy fraction"),
        xaxis=dict(tickangle=-50),
        height=360,
        margin=dict(l=50, r=10, t=50, b=90),
        template="plotly_white",
        legend=dict(orientation="h", y=1.12, font=dict(size=11)),
    )
    return fig


def render(
    record: RunRecord, step: int, block: int, image: int
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
            panel = _panel(record, s, block, name, image)
            paths.append(
                None
                if panel is None
                else write_png(panel, record.folder / f"branch_{name}_{s}_{block}_{image}.png")
            )
        outputs = record.blocks[(s, block)].outputs
        explained = ", ".join(
            f"{TITLES[n].split()[0].lower()} {100 * m.explained:.0f}%" for n, m in outputs.items()
        )
        caption = (
            f"**Block {block} at step {s} (t = {record.t[s]:.2f})**, image {image + 1}"
            + (f" (nearest traced step to {step})" if s != step else "")
            + f". Top: first 3 principal components of the channels as RGB (variance explained: {explained}). "
            "Bottom: per-token norm (dark = small, yellow = large; one scale for all images)."
        )
        return paths, spectrum_figure(record, s, block, image), caption

    return record.cached(("branches", s, block, image), make)
