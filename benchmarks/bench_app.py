"""App latency on the CPU, measured through the HTTP API like a browser would see it.

    python benchmarks/bench_app.py [--checkpoint DIR] [--threads N] [--repeats 3]

Model: the embedded checkpoint (checkpoints/) if present, else a random emoji-S. Measures
(median over repeats):

* time to first preview: from submitting Generate (4 images, 20 Heun steps, guidance 4) to the
  first streamed preview arriving at the client (target <= 1 s);
* end to end: the same request until the final images reach the client (target <= 3 s), and
  until the run is complete (the traced features reduced for the views, just after);
* step-slider update: one /trajectory_view call made the way the page makes it (a direct POST,
  since view events skip the queue) plus fetching the returned PNG, first visit of a step and
  revisit (cached) (target <= 150 ms); the same call through gradio_client for reference;
* for reference, the bare pipeline (no app, no tracing) on the same request, interleaved with
  the app's runs (this machine's speed drifts by +-15% over minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import torch  # noqa: E402
from gradio_client import Client  # noqa: E402

from app.testing import free_port, make_checkpoint  # noqa: E402
from dimsum.pipeline import DiMSUMPipeline  # noqa: E402
from dimsum.runtime import keep_freed_memory  # noqa: E402

REQUEST = ("Smileys & Emotion", "0", 20, "heun", 4.0, 4)


def generate_timings(client: Client, seed: int) -> tuple[float, float, float, float]:
    """Seconds from submitting Generate to (first streamed preview, final images, run complete),
    and the sampling time the server reports in its status line.

    "Final images" is the message carrying the gallery (what the page shows as the result);
    "complete" adds the reduction of the traced features for the views, done after it.
    """
    args = list(REQUEST)
    args[1] = str(seed)
    start = time.perf_counter()
    job = client.submit(*args, api_name="/generate")
    first = images = None
    while not job.done():
        outputs = job.outputs()
        now = time.perf_counter() - start
        if first is None and outputs:
            first = now
        if images is None and any(isinstance(o[1], list) and o[1] for o in outputs):
            images = now
        time.sleep(0.005)
    job.result()
    total = time.perf_counter() - start
    status = next((o[3] for o in job.outputs() if isinstance(o[1], list) and o[1]), "")
    found = re.search(r"sampling ([\d.]+) s", status)
    sampling = float(found.group(1)) if found else float("nan")
    first = first if first is not None else total
    return first, (images if images is not None else total), total, sampling


def wait_until_idle(pid: int, timeout: float = 180.0) -> None:
    """Wait until the server and its children use < 5% of a CPU over a second (at start-up the
    app draws the scan-order figures in a background process, which would skew the timings)."""

    def cpu_seconds() -> float:
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, IndexError, ValueError):
                continue
        return total

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds()
        time.sleep(1.0)
        if cpu_seconds() - before < 0.05:
            return


def slider_update(http: httpx.Client, url: str, session_hash: str, step: int) -> None:
    """One step-slider move as the browser makes it: the view events have queue=False, so the
    page POSTs straight to the predict route (/run/predict with the event's fn_index; here
    /run/<api_name>, the same route and handler; tests/test_browser.py checks that Chromium
    takes this path), then fetches the returned PNG. gradio_client always goes through the
    queue's join + event stream instead (~90 ms more)."""
    r = http.post(
        url + "gradio_api/run/trajectory_view",
        json={"data": [None, step], "session_hash": session_hash},  # None: the gr.State input
    )
    r.raise_for_status()
    http.get(r.json()["data"][0]["url"]).raise_for_status()


def default_checkpoint(checkpoint: str | None) -> str:
    """`checkpoint`, else the embedded one (checkpoints/) if present, else a random emoji-S."""
    if checkpoint is not None:
        return checkpoint
    if (ROOT / "checkpoints" / "model.safetensors").is_file():
        return str(ROOT / "checkpoints")
    tmp = Path(tempfile.mkdtemp(prefix="dimsum-bench-"))
    return str(make_checkpoint(tmp / "emoji-S", "emoji-S"))


