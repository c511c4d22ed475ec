"""The Interventions tab in Chromium: generate, open the tab, a bad input (one message, no control
left in an error state), a 'what to try' preset, re-run: the changed images appear and differ
from the originals, with the difference image, its colour bar and the subband-energy plot.

Same browser, launch flags and CI strictness as tests/test_browser.py. With
DIMSUM_APP_TEST_CHECKPOINT=checkpoints (the embedded model) it saves
assets/screenshots/interventions.png.
"""

from __future__ import annotations

import io
import os
import urllib.request

import numpy as np
import pytest
from PIL import Image

from .ci import unavailable
from .test_browser import _shot, _tab, _wait_text, browser, server, shots  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

try:
    from playwright import sync_api
except ImportError:
    unavailable("playwright is not installed", allow_module_level=True)


def _pixels(page, origin: str, selector: str) -> list[np.ndarray]:
    """The images a gallery shows, fetched from the server as the page sees them."""
    srcs = page.eval_on_selector_all(f"{selector} img", "els => els.map(e => e.src)")
    out = []
    for src in srcs:
        url = src if src.startswith("http") else origin + src
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - the local server
            out.append(np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")))
    return out


def _gallery_count(page, selector: str, n: int, timeout: float = 180) -> None:
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel + ' img').length >= n",
        arg=[selector, n],
        timeout=timeout * 1000,
    )


def test_browser_interventions(server, browser, shots) -> None:  # noqa: F811 - fixture
    origin = server.url.rstrip("/")
    real = bool(os.environ.get("DIMSUM_APP_TEST_CHECKPOINT"))
    steps = 20 if real else 6
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(
        f"{origin}/?class=Smileys%20%26%20Emotion&seed=3&steps={steps}&images=4&guidance=4",
        wait_until="domcontentloaded",
    )
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('input, textarea')].some(i => i.value === '3')",
        timeout=60_000,
    )
    page.click("#generate-btn")
    _wait_text(page, "#status", "network evaluations")

    _tab(page, "Interventions")
    _gallery_count(page, "#iv-original", 4, timeout=60)  # the run's own images, no re-run yet
    assert page.locator("#iv-changed img").count() == 0

    # Bad input: no block chosen. One message; nothing on the page in an error state.
    for box in page.locator("#iv-blocks input[type=checkbox]").all():
        box.uncheck()
    page.click("#iv-run")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.toast-body')].some(t => t.innerText.includes('choose at least one block'))",
        timeout=30_000,
    )
    assert page.locator("#views .error").count() == 0
    assert page.locator("#iv-changed img").count() == 0  # the re-run never started
    sync_api.expect(page.locator("#iv-run")).to_be_enabled()
    sync_api.expect(page.locator("#iv-blocks input[type=checkbox]").first).to_be_enabled()
    for close in page.locator(".toast-close").all():  # dismissed (it would cover the shot)
        close.click()

    # A teacher's preset sets every control (all blocks again, t 0.5-1); then re-run.
    page.get_by_role("button", name="Frequency off, late (t 0.5-1)").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#iv-blocks input[type=checkbox]')].every(b => b.checked)",
        timeout=30_000,
    )
    page.click("#iv-run")
    _gallery_count(page, "#iv-changed", 4)
    _gallery_count(page, "#iv-difference", 4, timeout=30)
    _wait_text(page, "#iv-summary", "freq-off")
    assert "t 0.5 to 1" in page.inner_text("#iv-summary")
    assert "red" in page.inner_text("#iv-legend") and "blue" in page.inner_text("#iv-legend")
    page.wait_for_function(
        "() => document.querySelectorAll('#iv-plot .js-plotly-plot').length >= 1", timeout=30_000
    )
    plot_text = page.inner_text("#iv-plot .js-plotly-plot")
    for label in ("LL.LL", "HH.HH", "approximation", "fine detail"):
        assert label in plot_text, label

    original = _pixels(page, origin, "#iv-original")
    changed = _pixels(page, origin, "#iv-changed")
    assert len(original) == len(changed) == 4
    assert any(not np.array_equal(a, b) for a, b in zip(original, changed, strict=True))
    assert page.locator("#views .error").count() == 0
    assert not errors, errors
    _shot(page, shots, "interventions", "#views")
