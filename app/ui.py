"""The page: calls each area's builder (tabs/) and wires the events to explorer.py's handlers.

Every event that the API exposes has an explicit `api_name`; every handler is wrapped by
`clean_errors`, and handlers return named results that `tabs.outputs.named` pairs with their
components. Sampling has its own concurrency group of size 1 (one model, CPU-bound); views are
light and run concurrently. Events are registered in a fixed order: gradio numbers them
(`fn_index`) in that order, and API clients may address them by number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import stopping, text
from .errors import clean_errors
from .explorer import Explorer
from .intervene import Interventions
from .linking import LinkedHandlers
from .results import (
    ControlValues,
    GenerateOutputs,
    InterventionRefresh,
    LinkedReset,
    ModelChange,
    ModelOutputs,
    SettingsChange,
    ViewsReset,
)
from .tabs import (
    architecture,
    branches,
    evidence,
    generate,
    interventions,
    linked,
    scans,
    trajectory,
    wavelets,
)
from .tabs import tour as tour_tab
from .tabs.outputs import components, named
from .tour import Tour

RUN_COUNTER = "dimsumRuns"  # the page's count of Generate clicks (app/stopping.py)
SAMPLING = dict(concurrency_limit=1, concurrency_id="sampling")
VIEW = dict(
    show_progress="hidden", trigger_mode="always_last", queue=False
)  # instant, no queue round trip


@dataclass(frozen=True)
class Page:
    """Every area of the page, with the output shapes shared by several events."""

    session: gr.State
    panel: generate.GeneratePanel
    tabs: gr.Tabs
    trajectory: trajectory.TrajectoryTab
    wavelets: wavelets.WaveletsTab
    scans: scans.ScansTab
    branches: branches.BranchesTab
    architecture: architecture.ArchitectureTab
    evidence: evidence.EvidenceTab
    linked: linked.LinkedTab
    tour: tour_tab.TourPanel
    interventions: interventions.InterventionsTab

    @property
    def model_outputs(self) -> ModelOutputs:
        """The components that depend on the session's model, spread over several areas."""
        picker = self.panel.picker
        return ModelOutputs(
            model=picker.model,
            class_label=picker.class_label,
            info=picker.info,
            scan_layer=self.scans.layer,
            scan=self.scans.panels,
            diagram=self.architecture.diagram,
            temperature=self.panel.sampling.temperature,
        )

    @property
    def control_values(self) -> ControlValues:
        s = self.panel.sampling
        return ControlValues(s.seed, s.steps, s.sampler, s.guidance, s.images, s.schedule)


def build_ui(explorer: Explorer) -> gr.Blocks:
    with gr.Blocks(title="DiMSUM explorer", delete_cache=(1800, 3600)) as demo:
        page = _layout(explorer)
        _wire_model_events(explorer, demo, page)
        _wire_controls(explorer, page)
        gen_event = _wire_generation(explorer, page)
        _wire_views(explorer, page)
        _wire_settings(explorer, page)
        _wire_tabs(explorer, page)
        _wire_linked(LinkedHandlers(explorer), page)  # late: earlier events keep their numbers
        tour_tab.wire(Tour(explorer), page.tour, page)
        _wire_interventions(Interventions(explorer), page, gen_event)  # last: fn_index order
    return demo


def _layout(explorer: Explorer) -> Page:
    first = explorer.model_updates(explorer.default_key)  # initial model-dependent values
    session = gr.State(explorer.new_session())
    gr.Markdown(text.INTRO, elem_id="header")
    if explorer.notes:
        gr.Markdown("\n\n".join(explorer.notes), elem_id="startup-notes")
    panel = generate.build(explorer, first)
    tour = tour_tab.build(Tour(explorer))
    with gr.Tabs(selected="trajectory", elem_id="views") as tabs:
        trajectory_tab = trajectory.build()
        wavelets_tab = wavelets.build()
        scans_tab = scans.build(
            first, LinkedHandlers(explorer).scan_animation(session.value, 0, None, None)
        )
        linked_tab = linked.build()
        branches_tab = branches.build()
        architecture_tab = architecture.build(first.diagram)
        evidence_tab = evidence.build(explorer)
        interventions_tab = interventions.build(explorer.registry.get(explorer.default_key).model)
    return Page(
        session,
        panel,
        tabs,
        trajectory_tab,
        wavelets_tab,
        scans_tab,
        branches_tab,
        architecture_tab,
        evidence_tab,
        linked_tab,
        tour,
        interventions_tab,
    )


