"""Issue 21 item 4 through the handlers (no HTTP): one step numbering for every sampler and for
the progress bar and the status line, and Stop showing the previous run's images like its tabs."""

from __future__ import annotations

import re

import pytest

from app import stopping
from app.state import SessionState


@pytest.fixture(scope="module")
def explorer():
    from app.testing import shared_server

    return shared_server().explorer


class Progress:
    """Records what generate reports to gradio's progress bar."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, value, desc=None) -> None:
        self.calls.append((value, desc))


def _run(explorer, sampler: str, steps: int, progress: Progress | None = None):
    session = explorer.new_session()
    outs = list(
        explorer.generate(
            session,
            "Smileys & Emotion",
            "3",
            steps,
            sampler,
            2.0,
            1,
            progress=progress or Progress(),
        )
    )
    return outs


@pytest.mark.parametrize("sampler", ["heun", "euler", "dopri5"])
def test_step_numbering_is_the_same_for_every_sampler(explorer, sampler: str) -> None:
    outs = _run(explorer, sampler, 3)
    session = outs[-1].session
    rec = explorer.run_for(session)
    assert rec.num_steps == 4  # steps 0 (noise) .. 3 (the image), whatever the sampler
    assert float(rec.t[0]) == 0.0 and float(rec.t[-1]) == 1.0
    views = explorer.refresh_views(session)
    assert views.trajectory.step["maximum"] == 3
    assert "3 steps" in outs[-1].status
    assert '"steps": 3' in outs[-1].settings_json and "steps=3" in outs[-1].share_query


def test_progress_bar_and_status_line_say_the_same_step(explorer) -> None:
    progress = Progress()
    outs = _run(explorer, "heun", 4, progress)
    shown = [o.status for o in outs[:-1]]
    bars = [(v, d) for v, d in progress.calls if isinstance(v, tuple)]
    assert shown and len(bars) == len(shown)
    for (value, desc), status in zip(bars, shown, strict=True):
        k, n = value
        assert f"step {k} of {n}" in status and f"step {k} of {n}" in desc, (value, status)
    assert bars[0][0] == (0, 4) and bars[-1][0] == (4, 4)


def test_png_of_a_dopri5_run_loads_back_as_the_same_steps(explorer) -> None:
    outs = _run(explorer, "dopri5", 5)
    change = explorer.load_png(explorer.new_session(), outs[-1].files[0])
    assert change.controls.steps == 5 and change.controls.sampler == "dopri5"


def test_stop_shows_the_previous_run_images_and_tabs_alike(explorer) -> None:
    outs = _run(explorer, "heun", 2)
    session = outs[-1].session
    rec = explorer.run_for(session)
    status = "Sampling… step 5 of 20, t = 0.25"
    out = stopping.stopped(explorer, session, status)
    assert "step 5 of 20" in out.status and "previous run" in out.status
    assert [p for p, _ in out.gallery] == rec.png_paths and out.files == rec.png_paths
    assert out.live is not None and out.settings_json == outs[-1].settings_json
    assert out.session is session  # the tabs stay on the same run
    empty = stopping.stopped(explorer, SessionState(model_key=session.model_key), status)
    assert empty.gallery is None and empty.files is None and empty.live is None
    assert re.search(r"no finished run", empty.status)


def test_tour_stops_set_the_views_and_need_a_run(explorer) -> None:
    from app.tour import NEEDS_RUN, STOPS, Tour

    tour = Tour(explorer)
    assert tour.start(explorer.new_session()).text == NEEDS_RUN
    session = _run(explorer, "heun", 4)[-1].session
    seen = set()
    out = tour.start(session)
    for k in range(len(STOPS)):
        assert out.index == k and out.text.startswith(f"**Stop {k + 1} of {len(STOPS)}")
        drawn = tour.views(session, out.index)
        set_here = {
            name
            for name, value in {**out.__dict__, **drawn.__dict__}.items()
            if name not in ("index", "text", "tabs") and not _skipped(value)
        }
        assert set_here, f"stop {k + 1} sets nothing"
        seen.add((out.tabs.selected, frozenset(set_here), out.text))
        out = tour.next(session, out.index)
    assert out.index == len(STOPS) - 1  # Next at the end stays at the end
    assert len(seen) == len(STOPS)  # every stop differs
    assert tour.back(session, 3).index == 2 and tour.leave().index == -1


def _skipped(value) -> bool:
    from dataclasses import fields, is_dataclass

    if is_dataclass(value):
        return all(_skipped(getattr(value, f.name)) for f in fields(value))
    if isinstance(value, list):
        return all(_skipped(v) for v in value)
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1
