"""Guided-tour step latency on the CPU, measured the way the page makes a step.

    python benchmarks/bench_tour.py [--checkpoint DIR] [--threads N] [--repeats 3]

Model: the embedded checkpoint (checkpoints/) if present, else a random emoji-S; the app runs
in its own process (benchmarks/bench_app.py's `start_app`). Each repeat makes a finished run as
the page does (Generate: 4 images, 20 Heun steps, guidance 4; then the views' refresh), then
presses the tour's buttons the way the page does: a tour step is two events with queue=False,
so the page POSTs each straight to /gradio_api/run/predict with its fn_index (the ids are read
from the app's /config, as the page does): first the step's text, tab and controls
(`/tour_next`), then, chained after it, the step's drawings (a private event), then it fetches
the images that event returns. A Next is timed from the first POST until the last image is
fetched (target <= 150 ms), with the two events' shares.

Two passes per repeat:
* right after Start: Next through every stop at once, while the tour's background prefetch
  (app/tour.py) is still rendering the stops (the worst case: a visitor racing through);
* after the prefetch: Start again once the server is idle, then Next through every stop
  (what a visitor reading each stop for a few seconds sees).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from bench_app import REQUEST, app_bench_args, default_checkpoint, start_app, wait_until_idle  # noqa: E402
from gradio_client import Client  # noqa: E402

TARGET_MS = 150.0


class TourButtons:
    """The tour's events as the page calls them: (fn_index, trigger id) of each button's
    event and of the drawings event chained after it, from the app's /config."""

    def __init__(self, http: httpx.Client, url: str, session_hash: str) -> None:
        self.http, self.url, self.session_hash = http, url, session_hash
        deps = http.get(url + "config").json()["dependencies"]
        by_name = {d.get("api_name"): d for d in deps}
        self.events: dict[str, tuple[dict, dict | None]] = {}
        for name in ("tour_start", "tour_next", "tour_back", "tour_leave"):
            first = by_name[name]
            chained = next((d for d in deps if d.get("trigger_after") == first["id"]), None)
            self.events[name] = (first, chained)

    def _post(self, dep: dict) -> dict:
        # what the page sends: the gr.State inputs (session, tour index) as null; the server
        # keeps their values per session_hash
        r = self.http.post(
            self.url + "gradio_api/run/predict",
            json={
                "data": [None] * len(dep["inputs"]),
                "event_data": None,
                "fn_index": dep["id"],
                "trigger_id": dep["targets"][0][0] if dep.get("targets") else None,
                "session_hash": self.session_hash,
            },
        )
        r.raise_for_status()
        return r.json()

    def _fetch_files(self, value: Any) -> int:
        """Fetch every file the outputs name (the page loads each returned image)."""
        if isinstance(value, dict):
            if isinstance(value.get("url"), str) and "/file=" in value["url"]:
                self.http.get(value["url"]).raise_for_status()
                return 1
            return sum(self._fetch_files(v) for v in value.values())
        if isinstance(value, list):
            return sum(self._fetch_files(v) for v in value)
        return 0

    def press(self, name: str) -> tuple[float, float, int]:
        """Seconds of (the button's event, the chained drawings event with their images),
        and the number of images fetched."""
        first, chained = self.events[name]
        t0 = time.perf_counter()
        self._fetch_files(self._post(first)["data"])
        t1 = time.perf_counter()
        files = self._fetch_files(self._post(chained)["data"]) if chained else 0
        t2 = time.perf_counter()
        if name != "tour_leave" and not files:  # every stop draws at least one image
            raise SystemExit(f"{name}: the drawings event returned no image")
        return t1 - t0, t2 - t1, files


def generate(client: Client, seed: int) -> None:
    """A finished run, as the page makes it: Generate, then the views' refresh."""
    args = list(REQUEST)
    args[1] = str(seed)
    client.predict(*args, api_name="/generate")
    client.predict(api_name="/refresh_views")


def main() -> None:
    a = app_bench_args(__doc__)

    ckpt = default_checkpoint(a.checkpoint)
    server, url, client = start_app(ckpt, a.threads)
    from app.tour import STOPS

    n = len(STOPS)
    racing: list[tuple[float, float, int]] = []  # Next right after Start (prefetch running)
    after: list[tuple[float, float, int]] = []  # Next once the prefetch has ended
    starts: list[float] = []
    per_stop: dict[int, list[float]] = {k: [] for k in range(2, n + 1)}
    try:
        with httpx.Client(timeout=60) as http:
            buttons = TourButtons(http, url, client.session_hash)
            client.predict("Smileys & Emotion", "99", 2, "heun", 4.0, 4, api_name="/generate")
            wait_until_idle(server.pid)  # start-up work (scan-order figures) ends first
            for r in range(a.repeats):
                generate(client, seed=r)
                wait_until_idle(server.pid)
                s1, s2, _ = buttons.press("tour_start")
                starts.append(s1 + s2)
                for _ in range(n - 1):
                    racing.append(buttons.press("tour_next"))
                wait_until_idle(server.pid)
                buttons.press("tour_start")
                for k in range(2, n + 1):
                    step = buttons.press("tour_next")
                    after.append(step)
                    per_stop[k].append(step[0] + step[1])
                buttons.press("tour_leave")
    finally:
        server.terminate()
        server.wait(timeout=30)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:>9.0f} | {max(values) * 1000:>7.0f}"

    def rows(name: str, steps: list[tuple[float, float, int]]) -> list[str]:
        total = [s[0] + s[1] for s in steps]
        images = statistics.median(s[2] for s in steps)
        return [
            f"| {name:<50} | {TARGET_MS:>6.0f} | {ms(total)} | {len(total):>4} |",
            f"| {'  ... text, tab and controls (/tour_next)':<50} |      - | "
            f"{ms([s[0] for s in steps])} |      |",
            f"| {f'  ... drawings (chained event) + {images:g} images':<50} |      - | "
            f"{ms([s[1] for s in steps])} |      |",
        ]

    import torch

    print()
    print(
        f"model: {ckpt} · server torch threads {a.threads or torch.get_num_threads()} · "
        f"{os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f} (a shared machine's "
        "other work shows here)"
    )
    print(
        "run: 4 images, 20 Heun steps, guidance 4; a step = both events as the page sends "
        "them (direct POSTs) + fetching the returned images"
    )
    print(
        "| tour step                                          | target | median ms |  max ms | runs |"
    )
    print(
        "| -------------------------------------------------- | -----: | --------: | ------: | ---: |"
    )
    print(f"| {'Start (stop 1)':<50} | {TARGET_MS:>6.0f} | {ms(starts)} | {len(starts):>4} |")
    for line in rows("Next, right after Start (prefetch still running)", racing):
        print(line)
    for line in rows("Next, after the prefetch", after):
        print(line)
    for k, values in per_stop.items():
        print(
            f"|   to stop {k}: {STOPS[k - 1].title:<37} |      - | {ms(values)} | {len(values):>4} |"
        )
    worst = statistics.median([s[0] + s[1] for s in racing + after]) * 1000
    verdict = "within" if worst <= TARGET_MS else "over"
    print(f"\nmedian Next, both passes: {worst:.0f} ms ({verdict} the {TARGET_MS:.0f} ms target)")


if __name__ == "__main__":
    main()
