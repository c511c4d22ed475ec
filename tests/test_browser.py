"""The app in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

Loads the page with settings in the URL, generates, scrubs the step slider, opens every view,
checks what is visible, saves a screenshot of each view to assets/screenshots/, and checks that
the page never requests anything outside the app's own origin (fonts, CDNs, analytics).

Needs `/usr/bin/chromium` (apt-get install chromium) and `pip install playwright`; skipped
cleanly when either is missing, except under CI=true, where either missing (or a Chromium that
does not start) is a failure (`tests/ci.py`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.testing import CHROMIUM, CHROMIUM_ARGS

from .ci import unavailable
from .counting import count_forwards

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

ASSET_SHOTS = Path(__file__).resolve().parent.parent / "assets" / "screenshots"

try:
    from playwright import sync_api
except ImportError:
    unavailable("playwright is not installed", allow_module_level=True)
if not Path(CHROMIUM).exists():
    unavailable(f"Debian chromium is not installed ({CHROMIUM})", allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    from app.testing import shared_server

    return shared_server()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as err:  # noqa: BLE001 - a broken browser: skip locally, fail in CI
            unavailable(f"chromium does not start: {err}")
        yield b
        b.close()


def _same_origin(url: str, origin: str) -> bool:
    if url.startswith(("data:", "blob:", "about:")):
        return True
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _wait_text(page, selector: str, text: str, timeout: float = 180) -> None:
    page.wait_for_function(
        "([sel, txt]) => { const el = document.querySelector(sel); return !!el && el.innerText.includes(txt); }",
        arg=[selector, text],
        timeout=timeout * 1000,
    )


def _img_src(page, selector: str) -> str:
    return page.eval_on_selector(f"{selector} img", "el => el.getAttribute('src') || ''")


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    time.sleep(0.8)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: assets/screenshots/ when the server runs a real model
    (DIMSUM_APP_TEST_CHECKPOINT, e.g. `checkpoints`), so a default run with the tiny random
    model never overwrites the published pictures; DIMSUM_SCREENSHOTS_DIR overrides."""
    if os.environ.get("DIMSUM_SCREENSHOTS_DIR"):
        return Path(os.environ["DIMSUM_SCREENSHOTS_DIR"])
    if os.environ.get("DIMSUM_APP_TEST_CHECKPOINT"):
        return ASSET_SHOTS
    return tmp_path_factory.mktemp("screenshots")


def _shot(page, shots: Path, name: str, selector: str | None = None) -> Path:
    shots.mkdir(parents=True, exist_ok=True)
    path = shots / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"screenshot {name} looks empty"
    return path


def _direct_calls(requests: list[str]) -> int:
    return sum(u.split("?")[0].endswith("/gradio_api/run/predict") for u in requests)


