"""Guided-tour steps timed in Chromium: click to the stop's text, and to its drawings.

    python benchmarks/bench_tour_browser.py [--checkpoint DIR] [--threads N] [--repeats 3]

What a visitor sees, measured inside the page (``performance.now()`` from the click until the
DOM shows it, polled every animation frame): the stop's text (its first event: text, tab and
controls) and its drawings (the chained second event: every visible image of the views replaced).
The app runs in its own process (benchmarks/bench_app.py's ``start_app``), as in production;
Chromium is Debian's (``$DIMSUM_CHROMIUM`` overrides), headless. Model: the embedded checkpoint if
present. Each repeat makes a finished run through the page (Generate: 4 images, 20 Heun steps,
guidance 4), waits until the server is idle, then Start and Next through every stop.
Target: every interaction on a finished run answers within 150 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_app import app_bench_args, default_checkpoint, start_app, wait_until_idle  # noqa: E402
from playwright import sync_api  # noqa: E402

from app.testing import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

TARGET_MS = 150.0

# Click `button`; resolve with [ms to the text containing `want`, ms to every visible view image
# differing from before the click] (-1 where it did not happen within 30 s).
TIMED = """async ([button, want]) => {
  const imgs = () => [...document.querySelectorAll('#views img')]
    .filter((e) => e.getClientRects().length > 0).map((e) => e.getAttribute('src') || '');
  const before = new Set(imgs());
  const t0 = performance.now();
  document.querySelector(button).click();
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  let text = -1;
  while (performance.now() - t0 < 30000) {
    if (text < 0 && document.querySelector('#tour-text').innerText.includes(want)) {
      text = performance.now() - t0;
    }
    const now = imgs();
    if (text >= 0 && now.length && now.every((s) => s && !before.has(s))) {
      return [text, performance.now() - t0];
    }
    await frame();
  }
  return [text, -1];
}"""


def main() -> None:
    a = app_bench_args(__doc__)

    from app.tour import STOPS

    n = len(STOPS)
    server, url, _ = start_app(default_checkpoint(a.checkpoint), a.threads)
    text_ms: list[float] = []
    draw_ms: list[float] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#generate-btn", timeout=120_000)
            for _ in range(a.repeats):
                before = page.inner_text("#status")
                page.click("#generate-btn")
                page.wait_for_function(
                    "(b) => { const s = document.querySelector('#status').innerText;"
                    " return s !== b && s.includes('network evaluations'); }",
                    arg=before,
                    timeout=300_000,
                )
                wait_until_idle(server.pid)
                for k in range(1, n + 1):
                    button = "#tour-start" if k == 1 else "#tour-next"
                    text, draw = page.evaluate(TIMED, [button, f"Stop {k} of {n}"])
                    if text < 0 or draw < 0:
                        raise SystemExit(f"stop {k}: text {text:.0f} ms, drawings {draw:.0f} ms")
                    if k > 1:  # Start draws its stop afresh; Next is the step a visitor repeats
                        text_ms.append(text)
                        draw_ms.append(draw)
                    if os.environ.get("BENCH_VERBOSE"):
                        print(f"stop {k}: text {text:.0f} ms, drawings {draw:.0f} ms", flush=True)
                page.click("#tour-leave")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)

    def row(name: str, ms: list[float]) -> str:
        return f"| {name} | {statistics.median(ms):.0f} | {max(ms):.0f} | {len(ms)} | {TARGET_MS:.0f} |"

    print(f"# tour Next in Chromium, {n - 1} per repeat, {a.repeats} repeats")
    print("| click to | median ms | max ms | steps | target ms |")
    print("|---|---:|---:|---:|---:|")
    print(row("the stop's text (tab and controls set)", text_ms))
    print(row("its drawings (every visible view image replaced)", draw_ms))


if __name__ == "__main__":
    main()
