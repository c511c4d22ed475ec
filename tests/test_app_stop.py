"""Stop: the running generation ends at its next step and writes the stopped message itself.

Gradio delivers Stop's own reply and a run's previews on different connections; when Stop
answered for the run (and cancelled it from outside), a preview still on its way could arrive
after "Stopped at step k" and overwrite it (seen in CI). Now the run's own stream ends with the
message, so nothing of the run can follow it. Runs are numbered by the page; a Stop reaches the
runs started before it, never a later one.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from app import stopping
from app.config import AppConfig
from app.explorer import Explorer
from app.sampling import MODEL_LOCK
from app.testing import make_checkpoint

from .counting import count_forwards

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio")
STEPS = 200  # long enough that a Stop which did nothing would show


def _quiet(*_, **__) -> None:
    return None


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> Explorer:
    ckpt = make_checkpoint(tmp_path_factory.mktemp("m") / "m", "emoji-XS")
    return Explorer(AppConfig(checkpoint=str(ckpt), threads=1))


def _run(ex: Explorer, page: str, number: int, steps: int = STEPS):
    return ex.generate(
        ex.new_session(), 0, 0, steps, "euler", 2.0, 1, run=str(number),
        request=SimpleNamespace(session_hash=page), progress=_quiet,
    )  # fmt: skip


def test_stop_requests_reach_only_runs_started_before() -> None:
    stops = stopping.StopRequests()
    assert stops.request("p", 0) == "none"  # no run yet (or an API call): nothing to stop
    with stops.running("p", 1):
        assert not stops.should_stop("p", 1)
        assert stops.request("p", 1) == "running"
        assert stops.should_stop("p", 1)
        assert not stops.should_stop("other page", 1)
    assert stops.request("p", 1) == "none"  # finished: nothing to stop any more
    assert not stops.should_stop("p", 2)  # the next run is not affected by an old Stop
    assert stops.request("p", 2) == "queued"  # clicked, not started yet
    assert stops.should_stop("p", 2)
    assert not stops.should_stop("p", 0)  # API calls carry no number


def test_a_running_generation_ends_itself_with_the_message(explorer, monkeypatch) -> None:
    calls = count_forwards(explorer.registry.get(explorer.default_key).model, monkeypatch)
    run = _run(explorer, "page", 1)
    first = next(run)
    assert first.status.startswith("Sampling…")
    reply = stopping.on_stop(explorer, explorer.new_session(), "1", "page")
    assert reply.status == stopping.text.STOPPING  # heard; the run itself says the rest
    at_stop = calls.n
    rest = list(run)  # the stream ends by itself
    assert rest and "Stopped at step" in rest[-1].status, [o.status for o in rest]
    assert not any("Stopped" in o.status for o in rest[:-1])  # the message comes last
    deadline = time.monotonic() + 30  # the step in flight finishes, then the model is free
    while MODEL_LOCK.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    after = calls.n - at_stop
    assert after <= 40, f"{after} evaluations after Stop ({STEPS + 1} in the whole run)"
    time.sleep(0.5)
    assert calls.n == at_stop + after, "sampling went on after the model was released"
    # The page's next run is not stopped by that Stop.
    outs = list(_run(explorer, "page", 2, steps=3))
    assert "network evaluations" in outs[-1].status


def test_a_queued_run_stopped_before_its_turn_never_samples(explorer, monkeypatch) -> None:
    calls = count_forwards(explorer.registry.get(explorer.default_key).model, monkeypatch)
    reply = stopping.on_stop(explorer, explorer.new_session(), "1", "queued page")
    assert "Stopped at the start" in reply.status
    outs = list(_run(explorer, "queued page", 1))
    assert len(outs) == 1 and "Stopped at the start" in outs[0].status
    assert calls.n == 0
