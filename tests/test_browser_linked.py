"""Linked views and the scan animation in Chromium (Debian's, driven by Playwright).

Each test checks that an interaction moved what it should, to the place the library's scan
orders and wavelet patches say (so a page where pointing, playing or scrubbing does nothing
fails), and measures in the page how long an interaction takes to show: from the event to the
handler's end, and to the next painted frame. Screenshots go where tests/test_browser.py puts
its own (assets/screenshots/ only with a real model: DIMSUM_APP_TEST_CHECKPOINT=checkpoints).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dimsum.models.scan_orders import freq_scan_order, spatial_scan_order
from tests import test_browser as tb
from tests.test_browser import _same_origin, _shot, _wait_text

# The walkthrough's fixtures (one shared server and browser per module).
server, browser, shots = tb.server, tb.browser, tb.shots

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
LATENCY_BUDGET_MS = 150.0
TIMINGS = (
    Path(os.environ.get("DIMSUM_TIMINGS_OUT", "")) if os.environ.get("DIMSUM_TIMINGS_OUT") else None
)

# Dispatches the event at `sel`, returns [ms until the handler returned, ms until the next frame
# was painted] (two animation frames: the first runs before paint, the second after it).
MEASURE = """async ([sel, type, value]) => {
  const el = document.querySelector(sel);
  const t0 = performance.now();
  if (type === 'input') { el.value = String(value); el.dispatchEvent(new Event('input', {bubbles: true})); }
  else el.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true, view: window}));
  const t1 = performance.now();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [t1 - t0, performance.now() - t0];
}"""


def _positions(perm) -> list[int]:
    pos = [0] * len(perm)
    for p, t in enumerate(perm.tolist()):
        pos[t] = p
    return pos


def _attr_xy(page, sel: str) -> tuple[float, float]:
    return tuple(
        float(v)
        for v in page.eval_on_selector(sel, "e => [e.getAttribute('x'), e.getAttribute('y')]")
    )


@pytest.fixture(scope="module")
def page(server, browser):
    steps = 20 if os.environ.get("DIMSUM_APP_TEST_CHECKPOINT") else 4
    pg = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(
        f"{server.url.rstrip('/')}/?seed=3&steps={steps}&images=4", wait_until="domcontentloaded"
    )
    pg.wait_for_selector("#generate-btn", timeout=120_000)
    pg.click("#generate-btn")
    _wait_text(pg, "#status", "network evaluations")
    yield pg
    origin = server.url.rstrip("/")
    assert not pg.errors, pg.errors
    outside = sorted({u for u in pg.requests if not _same_origin(u, origin)})
    assert not outside, f"requests outside the app's origin: {outside}"
    pg.close()


def _record(name: str, values: list[list[float]]) -> dict:
    handler = sorted(v[0] for v in values)
    frame = sorted(v[1] for v in values)
    out = {
        "interaction": name,
        "n": len(values),
        "handler_ms_median": handler[len(handler) // 2],
        "handler_ms_max": handler[-1],
        "to_next_frame_ms_median": frame[len(frame) // 2],
        "to_next_frame_ms_max": frame[-1],
    }
    print(json.dumps(out))
    if TIMINGS:
        with TIMINGS.open("a") as f:
            f.write(json.dumps(out) + "\n")
    return out


def test_pointing_at_a_token_highlights_it_everywhere(page, shots: Path) -> None:
    page.get_by_role("tab", name="Linked views").click()
    page.wait_for_selector("#linked-view .dl-root[data-block] #dl-image [data-tok]", timeout=60_000)
    root = "#linked-view .dl-root"
    block = int(page.get_attribute(root, "data-block"))
    side = int(page.get_attribute(root, "data-side"))
    spos = _positions(spatial_scan_order(block, side))
    fpos = _positions(freq_scan_order(block, side))
    cs, sq = 288 / side, 14
    for t in (37, 200, 5):
        page.locator(f'#dl-image [data-tok="{t}"]').hover()
        assert page.get_attribute(root, "data-token") == str(t)
        # the token's cell on the image, its place in both scan sequences, its wavelet patch
        assert _attr_xy(page, "#dl-image .dl-cur") == ((t % side) * cs, (t // side) * cs)
        s, f = spos[t], fpos[t]
        assert page.get_attribute(root, "data-spos") == str(s)
        assert _attr_xy(page, "#dl-seq-spatial .dl-cur") == ((s % side) * sq, (s // side) * sq)
        assert _attr_xy(page, "#dl-seq-freq .dl-cur") == ((f % side) * sq, (f // side) * sq)
        r, c = divmod(t, side)
        assert _attr_xy(page, "#dl-image .dl-patch") == ((c // 4 * 4) * cs, (r // 4 * 4) * cs)
        patch = [
            u
            for u in range(side * side)
            if (u // side) // 4 == r // 4 and (u % side) // 4 == c // 4
        ]
        marked = page.eval_on_selector_all(
            "#dl-seq-freq .dl-win", "els => els.map(e => +e.dataset.pos).sort((a, b) => a - b)"
        )
        assert marked == sorted(fpos[u] for u in patch)
        assert f"position {s} of" in page.inner_text("#dl-readout")
        # the norm maps follow
        assert _attr_xy(page, "#dl-norm-spatial_out .dl-cur") == (
            (t % side) * 132 / side,
            (t // side) * 132 / side,
        )
    _shot(page, shots, "linked_views", "#linked-view")
    # Pointing at a cell of the spatial sequence highlights the token read there.
    p = 123
    page.locator(f'#dl-seq-spatial [data-pos="{p}"]').hover()
    t = spos.index(p)
    assert page.get_attribute(root, "data-token") == str(t)
    assert _attr_xy(page, "#dl-image .dl-cur") == ((t % side) * cs, (t // side) * cs)
    # Pointing at a subband tints the image by its coefficients.
    page.locator('#dl-bands [data-band="5"][data-patch="6"]').hover()
    assert page.get_attribute(root, "data-band") == "5"
    assert page.locator("#dl-bandmap rect").count() == (side // 4) ** 2
    assert "LH.LH" in page.inner_text("#dl-readout")
    # Latency, measured in the page: event -> highlight done -> next painted frame.
    timings = [
        page.evaluate(MEASURE, [f'#linked-view #dl-image [data-tok="{t}"]', "mouseover", None])
        for t in range(0, side * side, 7)
    ]
    timings += [
        page.evaluate(
            MEASURE,
            [f'#linked-view #dl-bands [data-band="{k}"][data-patch="0"]', "mouseover", None],
        )
        for k in range(16)
    ]
    out = _record("linked hover", timings)
    assert out["to_next_frame_ms_max"] < LATENCY_BUDGET_MS, out


def test_scan_animation_plays_pauses_and_scrubs(page, shots: Path) -> None:
    page.get_by_role("tab", name="Scan orders").click()
    root = "#scan-animation .sa-root"
    page.wait_for_selector(f"{root}[data-frame] #sa-grid-spatial", timeout=60_000)
    assert page.get_attribute(root, "data-frame") == "0"
    layer = int(page.get_attribute(root, "data-layer"))
    side = 16
    cs = 320 / side
    # The traced hidden state is drawn (the run traced every block of the small model).
    assert page.locator("#sa-chart-spatial .sa-marker").count() == 1
    # Play: the frame advances; pause: it stops.
    page.click("#sa-play")
    page.wait_for_function(
        f"() => +document.querySelector('{root}').dataset.frame > 8", timeout=10_000
    )
    assert page.get_attribute(root, "data-playing") == "1"
    page.click("#sa-play")
    paused = page.get_attribute(root, "data-frame")
    time.sleep(0.5)
    assert page.get_attribute(root, "data-frame") == paused
    assert page.get_attribute(root, "data-playing") == "0"
    # Scrub: the cursor goes to the token the layer's order reads at that position.
    for frame in (100, 17, 255):
        page.evaluate(MEASURE, ["#sa-scrub", "input", frame])
        assert page.get_attribute(root, "data-frame") == str(frame)
        for kind, order in (("spatial", spatial_scan_order), ("freq", freq_scan_order)):
            t = int(order(layer, side)[frame])
            assert _attr_xy(page, f"#sa-grid-{kind} .sa-cursor") == (
                (t % side) * cs,
                (t // side) * cs,
            )
    lit = page.eval_on_selector_all(
        "#sa-grid-spatial .sa-cells rect",
        "els => els.filter(e => e.getAttribute('fill') !== 'transparent').length",
    )
    assert lit == 256
    page.evaluate(MEASURE, ["#sa-scrub", "input", 40])
    _shot(page, shots, "scan_animation", "#scan-animation")
    lit = page.eval_on_selector_all(
        "#sa-grid-spatial .sa-cells rect",
        "els => els.filter(e => e.getAttribute('fill') !== 'transparent').length",
    )
    assert lit == 41
    # Another layer from the strip: its own order from position 0.
    page.click('#sa-strip button[data-layer-index="2"]')
    assert page.get_attribute(root, "data-layer") == "2"
    t = int(spatial_scan_order(2, side)[0])
    assert _attr_xy(page, "#sa-grid-spatial .sa-cursor") == ((t % side) * cs, (t // side) * cs)
    # Through the layers: at the end of layer 2 the animation moves on to layer 3.
    page.check("#sa-through")
    page.evaluate(MEASURE, ["#sa-scrub", "input", 250])
    page.click("#sa-play")
    page.wait_for_function(
        f"() => document.querySelector('{root}').dataset.layer === '3'", timeout=10_000
    )
    page.click("#sa-play")
    # Latency of a scrub step and of a play frame's work.
    timings = [page.evaluate(MEASURE, ["#sa-scrub", "input", f]) for f in range(0, 256, 9)]
    out = _record("scan scrub", timings)
    assert out["to_next_frame_ms_max"] < LATENCY_BUDGET_MS, out
