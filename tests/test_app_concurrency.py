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

SEEDS = (11, 22, 33, 44)
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


def test_stop_releases_the_model(url: str) -> None:
    """Stopping a long run (the Stop button cancels the event) ends sampling at the next step,
    so the next user does not wait for the abandoned run."""
    from app.sampling import MODEL_LOCK

    client = Client(url, verbose=False)
    job = client.submit("Objects", "0", 200, "euler", 1.0, 1, api_name="/generate")
    deadline = time.monotonic() + 120
    while not job.outputs() and not job.done() and time.monotonic() < deadline:  # first preview
        time.sleep(0.05)
    assert job.outputs(), "no preview arrived"
    job.cancel()
    deadline = time.monotonic() + 30
    while MODEL_LOCK.locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not MODEL_LOCK.locked(), "sampling went on after the run was cancelled"
    out = client.predict("Objects", "1", 1, "euler", 1.0, 1, api_name="/generate")
    assert len(out[2]) == 1