def start_app(ckpt: str, threads: int | None) -> tuple[subprocess.Popen, str, Client]:
    """The app in its own process, as in production (a client polling in the same process
    would compete with the model for the GIL and distort the numbers): (process, url, client)."""
    port = free_port()
    cmd = [
        sys.executable,
        str(ROOT / "app" / "app.py"),
        "--checkpoint",
        ckpt,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            return server, url, Client(url, verbose=False, download_files=False)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the app did not start")


def app_bench_args(doc: str | None) -> argparse.Namespace:
    """The options every app benchmark takes: --checkpoint, --threads, --repeats."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def main() -> None:
    a = app_bench_args(__doc__)

    ckpt = default_checkpoint(a.checkpoint)
    server, url, client = start_app(ckpt, a.threads)

    if a.threads:
        torch.set_num_threads(a.threads)
    keep_freed_memory()  # as the app's server process does
    pipe = DiMSUMPipeline.from_pretrained(ckpt)

    # Warm-up (first calls pay for lazy imports and allocator growth), then let start-up work end.
    client.predict("Smileys & Emotion", "99", 2, "heun", 4.0, 4, api_name="/generate")
    pipe([6] * 4, [0, 1, 2, 3], guidance_scale=4.0, num_steps=2, method="heun")
    wait_until_idle(server.pid)

    # App and bare pipeline interleaved, so that both see the same machine (its speed drifts).
    firsts, images, totals, sampling, bare = [], [], [], [], []
    for r in range(a.repeats):
        f, i, t, s = generate_timings(client, seed=r)
        firsts.append(f)
        images.append(i)
        totals.append(t)
        sampling.append(s)
        t0 = time.perf_counter()
        pipe(
            [6] * 4,
            [r, r + 1, r + 2, r + 3],
            guidance_scale=4.0,
            num_steps=20,
            method="heun",
            return_trajectory=False,
        )
        bare.append(time.perf_counter() - t0)
    client.predict(api_name="/refresh_views")
    fresh, cached = [], []
    with httpx.Client() as http:
        for step in range(0, 21, 2):
            t0 = time.perf_counter()
            slider_update(http, url, client.session_hash, step)
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            slider_update(http, url, client.session_hash, step)
            cached.append(time.perf_counter() - t0)
    via_client = []
    for step in range(0, 21, 2):
        t0 = time.perf_counter()
        client.predict(step, api_name="/trajectory_view")
        via_client.append(time.perf_counter() - t0)
    server.terminate()
    server.wait(timeout=30)

    def row(name: str, values: list[float], target: str) -> str:
        med = statistics.median(values)
        return f"| {name:<44} | {target:>7} | {med * 1000:>9.0f} | {min(values) * 1000:>7.0f} | {len(values):>4} |"

    print()
    print(
        f"model: {pipe.name} ({pipe.model.num_parameters() / 1e6:.2f} M params) · torch threads {a.threads or torch.get_num_threads()} · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "request: 4 images, 20 Heun steps, guidance 4 (CFG doubles the batch): 41 network evaluations of batch 8"
    )
    print("| metric                                       |  target | median ms |  min ms | runs |")
    print("| -------------------------------------------- | ------: | --------: | ------: | ---: |")
    print(row("time to first preview (click -> preview)", firsts, "1000"))
    print(row("4 images x 20 Heun steps, end to end", images, "3000"))
    print(row("  ... run complete (views' data ready)", totals, "-"))
    print(row("  ... server's sampling time (status line)", sampling, "-"))
    print(row("step-slider update, first visit of a step", fresh, "150"))
    print(row("step-slider update, revisit (cached)", cached, "150"))
    print(row("slider update through gradio_client (queue)", via_client, "-"))
    print(row("bare pipeline, same request (reference)", bare, "-"))


if __name__ == "__main__":
    main()
