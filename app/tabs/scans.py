"""Scan orders tab: the layer cycle strip and the scan paths of one layer (depend on the model)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..components import RawDropdown
from ..results import ModelOutputs, ScanPanels


@dataclass(frozen=True)
class ScansTab:
    layer: RawDropdown
    panels: ScanPanels  # of components


def build(first: ModelOutputs) -> ScansTab:
    """`first`: the default model's outputs, drawn before the page loads."""
    with gr.Tab("Scan orders", id="scans"):
        gr.Markdown(text.SCANS_HELP, elem_classes="help")
        layer = RawDropdown(
            first.scan_layer["choices"], value=0, label="Layer", elem_id="scan-layer"
        )
        strip = gr.HTML(first.scan.strip, elem_classes="diagram")
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
    return ScansTab(layer, ScanPanels(strip, image, scan_text))
