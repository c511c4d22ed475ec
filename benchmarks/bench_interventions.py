"""Interventions tab latency through the HTTP API, interleaved with plain Generate runs.

    python benchmarks/bench_interventions.py [--checkpoint checkpoints] [--threads 2] [--repeats 3]

Per repeat: a plain Generate (4 images, 20 Heun steps, guidance 4: benchmarks/bench_app.py's
request; seconds to the final images and to the run complete), then `/intervene` on that run
(freq-off, all blocks, a different t range each time so nothing is reused), timed at the client,
with the server's own re-run time. Also the after-run refresh of the tab (`controls_for_run`,
what a plain Generate now pays extra, off the critical path). Prints medians and the load
average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gradio_client import Client  # noqa: E402

from app.config import AppConfig  # noqa: E402
from app.intervene import Interventions  # noqa: E402
from app.state import SessionState  # noqa: E402
from app.testing import start_server  # noqa: E402
from benchmarks.bench_app import generate_timings  # noqa: E402

T_RANGES = [(0.0, 0.5), (0.5, 1.0), (0.0, 1.0), (0.25, 0.75), (0.0, 0.3), (0.7, 1.0)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    load_before = os.getloadavg()
    server = start_server(AppConfig(checkpoint=a.checkpoint, threads=a.threads))
    try:
        client = Client(server.url, verbose=False)
        blocks = list(range(server.explorer.registry.get(server.explorer.default_key).config.depth))
        generate_timings(client, 99)  # warm-up run and re-run
        client.predict("freq-off", "zeros", blocks, 0.0, 1.0, api_name="/intervene")
        gen_images, gen_done, iv_client, iv_server, refresh = [], [], [], [], []
        handlers = Interventions(server.explorer)
        for r in range(a.repeats):
            _, images, done, _ = generate_timings(client, r)
            gen_images.append(images)
            gen_done.append(done)
            t0, t1 = T_RANGES[r % len(T_RANGES)]
            start = time.perf_counter()
            *_, details = client.predict("freq-off", "zeros", blocks, t0, t1, api_name="/intervene")
            iv_client.append(time.perf_counter() - start)
            iv_server.append(details["seconds"])
            run_id = next(reversed(server.explorer.store._runs))  # the run just made
            session = SessionState(server.explorer.default_key, run_id)
            start = time.perf_counter()
            handlers.controls_for_run(session)
            refresh.append(time.perf_counter() - start)
        load_after = os.getloadavg()
        med = statistics.median
        print(f"checkpoint {a.checkpoint}, {a.threads} threads, {a.repeats} repeats")
        print(f"load average before {load_before}, after {load_after}")
        print(f"Generate, final images:       {med(gen_images):.2f} s  {gen_images}")
        print(f"Generate, run complete:       {med(gen_done):.2f} s  {gen_done}")
        print(f"/intervene at the client:     {med(iv_client):.2f} s  {iv_client}")
        print(f"/intervene re-run (server):   {med(iv_server):.2f} s  {iv_server}")
        print(f"tab refresh after a run:      {med(refresh) * 1000:.1f} ms")
    finally:
        server.close()


if __name__ == "__main__":
    main()
