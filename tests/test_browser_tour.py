"""The guided tour in Chromium (Debian's, driven by Playwright), checked against what the server
produced: every stop's text is the one app/tour.py writes for this run, the tab and the views'
controls are where the stop puts them, and the view's drawings change (its images, and its
chart where the stop moves what the chart shows). A stop that does nothing fails.

Before any run the tour says it needs one (and offers Generate) without any control ending in
an error state; Back and Leave (at a middle stop) work, and the views stay usable after Leave.
Same browser, launch flags, fixtures and CI strictness as tests/test_browser.py.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from .ci import unavailable
from .test_browser import _tab, _wait_text, browser, server, shots  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

try:
    from playwright import sync_api
except ImportError:
    unavailable("playwright is not installed", allow_module_level=True)

TAB_LABELS = {
    "trajectory": "Trajectory",
    "wavelets": "Wavelets",
    "scans": "Scan orders",
    "branches": "Branches",
}
SEED = 4242  # finds this page's run among the shared server's runs

# One tour step, timed in the page: from the click until the stop's text shows (the stop's first
# event: text, tab and controls; its drawings follow in a chained event).
TIMED_STEP = """async ([button, want]) => {
  const t0 = performance.now();
  document.querySelector(button).click();
  const seen = () => document.querySelector('#tour-text').innerText.includes(want);
  while (!seen()) {
    await new Promise(r => requestAnimationFrame(r));
    if (performance.now() - t0 > 30000) return -1;
  }
  return performance.now() - t0;
}"""

# What the selected tab shows: its visible images (src) and charts (the plotted data).
VIEW = """() => {
  const shown = (e) => e.getClientRects().length > 0;
  const tab = document.querySelector('#views button[role=tab][aria-selected=true]');
  const imgs = [...document.querySelectorAll('#views img')].filter(shown)
    .map((e) => e.getAttribute('src') || '');
  const plots = [...document.querySelectorAll('#views .js-plotly-plot')].filter(shown)
    .map((p) => JSON.stringify((p.data || []).map((d) => [d.x, d.y, d.z])));
  return {tab: tab ? tab.innerText.trim() : '', imgs, plots};
}"""

# Waits until the selected tab is `tab` and every one of its images differs from `before`'s (and
# its charts too when `plots`); the drawings arrive in the stop's second, chained event.
CHANGED = (
    """([tab, before, plots]) => {
  const now = ("""
    + VIEW
    + """)();
  if (now.tab !== tab || now.imgs.length !== before.imgs.length || now.imgs.length === 0) return false;
  if (now.imgs.some((s, i) => !s || s === before.imgs[i])) return false;
  if (plots && (now.plots.length === 0 || now.plots.join() === before.plots.join())) return false;
  return true;
}"""
)
# Waits until the selected tab's images are exactly `want` (a stop shown again: its drawings).
SAME = "(want) => JSON.stringify((" + VIEW + ")().imgs) === JSON.stringify(want)"


def _shot_tour(page, folder: Path, name: str) -> Path:
    """The tour's text and the views it set, in one picture (from #tour down to #views' end)."""
    page.locator("#tour-text").scroll_into_view_if_needed()
    top, views = page.locator("#tour-text").bounding_box(), page.locator("#views").bounding_box()
    scroll = page.evaluate("() => [window.scrollX, window.scrollY]")
    clip = {
        "x": views["x"] + scroll[0],
        "y": top["y"] + scroll[1],
        "width": views["width"],
        "height": views["y"] + views["height"] - top["y"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), clip=clip, full_page=True)
    assert path.stat().st_size > 10_000, f"screenshot {name} looks empty"
    return path


def _view(page) -> dict:
    return page.evaluate(VIEW)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _tour_text(page) -> str:
    """The tour panel's text (the markdown itself, not its status tracker's timer)."""
    return _norm(page.inner_text("#tour-text [data-testid=markdown]"))


def _record(srv, seed: int):
    """This page's run (the shared server keeps other tests' runs too)."""
    store = srv.explorer.store
    with store._lock:  # noqa: SLF001 - a test reading the server's store
        runs = list(store._runs.values())  # noqa: SLF001
    return next(r for r in reversed(runs) if r.settings["seeds"][0] == seed)


def _no_error_state(page) -> None:
    """No component shows gradio's error state and no error toast is up."""
    errored = page.eval_on_selector_all(
        ".error, [data-testid=status-tracker].error",
        "els => els.filter(e => e.getClientRects().length > 0).map(e => e.outerHTML.slice(0, 200))",
    )
    assert not errored, errored
    toasts = page.eval_on_selector_all(
        ".toast-body", "els => els.map(e => e.innerText).filter(t => /error/i.test(t))"
    )
    assert not toasts, toasts


