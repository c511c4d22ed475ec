"""Scan-orders view: the two branches' token orders of a layer as numbered paths, and the
architecture strip (4-layer cycle, shared attention placement). Drawn from `model.scan_orders()`,
i.e. from the permutations the model actually uses."""

from __future__ import annotations

import hashlib
import html
import logging
import multiprocessing
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dimsum.models import DiMSUM


@lru_cache(maxsize=1)
def _scan_folder() -> Path:
    """Where the figures go: made on first use (not at import, which the spawned drawing
    process repeats)."""
    return Path(tempfile.mkdtemp(prefix="dimsum-scans-"))


_MPL_LOCK = threading.Lock()  # matplotlib's pyplot state is not thread-safe
log = logging.getLogger(__name__)

SPATIAL_GLYPH = {
    "row-major": "rows →",
    "row-major reversed": "rows ← (reversed)",
    "column-major": "columns ↓",
    "column-major reversed": "columns ↑ (reversed)",
}


def layer_choices(model: DiMSUM) -> list[tuple[str, int]]:
    return [
        (f"layer {o['layer']}: {o.get('spatial_name', 'attention')}", o["layer"])
        for o in model.scan_orders()
    ]


def _draw_path(
    ax: Any, perm: np.ndarray, side: int, title: str, windows: int | None, cmap: str
) -> None:
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    n = perm.size
    rows, cols = np.divmod(perm, side)
    pts = np.stack([cols, rows], 1).astype(float)
    colors = colormaps[cmap](np.linspace(0, 1, n))
    if windows:  # shade alternate windows and outline them
        w = side // windows
        for wy in range(windows):
            for wx in range(windows):
                if (wy + wx) % 2 == 0:
                    ax.add_patch(_rect(wx * w - 0.5, wy * w - 0.5, w, "#f1f3f5"))
        for k in range(windows + 1):
            ax.axhline(k * w - 0.5, color="#495057", lw=1.2)
            ax.axvline(k * w - 0.5, color="#495057", lw=1.2)
    # Steps to a neighbouring token: coloured arrows; jumps (end of a row, next window): dashed.
    step_len = np.abs(np.diff(pts, axis=0)).sum(1)
    near = step_len <= 1.01
    segs = np.stack([pts[:-1], pts[1:]], 1)
    ax.add_collection(
        LineCollection(segs[near], colors=colors[:-1][near], linewidths=2.2, alpha=0.85, zorder=2)
    )
    ax.add_collection(
        LineCollection(segs[~near], colors="#adb5bd", linewidths=0.8, linestyles="dashed", zorder=1)
    )
    for j in np.flatnonzero(near)[:: max(1, side // 4)]:
        (x0, y0), (x1, y1) = pts[j], pts[j + 1]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(arrowstyle="-|>", color=colors[j], lw=0, mutation_scale=9),
            zorder=3,
        )
    position = np.empty(n, dtype=int)
    position[perm] = np.arange(n)
    fs = max(3.0, 88 / side)
    for token in range(n):
        r, c = divmod(token, side)
        ax.text(
            c,
            r,
            str(position[token]),
            ha="center",
            va="center",
            fontsize=fs,
            color="#212529",
            zorder=4,
            bbox=dict(boxstyle="round,pad=0.08", fc="white", ec="none", alpha=0.75),
        )
    ax.scatter(*pts[0], s=150, color="#2f9e44", zorder=3, alpha=0.8)
    ax.scatter(*pts[-1], s=150, marker="s", color="#e03131", zorder=3, alpha=0.8)
    ax.set_xlim(-0.5, side - 0.5)
    ax.set_ylim(side - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)


def _rect(x: float, y: float, w: float, color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, w, facecolor=color, edgecolor="none", zorder=0)


def _png_path(folder: Path, side: int, layer: int, spatial: tuple, freq: tuple | None) -> Path:
    # A digest, not hash(): the background process must arrive at the same name, and
    # hash(None) differs between processes on Python < 3.12.
    digest = hashlib.sha1(repr((spatial, freq)).encode()).hexdigest()[:12]
    return folder / f"scan_{side}_{layer % 4}_{digest}.png"


@lru_cache(maxsize=64)
def _render(
    side: int,
    spatial: tuple[int, ...],
    spatial_name: str,
    freq: tuple[int, ...] | None,
    freq_name: str,
    layer: int,
    folder: Path | None = None,
) -> str:
    path = _png_path(folder or _scan_folder(), side, layer, spatial, freq)
    if path.is_file():  # drawn by the background process (`prerender`)
        return str(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if freq is not None else 1
    with _MPL_LOCK:
        fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 5.9), dpi=110)
        axes = np.atleast_1d(axes)
        _draw_path(
            axes[0],
            np.asarray(spatial),
            side,
            f"Spatial branch, layer {layer}: {SPATIAL_GLYPH.get(spatial_name, spatial_name)}",
            None,
            "viridis",
        )
        if freq is not None:
            _draw_path(
                axes[1],
                np.asarray(freq),
                side,
                f"Frequency branch, layer {layer}: {freq_name}",
                4,
                "plasma",
            )
        fig.text(
            0.5,
            0.015,
            "Number = position of the token in the scanned sequence · colour: early → late · "
            "green dot: first token, red square: last · dashed: jump to the next row / window",
            ha="center",
            fontsize=8.5,
            color="#495057",
        )
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        partial = path.with_suffix(f".{os.getpid()}.part.png")
        fig.savefig(partial, bbox_inches="tight", pad_inches=0.12)
        plt.close(fig)
    os.replace(partial, path)  # never a half-written PNG under the final name
    return str(path)


