"""Full-network forward timing: reference scan (the in-run baseline) vs our fast scan paths.

    python benchmarks/bench_forward.py                      # DiM-L/2 on the CPU, batch 1 and 2
    python benchmarks/bench_forward.py --device cuda --impls ref chunked cuda

The reference scan is what the official code does without its CUDA kernels (a Python loop over
the sequence), so "ref" is the baseline every ratio is measured against, in the same run.
Random weights (the forward cost does not depend on their values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dimsum  # noqa: E402
from dimsum.ops import available_scan_impls  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_forward(model, batch: int, device: torch.device, dtype: str, repeats: int) -> float:
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=device)
    t = torch.rand(batch, device=device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    with ctx:
        model(x, t, y)  # warm-up (kernel selection, extension load)
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            model(x, t, y)
            sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="L2-imagenet256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--impls", nargs="+", default=None, help="default: every available one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    impls = a.impls or available_scan_impls()
    impls = [i for i in impls if i != "cpp" or device.type == "cpu"]
    if "ref" not in impls:
        impls = ["ref", *impls]
    model = dimsum.build_model(a.preset, device=device).eval()
    name = (
        torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{a.preset}: {model.num_parameters() / 1e6:.1f}M parameters on {name}; torch {torch.__version__}"
    )
    print("| batch | dtype | scan | time (s) | speed-up vs ref |")
    print("|---:|---|---|---:|---:|")
    for batch in a.batches:
        for dtype in a.dtypes:
            base = None
            for impl in impls:
                os.environ["DIMSUM_SCAN_IMPL"] = impl
                try:
                    sec = time_forward(model, batch, device, dtype, a.repeats)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"| {batch} | {dtype} | {impl} | failed: {type(err).__name__}: {err} | |")
                    continue
                base = sec if impl == "ref" else base
                ratio = f"{base / sec:.2f}x" if base else "-"
                print(f"| {batch} | {dtype} | {impl} | {sec:.3f} | {ratio} |", flush=True)
    os.environ.pop("DIMSUM_SCAN_IMPL", None)


if __name__ == "__main__":
    main()
