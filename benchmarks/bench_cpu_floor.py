"""DiM-L/2 guided evaluation on the CPU against the matmul floor measured in the same run.

    python benchmarks/bench_cpu_floor.py            # DiM-L/2, one guided evaluation (batch 2)
    python benchmarks/bench_cpu_floor.py --quick    # emoji-XS, a dry run in seconds

"One guided evaluation, batch 2" is ``guided_velocity`` on one image: the network runs on the
image and its null-class copy (network batch 2), 256-px latent 32x32x4, random weights.

The floor: every ``F.linear`` call of one evaluation is recorded (M, K, N); each distinct shape's
matmul rate is measured here in fp32 and bf16 (``F.linear``, the op autocast runs), and the floor
time is sum(FLOPs / rate) over the calls, plus the FLOPs that are not linear layers (counted by
``torch.utils.flop_counter``: convs, attention) at the FLOP-weighted mean rate. The ratio
"ours / floor" is then measured time over that floor: 1.0 would mean nothing but matmuls at the
speed this CPU does them. The profile of one fp32 evaluation shows where the rest goes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dimsum import build_model  # noqa: E402
from dimsum.runtime import cpu_flags  # noqa: E402


def cpu_isa() -> str:
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return ",".join(isa) or ("no avx2" if flags else "unknown")


def linear_shapes(call) -> Counter:
    """(M, K, N) of every ``F.linear`` call made by ``call()`` (nn.Linear layers and the gated
    MLP's bias-free projection alike), with multiplicity."""
    shapes: Counter = Counter()
    linear = F.linear

    def recording(x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
        shapes[(x.numel() // x.shape[-1], weight.shape[1], weight.shape[0])] += 1
        return linear(x, weight, bias)

    F.linear = recording  # nn.Linear.forward and the model look F.linear up at each call
    try:
        call()
    finally:
        F.linear = linear
    return shapes


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, budget_s: float) -> float:
    """GFLOP/s of F.linear(x (m, k), w (n, k)) in ``dtype``: the best of 5 windows of
    budget_s / 5 seconds each (time-bounded, as a shared CPU makes per-call times erratic)."""
    x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    F.linear(x, w)
    best = float("inf")
    for _ in range(5):
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < budget_s / 5 or calls == 0:
            F.linear(x, w)
            calls += 1
        best = min(best, elapsed / calls)
    return 2 * m * k * n / best / 1e9


def timed(call, repeats: int) -> float:
    """The best of `repeats` timed calls after a warm-up: best-of, like the matmul rates of the
    floor, as a shared CPU only ever adds time."""
    call()  # warm-up: extension load, oneDNN primitive cache, autocast's weight casts
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="L2-imagenet256")
    ap.add_argument("--quick", action="store_true", help="emoji-XS instead: a dry run")
    ap.add_argument("--images", type=int, default=1, help="images per guided evaluation")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate-budget", type=float, default=0.3, help="seconds per shape and dtype")
    a = ap.parse_args()
    preset = "emoji-XS" if a.quick else a.preset
    torch.manual_seed(0)
    model = build_model(preset).eval()
    cfg = model.config
    x = torch.randn(a.images, cfg.in_channels, cfg.input_size, cfg.input_size)
    t = torch.full((a.images,), 0.5)
    y = torch.zeros(a.images, dtype=torch.long)

    def evaluate() -> torch.Tensor:
        # As DiMSUMPipeline does: inference mode in fp32; under autocast no_grad, so that the
        # weights' bf16 copies are cast once (in the warm-up) and reused, as within a run.
        grad_mode = torch.no_grad if torch.is_autocast_enabled("cpu") else torch.inference_mode
        with grad_mode():
            return model.guided_velocity(x, t, y, 4.0)

    print(
        f"{preset}: {model.num_parameters() / 1e6:.1f}M parameters; guided evaluation of "
        f"{a.images} image(s) = network batch {2 * a.images}; CPU {cpu_isa()}, "
        f"{torch.get_num_threads()} threads; torch {torch.__version__}"
    )
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        shapes = linear_shapes(evaluate)
    total = counter.get_total_flops()
    lin = {s: 2 * s[0] * s[1] * s[2] for s in shapes}
    lin_total = sum(lin[s] * c for s, c in shapes.items())
    print(
        f"FLOPs per evaluation: {total / 1e9:.1f} G counted by torch ({lin_total / 1e9:.1f} G in "
        f"{sum(shapes.values())} Linear calls, {len(shapes)} shapes)"
    )
    results = {}
    for name, dtype, ctx in (
        ("fp32", torch.float32, torch.autocast("cpu", enabled=False)),
        ("bf16", torch.bfloat16, torch.autocast("cpu", dtype=torch.bfloat16)),
    ):
        rates = {s: matmul_rate(*s, dtype, a.rate_budget) for s in shapes}
        floor = sum(lin[s] * c / (rates[s] * 1e9) for s, c in shapes.items())
        mean_rate = lin_total / floor / 1e9  # FLOP-weighted
        floor += max(total - lin_total, 0) / (mean_rate * 1e9)
        with ctx:
            ours = timed(evaluate, a.repeats)
        results[name] = (ours, floor, mean_rate)
        top = max(shapes, key=lambda s: lin[s] * shapes[s])
        print(
            f"{name}: matmul rate {mean_rate:.1f} GFLOP/s (FLOP-weighted over the shapes; largest "
            f"share {top} at {rates[top]:.1f}); floor {floor:.3f} s, ours {ours:.3f} s, "
            f"ours / floor = {ours / floor:.2f}x",
            flush=True,
        )
    print("\n| dtype | matmul GFLOP/s | floor (s) | ours (s) | ours / floor |")
    print("|---|---:|---:|---:|---:|")
    for name, (ours, floor, rate) in results.items():
        print(f"| {name} | {rate:.1f} | {floor:.3f} | {ours:.3f} | {ours / floor:.2f}x |")
    profile(evaluate)


def profile(evaluate) -> None:
    """Top ops of one fp32 evaluation by self CPU time: where the time over the floor goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        evaluate()
    print("\nprofile of one fp32 guided evaluation, top ops by self CPU time:")
    print(
        prof.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40
        )
    )


if __name__ == "__main__":
    main()