def _layer_args(model: DiMSUM, layer: int, orders: list[dict] | None = None) -> tuple | None:
    """`_render`'s arguments for a layer (None for an attention layer: nothing to draw).
    `orders`: `model.scan_orders()` when the caller already has it."""
    o = (orders or model.scan_orders())[layer]
    if "spatial" not in o:
        return None
    freq = tuple(int(v) for v in o["freq"]) if o["freq_name"].startswith("window") else None
    spatial = tuple(int(v) for v in o["spatial"])
    return (model.config.grid_size, spatial, o["spatial_name"], freq, o["freq_name"], layer)


def _render_all_niced(jobs: list[tuple], folder: Path, niceness: int) -> None:
    os.nice(niceness)  # background work: the server's threads come first
    for args in jobs:
        _render(*args, folder=folder)


def prerender(model: DiMSUM, layers: range, niceness: int = 19) -> threading.Thread:
    """Draw the layers' figures in a separate, lowest-priority process, so the first visit of
    the view is instant. A process rather than a thread: drawing ~500 numbered labels holds
    the GIL for ~2.5 s per figure, which slowed a generation started meanwhile by seconds on
    the 2-core CPU. `niceness` (0-19) lowers its CPU priority. Returns the thread that waits
    for it."""
    orders = model.scan_orders()
    jobs = [a for a in (_layer_args(model, i, orders) for i in layers) if a is not None]

    def run() -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        proc = ctx.Process(
            target=_render_all_niced, args=(jobs, _scan_folder(), niceness), daemon=True
        )
        proc.start()
        proc.join()
        if proc.exitcode and proc.exitcode > 0:  # < 0: stopped by a signal (the app exiting)
            log.warning("drawing the scan orders in the background failed (exit %s)", proc.exitcode)

    thread = threading.Thread(target=run, daemon=True, name="dimsum-scans")
    thread.start()
    return thread


def render(model: DiMSUM, layer: int) -> tuple[str, str]:
    """(PNG path of the two numbered paths, markdown description) for one layer."""
    orders = model.scan_orders()
    o = orders[layer]
    side = model.config.grid_size
    args = _layer_args(model, layer, orders)
    if args is None:
        return "", f"Layer {layer} is an attention block (ablation model): it has no scan order."
    path = _render(*args)
    attn = " The shared attention block runs right after this layer." if o["attn_after"] else ""
    text = (
        f"**Layer {layer}** (position {layer % 4} of the 4-layer cycle): the spatial branch scans "
        f"the {side}×{side} token grid **{o['spatial_name']}**; the frequency branch scans its "
        f"wavelet tokens with a **{o['freq_name']}**.{attn}"
    )
    return path, text


