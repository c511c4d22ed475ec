"""Interventions tab: the last run beside the same run with one part of the network changed."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from dimsum.models.dimsum import DiMSUM

from ..components import RawCheckboxGroup, RawRadio, RawSlider
from ..results import InterventionControls, InterventionResult
from ..views import interventions as view


@dataclass(frozen=True)
class InterventionsTab:
    kind: RawRadio
    replacement: RawRadio
    blocks: RawCheckboxGroup
    t_start: RawSlider
    t_end: RawSlider
    run_btn: gr.Button
    presets: dict[str, gr.Button]
    result: InterventionResult  # of components

    @property
    def inputs(self) -> list:
        """The intervene inputs after the session, in its API order."""
        return [self.kind, self.replacement, self.blocks, self.t_start, self.t_end]

    @property
    def controls(self) -> InterventionControls:
        return InterventionControls(
            self.kind, self.replacement, self.blocks, self.t_start, self.t_end
        )


def _gallery(label: str, elem_id: str) -> gr.Gallery:
    return gr.Gallery(
        label=label,
        format="png",
        columns=2,
        height=430,
        object_fit="contain",
        preview=False,
        allow_preview=True,
        elem_classes="pixelated",
        elem_id=elem_id,
    )


def build(model: DiMSUM) -> InterventionsTab:
    """`model`: the default model (the blocks offered until the first run sets its own)."""
    with gr.Tab("Interventions", id="interventions"):
        gr.Markdown(view.HELP, elem_classes="help")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                kind = RawRadio(
                    view.kind_choices(), value="freq-off", label="Change", elem_id="iv-kind"
                )
                reps = view.replacement_choices("freq-off")
                replacement = RawRadio(
                    reps, value=reps[0][1], label="Replaced by", elem_id="iv-replacement"
                )
                blocks = RawCheckboxGroup(
                    view.block_choices(model),
                    value=list(range(len(model.blocks))),
                    label="In blocks",
                    elem_id="iv-blocks",
                )
                with gr.Row():
                    t_start = RawSlider(
                        0, 1, value=0.0, step=0.05, label="from t (0 = noise)", elem_id="iv-t0"
                    )
                    t_end = RawSlider(
                        0, 1, value=1.0, step=0.05, label="to t (1 = image)", elem_id="iv-t1"
                    )
                run_btn = gr.Button("Re-run with this change", variant="primary", elem_id="iv-run")
            with gr.Column(scale=4, min_width=280):
                with gr.Accordion("What to try", open=True, elem_id="iv-try"):
                    with gr.Row():
                        presets = {
                            name: gr.Button(name, size="sm", min_width=120) for name in view.PRESETS
                        }
                    gr.Markdown(view.WHAT_TO_TRY, elem_classes="help")
        summary = gr.Markdown(elem_id="iv-summary", elem_classes="view-caption")
        with gr.Row(equal_height=False):
            original = _gallery("Original (your run)", "iv-original")
            changed = _gallery("Changed", "iv-changed")
            with gr.Column(min_width=200):
                difference = _gallery("Difference (changed − original)", "iv-difference")
                legend = gr.HTML(elem_id="iv-legend")
        plot = gr.Plot(
            show_label=False, label="Subband energy, original vs changed", elem_id="iv-plot"
        )
        with gr.Accordion("Numbers (JSON)", open=False):
            details = gr.JSON(label="Intervention, subband energies, difference scale")
    return InterventionsTab(
        kind,
        replacement,
        blocks,
        t_start,
        t_end,
        run_btn,
        presets,
        InterventionResult(original, changed, difference, legend, plot, summary, details),
    )
