"""Scan orders tab: the layer cycle strip and the scan paths of one layer (depend on the model)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..components import RawDropdown
from ..results import ModelOutputs, ScanPanels
from .linked import js


@dataclass(frozen=True)
class ScansTab:
    layer: RawDropdown
    panels: ScanPanels  # of components
    anim_step: RawDropdown  # the run's traced step whose hidden state the animation plays
    anim_image: RawDropdown
    animation: gr.HTML  # played in the browser (app/js/scan_animation.js)

    @property
    def animation_inputs(self) -> list:
        """The scan_animation inputs after the session, in its API order."""
        return [self.layer, self.anim_step, self.anim_image]


def build(first: ModelOutputs, animation: str) -> ScansTab:
    """`first`: the default model's outputs, drawn before the page loads; `animation`: the
    animation's first value (the default model's orders, no run yet)."""
    with gr.Tab("Scan orders", id="scans"):
        gr.Markdown(text.SCANS_HELP, elem_classes="help")
        layer = RawDropdown(
            first.scan_layer["choices"], value=0, label="Layer", elem_id="scan-layer"
        )
        strip = gr.HTML(first.scan.strip, elem_classes="diagram")
        with gr.Accordion("Watch the scans: play, pause, scrub", open=True):
            gr.Markdown(ANIMATION_HELP, elem_classes="help")
            with gr.Row():
                anim_step = RawDropdown([], label="Hidden state at step", elem_id="anim-step")
                anim_image = RawDropdown([], label="of image", elem_id="anim-image")
            anim = gr.HTML(
                animation,
                html_template="<div></div>",
                js_on_load=js("scan_animation.js"),
                apply_default_css=False,
                elem_id="scan-animation",
            )
        image = gr.Image(
            value=first.scan.image,
            label="Scan orders of this layer",
            format="png",
            interactive=False,
            height=620,
            show_label=False,
            buttons=["download", "fullscreen"],
        )
        scan_text = gr.Markdown(first.scan.text, elem_id="scan-text")
    return ScansTab(layer, ScanPanels(strip, image, scan_text), anim_step, anim_image, anim)


ANIMATION_HELP = """Each branch reads the tokens one after the other, in its own order, and carries a
hidden state h from token to token (the selective scan). **Play** to watch the order; the curve
below each grid is the size of h (mean |h| over channels and state) after each token, traced from
your last run. Pick a layer on the strip or tick *continue through the layers* to watch the
4-layer cycle of orders repeat."""
