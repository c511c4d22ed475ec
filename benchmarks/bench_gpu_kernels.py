"""One prepared GPU session for the Triton kernels and CUDA-graph sampling (issue 20).

    python benchmarks/bench_gpu_kernels.py              # on a CUDA machine (a few minutes)
    python benchmarks/bench_gpu_kernels.py --dry-run    # CPU, tiny sizes, Triton interpreter

Every ratio divides a baseline measured in the same run by the new path:

1. parity: Triton scan and conv (forward + backward) vs the references on the device.
2. kernel: Triton vs chunked scan, forward and forward + backward, at (2, 1024, 256, 16).
3. DiM-L/2 guided evaluation (one image + null copy = network batch 2), fp32 and bf16 autocast:
   chunked eager (baseline), Triton eager, Triton + CUDA graph.
4. emoji-XS training step at batch 512 (as benchmarks/bench_train_step.py): chunked scan +
   reference conv vs Triton scan + Triton conv (both with their backward kernels).
5. 4 ImageNet-size (256 px, 32x32x4 latent) images end to end: 20 guided Heun steps (40
   evaluations) of DiM-L/2, random weights, chunked eager vs Triton + CUDA graph; no VAE
   decode (no weights on that machine; ~the same for both).

``--dry-run`` sets TRITON_INTERPRET=1 before triton is imported and runs every section on CPU
tensors with tiny shapes and a tiny model, to check the script end to end; its times mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

if "--dry-run" in sys.argv:  # must precede any triton import (the kernels read it when decorated)
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dimsum import build_model, get_preset  # noqa: E402
from dimsum.flow import flow_matching_loss, sample_ode  # noqa: E402
from dimsum.flow.cuda_graph import GraphedVelocity, graph_velocity  # noqa: E402
from dimsum.ops import (  # noqa: E402
    causal_conv1d_tokens,
    causal_conv1d_tokens_ref,
    selective_scan_fn,
)

DEV = torch.device("cpu")


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


WARMUP = 2  # 0 in the dry run: the interpreter compiles nothing and is slow


def bench(fn, repeats: int, warmup: int | None = None) -> float:
    """Median seconds per call."""
    warmup = WARMUP if warmup is None else warmup
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scan_inputs(batch, dim, L, N, grad=False):
    g = torch.Generator().manual_seed(0)
    xs = [
        torch.randn(batch, dim, L, generator=g),
        torch.randn(batch, dim, L, generator=g) * 0.5 - 1.0,
        -torch.rand(dim, N, generator=g) * 4 - 0.5,
        torch.randn(batch, N, L, generator=g),
        torch.randn(batch, N, L, generator=g),
        torch.randn(dim, generator=g),
        torch.randn(batch, dim, L, generator=g),
        torch.randn(dim, generator=g) * 0.5,
    ]
    return [x.to(DEV).requires_grad_(grad) for x in xs]


def section_parity(s) -> None:
    print("\n## 1. parity with the reference on", DEV.type)
    xs = scan_inputs(2, 48, s["parity_L"], 16, grad=True)
    res = {}
    for impl in ("ref", "triton"):
        for x in xs:
            x.grad = None
        out = selective_scan_fn(*xs, delta_softplus=True, impl=impl)
        out.square().sum().backward()
        res[impl] = [out.detach()] + [x.grad.clone() for x in xs]
    names = ["out", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias"]
    for n, a, b in zip(names, res["triton"], res["ref"], strict=True):
        rel = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
        print(f"- {n}: max |diff| / max |ref| = {rel:.2e}")
    xz = torch.randn(2, s["parity_L"], 2 * 96, device=DEV)  # x: the first half, as in the mixer
    w, bias = torch.randn(96, 1, 4, device=DEV), torch.randn(96, device=DEV)
    res = {}
    for impl in ("ref", "triton"):
        leaves = [t.detach().clone().requires_grad_() for t in (xz, w, bias)]
        fn = causal_conv1d_tokens_ref if impl == "ref" else partial(causal_conv1d_tokens, impl=impl)
        out = fn(leaves[0][..., :96], leaves[1], leaves[2], silu=True)
        out.square().sum().backward()
        res[impl] = [out.detach()] + [t.grad for t in leaves]
    for n, a, b in zip(("out", "dx", "dweight", "dbias"), res["triton"], res["ref"], strict=True):
        rel = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
        print(f"- causal conv + SiLU {n}: max |diff| / max |ref| = {rel:.2e}")


def section_kernel(s) -> None:
    b, d, L, n = s["scan_shape"]
    print(f"\n## 2. scan kernel at (batch, dim, L, N) = {s['scan_shape']}")
    print("| pass | chunked (ms) | triton (ms) | chunked / triton |\n|---|---:|---:|---:|")
    for name, grad in (("forward", False), ("forward + backward", True)):
        xs = scan_inputs(b, d, L, n, grad=grad)

        def run(impl, xs=xs, grad=grad):
            out = selective_scan_fn(*xs, delta_softplus=True, impl=impl)
            if grad:
                out.sum().backward()

        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            base = bench(partial(run, "chunked"), s["repeats"])
            new = bench(partial(run, "triton"), s["repeats"])
        print(f"| {name} | {base * 1e3:.2f} | {new * 1e3:.2f} | {base / new:.1f}x |", flush=True)


def with_impl(impl: str, fn):
    """fn run with $DIMSUM_SCAN_IMPL = impl (the model's layers read it per call)."""

    def run(*a, **k):
        old = os.environ.get("DIMSUM_SCAN_IMPL")
        os.environ["DIMSUM_SCAN_IMPL"] = impl
        try:
            return fn(*a, **k)
        finally:
            if old is None:
                del os.environ["DIMSUM_SCAN_IMPL"]
            else:
                os.environ["DIMSUM_SCAN_IMPL"] = old

    return run


def guided(model, images: int, dtype: str):
    """velocity(x, t) of ``images`` images (class 0, cfg 4), under bf16 autocast if asked."""
    y = torch.zeros(images, dtype=torch.long, device=DEV)

    def velocity(x, t):
        with torch.inference_mode(), torch.autocast(DEV.type, torch.bfloat16, dtype == "bf16"):
            return model.guided_velocity(x, t, y, 4.0).float()

    return velocity


def section_guided(s, model) -> None:
    cfg = model.config
    print(f"\n## 3. {s['big']} guided evaluation, 1 image (network batch 2)")
    print(
        "| dtype | chunked eager (ms) | triton eager (ms) | triton + graph (ms) | chunked / best |"
    )
    print("|---|---:|---:|---:|---:|")
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size, device=DEV)
    t = torch.full((1,), 0.5, device=DEV)
    for dtype in ("fp32", "bf16"):
        v = guided(model, 1, dtype)
        base = bench(partial(with_impl("chunked", v), x, t), s["repeats"])
        eager = bench(partial(with_impl("triton", v), x, t), s["repeats"])
        fast = with_impl("triton", graph_velocity)(with_impl("triton", v), x)
        graph = bench(partial(fast, x, t), s["repeats"])
        kind = "" if isinstance(fast, GraphedVelocity) else " (no graph: eager fallback)"
        best = min(eager, graph)
        print(
            f"| {dtype} | {base * 1e3:.1f} | {eager * 1e3:.1f} | {graph * 1e3:.1f}{kind} "
            f"| {base / best:.1f}x |",
            flush=True,
        )


