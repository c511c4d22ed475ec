"""Wavelets tab: two-level wavelet packets of the final image, a step, or a frequency branch."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..components import RawDropdown, RawRadio, RawSlider
from ..results import WaveletPanels, WaveletsReset
from ..views import wavelets as view


@dataclass(frozen=True)
class WaveletsTab:
    source: RawRadio
    image: RawDropdown
    wave: RawDropdown
    step: RawSlider  # shown for every source but the final image
    block: RawDropdown  # shown for the frequency branch only
    mode: RawRadio  # shown for the frequency branch only
    panels: WaveletPanels  # of components

    @property
    def view_inputs(self) -> list:
        """The wavelet_view inputs after the session, in its API order."""
        return [self.source, self.step, self.block, self.image, self.wave, self.mode]

    @property
    def reset(self) -> WaveletsReset:
        """What a new run resets (the shape of ViewsReset.wavelets)."""
        return WaveletsReset(self.step, self.block, self.image, self.source, self.panels)

    def controls_for(self, source: str) -> dict:
        """Show only the controls that apply to `source` (wave is not used by "freq")."""
        return {
            self.step: gr.update(visible=source != "final"),
            self.block: gr.update(visible=source == "freq"),
            self.mode: gr.update(visible=source == "freq"),
            self.wave: gr.update(visible=source != "freq"),
        }


def _mosaic(label: str) -> gr.Image:
    return gr.Image(
        label=label,
        show_label=False,
        format="png",
        interactive=False,
        height=460,
        buttons=["download", "fullscreen"],
    )


def build() -> WaveletsTab:
    with gr.Tab("Wavelets", id="wavelets"):
        gr.Markdown(text.WAVELETS_HELP, elem_classes="help")
        with gr.Row():
            source = RawRadio(
                [(v, k) for k, v in view.SOURCES.items()],
                value="final",
                label="Source",
                scale=3,
                elem_id="wl-source",
            )
            image = RawDropdown([], label="Image", scale=1)
        with gr.Row():
            wave = RawDropdown(
                list(view.WAVELETS),
                value="haar",
                label="Wavelet family",
                info="Haar is the model's own transform",
                scale=1,
            )
            step = RawSlider(
                0, 20, value=20, step=1, label="Step", scale=2, visible=False, elem_id="wl-step"
            )
            block = RawDropdown([], label="Block", scale=1, visible=False, elem_id="wl-block")
            mode = RawRadio(
                [(v, k) for k, v in view.FREQ_MODES.items()],
                value="meanabs",
                label="Show",
                scale=2,
                visible=False,
            )
        with gr.Row():
            level1 = _mosaic("Level 1: 4 subbands")
            level2 = _mosaic("Level 2: 16 packet subbands")
        caption = gr.Markdown(elem_classes="view-caption")
        plot = gr.Plot(show_label=False, label="Energy per subband")
    panels = WaveletPanels(level1, level2, plot, caption)
    return WaveletsTab(source, image, wave, step, block, mode, panels)
