"""Mamba layout: token-major (ours) vs channel-major (mamba-ssm's) in the full network forward.

    python benchmarks/bench_mamba_layout.py --threads 2 --rounds 12

Baseline, in the same process: the Mamba mixer written as mamba-ssm writes it, channel-major
(N, d, L) around the conv and the scan: the in_proj output transposed, nn.Conv1d, and the C++ row
scan, with the transposing copies that layout needs. Ours: `dimsum.models.mamba.Mamba.forward`
(token-major: fused causal conv + SiLU and the scan reading x, z, B, C in place). The two are
interleaved round by round (this VM's speed drifts), on the shipped checkpoint, a guided batch of
4 images (8 rows), under inference mode; the outputs are checked equal first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dimsum.checkpoints import load_checkpoint  # noqa: E402
from dimsum.models import mamba  # noqa: E402
from dimsum.ops import selective_scan_fn  # noqa: E402
from dimsum.runtime import keep_freed_memory  # noqa: E402


def channel_major_forward(self: mamba.Mamba, u: torch.Tensor) -> torch.Tensor:
    """The baseline: mamba-ssm's (N, d, L) layout."""
    seqlen = u.shape[1]
    x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)
    x = F.silu(self.conv1d(x)[..., :seqlen])
    dt, B, C = torch.split(
        self.x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1
    )
    y = selective_scan_fn(
        x,
        (dt @ self.dt_proj.weight.t()).transpose(1, 2),
        -torch.exp(self.A_log.float()),
        B.transpose(1, 2),
        C.transpose(1, 2),
        self.D.float(),
        z=z,
        delta_bias=self.dt_proj.bias.float(),
        delta_softplus=True,
    )
    return self.out_proj(y.transpose(1, 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--forwards", type=int, default=20, help="timed forwards per round")
    a = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(a.threads)
    model = load_checkpoint(a.checkpoint).eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(8, 3, 32, 32, generator=g), torch.rand(8, generator=g)
    y = torch.randint(0, model.config.num_classes, (8,), generator=g)
    ours = mamba.Mamba.forward
    variants = {"channel-major (baseline)": channel_major_forward, "token-major (ours)": ours}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        outs = []
        for fn in variants.values():
            mamba.Mamba.forward = fn
            outs.append(model(x, t, y))
        err = (outs[0] - outs[1]).abs().max().item() / outs[0].abs().max().item()
        print(f"{model.config.name}, {a.threads} threads; outputs agree to {err:.1e} (relative)")
        for r in range(a.rounds):
            order = list(variants.items())
            for name, fn in order if r % 2 == 0 else order[::-1]:
                mamba.Mamba.forward = fn
                for _ in range(3):
                    model(x, t, y)
                start = time.perf_counter()
                for _ in range(a.forwards):
                    model(x, t, y)
                times[name].append((time.perf_counter() - start) / a.forwards * 1e3)
    mamba.Mamba.forward = ours
    base, new = times["channel-major (baseline)"], times["token-major (ours)"]
    ratios = [n / b for n, b in zip(new, base, strict=True)]
    print("| layout | median ms per guided forward (batch 8) |")
    print("| --- | ---: |")
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v):.1f} |")
    print(
        f"paired ratio ours / baseline: median {statistics.median(ratios):.3f}, "
        f"range {min(ratios):.3f}-{max(ratios):.3f} over {a.rounds} rounds"
    )


if __name__ == "__main__":
    main()
