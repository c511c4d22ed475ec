"""The guided tour: stops that set the views on the session's finished run and say what to see.

Each stop switches to a tab and moves its controls (step slider, source, block, layer...),
draws that view exactly as its own controls would (the same `Explorer` view handlers, so the
page and the tour can never disagree), and says in two sentences what to look at: from "noise
becomes an image" to "what the frequency branch adds". Back / Next / Leave work at any stop.
The tour needs a finished run; without one it says so and offers Generate (app/tabs/tour.py).

A stop answers in two events: the first sets the text, the tab and the views' controls (small:
it shows at once); a chained second one sends the drawings. Once the tour starts, every stop's
drawings are rendered in the background (`prefetch`), so Next and Back are cache hits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from .features import BRANCH_OUTPUTS
from .results import BranchPanels, ScanPanels, TrajectoryFrame, WaveletPanels
from .state import RunExpired, RunRecord, SessionState
from .views.wavelets import L2_LABELS, energy_fractions, packet


@dataclass(frozen=True)
class Setting:
    """Where one stop puts the views (None: that view is left as it is)."""

    tab: str
    trajectory_step: int | None = None
    wavelets: tuple[str, int, int] | None = None  # (source, step, block)
    branches: tuple[int, int, str] | None = None  # (step, block, show)
    scan_layer: int | None = None


@dataclass(frozen=True)
class Stop:
    title: str
    place: Callable[[RunRecord], Setting]
    say: Callable[[RunRecord], str]  # two sentences on what to look at


@dataclass(frozen=True)
class TourOutputs:
    """Everything a tour stop sets (shape: app/tabs/tour.py's `TourPanel.outputs`)."""

    index: Any  # gr.State: the stop shown (-1: not touring)
    text: Any  # Markdown: the stop's title and two sentences
    tabs: Any  # gr.Tabs: the selected tab
    trajectory_step: Any
    trajectory_frame: TrajectoryFrame
    wavelets_source: Any
    wavelets_step: Any
    wavelets_block: Any
    wavelets_panels: WaveletPanels
    branches_step: Any
    branches_block: Any
    branches_show: Any
    branches_panels: BranchPanels
    scan_layer: Any
    scan_panels: ScanPanels


def _last(rec: RunRecord) -> int:
    return rec.num_steps - 1


def _at_t(rec: RunRecord, t: float) -> int:
    """The recorded step nearest to time t."""
    return int(np.argmin(np.abs(np.asarray(rec.t, dtype=np.float64) - t)))


def _traced_at(rec: RunRecord, t: float) -> int:
    return rec.nearest_traced(_at_t(rec, t))


def _mid_block(rec: RunRecord) -> int:
    return rec.traced_blocks[len(rec.traced_blocks) // 2]


def _detail_share(rec: RunRecord, step: int | None) -> float:
    """Share of image 1's energy outside the level-1 approximation (edges and corners): of the
    clean prediction x̂₁ at `step`, or of the final image (None). What the Wavelets bars show."""
    if step is None:
        x = rec.images[0].astype(np.float64).transpose(2, 0, 1) / 127.5 - 1
    else:
        states, _ = rec.display_rgb("x1", step)
        x = states[0].astype(np.float64)
    l1, _ = packet(x, "haar")
    return float(1 - energy_fractions(l1)[0])


def _coarse_first(rec: RunRecord) -> str:
    s = _at_t(rec, 0.25)
    early, final = _detail_share(rec, s), _detail_share(rec, None)
    return (
        f"These are the wavelet subbands of the model's guess x̂₁ at t = {rec.t[s]:.2f}: the "
        "approximation tile (top left) is a small blurry copy, the detail tiles hold its edges "
        "(cols, rows) and corners (diag). "
        f"Fine detail carries {early:.1%} of its energy here, against {final:.1%} in the "
        "finished image (next stop)."
    )


def _detail_last(rec: RunRecord) -> str:
    s = _at_t(rec, 0.25)
    early, final = _detail_share(rec, s), _detail_share(rec, None)
    change = "more" if final > early else "less"
    return (
        "The same subbands of the finished image, on the same kind of colour scale: compare "
        "the detail tiles and the bars with the previous stop. "
        f"Detail now carries {final:.1%} of the energy ({change} than the {early:.1%} at "
        f"t = {rec.t[s]:.2f}): what the last steps changed in edges and corners."
    )


def _frequency_adds(rec: RunRecord) -> str:
    """What the frequency branch's output carries more of than the spatial branch's, read
    from the run itself (the chart's bars) at the stop's step and block."""
    s, b = _traced_at(rec, 0.75), rec.traced_blocks[-1]
    outputs = rec.blocks[(s, b)].outputs
    if "freq_out" not in outputs or "spatial_out" not in outputs:
        return (
            "This model's blocks have no frequency branch, so there is nothing to compare here. "
            "The Evidence tab compares trained variants with and without it."
        )
    freq, spatial = outputs["freq_out"].spectrum[0], outputs["spatial_out"].spectrum[0]
    ratio = np.log(np.maximum(freq, 1e-12) / np.maximum(spatial, 1e-12))
    top = [L2_LABELS[i] for i in np.argsort(-ratio)[:3] if ratio[i] > 0]
    named = ", ".join(top) if top else "no subband"
    return (
        f"Compare the orange bars (frequency branch) with the blue ones (spatial branch): at "
        f"block {b}, step {s}, the frequency branch puts more of its energy into {named}, "
        "the wavelet bands it reads window by window. "
        "That is what it adds to the block; the Evidence tab measures what it adds to the "
        "finished images, against variants trained without it."
    )


STOPS: tuple[Stop, ...] = (
    Stop(
        "Noise becomes an image",
        lambda rec: Setting("trajectory", trajectory_step=0),
        lambda rec: (
            "At step 0 the top row is pure Gaussian noise and the bottom row is the model's "
            "first guess x̂₁ of the finished image. Press Next (or drag the slider) to watch the "
            "guess sharpen as t runs from 0 to 1."
        ),
    ),
    Stop(
        "Halfway there",
        lambda rec: Setting("trajectory", trajectory_step=_at_t(rec, 0.5)),
        lambda rec: (
            f"At t = {rec.t[_at_t(rec, 0.5)]:.2f} the noisy state still looks mostly like noise, "
            "but the guess x̂₁ already has the layout and colours of the final image. "
            "The curves below show how far the guess still is from the final image at each step."
        ),
    ),
    Stop(
        "Coarse and fine",
        lambda rec: Setting("wavelets", wavelets=("x1", _at_t(rec, 0.25), _mid_block(rec))),
        _coarse_first,
    ),
    Stop(
        "The finished image's detail",
        lambda rec: Setting("wavelets", wavelets=("final", _last(rec), _mid_block(rec))),
        _detail_last,
    ),
    Stop(
        "Two ways to read the tokens",
        lambda rec: Setting("scans", scan_layer=0),
        lambda rec: (
            "A Mamba layer reads the tokens one after another, like a sentence. "
            "The spatial branch follows this layer's path over the image grid; the frequency "
            "branch reads wavelet coefficients window by window, so tokens close in frequency "
            "are read together."
        ),
    ),
    Stop(
        "Inside one block",
        lambda rec: Setting("branches", branches=(_traced_at(rec, 0.5), _mid_block(rec), "norm")),
        lambda rec: (
            "Each map is one output inside a block, halfway through sampling: the brighter a "
            "token, the stronger the features written there, on one scale for all four maps. "
            "The spatial and frequency branches write different patterns; the fusion mixes "
            "them and the block output adds them to what came in."
        ),
    ),
    Stop(
        "What the frequency branch adds",
        lambda rec: Setting(
            "branches", branches=(_traced_at(rec, 0.75), rec.traced_blocks[-1], "norm")
        ),
        _frequency_adds,
    ),
)

INTRO = (
    "**Guided tour** — {n} stops through a finished run, from noise to what the frequency "
    "branch adds. Press **Start the tour**; Back, Next and Leave work at any stop."
)
NEEDS_RUN = (
    "**The tour needs a finished run.** Press **Generate** (a few seconds), then "
    "**Start the tour**."
)


def _skip_outputs(index: Any, text: Any, tabs: Any = None) -> TourOutputs:
    skip = gr.skip()
    return TourOutputs(
        index=index,
        text=text,
        tabs=skip if tabs is None else tabs,
        trajectory_step=skip,
        trajectory_frame=TrajectoryFrame(skip, skip),
        wavelets_source=skip,
        wavelets_step=skip,
        wavelets_block=skip,
        wavelets_panels=WaveletPanels(skip, skip, skip, skip),
        branches_step=skip,
        branches_block=skip,
        branches_show=skip,
        branches_panels=BranchPanels([skip] * len(BRANCH_OUTPUTS), skip, skip),
        scan_layer=skip,
        scan_panels=ScanPanels(skip, skip, skip),
    )


class Tour:
    """The tour's handlers, on top of the explorer's view handlers."""

    def __init__(self, explorer: Any, stops: tuple[Stop, ...] = STOPS) -> None:
        self.explorer = explorer
        self.stops = stops

    def intro(self) -> str:
        return INTRO.format(n=len(self.stops))

    def start(self, session: Any) -> TourOutputs:
        return self.show(session, 0)

    def next(self, session: Any, index: Any) -> TourOutputs:
        return self.show(session, self._index(index) + 1)

    def back(self, session: Any, index: Any) -> TourOutputs:
        return self.show(session, self._index(index) - 1)

    def leave(self) -> TourOutputs:
        return _skip_outputs(-1, self.intro())

    def _index(self, index: Any) -> int:
        return index if isinstance(index, int) and not isinstance(index, bool) else -1

    def show(self, session: Any, index: int) -> TourOutputs:
        """Stop `index` (clamped to the tour) on the session's run: its text, tab and the
        views' controls. The drawings follow in a second, chained event (`views`), so the
        stop answers at once and the images and charts arrive right after."""
        try:
            rec = self.explorer.run_for(session if isinstance(session, SessionState) else None)
        except RunExpired:
            return _skip_outputs(-1, NEEDS_RUN)
        i = min(max(index, 0), len(self.stops) - 1)
        outputs = self._draw(session, rec, i, controls=True, drawings=False)
        self.prefetch(session, rec, i)
        return outputs

    def views(self, session: Any, index: Any) -> TourOutputs:
        """The drawings of stop `index` (after `show` set its controls); nothing when not
        touring or without a run."""
        i = self._index(index)
        try:
            rec = self.explorer.run_for(session if isinstance(session, SessionState) else None)
        except RunExpired:
            i = -1
        if i < 0:
            return _skip_outputs(gr.skip(), gr.skip())
        return self._draw(session, rec, i, controls=False, drawings=True)

    def _draw(
        self,
        session: SessionState,
        rec: RunRecord,
        i: int,
        controls: bool = True,
        drawings: bool = True,
    ) -> TourOutputs:
        stop = self.stops[i]
        where = stop.place(rec)
        ex = self.explorer
        skip = gr.skip()
        if controls:
            text = f"**Stop {i + 1} of {len(self.stops)}: {stop.title}.** {stop.say(rec)}"
            out = _skip_outputs(i, text, gr.Tabs(selected=where.tab))
        else:
            out = _skip_outputs(skip, skip)
        fields: dict[str, Any] = {}
        if where.trajectory_step is not None:
            step = where.trajectory_step
            if controls:
                fields.update(trajectory_step=step)
            if drawings:
                fields.update(trajectory_frame=ex.trajectory_view(session, step))
        if where.wavelets is not None:
            source, step, block = where.wavelets
            if controls:
                fields.update(wavelets_source=source, wavelets_step=step, wavelets_block=block)
            if drawings:
                fields.update(
                    wavelets_panels=ex.wavelet_view(
                        session, source, step, block, 0, "haar", "meanabs"
                    )
                )
        if where.branches is not None:
            step, block, show = where.branches
            if controls:
                fields.update(branches_step=step, branches_block=block, branches_show=show)
            if drawings:
                fields.update(branches_panels=ex.branches_view(session, step, block, 0, show))
        if where.scan_layer is not None:
            if controls:
                fields.update(scan_layer=where.scan_layer)
            if drawings:
                fields.update(scan_panels=ex.scan_view(session, where.scan_layer))
        return TourOutputs(**{**out.__dict__, **fields})

    def prefetch(self, session: SessionState, rec: RunRecord, i: int) -> None:
        """Render the neighbouring stops' views in the background (each view caches its
        drawings on the run record), so Next and Back answer from the cache."""
        if getattr(rec, "_tour_prefetched", False):
            return
        rec._tour_prefetched = True  # type: ignore[attr-defined]

        def work() -> None:
            for j in range(len(self.stops)):
                if j != i:
                    try:
                        self._draw(session, rec, j)
                    except Exception:  # noqa: BLE001 - a view that fails says so when shown
                        pass

        threading.Thread(target=work, name="dimsum-tour-prefetch", daemon=True).start()