def _dropdown(page, elem_id: str) -> str:
    return page.eval_on_selector(f"#{elem_id} input", "e => e.value")


def _check_controls(page, rec, where) -> None:
    """The controls the stop set, as the page shows them (each view's own labels)."""
    if where.trajectory_step is not None:
        sync_api.expect(page.locator("#traj-step input[type=number]")).to_have_value(
            str(where.trajectory_step)
        )
    if where.wavelets is not None:
        from app.views.wavelets import SOURCES

        source, step, _block = where.wavelets
        sync_api.expect(page.locator("#wl-source").get_by_label(SOURCES[source])).to_be_checked()
        if source != "final":  # the step slider shows for every source but the final image
            sync_api.expect(page.locator("#wl-step input[type=number]")).to_have_value(str(step))
    if where.branches is not None:
        step, block, show = where.branches
        assert _dropdown(page, "branch-step") == f"step {step} (t = {rec.t[step]:.2f})"
        assert _dropdown(page, "branch-block") == f"block {block}"
        from app.views.branches import MAPS

        sync_api.expect(page.locator("#branch-show").get_by_label(MAPS[show])).to_be_checked()
    if where.scan_layer is not None:
        assert _dropdown(page, "scan-layer").startswith(f"layer {where.scan_layer}:")


def test_browser_tour(server, browser, shots: Path) -> None:  # noqa: F811 - fixtures
    from app.tour import INTRO, NEEDS_RUN, STOPS

    n = len(STOPS)
    origin = server.url.rstrip("/")
    steps = 20 if os.environ.get("DIMSUM_APP_TEST_CHECKPOINT") else 6
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{origin}/?seed={SEED}&steps={steps}&images=4", wait_until="domcontentloaded")
    page.wait_for_selector("#tour-start", timeout=120_000)
    page.wait_for_function(
        "(s) => [...document.querySelectorAll('input, textarea')].some(i => i.value === s)",
        arg=str(SEED),
        timeout=60_000,
    )
    assert _tour_text(page).startswith(_norm(INTRO.format(n=n).replace("**", ""))[:40])

    # Before any run: every tour button says the tour needs a run; nothing ends in an error.
    needs = _norm(NEEDS_RUN.replace("**", ""))
    for button in ("#tour-start", "#tour-next", "#tour-back"):
        page.click(button)
        _wait_text(page, "#tour-text", "needs a finished run", timeout=30)
        time.sleep(0.5)  # the chained drawings event, had it failed, would show by now
        assert _tour_text(page) == needs, (button, _tour_text(page))
        _no_error_state(page)
    for button in ("#tour-start", "#tour-back", "#tour-next", "#tour-leave", "#tour-generate"):
        sync_api.expect(page.locator(button)).to_be_enabled()

    page.click("#tour-generate")  # the offer: the same as pressing Generate
    _wait_text(page, "#status", "network evaluations")
    _wait_text(page, "#views", f"Step {steps} / {steps}")
    rec = _record(server, SEED)
    places = [stop.place(rec) for stop in STOPS]

    # Move every view away from where its first stop will put it (scan layer 1, the branch maps
    # coloured by PCA), so that a stop whose drawings do not arrive leaves its view unchanged.
    last: dict[str, dict] = {}
    _tab(page, "Wavelets")
    last["Wavelets"] = _view(page)
    _tab(page, "Scan orders")
    page.locator("#scan-layer input").click()
    page.get_by_role("option", name=re.compile(r"^layer 1:")).click()
    _wait_text(page, "#scan-text", "Layer 1")
    time.sleep(0.5)
    last["Scan orders"] = _view(page)
    _tab(page, "Branches")
    norm = _view(page)
    page.locator("#branch-show").get_by_label("feature similarity", exact=False).check()
    page.wait_for_function(CHANGED, arg=["Branches", norm, False], timeout=30_000)
    time.sleep(0.3)
    last["Branches"] = _view(page)
    _tab(page, "Trajectory")
    last["Trajectory"] = _view(page)
    for tab, view in last.items():
        assert view["tab"] == tab and view["imgs"], (tab, view)

    timings = []
    shown: list[dict] = []
    for k, (stop, where) in enumerate(zip(STOPS, places, strict=True), start=1):
        tab = TAB_LABELS[where.tab]
        want = _norm(f"Stop {k} of {n}: {stop.title}. {stop.say(rec)}")
        button = "#tour-start" if k == 1 else "#tour-next"
        answered = page.evaluate(TIMED_STEP, [button, f"Stop {k} of {n}"])
        assert answered >= 0, f"stop {k} never showed"
        timings.append(answered)
        assert _tour_text(page) == want, (k, _tour_text(page), want)
        sync_api.expect(page.locator("#views button[role=tab][aria-selected=true]")).to_have_text(
            tab
        )
        _check_controls(page, rec, where)
        # The drawings: every image of the view changes, and its chart when the stop moves the
        # step or source the chart is drawn from (the trajectory's curves are the whole run's,
        # the scan orders have none, and stop 6's step and block may be the branch view's own
        # defaults after a run, where its chart already is; stop 7 moves both).
        plots = where.wavelets is not None or (where.branches is not None and k == n)
        try:
            page.wait_for_function(CHANGED, arg=[tab, last[tab], plots], timeout=30_000)
        except sync_api.TimeoutError:
            pytest.fail(f"stop {k} ({stop.title}) did not redraw the {tab} view: {_view(page)}")
        # and the captions the server wrote for the new drawings
        if where.trajectory_step is not None:
            _wait_text(page, "#views", f"Step {where.trajectory_step} / {steps}", timeout=30)
        if where.scan_layer is not None:
            _wait_text(page, "#scan-text", f"Layer {where.scan_layer}", timeout=30)
        time.sleep(0.3)
        last[tab] = _view(page)
        shown.append(last[tab])
        _shot_tour(page, shots, f"tour_stop{k}")
    print("tour step, click -> stop shown (ms):", [round(t) for t in timings])

    # Back once: the previous stop's text, controls and drawings again (from the cache).
    answered = page.evaluate(TIMED_STEP, ["#tour-back", f"Stop {n - 1} of {n}"])
    assert answered >= 0, "Back never showed the previous stop"
    assert _tour_text(page) == _norm(
        f"Stop {n - 1} of {n}: {STOPS[-2].title}. {STOPS[-2].say(rec)}"
    )
    _check_controls(page, rec, places[-2])
    page.wait_for_function(
        SAME,
        arg=shown[-2]["imgs"],
        timeout=30_000,
    )

    # Leave at a middle stop: the panel is back to its introduction and the views stay usable.
    page.click("#tour-start")
    _wait_text(page, "#tour-text", f"Stop 1 of {n}", timeout=30)
    for k in (2, 3):
        page.click("#tour-next")
        _wait_text(page, "#tour-text", f"Stop {k} of {n}", timeout=30)
    assert places[2].tab == "wavelets"
    page.wait_for_function(
        SAME,
        arg=shown[2]["imgs"],
        timeout=30_000,
    )
    page.click("#tour-leave")
    _wait_text(page, "#tour-text", "Guided tour", timeout=30)
    assert _tour_text(page) == _norm(INTRO.format(n=n).replace("**", ""))
    assert _view(page)["tab"] == "Wavelets"  # Leave keeps the views where the tour left them
    page.locator("#wl-source").get_by_label("Noisy state x_t at the step").check()
    _wait_text(page, "#views", "x_t at step")
    page.wait_for_function(CHANGED, arg=["Wavelets", shown[2], True], timeout=30_000)
    _tab(page, "Trajectory")
    before = _view(page)
    # (stop 2 left the slider at t = 0.5: move it elsewhere)
    other = 1 if places[1].trajectory_step != 1 else 2
    page.locator("#traj-step input[type=range]").fill(str(other))
    _wait_text(page, "#views", f"Step {other} / {steps}")
    page.wait_for_function(CHANGED, arg=["Trajectory", before, False], timeout=30_000)
    # Next after leaving starts again at the first stop.
    page.click("#tour-next")
    _wait_text(page, "#tour-text", f"Stop 1 of {n}", timeout=30)
    _no_error_state(page)
    assert not errors, errors
    page.close()
