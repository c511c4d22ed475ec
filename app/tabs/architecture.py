"""Architecture tab: the model's block diagram, with buttons that open the other views."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text

# (tab id, tab label) of the views the diagram points to
JUMP_TARGETS = (
    ("trajectory", "Trajectory"),
    ("wavelets", "Wavelets"),
    ("scans", "Scan orders"),
    ("branches", "Branches"),
)


@dataclass(frozen=True)
class ArchitectureTab:
    diagram: gr.HTML
    jump: dict[str, gr.Button]  # tab id -> button that selects it


def build(diagram_svg: str) -> ArchitectureTab:
    """`diagram_svg`: the default model's diagram, drawn before the page loads."""
    with gr.Tab("Architecture", id="architecture"):
        gr.Markdown(text.ARCHITECTURE_HELP, elem_classes="help")
        diagram = gr.HTML(diagram_svg, elem_classes="diagram")
        with gr.Row():
            jump = {
                tab_id: gr.Button(f"Open {label} →", size="sm") for tab_id, label in JUMP_TARGETS
            }
        gr.Markdown(text.EMOJI_NOTE, elem_classes="help")
    return ArchitectureTab(diagram, jump)
