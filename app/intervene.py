"""Handlers of the Interventions tab: re-run the session's last run with part of the network changed.

The re-run uses the run record's settings (classes, seeds, sampler, steps, schedule, guidance,
temperature) on the run's own model, and the record's images as the original: only the changed
run is computed (`dimsum.interventions.compare(..., original=...)`, through
`app.sampling.gpu_compare`, serialised with every other generation by MODEL_LOCK on the compute
thread). Every input is checked here first (cheap), so a bad request never reaches the model.
"""

from __future__ import annotations

import re
import time
from typing import Any

import gradio as gr

from dimsum.interventions import KINDS, Intervention
from dimsum.io import save_png
from dimsum.models.dimsum import DiMSUM
from dimsum.pipeline import PipelineOutput
from dimsum.validation import InputError, check_choice, check_float, check_int

from .explorer import Explorer
from .results import InterventionControls, InterventionRefresh, InterventionResult
from .sampling import Request, gpu_compare
from .state import RunRecord, SessionState
from .views import interventions as view


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


class Interventions:
    """The tab's handlers; `explorer` holds the model registry and the run store."""

    def __init__(self, explorer: Explorer) -> None:
        self.ex = explorer

    # ---- validation ------------------------------------------------------------------------
    def _model(self, session: Any) -> DiMSUM:
        """The model the controls refer to: the last run's, else the session's."""
        if isinstance(session, SessionState) and session.run_id:
            try:
                return self.ex.registry.get(self.ex.run_for(session).model_key).model
            except LookupError:
                pass
        if isinstance(session, SessionState):
            return self.ex.pipe_for(session).model
        return self.ex.registry.get(self.ex.default_key).model

    def parse(
        self,
        session: Any,
        kind: Any,
        replacement: Any,
        blocks: Any,
        t_start: Any,
        t_end: Any,
    ) -> tuple[RunRecord, Intervention]:
        """The session's run and the checked intervention (InputError / RunExpired otherwise)."""
        rec = self.ex.run_for(session)
        model = self.ex.registry.get(rec.model_key).model
        kind_ = check_choice("intervention", kind, tuple(KINDS))
        allowed = KINDS[kind_]
        rep = None
        if allowed and replacement not in (None, ""):
            rep = check_choice(f"{kind_} replacement", replacement, allowed)
        depth = len(model.blocks)
        if blocks is None or isinstance(blocks, (str, int, float)):
            blocks = [blocks] if blocks not in (None, "") else []
        if not isinstance(blocks, (list, tuple)):
            raise InputError("blocks: a list of block numbers")
        if not blocks:
            raise InputError("blocks: choose at least one block to change")
        chosen = sorted({check_int("block", b, 0, depth - 1) for b in blocks})
        t0 = check_float("t from", t_start, 0.0, 1.0)
        t1 = check_float("t to", t_end, 0.0, 1.0)
        if t0 > t1:
            raise InputError(
                f"t range: 'from' ({t0:g}) is after 'to' ({t1:g}); set from ≤ to "
                "(t = 0 is noise, t = 1 the image)"
            )
        iv = Intervention(
            kind_,
            blocks=None if len(chosen) == depth else tuple(chosen),
            t_range=(t0, t1),
            replacement=rep,
        )
        iv.resolve_blocks(model)  # no attention block, not a combined block, ...
        return rec, iv

    def check(
        self, session: Any, kind: Any, replacement: Any, blocks: Any, t_start: Any, t_end: Any
    ) -> None:
        """The button's quick first event: one clean message for bad input, before the re-run
        (whose outputs would otherwise show an error state)."""
        self.parse(session, kind, replacement, blocks, t_start, t_end)

    # ---- the re-run --------------------------------------------------------------------------
    def intervene(
        self,
        session: SessionState,
        kind: Any,
        replacement: Any,
        blocks: Any,
        t_start: Any,
        t_end: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's injection idiom
    ) -> InterventionResult:
        """Re-run the session's last run with the intervention; original, changed, difference,
        subband energies."""
        rec, iv = self.parse(session, kind, replacement, blocks, t_start, t_end)
        s = rec.settings
        req = Request(
            classes=list(s["classes"]),
            seeds=list(s["seeds"]),
            guidance_scale=float(s["guidance_scale"]),
            num_steps=int(s["steps"]),
            method=s["sampler"],
            trace_steps=[],
            trace_blocks=[],
            schedule=s.get("schedule", "uniform"),
            temperature=float(s.get("temperature", 1.0)),
        )
        original = PipelineOutput(images=[], array=rec.images, settings=rec.settings)
        progress(0, desc=f"Re-running with {iv}…")
        start = time.perf_counter()
        comparison = gpu_compare(self.ex.source, rec.model_key, req, [iv], original)
        seconds = time.perf_counter() - start
        drawing = view.draw_difference(comparison)
        tag = _slug(str(iv))
        changed_paths = []
        for i, (img, seed) in enumerate(zip(comparison.changed.images, req.seeds, strict=True)):
            path = rec.folder / f"dimsum_{tag}_seed{seed}.png"
            changed_paths.append(str(save_png(img, path, comparison.changed.settings, index=i)))
        seeds = [f"seed {seed}" for seed in req.seeds]
        in_range = view.evaluations_in_range(view.evaluation_times(req.method, rec.t), iv)
        energy = comparison.energy
        return InterventionResult(
            original=list(zip(rec.png_paths or list(rec.images), seeds, strict=True)),
            changed=list(zip(changed_paths, seeds, strict=True)),
            difference=[(d, c) for d, c in zip(drawing.difference, seeds, strict=True)],
            legend=view.legend_html(drawing.scale),
            plot=view.energy_figure(energy),
            summary=view.summary_markdown(iv, energy, drawing, seconds, in_range),
            details={
                "intervention": iv.to_dict(),
                "text": str(iv),
                "seeds": req.seeds,
                "energy": energy.to_dict(),
                "difference_scale": drawing.scale,
                "mean_pixel_change": drawing.mean_change,
                "evaluations_in_range": in_range,
                "seconds": seconds,
            },
        )

    # ---- controls ----------------------------------------------------------------------------
    def controls_for_run(self, session: Any) -> InterventionRefresh:
        """After a run: the blocks of the run's model, and the originals without a comparison."""
        model = self._model(session)
        rec = self.ex.run_for(session)
        seeds = [f"seed {s}" for s in rec.settings["seeds"]]
        blocks = gr.update(choices=view.block_choices(model), value=list(range(len(model.blocks))))
        cleared = InterventionResult(
            original=list(zip(rec.png_paths or list(rec.images), seeds, strict=True)),
            changed=None,
            difference=None,
            legend="",
            plot=None,
            summary="Choose a change and press **Re-run with this change**.",
            details=None,
        )
        return InterventionRefresh(blocks, cleared)

    def kind_changed(self, session: Any, kind: Any, blocks: Any) -> tuple[Any, Any]:
        """The replacement radio for this kind (hidden when it takes none); for attn-skip, the
        blocks after which the attention block runs."""
        kind_ = kind if kind in KINDS else "freq-off"
        choices = view.replacement_choices(kind_)
        replacement = gr.update(
            choices=choices, value=choices[0][1] if choices else None, visible=bool(choices)
        )
        blocks_update: Any = gr.skip()
        if kind_ == "attn-skip":
            after = view.attention_blocks(self._model(session))
            if after:
                blocks_update = gr.update(value=after)
        return replacement, blocks_update

    def preset(self, name: str, session: Any) -> InterventionControls:
        """A 'what to try' preset: kind, replacement, every block, t range."""
        kind, rep, t0, t1 = view.PRESETS[name]
        choices = view.replacement_choices(kind)
        model = self._model(session)
        return InterventionControls(
            kind=kind,
            replacement=gr.update(choices=choices, value=rep, visible=bool(choices)),
            blocks=list(range(len(model.blocks))),
            t_start=t0,
            t_end=t1,
        )