def _on(trigger: Any, handler: Callable[..., Any], outputs: Any, **kwargs: Any) -> Any:
    """Wire `handler` to `trigger` (a listener such as button.click, or a list of them).

    `outputs` is the shape of the handler's result: its components are the event's outputs.
    """
    fn = clean_errors(named(handler, outputs))
    if isinstance(trigger, list):
        return gr.on(trigger, fn, outputs=components(outputs), **kwargs)
    return trigger(fn, outputs=components(outputs), **kwargs)


def _wire_model_events(ex: Explorer, demo: gr.Blocks, page: Page) -> None:
    """Page load (link settings) and model switches: they reset every model-dependent output."""
    session, picker = page.session, page.panel.picker
    settings_change = SettingsChange(session, page.model_outputs, page.control_values)
    model_change = ModelChange(session, page.model_outputs, page.panel.sampling.guidance)
    _on(demo.load, ex.on_load, settings_change, inputs=[session], api_name="prefill")
    _on(
        picker.model.input,
        ex.select_model,
        model_change,
        inputs=[picker.model, session, picker.class_label],
        api_name="select_model",
        **SAMPLING,
    )
    if ex.config.allow_custom_models:
        _on(
            picker.custom_btn.click,
            ex.load_custom,
            model_change,
            inputs=[picker.custom, session, picker.class_label],
            api_name="load_model",
            **SAMPLING,
        )


def _schedule_for_sampler(sampler: str) -> dict:
    # dopri5 places its own steps: the schedule does not apply
    if sampler == "dopri5":
        return gr.update(value="uniform", interactive=False)
    return gr.update(interactive=True)


def _wire_controls(ex: Explorer, page: Page) -> None:
    s = page.panel.sampling
    s.dice.click(ex.random_seed, outputs=[s.seed], api_name="random_seed", queue=False)
    s.sampler.change(
        _schedule_for_sampler,
        inputs=[s.sampler],
        outputs=[s.schedule],
        api_visibility="private",
        queue=False,
    )


def _wire_generation(ex: Explorer, page: Page) -> Any:
    """Generate streams previews, then the views reset to the new run; Stop cancels it."""
    r, share, s = page.panel.results, page.panel.share, page.panel.sampling
    outputs = GenerateOutputs(
        live=r.live,
        gallery=r.gallery,
        files=r.files,
        status=r.status,
        settings_json=share.settings_json,
        share_query=share.share_query,
        session=page.session,
    )
    gen_event = _on(
        s.generate_btn.click,
        ex.generate,
        outputs,
        inputs=[
            page.session,
            page.panel.picker.class_label,
            s.seed,
            s.steps,
            s.sampler,
            s.guidance,
            s.images,
            s.schedule,
            s.temperature,
            s.run_number,
        ],
        # the page numbers its runs, so that Stop reaches the runs started before it
        js=f"(...a) => {{ window.{RUN_COUNTER} = (window.{RUN_COUNTER} || 0) + 1; "
        f"return [...a.slice(0, -1), String(window.{RUN_COUNTER})]; }}",
        api_name="generate",
        scroll_to_output=False,
        show_progress_on=[r.live],
        # A click while the last run is still finishing (its views refresh for ~0.2 s after
        # the images appear) starts a run once that ends; gradio's default drops it silently.
        trigger_mode="always_last",
        **SAMPLING,
    )
    views = ViewsReset(page.trajectory.reset, page.wavelets.reset, page.branches.reset)
    _on(
        gen_event.success,
        ex.refresh_views,
        views,
        inputs=[page.session],
        api_name="refresh_views",
        show_progress="hidden",
    )
    gen_event.success(
        None,
        inputs=[share.share_query],
        outputs=[share.share_link],
        js="(q) => q ? window.location.origin + window.location.pathname + q : ''",
        api_visibility="private",
    )

    # Stop: the run is discarded and the page shows the previous run, images and tabs alike
    # (app/stopping.py).
    def stop(session: Any, run: Any, request: gr.Request) -> GenerateOutputs:
        return stopping.on_stop(ex, session, run, getattr(request, "session_hash", "") or "")

    _on(
        s.stop_btn.click,
        stop,
        outputs,
        inputs=[page.session, s.run_number],
        js=f"(session, run) => [session, String(window.{RUN_COUNTER} || 0)]",
        api_visibility="private",
        queue=False,
    )
    return gen_event


