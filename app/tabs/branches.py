"""Branches tab: the outputs of one block's branches at a traced step, and their spectra."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..components import RawDropdown, RawRadio
from ..results import BranchesReset, BranchPanels
from ..views import branches as view


@dataclass(frozen=True)
class BranchesTab:
    step: RawDropdown
    block: RawDropdown
    image: RawDropdown
    show: RawRadio
    panels: BranchPanels  # of components: one image per view.BRANCH_OUTPUTS

    @property
    def view_inputs(self) -> list:
        """The branches_view inputs after the session, in its API order."""
        return [self.step, self.block, self.image, self.show]

    @property
    def reset(self) -> BranchesReset:
        """What a new run resets (the shape of ViewsReset.branches)."""
        return BranchesReset(self.step, self.block, self.image, self.panels, self.show)


def build() -> BranchesTab:
    with gr.Tab("Branches", id="branches"):
        gr.Markdown(text.BRANCHES_HELP, elem_classes="help")
        with gr.Row():
            step = RawDropdown([], label="Step (traced steps)", elem_id="branch-step")
            block = RawDropdown([], label="Block", elem_id="branch-block")
            image = RawDropdown([], label="Image")
        show = RawRadio(
            [(v, k) for k, v in view.MAPS.items()],
            value="norm",
            label="Colour each token by",
            elem_id="branch-show",
        )
        with gr.Row():
            images = [
                gr.Image(
                    label=view.TITLES[name],
                    show_label=False,
                    format="png",
                    interactive=False,
                    height=300,
                    min_width=150,
                    buttons=["download", "fullscreen"],
                )
                for name in view.BRANCH_OUTPUTS
            ]
        caption = gr.Markdown(elem_classes="view-caption")
        plot = gr.Plot(show_label=False, label="Subband energy of each output")
    return BranchesTab(step, block, image, show, BranchPanels(images, plot, caption))
