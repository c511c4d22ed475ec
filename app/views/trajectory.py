"""Trajectory view: x_t and the clean prediction at each recorded step, curves, GIF / .npz export."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from ..render import fit_factor, pair_frame, write_png
from ..state import RunRecord

PALETTE = ("#4c6ef5", "#f76707", "#12b886", "#e64980", "#7950f2", "#fab005", "#15aabf", "#82c91e")


def frame(record: RunRecord, step: int) -> np.ndarray:
    """The composite for one step: x_t (top) and x̂₁ (bottom) for every image."""
    factor = fit_factor(record.previews_xt.shape[2], 96)
    return pair_frame(record.previews_xt[step], record.previews_x1[step], factor)


def decoded_frame(record: RunRecord, step: int, decode: Callable[[np.ndarray], np.ndarray]) -> str:
    """PNG of a latent run's step with x̂₁ decoded by the VAE (top row: x_t's linear preview),
    at the stored step nearest `step`; rendered once per step."""

    def render() -> str:
        i = record.nearest_raw(step)
        images = decode(record.x1_hat[i])  # (N, H, W, 3) uint8 at the VAE's resolution
        size = record.previews_xt.shape[2] * fit_factor(record.previews_xt.shape[2], 96)
        small = np.stack([np.asarray(Image.fromarray(im).resize((size, size))) for im in images])
        top = np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.NEAREST))
                        for x in record.previews_xt[record.raw_steps[i]]])  # fmt: skip
        return write_png(pair_frame(top, small, 1), record.folder / f"frame_vae_{step:04d}.png")

    return record.cached(("frame-vae", step), render)


def live_frame(xt_rgb: np.ndarray, x1_rgb: np.ndarray) -> np.ndarray:
    """The live image while sampling: `frame`'s layout at the previews' own resolution.

    The page enlarges it (CSS, crisp pixels); drawing and encoding ~10 frames a run at 3x size
    cost the sampler ~0.15 s of its two CPU cores (measured, 4 images x 20 Heun steps).
    xt_rgb, x1_rgb (N, h, w, 3) uint8.
    """
    return pair_frame(xt_rgb, x1_rgb, 1)


def frame_path(record: RunRecord, step: int) -> str:
    """PNG of `frame(step)`, rendered once per step (scrubbing back is a cache hit)."""
    return record.cached(
        ("frame", step),
        lambda: write_png(frame(record, step), record.folder / f"frame_{step:04d}.png"),
    )


def caption(record: RunRecord, step: int) -> str:
    t = float(record.t[step])
    last = record.num_steps - 1
    where = "pure noise" if step == 0 else ("the final sample" if step == last else "in between")
    return (
        f"**Step {step} / {last}** · t = {t:.3f} ({where}) · top row: x_t, the state the sampler "
        f"holds · bottom row: x̂₁, the model's prediction of the clean image from x_t"
    )


def curves_figure(record: RunRecord) -> go.Figure:
    """Velocity size and distance of the prediction to the final sample, over t, per image."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "velocity size: RMS of v(x_t, t)",
            "distance of x̂₁ to the final sample (RMS)",
        ),
        horizontal_spacing=0.1,
    )
    t = record.t
    for i in range(record.num_images):
        color = PALETTE[i % len(PALETTE)]
        name = f"image {i + 1} (seed {record.settings['seeds'][i]})"
        fig.add_trace(
            go.Scatter(
                x=t,
                y=record.vel_rms[:, i],
                mode="lines+markers",
                name=name,
                line=dict(color=color),
                marker=dict(size=4),
                legendgroup=str(i),
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=record.dist_final[:, i],
                mode="lines+markers",
                name=name,
                line=dict(color=color),
                marker=dict(size=4),
                legendgroup=str(i),
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="t (0 = noise, 1 = data)", range=[-0.02, 1.02])
    fig.update_layout(
        height=330,
        margin=dict(l=50, r=10, t=50, b=50),
        template="plotly_white",
        legend=dict(orientation="h", y=-0.25, font=dict(size=11)),
    )
    return fig


def export_gif(record: RunRecord) -> str:
    """Animated GIF of the run (one frame per recorded step; the last one held)."""

    def make() -> str:
        frames = [Image.fromarray(frame(record, s)) for s in range(record.num_steps)]
        durations = [90] * (len(frames) - 1) + [1500]
        name = _stem(record) + ".gif"
        path = record.folder / name
        frames[0].save(
            path,
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            optimize=False,
        )
        return str(path)

    return record.cached("gif", make)


def export_npz(record: RunRecord) -> str:
    """The run as arrays: times, previews, final images, stored float states, curves, settings."""

    def make() -> str:
        path = record.folder / (_stem(record) + ".npz")
        np.savez_compressed(
            path,
            t=record.t,
            images=record.images,
            previews_xt=record.previews_xt,
            previews_x1=record.previews_x1,
            stored_steps=np.asarray(record.raw_steps),
            x_t=record.x_t,
            x1_hat=record.x1_hat,
            velocity=record.velocity,
            velocity_rms=record.vel_rms,
            distance_to_final=record.dist_final,
            settings_json=np.asarray(json.dumps(record.settings)),
        )
        return str(path)

    return record.cached("npz", make)


def _stem(record: RunRecord) -> str:
    s = record.settings
    return f"dimsum_run_{s['sampler']}_{s['steps']}steps_seed{s['seeds'][0]}"
