"""What the scan animation's hidden-state trace costs a Generate, on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_scan_state.py [--repeats 3] [--threads 1]

The app's Generate (embedded model, 4 images, 20 Heun steps, guidance 4, the app's trace plan
and trace names) run on the bare pipeline, interleaved with the same run without the optional
names (`spatial_state`, `freq_state`). Reports, median over repeats: CPU seconds of the
sampling thread (time.process_time around the pipeline call: one thread does all the work),
how many times the hidden-state scan ran during sampling, and the cost of the reduction the
app runs after the images are on the page (`summarize_run`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import dimsum.ops.selective_scan as ss  # noqa: E402
from app.config import DEFAULT_CHECKPOINT  # noqa: E402
from app.features import summarize_run  # noqa: E402
from app.sampling import APP_TRACE_NAMES  # noqa: E402
from app.state import plan_trace  # noqa: E402
from dimsum.ops.selective_scan_cpu import set_thread_count  # noqa: E402
from dimsum.pipeline import DiMSUMPipeline  # noqa: E402
from dimsum.tracing import TRACE_NAMES  # noqa: E402

IMAGES, STEPS, METHOD, CFG = 4, 20, "heun", 4.0


class Counter:
    """Counts calls of the hidden-state scan (every module that imported it by name)."""

    def __init__(self) -> None:
        self.n = 0
        original = ss.selective_scan_state_magnitude
        wrapped = self._wrap(original)
        for mod in list(sys.modules.values()):
            if getattr(mod, "selective_scan_state_magnitude", None) is original:
                mod.selective_scan_state_magnitude = wrapped

    def _wrap(self, fn):
        def counted(*args, **kwargs):
            self.n += 1
            return fn(*args, **kwargs)

        return counted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_thread_count(args.threads)
    pipe = DiMSUMPipeline.from_pretrained(str(DEFAULT_CHECKPOINT))
    cfg = pipe.config
    steps, blocks = plan_trace(STEPS + 1, IMAGES, cfg.num_tokens, cfg.hidden_size, cfg.depth)
    counter = Counter()
    print(f"model {cfg.name}: trace steps {steps}, blocks {blocks}; {args.threads} thread(s)")

    def run(names) -> tuple[float, float, int, float]:
        counter.n = 0
        cpu, wall = time.process_time(), time.perf_counter()
        out = pipe(
            [6] * IMAGES,
            list(range(IMAGES)),
            guidance_scale=CFG,
            num_steps=STEPS,
            method=METHOD,
            trace_steps=steps,
            trace_blocks=blocks,
            trace_names=names,
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        during = counter.n
        t0 = time.process_time()
        summarize_run(out.features)
        return cpu, wall, during, time.process_time() - t0

    run(APP_TRACE_NAMES)  # warm-up
    res: dict[str, list[tuple[float, float, int, float]]] = {"app": [], "no states": []}
    for _ in range(args.repeats):
        res["app"].append(run(APP_TRACE_NAMES))
        res["no states"].append(run(TRACE_NAMES))
    for key, rows in res.items():
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(
            f"{key:>9}: sampling CPU {med[0]:.2f} s (wall {med[1]:.2f} s), "
            f"state scans during sampling {int(med[2])}, reduction after images CPU {med[3]:.3f} s"
        )
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