def test_browser_walkthrough(server, browser, shots: Path, monkeypatch) -> None:
    origin = server.url.rstrip("/")
    # The published screenshots show the real model at its usual 20 steps; the tiny random
    # model of a default run needs only a few.
    steps = 20 if os.environ.get("DIMSUM_APP_TEST_CHECKPOINT") else 6
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Settings in the URL prefill the controls.
    page.goto(
        f"{origin}/?class=Food%20%26%20Drink&seed=7&steps={steps}&images=4&guidance=3",
        wait_until="domcontentloaded",
    )
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('input, textarea')].some(i => i.value === '7')",
        timeout=60_000,
    )

    # Generate: previews stream into the live image, then the final gallery and status.
    page.click("#generate-btn")
    _wait_text(page, "#status", "network evaluations")
    _wait_text(page, "#views", f"Step {steps} / {steps}")
    assert "Food & Drink" in page.inner_text("#status")
    assert page.locator("#gallery img").count() >= 4
    assert page.locator("#startup-notes").count() == 0
    _shot(page, shots, "generate")

    # Trajectory: scrub the step slider; the frame and caption follow.
    _tab(page, "Trajectory")
    before = _img_src(page, "#traj-frame")
    direct_before = _direct_calls(requests)
    page.locator("#traj-step input[type=range]").fill("2")
    _wait_text(page, "#views", f"Step 2 / {steps}")
    page.wait_for_function(
        "(b) => { const i = document.querySelector('#traj-frame img'); return i && i.getAttribute('src') !== b; }",
        arg=before,
        timeout=30_000,
    )
    assert page.locator("#views .js-plotly-plot").count() >= 1
    # View events skip the queue: the slider move was a direct POST to /run/predict (no queue
    # join + event stream), the path whose latency benchmarks/bench_app.py reports.
    assert _direct_calls(requests) > direct_before, "the slider update went through the queue"
    _shot(page, shots, "trajectory", "#views")

    # Wavelets: the final image, then x_t at the chosen step.
    _tab(page, "Wavelets")
    _wait_text(page, "#views", "Final image")
    page.get_by_label("Noisy state x_t at the step").check()
    _wait_text(page, "#views", f"x_t at step {steps}")
    assert page.locator("#views img").count() >= 2
    _shot(page, shots, "wavelets", "#views")

    # Scan orders: pick layer 1 (reversed raster, column-first window scan).
    _tab(page, "Scan orders")
    page.locator("#scan-layer input").click()
    page.get_by_role("option", name="layer 1: row-major reversed").click()
    _wait_text(page, "#scan-text", "Layer 1")
    _shot(page, shots, "scan_orders", "#views")

    # Branches: four maps and the spectra.
    _tab(page, "Branches")
    _wait_text(page, "#views", "strength of its features")
    assert page.locator("#views img").count() >= 4
    _shot(page, shots, "branches", "#views")

    # Architecture: the diagram, linked to the views.
    _tab(page, "Architecture")
    assert page.locator("#views svg.dg").count() == 1
    _shot(page, shots, "architecture", "#views")
    page.get_by_role("button", name="Open Wavelets →").click()
    _wait_text(page, "#views", "2-level Haar")

    # Evidence: curves, and the same seed from each ablation variant.
    _tab(page, "Evidence")
    page.get_by_role("button", name="Generate with every variant").click()
    _wait_text(page, "#compare-table", "parameters", timeout=180)
    page.wait_for_function(
        "() => document.querySelectorAll('#views .js-plotly-plot').length >= 2", timeout=120_000
    )
    assert page.locator("#compare-gallery img").count() >= 2
    # every variant's image whole, at its true (square) aspect ratio, with its caption in view
    box = page.locator("#compare-gallery").bounding_box()
    for img in page.locator("#compare-gallery img").all():
        b = img.bounding_box()
        assert abs(b["width"] - b["height"]) <= 2, b
        assert b["y"] >= box["y"] - 1 and b["y"] + b["height"] <= box["y"] + box["height"] + 1
    for name in ("dimsum", "spatial-only"):
        sync_api.expect(
            page.locator("#compare-gallery").get_by_text(name, exact=True)
        ).to_be_visible()
    _shot(page, shots, "evidence", "#views")

    # Generate again the moment the images appear (the last run's views are still refreshing):
    # the click starts a run instead of being dropped. The second run uses the karras schedule.
    page.click("#generate-btn")
    _wait_text(page, "#status", "Sampling")
    _wait_text(page, "#status", "network evaluations")
    page.wait_for_function("() => document.querySelectorAll('#gallery img').length >= 4")
    page.get_by_label("Karras (EDM): denser near both ends").check()
    page.click("#generate-btn")
    _wait_text(page, "#status", "Sampling", timeout=30)
    _wait_text(page, "#status", "karras steps")
    # The temperature slider opened at the model's recommended value (0.9 for the test model)
    # and the click sent it.
    pipe = server.explorer.registry.get(server.explorer.default_key)
    wanted = f"temperature {pipe.config.sampling_temperature:g} ·"
    if pipe.config.sampling_temperature != 1:  # 1 is not mentioned in the status
        assert wanted in page.inner_text("#status"), (wanted, page.inner_text("#status"))

    # dopri5 picks its own steps: the schedule control returns to uniform and is switched off.
    page.get_by_label("dopri5 (adaptive, official)").check()
    sync_api.expect(page.get_by_label("Karras (EDM): denser near both ends")).to_be_disabled()
    sync_api.expect(page.get_by_label("Uniform in t")).to_be_checked()

    # Stop mid-run, proven on the server (not by the status text the Stop button's own JS writes):
    # the model's forward calls are counted, few happen after the click, the run ends far short
    # of its ~500 evaluations, and the server's completion message never arrives.
    from app.sampling import MODEL_LOCK

    calls = count_forwards(pipe.model, monkeypatch)
    full = 2 * 250 - 1  # 250 Heun steps (the page's default sampler), guided: one forward each
    page.goto(f"{origin}/?steps=250&images=4", wait_until="domcontentloaded")  # ~27 s of work
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.click("#generate-btn")
    _wait_text(page, "#status", "Sampling\u2026 step")  # the server's progress message
    deadline = time.monotonic() + 60
    while calls.n < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    at_stop = calls.n
    assert 6 <= at_stop < full // 4, (at_stop, full)
    page.get_by_role("button", name="Stop").click()
    deadline = time.monotonic() + 60
    while MODEL_LOCK.locked() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not MODEL_LOCK.locked(), "sampling went on after Stop"
    after = calls.n - at_stop
    assert after <= 40, f"{after} network evaluations after Stop ({at_stop} before, {full} in all)"
    _wait_text(page, "#status", "Stopped at step")  # the server's stop message
    time.sleep(2)  # a late message of the cancelled run would overwrite the status by now
    status = page.inner_text("#status")
    # a fresh page has no finished run: no images, like the empty tabs (and no late preview)
    assert "no finished run" in status and "network evaluations" not in status, status
    assert page.locator("#gallery img").count() == 0
    assert calls.n == at_stop + after, "the model ran again after it was released"

    assert not errors, errors
    outside = sorted({u for u in requests if not _same_origin(u, origin)})
    assert not outside, f"requests outside the app's origin: {outside}"
    page.close()


def test_stop_keeps_the_previous_run(server, browser) -> None:
    """Stop discards the new run and shows the previous run's images as well as its tabs."""
    origin = server.url.rstrip("/")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{origin}/?steps=4&images=4", wait_until="domcontentloaded")
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.wait_for_function("() => !!document.querySelector('#steps input[type=number]')")
    time.sleep(1)  # the link's settings are applied on load
    page.click("#generate-btn")
    _wait_text(page, "#status", "network evaluations")
    _wait_text(page, "#views", "Step 4 / 4")
    page.locator("#steps input[type=number]").fill("250")
    page.locator("#steps input[type=number]").press("Enter")
    gallery = page.eval_on_selector_all("#gallery img", "els => els.length")
    assert gallery >= 4
    page.click("#generate-btn")
    _wait_text(page, "#status", "Sampling")
    page.get_by_role("button", name="Stop").click()
    _wait_text(page, "#status", "showing the previous run")
    time.sleep(2)
    assert "showing the previous run" in page.inner_text("#status")
    assert page.locator("#gallery img").count() >= 4
    assert not errors, errors
    page.close()
