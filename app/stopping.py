"""Stop: which runs a page asked to stop, and what the page shows afterwards.

A stopped run is discarded (the session only moves to a run once it completes), so the tabs
keep showing the previous run. The streamed previews had cleared the final images; Stop puts the
previous run's images, files, live frame and settings back, so images and tabs always show the
same run, and says at which step sampling stopped (the same numbering as the progress bar).

Who writes that message matters. Stop's own reply and a preview already on its way travel on
different connections, so a preview could arrive after the reply and overwrite it (seen in CI).
So a running generation is not cancelled from outside: Stop records the request and the
generation itself ends at its next step with the message as the last item of its own stream.
Runs are named by the page's count of Generate clicks (1, 2, ...), which Stop also sends: a
Stop reaches the runs the page had started by then, never a later one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import gradio as gr

from . import text
from .results import GenerateOutputs
from .state import RunExpired, SessionState
from .views import trajectory


def run_number(value: Any) -> int:
    """The page's number for a run; 0 for a call without one (the API): never stopped by Stop."""
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


class StopRequests:
    """Per browser session: the runs asked to stop, the run in progress, the last one started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop_upto: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._started: dict[str, int] = {}

    def request(self, session: str, number: int) -> Literal["running", "queued", "none"]:
        """Stop every run of `session` numbered up to `number`; say where the latest one is."""
        if number <= 0:
            return "none"
        with self._lock:
            self._stop_upto[session] = max(self._stop_upto.get(session, 0), number)
            running = self._running.get(session)
            if running is not None and running <= number:
                return "running"  # it ends at its next step and says so itself
            return "queued" if number > self._started.get(session, 0) else "none"

    def should_stop(self, session: str, number: int) -> bool:
        with self._lock:
            return number > 0 and self._stop_upto.get(session, 0) >= number

    @contextmanager
    def running(self, session: str, number: int) -> Iterator[None]:
        """Mark run `number` of `session` as in progress while the block runs."""
        if number <= 0:
            yield
            return
        with self._lock:
            self._running[session] = number
            self._started[session] = max(self._started.get(session, 0), number)
        try:
            yield
        finally:
            with self._lock:
                if self._running.get(session) == number:
                    del self._running[session]


def stopped(explorer: Any, session: Any, where: str) -> GenerateOutputs:
    """A stopped run's last outputs: the previous run's images (or none at all, like the tabs)
    and where it stopped ('step k of N' in the progress bar's numbering, or 'the start')."""
    try:
        rec = explorer.run_for(session if isinstance(session, SessionState) else None)
    except RunExpired:
        return GenerateOutputs(
            live=None,
            gallery=None,
            files=None,
            status=text.STOPPED_NOTHING.format(where=where),
            settings_json=None,
            share_query=None,
            session=session,
        )
    last = rec.num_steps - 1
    seeds = rec.settings.get("seeds", [])
    settings_json, share_query = rec.share or (None, None)
    return GenerateOutputs(
        live=trajectory.live_frame(rec.previews_xt[last], rec.previews_x1[last]),
        gallery=[(p, f"seed {s}") for p, s in zip(rec.png_paths, seeds, strict=False)],
        files=list(rec.png_paths),
        status=text.STOPPED_PREVIOUS.format(where=where),
        settings_json=settings_json,
        share_query=share_query,
        session=session,
    )


def on_stop(explorer: Any, session: Any, run: Any, page: str) -> GenerateOutputs:
    """The Stop button: `run` is the page's latest run number, `page` its browser session."""
    found = explorer.stops.request(page, run_number(run))
    if found == "queued":  # it ends as soon as its turn comes, without sampling
        return stopped(explorer, session, "the start")
    # A running run ends at its next step and says so as its own last message; meanwhile the
    # status says Stop was heard. With nothing running there is nothing to change.
    skip = gr.skip()
    return GenerateOutputs(
        live=skip,
        gallery=skip,
        files=skip,
        status=text.STOPPING if found == "running" else skip,
        settings_json=skip,
        share_query=skip,
        session=skip,
    )
