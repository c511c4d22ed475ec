"""Handlers of the linked views and the scan animation (wired by app/ui.py `_wire_linked`).

Both views are drawn in the browser from JSON (app/js/); the server only sends the data of
the chosen step, block and image, read from the session's run record (nothing reruns the
network). Hover, scrub and play never reach the server.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from dimsum.validation import InputError, check_int

from .explorer import Explorer
from .results import LinkedReset
from .state import RunExpired, RunRecord, SessionState, ViewError
from .views import linked, scans

NO_RUN = linked.NO_RUN


class LinkedHandlers:
    def __init__(self, explorer: Explorer) -> None:
        self.ex = explorer

    # ---- helpers ---------------------------------------------------------------------------
    def _run(self, session: Any) -> RunRecord | None:
        try:
            return self.ex.run_for(session)
        except RunExpired:
            return None

    @staticmethod
    def _traced(rec: RunRecord, name: str, value: Any, allowed: list[int]) -> int:
        v = check_int(name, value, 0, 10_000)
        if v not in allowed:
            raise InputError(f"{name}={v}: not traced in this run; traced: {allowed}")
        return v

    def _states(self, rec: RunRecord, step: int, image: int) -> dict[int, dict[str, list]]:
        out: dict[int, dict[str, list]] = {}
        for (s, b), summary in rec.blocks.items():
            if s == step and summary.states:
                out[b] = {
                    k.removesuffix("_state"): linked._r(v[image]) for k, v in summary.states.items()
                }
        return out

    # ---- handlers --------------------------------------------------------------------------
    def linked_view(self, session: SessionState, step: Any, block: Any, image: Any) -> str:
        """JSON of the linked view for (step, block, image) of the session's last run."""
        rec = self.ex.run_for(session)
        s = self._traced(rec, "step", step, rec.traced_steps)
        b = self._traced(rec, "block", block, rec.traced_blocks)
        i = check_int("image", image, 0, rec.num_images - 1)
        model = self.ex.registry.get(rec.model_key).model
        try:
            return linked.to_json(linked.linked_payload(rec, model, s, b, i))
        except LookupError as err:
            raise ViewError(str(err)) from None

    def scan_animation(self, session: SessionState, layer: Any, step: Any, image: Any) -> str:
        """JSON of the scan animation: every layer's orders (the session's model), with the
        hidden-state magnitude of the run's traced layers at (step, image) when there is one."""
        pipe = self.ex.pipe_for(session)
        lay = check_int("layer", layer, 0, pipe.config.depth - 1)
        rec = self._run(session)
        if rec is None or rec.model_key != session.model_key:
            return linked.to_json(
                scans.animation_payload(pipe.model, lay, note=self._no_state_note(rec))
            )
        s = self._traced(
            rec, "step", step if step is not None else rec.traced_steps[-1], rec.traced_steps
        )
        i = check_int("image", image if image is not None else 0, 0, rec.num_images - 1)
        img = {"src": linked.png_data_uri(rec.images[i]), "seed": int(rec.settings["seeds"][i])}
        states = self._states(rec, s, i)
        note = f"Hidden state traced at step {s} (t = {rec.t[s]:.2f}), image {i + 1}."
        if not states:
            note = "This run has no hidden-state trace (it was made before the trace existed)."
        return linked.to_json(scans.animation_payload(pipe.model, lay, states, img, note))

    @staticmethod
    def _no_state_note(rec: RunRecord | None) -> str:
        if rec is None:
            return "Generate to see each scan's hidden-state magnitude as it reads the tokens."
        return "The last run used another model: generate with this one to see the hidden state."

    def reset(self, session: SessionState, layer: Any = 0) -> LinkedReset:
        """The session changed (new run or new model): reset both views' controls and data."""
        rec = self._run(session)
        depth = self.ex.pipe_for(session).config.depth
        lay = min(layer, depth - 1) if isinstance(layer, int) and layer >= 0 else 0
        if rec is None or rec.model_key != session.model_key:
            empty = gr.update(choices=[], value=None)
            return LinkedReset(
                empty,
                empty,
                empty,
                linked.empty(NO_RUN),
                empty,
                empty,
                self.scan_animation(session, lay, None, None),
            )
        steps = [(f"step {s} (t = {rec.t[s]:.2f})", s) for s in rec.traced_steps]
        blocks = [(f"block {b}", b) for b in rec.traced_blocks]
        images = [(f"image {i + 1} (seed {s})", i) for i, s in enumerate(rec.settings["seeds"])]
        step = rec.traced_steps[len(rec.traced_steps) // 2]
        block = rec.traced_blocks[len(rec.traced_blocks) // 2]
        return LinkedReset(
            gr.update(choices=steps, value=step),
            gr.update(choices=blocks, value=block),
            gr.update(choices=images, value=0),
            self.linked_view(session, step, block, 0),
            gr.update(choices=steps, value=step),
            gr.update(choices=images, value=0),
            self.scan_animation(session, lay, step, 0),
        )
