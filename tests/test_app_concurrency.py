"""Four sessions generating at once each get their own, correct images and their own run record."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

from .counting import count_forwards  # noqa: E402

SEEDS = (11, 22, 33, 44)
STOP_STEPS = 250  # the app's maximum
STOP_BOUND = 40  # evaluations allowed between the cancel and the model's release
ARGS = ("Animals & Nature", None, 2, "heun", 3.0, 2)  # seed filled in per client


# gradio's queue uses pandas APIs that warn on every event; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def url() -> str:
    from app.testing import shared_server

    return shared_server().url


def _generate(url: str, seed: int) -> tuple[Client, list[np.ndarray], str]:
    client = Client(url, verbose=False)
    args = list(ARGS)
    args[1] = str(seed)
    out = client.predict(*args, api_name="/generate")
    images = [np.asarray(Image.open(p)) for p in out[2]]
    return client, images, out[4]


def test_concurrent_sessions_are_isolated(url: str) -> None:
    # Reference: one client at a time.
    expected = {seed: _generate(url, seed)[1] for seed in SEEDS}
    with ThreadPoolExecutor(max_workers=len(SEEDS)) as pool:
        results = dict(zip(SEEDS, pool.map(lambda s: _generate(url, s), SEEDS), strict=True))
    for seed, (client, images, settings_text) in results.items():
        assert json.loads(settings_text)["seeds"] == [seed, seed + 1]
        assert len(images) == 2
        for a, b in zip(images, expected[seed], strict=True):
            assert np.array_equal(a, b), f"seed {seed}: image differs from the single-client run"
        # Each session's views read its own run.
        npz = np.load(client.predict(api_name="/export_npz"))
        assert json.loads(str(npz["settings_json"]))["seeds"] == [seed, seed + 1]
        _, caption = client.predict(1, api_name="/trajectory_view")
        assert "Step 1 / 2" in caption
    # Different seeds give different images (the comparison above is not vacuous).
    assert not np.array_equal(results[SEEDS[0]][1][0], results[SEEDS[1]][1][0])


def test_concurrent_views_while_generating(url: str) -> None:
    """Views of one session keep working while other sessions sample."""
    viewer, _, _ = _generate(url, 5)
    with ThreadPoolExecutor(max_workers=3) as pool:
        busy = [pool.submit(_generate, url, s) for s in (6, 7)]
        for step in (0, 1, 2, 1, 0):
            _, caption = viewer.predict(step, api_name="/trajectory_view")
            assert f"Step {step} / 2" in caption
        for f in busy:
            f.result(timeout=300)


def test_stop_ends_sampling_within_a_few_evaluations(url: str, monkeypatch) -> None:
    """Stop (the button cancels the event) ends sampling at the next step: counted in network
    evaluations, few happen after the cancel, and the run ends far short of its full length, so
    the next user does not wait for the abandoned run. The run is long (250 Heun steps with
    guidance: ~500 evaluations), so a Stop that did nothing would show here."""
    from app.sampling import MODEL_LOCK
    from app.testing import shared_server

    explorer = shared_server().explorer
    calls = count_forwards(explorer.registry.get(explorer.default_key).model, monkeypatch)
    full = 2 * STOP_STEPS - 1  # Heun: two evaluations a step, none after the last

    client = Client(url, verbose=False)
    job = client.submit("Objects", "0", STOP_STEPS, "heun", 3.0, 1, api_name="/generate")
    deadline = time.monotonic() + 120
    while (calls.n < 10 or not job.outputs()) and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)  # a preview arrived and sampling is under way
    assert job.outputs(), "no preview arrived"
    at_cancel = calls.n
    assert at_cancel < full // 4, f"the run was nearly done before Stop ({at_cancel} of {full})"
    job.cancel()
    deadline = time.monotonic() + 60
    while MODEL_LOCK.locked() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not MODEL_LOCK.locked(), "sampling went on after the run was cancelled"
    after = calls.n - at_cancel
    # Bound: the cancel's round trip (HTTP, gradio's task cancellation, the next step's check)
    # at a few ms per evaluation; a run that ignored Stop would add the remaining ~450.
    assert after <= STOP_BOUND, (
        f"{after} evaluations after Stop ({at_cancel} before, {full} in all)"
    )
    time.sleep(1.0)
    assert calls.n == at_cancel + after, "evaluations went on after the model was released"
    print(f"stop: {at_cancel} evaluations before the cancel, {after} after, full run {full}")

    out = client.predict("Objects", "1", 1, "euler", 1.0, 1, api_name="/generate")
    assert len(out[2]) == 1
