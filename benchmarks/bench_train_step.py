"""Training-step time of a preset across batch sizes: is a step bound by kernel launches or by work?

    python benchmarks/bench_train_step.py --device cuda --batch-sizes 128 512 2048
    python benchmarks/bench_train_step.py --batch-sizes 8 32        # CPU

One step = flow-matching loss, backward, grad clipping, AdamW (what `dimsum train` does, without
the data sampling). Two variants per batch size: ``sync`` reads the loss every step (`.item()`, as
the training loop's log does), ``async`` reads it once at the end. The ratio column divides each
batch's step time by the smallest batch's in the same run: ~1 means the step is launch-bound (a
bigger batch is free), ~batch ratio means it is bound by work.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dimsum import build_model  # noqa: E402
from dimsum.flow import flow_matching_loss  # noqa: E402


def time_steps(model, opt, batch: int, steps: int, device: torch.device, sync: bool) -> float:
    """Mean seconds per training step over `steps` steps, after 3 warm-up steps."""
    cfg = model.config
    x1 = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)

    def one() -> torch.Tensor:
        loss, _ = flow_matching_loss(partial(model, y=y), x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        return loss

    for _ in range(3):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses = []
    for _ in range(steps):
        loss = one()
        if sync:
            loss.item()
        else:
            losses.append(loss.detach())
    if losses:  # the async variant's one read at the end (waits for the queued work)
        torch.stack(losses).sum().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="emoji-XS")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="then profile N steps at the last batch size and print the top ops (torch.profiler)",
    )
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(a.preset).to(device)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{a.preset} on {name}, torch {torch.__version__}, {a.steps} steps per row\n")
    print(
        "| batch | sync ms/step | async ms/step | images/s (async) | step time / smallest batch's |"
    )
    print("|---|---|---|---|---|")
    base = None
    for b in a.batch_sizes:
        s = time_steps(model, opt, b, a.steps, device, sync=True)
        n = time_steps(model, opt, b, a.steps, device, sync=False)
        base = base or n
        print(f"| {b} | {s * 1e3:.1f} | {n * 1e3:.1f} | {b / n:.0f} | {n / base:.2f} |")
    if a.profile:
        profile_steps(model, opt, a.batch_sizes[-1], a.profile, device)


def profile_steps(model, opt, batch: int, steps: int, device: torch.device) -> None:
    """Where a training step's time goes: the top ops by self time on the device (CPU: CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        time_steps(model, opt, batch, steps, device, sync=True)  # includes its 3 warm-up steps
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nprofile: {steps} + 3 warm-up steps at batch {batch}, sorted by {key}")
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
