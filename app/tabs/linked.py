"""Linked views tab: point at a token (or a subband) and see it in every view at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..components import RawDropdown
from ..views.linked import NO_RUN, empty

JS = Path(__file__).resolve().parent.parent / "js"

HELP = """**Point at a token** of the image: the same token lights up everywhere — where the
spatial branch reads it in its scan sequence, where the frequency branch reads its wavelet patch
(the 16 wavelet tokens of its 4×4 patch, read one after the other), the 16 packet coefficients
its patch contributes to (with this token's weight ±1/16 in each), and its feature norm after each
branch. **Point at a subband** to see where in the image it is strong. Everything answers in
your browser, from the traced run."""


def js(name: str) -> str:
    """A js_on_load body from app/js/, after the colour map every view script uses."""
    return (JS / "colormap.js").read_text(encoding="utf-8") + (JS / name).read_text(
        encoding="utf-8"
    )


@dataclass(frozen=True)
class LinkedTab:
    step: RawDropdown
    block: RawDropdown
    image: RawDropdown
    view: gr.HTML

    @property
    def view_inputs(self) -> list:
        """The linked_view inputs after the session, in its API order."""
        return [self.step, self.block, self.image]


def build() -> LinkedTab:
    with gr.Tab("Linked views", id="linked"):
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row():
            step = RawDropdown([], label="Step (traced steps)", elem_id="linked-step")
            block = RawDropdown([], label="Block", elem_id="linked-block")
            image = RawDropdown([], label="Image", elem_id="linked-image")
        view = gr.HTML(
            empty(NO_RUN),
            html_template="<div></div>",
            js_on_load=js("linked.js"),
            apply_default_css=False,
            elem_id="linked-view",
        )
    return LinkedTab(step, block, image, view)
