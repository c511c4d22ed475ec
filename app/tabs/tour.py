"""The guided tour's panel (above the views) and its wiring: Start, Back, Next, Leave.

The handlers live in app/tour.py; each stop's outputs are the controls and drawings of the
views it sets (`TourPanel.outputs`), so a stop looks exactly as if the user had moved them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ..errors import clean_errors
from ..results import TrajectoryFrame
from ..tour import Tour, TourOutputs
from .outputs import components, named, only

# instant, like the views: no queue round trip (app/ui.py's VIEW)
VIEW = dict(show_progress="hidden", trigger_mode="always_last", queue=False)


@dataclass(frozen=True)
class TourPanel:
    index: gr.State
    text: gr.Markdown
    start: gr.Button
    back: gr.Button
    next: gr.Button
    leave: gr.Button
    generate: gr.Button


def build(tour: Tour) -> TourPanel:
    with gr.Group(elem_id="tour"):
        text = gr.Markdown(tour.intro(), elem_id="tour-text", padding=True)
        with gr.Row():
            start = gr.Button("Start the tour", size="sm", variant="primary", elem_id="tour-start")
            back = gr.Button("← Back", size="sm", elem_id="tour-back")
            next_ = gr.Button("Next →", size="sm", elem_id="tour-next")
            leave = gr.Button("Leave the tour", size="sm", elem_id="tour-leave")
            generate = gr.Button("Generate first", size="sm", elem_id="tour-generate")
    return TourPanel(gr.State(-1), text, start, back, next_, leave, generate)


def outputs(panel: TourPanel, page: Any) -> TourOutputs:
    """The shape of every tour handler's result: the components each stop may set."""
    traj, wl, br, sc = page.trajectory, page.wavelets, page.branches, page.scans
    return TourOutputs(
        index=panel.index,
        text=panel.text,
        tabs=page.tabs,
        trajectory_step=traj.step,
        trajectory_frame=TrajectoryFrame(traj.frame.image, traj.frame.caption),
        wavelets_source=wl.source,
        wavelets_step=wl.step,
        wavelets_block=wl.block,
        wavelets_panels=wl.panels,
        branches_step=br.step,
        branches_block=br.block,
        branches_show=br.show,
        branches_panels=br.panels,
        scan_layer=sc.layer,
        scan_panels=sc.panels,
    )


def wire(tour: Tour, panel: TourPanel, page: Any) -> None:
    shape = outputs(panel, page)
    # A stop answers in two events (app/tour.py): text, tab and controls, then the drawings.
    # Each lists only its own outputs, so the page does not touch the other ~half of them.
    drawn = set(
        components(
            [
                shape.trajectory_frame,
                shape.wavelets_panels,
                shape.branches_panels,
                shape.scan_panels,
            ]
        )
    )
    first = [c for c in components(shape) if c not in drawn]
    second = [c for c in components(shape) if c in drawn]
    session = page.session
    for button, handler, inputs, name in (
        (panel.start, tour.start, [session], "tour_start"),
        (panel.next, tour.next, [session, panel.index], "tour_next"),
        (panel.back, tour.back, [session, panel.index], "tour_back"),
        (panel.leave, tour.leave, [], "tour_leave"),
    ):
        event = button.click(
            clean_errors(only(named(handler, shape), first)),
            inputs=inputs,
            outputs=first,
            api_name=name,
            **VIEW,
        )
        if button is not panel.leave:  # then the stop's drawings (app/tour.py says why)
            event.then(
                clean_errors(only(named(tour.views, shape), second)),
                inputs=[session, panel.index],
                outputs=second,
                api_visibility="private",
                **VIEW,
            )
    # "Generate first": the same as pressing Generate (the page's own button and settings)
    panel.generate.click(
        None, js="() => document.querySelector('#generate-btn').click()", api_visibility="private"
    )
