"""Selective-scan benchmark: every available implementation vs the reference, same run.

    python benchmarks/bench_scan.py [--device cpu|cuda] [--repeats 5] [--shapes 2,1024,256,16 ...]

Prints, per shape (batch, dim, L, N): forward and forward+backward time (median ms), speed-up
over ``ref`` and the max relative error vs ``ref`` (output and all input gradients, each scaled by
the reference's max |value|). Inputs follow Mamba's init: delta = softplus(randn*0.5 - 2 +
delta_bias) ~ 0.001-0.1, A = -exp(A_log) with A_log = log(1..N), B, C ~ randn, with D, z.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import dimsum  # noqa: F401
except ModuleNotFoundError as e:  # run from a checkout without `pip install -e .`
    if e.name != "dimsum":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dimsum.ops import available_scan_impls, selective_scan_fn  # noqa: E402

_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(
    batch: int, dim: int, L: int, N: int, device: str, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """Realistic Mamba-style inputs [u, delta, A, B, C, D, z, delta_bias]."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, dim, L, generator=g)
    delta = torch.randn(batch, dim, L, generator=g) * 0.5 - 2.0
    A = -torch.arange(1, N + 1, dtype=torch.float32).log().repeat(dim, 1).exp()
    B = torch.randn(batch, N, L, generator=g)
    C = torch.randn(batch, N, L, generator=g)
    D = torch.ones(dim)
    z = torch.randn(batch, dim, L, generator=g)
    # Mamba's dt init: inverse softplus of dt ~ logU(1e-3, 1e-1)
    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    delta_bias = dt + torch.log(-torch.expm1(-dt))
    return [t.to(device=device, dtype=dtype) for t in (u, delta, A, B, C, D, z, delta_bias)]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: str, repeats: int) -> float:
    fn()  # warm-up (and JIT / autotune)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_impl(impl: str, inputs: list[torch.Tensor], backward: bool):
    """One call; returns (out, grads) with grads in _NAMES order (empty if not backward)."""
    xs = [t.detach().clone().requires_grad_(backward) for t in inputs]
    u, delta, A, B, C, D, z, bias = xs
    out = selective_scan_fn(
        u, delta, A, B, C, D, z, delta_bias=bias, delta_softplus=True, impl=impl
    )
    if not backward:
        return out.detach(), []
    out.backward(torch.ones_like(out) * 0.01 + torch.sin(out.detach()) * 0.01)
    return out.detach(), [t.grad for t in xs]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shapes", nargs="*", default=["2,1024,256,16", "8,256,256,16"])
    p.add_argument("--impls", nargs="*", default=None, help="default: all available")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    impls = args.impls or available_scan_impls()
    if args.device == "cpu":
        impls = [i for i in impls if i != "cuda"]
    elif "cpp" in impls:
        impls.remove("cpp")
    if "ref" not in impls:
        impls.insert(0, "ref")
    print(
        f"torch {torch.__version__}, device={args.device}, threads={torch.get_num_threads()}, "
        f"impls={impls}, median of {args.repeats}"
    )
    header = (
        f"{'shape (b,d,L,N)':<18} {'impl':<8} {'fwd ms':>9} {'fwd x':>7} {'f+b ms':>9} "
        f"{'f+b x':>7} {'fwd relerr':>11} {'grad relerr':>12}"
    )
    print(header)
    print("-" * len(header))
    for spec in args.shapes:
        batch, dim, L, N = (int(v) for v in spec.split(","))
        inputs = make_inputs(batch, dim, L, N, args.device)
        ref_out, ref_grads = run_impl("ref", inputs, backward=True)
        base = {}
        for impl in impls:
            t_f = _time(lambda i=impl, x=inputs: run_impl(i, x, False), args.device, args.repeats)
            t_fb = _time(lambda i=impl, x=inputs: run_impl(i, x, True), args.device, args.repeats)
            out, grads = run_impl(impl, inputs, backward=True)
            err_f = _rel(out, ref_out)
            err_g = max(_rel(a, b) for a, b in zip(grads, ref_grads, strict=True))
            if impl == "ref":
                base = {"f": t_f, "fb": t_fb}
            print(
                f"{spec:<18} {impl:<8} {t_f:9.2f} {base['f'] / t_f:6.1f}x {t_fb:9.2f} "
                f"{base['fb'] / t_fb:6.1f}x {err_f:11.1e} {err_g:12.1e}"
            )


if __name__ == "__main__":
    main()