def section_train(s) -> None:
    preset, batch = "emoji-XS", s["train_batch"]
    cfg = dataclasses.replace(get_preset(preset), input_size=s["train_size"])
    print(f"\n## 4. {preset} training step, batch {batch}, input {cfg.input_size}px")
    probe = torch.randn(1, 3, 8, device=DEV, requires_grad=True)  # which conv the step records
    conv = with_impl("triton", causal_conv1d_tokens)(probe, torch.ones(8, 1, 4, device=DEV))
    print(f"- conv with grad under triton records {type(conv.grad_fn).__name__}")
    torch.manual_seed(0)
    model = build_model(cfg).to(DEV)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    x1 = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=DEV)
    y = torch.randint(0, cfg.num_classes, (batch,), device=DEV)

    def step():
        loss, _ = flow_matching_loss(partial(model, y=y), x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()

    base = bench(with_impl("chunked", step), s["repeats"])
    new = bench(with_impl("triton", step), s["repeats"])
    print(
        f"- chunked {base * 1e3:.1f} ms, triton {new * 1e3:.1f} ms: {base / new:.2f}x", flush=True
    )


def section_e2e(s, model) -> None:
    cfg, n, steps = model.config, 4, s["steps"]
    print(f"\n## 5. {n} images end to end: {steps} Heun steps, guided, bf16, no VAE decode")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g).to(DEV)
    v = guided(model, n, "bf16")

    def run(fn):
        return sample_ode(fn, x0, method="heun", num_steps=steps + 1)

    base = bench(partial(with_impl("chunked", run), v), 1, warmup=min(WARMUP, 1))

    def fast_run():
        fast = with_impl("triton", graph_velocity)(with_impl("triton", v), x0)  # capture counted
        return with_impl("triton", run)(fast)

    new = bench(fast_run, 1, warmup=min(WARMUP, 1))
    print(f"- chunked eager {base:.2f} s, triton + graph {new:.2f} s: {base / new:.2f}x")


SIZES = {
    "gpu": dict(parity_L=300, scan_shape=(2, 1024, 256, 16), repeats=20, big="L2-imagenet256",
                train_batch=512, train_size=32, steps=20),
    "dry": dict(parity_L=11, scan_shape=(1, 16, 9, 16), repeats=1, big="tiny DiM (emoji-XS, 8px, depth 2)",
                train_batch=2, train_size=8, steps=2),
}  # fmt: skip


def main() -> None:
    global DEV, WARMUP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, Triton interpreter")
    a = ap.parse_args()
    s = SIZES["dry" if a.dry_run else "gpu"]
    DEV = torch.device("cpu" if a.dry_run else "cuda")
    if a.dry_run:  # fewer, wider programs and less padding: the interpreter pays per op
        import dimsum.ops.selective_scan_triton as scan_tr

        scan_tr.CHUNK, scan_tr.BLOCK_D_MAX, WARMUP = 8, 128, 0
    if DEV.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in these figures
        name = torch.cuda.get_device_name(0)
    else:
        name = "CPU (dry run: Triton interpreter, times meaningless)"
    from dimsum.ops.selective_scan_triton import triton_env_note

    print(f"device: {name}; torch {torch.__version__}; {triton_env_note()}")
    section_parity(s)
    section_kernel(s)
    torch.manual_seed(0)
    if a.dry_run:
        cfg = dataclasses.replace(get_preset("emoji-XS"), input_size=8, depth=2)
        model = build_model(cfg).to(DEV).eval()
    else:
        model = build_model(s["big"], device=DEV).eval()
    section_guided(s, model)
    section_train(s)
    section_e2e(s, model)


if __name__ == "__main__":
    main()
