"""Trajectory tab: scrub through the run's steps, curves over t, GIF and .npz export."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..components import RawSlider
from ..results import TrajectoryFrame, TrajectoryReset


@dataclass(frozen=True)
class TrajectoryTab:
    step: RawSlider
    frame: TrajectoryFrame  # of components: the step's image and caption
    plot: gr.Plot
    gif_btn: gr.Button
    npz_btn: gr.Button
    export_file: gr.File

    @property
    def reset(self) -> TrajectoryReset:
        """What a new run resets (the shape of ViewsReset.trajectory)."""
        return TrajectoryReset(self.step, self.frame, self.plot, self.export_file)


def build() -> TrajectoryTab:
    with gr.Tab("Trajectory", id="trajectory"):
        gr.Markdown(text.TRAJECTORY_HELP, elem_classes="help")
        step = RawSlider(
            0,
            20,
            value=20,
            step=1,
            label="Step (drag to scrub through the run)",
            elem_id="traj-step",
        )
        image = gr.Image(
            label="x_t (top) and x̂₁ (bottom) at this step",
            format="png",
            interactive=False,
            elem_classes="pixelated",
            height=300,
            elem_id="traj-frame",
            buttons=["download", "fullscreen"],
        )
        caption = gr.Markdown(elem_classes="view-caption")
        plot = gr.Plot(show_label=False, label="Curves over t")
        with gr.Row():
            gif_btn = gr.Button("Export animated GIF")
            npz_btn = gr.Button("Export .npz (arrays)")
        export_file = gr.File(label="Export", interactive=False, visible=False)
    return TrajectoryTab(step, TrajectoryFrame(image, caption), plot, gif_btn, npz_btn, export_file)