def strip_html(model: DiMSUM, selected: int | None = None) -> str:
    """Architecture strip as inline SVG: one box per block with its scan orders, attention
    diamonds where the shared attention block runs, the selected layer outlined."""
    orders = model.scan_orders()
    box_w, gap, h = 104, 12, 84
    attn_w = 26
    xs, x = [], 10
    for o in orders:
        xs.append(x)
        x += box_w + gap + (attn_w + gap if o["attn_after"] else 0)
    width = x + 10
    fills = ("#dbe4ff", "#d3f9d8", "#fff3bf", "#ffe3e3")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="100%" '
        f'style="max-width:{min(width, 1400)}px" role="img" aria-label="DiMSUM blocks and their scan orders">',
        "<style>text{font-family:system-ui,sans-serif;fill:#212529}</style>",
    ]
    for o, x0 in zip(orders, xs, strict=True):
        i = o["layer"]
        sel = i == selected
        parts.append(
            f'<rect x="{x0}" y="8" width="{box_w}" height="{h - 16}" rx="8" fill="{fills[i % 4]}" '
            f'stroke="{"#d9480f" if sel else "#868e96"}" stroke-width="{3 if sel else 1}"/>'
        )
        parts.append(
            f'<text x="{x0 + box_w / 2}" y="28" text-anchor="middle" font-size="13" font-weight="600">block {i}</text>'
        )
        sp = (
            SPATIAL_GLYPH.get(o.get("spatial_name", ""), "attention")
            .split(" (")[0]
            .replace("columns", "cols")
        )
        fq = o.get("freq_name", "").replace("window scan, ", "").replace("column", "col")
        parts.append(
            f'<text x="{x0 + box_w / 2}" y="48" text-anchor="middle" font-size="12">S: {html.escape(sp)}</text>'
        )
        if fq:
            parts.append(
                f'<text x="{x0 + box_w / 2}" y="66" text-anchor="middle" font-size="12">F: {html.escape(fq)}</text>'
            )
        if o["attn_after"]:
            ax = x0 + box_w + gap + attn_w / 2
            cy = h / 2
            parts.append(
                f'<polygon points="{ax},{cy - 16} {ax + 13},{cy} {ax},{cy + 16} {ax - 13},{cy}" fill="#e599f7" stroke="#862e9c"/>'
                f'<text x="{ax}" y="{cy + 4}" text-anchor="middle" font-size="11" font-weight="700">A</text>'
            )
    parts.append("</svg>")
    parts.append(
        '<p style="font-size:0.85rem;margin:0.2rem 0 0 0.6rem;color:#495057">Colour = position in the '
        "4-layer cycle · S = spatial scan order · F = frequency-branch window scan · "
        "<b>A</b> = the one shared attention block (the same weights every time it runs) · "
        "outlined: the selected layer</p>"
    )
    return "<div>" + "".join(parts) + "</div>"


def animation_payload(
    model: DiMSUM,
    layer: int,
    states: dict[int, dict[str, list[float]]] | None = None,
    image: dict[str, Any] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """What the scan animation (app/js/scan_animation.js) plays, for every layer of `model`:
    the permutations the blocks hold (`model.scan_orders()`) and, per traced layer, the
    hidden-state magnitude of each branch's scan by position (`states[layer]`, from the run).
    `image`: {"src": data URI, "seed": ...} of the run's image, drawn under the spatial grid."""
    from dimsum.models.scan_orders import WINDOWS_PER_SIDE

    layers = []
    for o in model.scan_orders():
        i = o["layer"]
        entry: dict[str, Any] = {"layer": i, "cycle": i % 4, "attn_after": bool(o["attn_after"])}
        if "spatial" in o:
            window = o["freq_name"].startswith("window")
            entry.update(
                spatial=[int(v) for v in o["spatial"]],
                spatial_name=o["spatial_name"],
                freq=[int(v) for v in o["freq"]],
                freq_name=o["freq_name"],
                freq_windows=window,
            )
        entry["state"] = (states or {}).get(i)
        layers.append(entry)
    return {
        "kind": "scan",
        "side": model.config.grid_size,
        "windows": WINDOWS_PER_SIDE,
        "layer": int(layer),
        "layers": layers,
        "image": image,
        "note": note,
    }