def _wire_views(ex: Explorer, page: Page) -> None:
    """Each view redraws from the session's last run when one of its controls moves."""
    session, traj, wl, br, sc = (
        page.session,
        page.trajectory,
        page.wavelets,
        page.branches,
        page.scans,
    )
    _on(
        traj.step.input,
        ex.trajectory_view,
        traj.frame,
        inputs=[session, traj.step],
        api_name="trajectory_view",
        **VIEW,
    )
    for button, handler, name in (
        (traj.gif_btn, ex.export_gif, "export_gif"),
        (traj.npz_btn, ex.export_npz, "export_npz"),
    ):
        button.click(
            clean_errors(handler), inputs=[session], outputs=[traj.export_file], api_name=name
        ).success(
            lambda: gr.update(visible=True),
            outputs=[traj.export_file],
            api_visibility="private",
            queue=False,
        )
    _on(
        [c.input for c in wl.view_inputs],
        ex.wavelet_view,
        wl.panels,
        inputs=[session, *wl.view_inputs],
        api_name="wavelet_view",
        **VIEW,
    )
    wl.source.change(
        wl.controls_for,
        inputs=[wl.source],
        outputs=[wl.step, wl.block, wl.mode, wl.wave],
        api_visibility="private",
        queue=False,
    )
    _on(
        [c.input for c in br.view_inputs],
        ex.branches_view,
        br.panels,
        inputs=[session, *br.view_inputs],
        api_name="branches_view",
        **VIEW,
    )
    _on(
        sc.layer.input,
        ex.scan_view,
        sc.panels,
        inputs=[session, sc.layer],
        api_name="scan_view",
        **VIEW,
    )


def _wire_settings(ex: Explorer, page: Page) -> None:
    """Settings pasted (JSON or a share link) or read from a PNG made by the app."""
    share = page.panel.share
    settings_change = SettingsChange(page.session, page.model_outputs, page.control_values)
    _on(
        share.load_btn.click,
        ex.load_settings,
        settings_change,
        inputs=[page.session, share.settings_in],
        api_name="load_settings",
    )
    _on(
        share.png_in.upload,
        ex.load_png,
        settings_change,
        inputs=[page.session, share.png_in],
        api_name="load_png",
    )


def _wire_tabs(ex: Explorer, page: Page) -> None:
    for tab_id, button in page.architecture.jump.items():
        button.click(
            lambda n=tab_id: gr.Tabs(selected=n),
            outputs=[page.tabs],
            api_visibility="private",
            queue=False,
        )
    compare = page.evidence.compare
    if compare is not None:
        s = page.panel.sampling
        _on(
            compare.button.click,
            ex.compare_variants,
            compare.outputs,
            inputs=[
                page.panel.picker.class_label,
                s.seed,
                s.steps,
                s.sampler,
                s.guidance,
                s.schedule,
            ],
            api_name="compare_variants",
            **SAMPLING,
        )


def _wire_linked(lh: LinkedHandlers, page: Page) -> None:
    """Linked views and scan animation: reset when the session moves to a new run or model;
    redrawn (data only: the browser draws) when their controls move."""
    sc, lk = page.scans, page.linked
    reset = LinkedReset(
        lk.step, lk.block, lk.image, lk.view, sc.anim_step, sc.anim_image, sc.animation
    )
    _on(
        page.session.change,
        lh.reset,
        reset,
        inputs=[page.session, sc.layer],
        api_visibility="private",
        show_progress="hidden",
    )
    _on(
        [c.input for c in lk.view_inputs],
        lh.linked_view,
        lk.view,
        inputs=[page.session, *lk.view_inputs],
        api_name="linked_view",
        **VIEW,
    )
    _on(
        [c.input for c in sc.animation_inputs],
        lh.scan_animation,
        sc.animation,
        inputs=[page.session, *sc.animation_inputs],
        api_name="scan_animation",
        **VIEW,
    )


def _wire_interventions(iv: Interventions, page: Page, gen_event: Any) -> None:
    """Interventions tab: a quick input check, then the re-run (serialised with sampling); after
    each run the tab shows the new originals and the run model's blocks."""
    tab, session = page.interventions, page.session
    inputs = [session, *tab.inputs]
    # A bad input stops here with one message (the re-run's outputs never enter an error state).
    check = tab.run_btn.click(
        clean_errors(iv.check),
        inputs=inputs,
        show_progress="hidden",
        api_visibility="private",
    )
    _on(
        check.success,
        iv.intervene,
        tab.result,
        inputs=inputs,
        api_name="intervene",
        show_progress_on=[tab.result.changed],
        **SAMPLING,
    )
    _on(
        gen_event.success,
        iv.controls_for_run,
        InterventionRefresh(tab.blocks, tab.result),
        inputs=[session],
        show_progress="hidden",
        queue=False,
        api_visibility="private",
    )
    tab.kind.input(
        clean_errors(iv.kind_changed),
        inputs=[session, tab.kind, tab.blocks],
        outputs=[tab.replacement, tab.blocks],
        api_visibility="private",
        queue=False,
    )
    for name, button in tab.presets.items():
        _on(
            button.click,
            lambda session, n=name: iv.preset(n, session),
            tab.controls,
            inputs=[session],
            api_visibility="private",
            queue=False,
            show_progress="hidden",
        )
