"""Fixed-step accuracy: the karras step schedule vs the uniform one, against the exact ODE.

    python benchmarks/bench_time_grid.py --samples 32 --steps 10 20 40

Baseline, in the same run: Heun on the uniform grid t_i = i / N (what the app used before).
Both are measured against a tight dopri5 solution (atol = rtol = 1e-5) of the same guided
ODE from the same noise, on the shipped model (or --checkpoint), guidance 4, classes cycling
through all categories. Prints, per step count, the RMSE of the final state and the mean
absolute pixel difference (0-255) of each schedule, and the ratio uniform / karras; the
official dopri5 settings (atol 1e-6, rtol 1e-3) are given as a second point of reference.
The error is that of the numerical integration only: how far an image is from the one the
model defines, not a quality score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchdiffeq import odeint

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dimsum.flow import sample_ode  # noqa: E402
from dimsum.pipeline import DiMSUMPipeline  # noqa: E402


def errors(x: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(RMSE of the state, mean |pixel difference| on the 0-255 scale after clamping)."""
    rmse = (x - ref).pow(2).mean().sqrt().item()
    pixels = (x.clamp(-1, 1) - ref.clamp(-1, 1)).abs().mean().item() * 127.5
    return rmse, pixels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    pipe = DiMSUMPipeline.from_pretrained(a.checkpoint, device="cpu")
    model, n_cls = pipe.model.eval(), pipe.config.num_classes
    y = torch.tensor([i % n_cls for i in range(a.samples)])
    x0 = pipe.noise([10_000 + i for i in range(a.samples)]).float()

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.guided_velocity(x, t.reshape(1).expand(x.shape[0]), y, a.cfg).clone()

    start = time.perf_counter()
    ref = odeint(velocity, x0, torch.tensor([0.0, 1.0]), method="dopri5", atol=1e-5, rtol=1e-5)
    ref = ref[-1]
    print(f"reference: dopri5 atol=rtol=1e-5, {time.perf_counter() - start:.0f} s")
    official = odeint(
        velocity, x0, torch.linspace(0, 1, 20), method="dopri5", atol=1e-6, rtol=1e-3
    )[-1]
    rmse, pixels = errors(official, ref)
    print(f"official dopri5 (atol 1e-6, rtol 1e-3): RMSE {rmse:.4f}, mean |dpixel| {pixels:.2f}")

    print(
        f"{'Heun steps':>10} {'evals':>5} | {'uniform RMSE':>12} {'|dpx|':>6} | "
        f"{'karras RMSE':>11} {'|dpx|':>6} | {'ratio RMSE':>10} {'ratio |dpx|':>11}"
    )
    for n in a.steps:
        out = {}
        for schedule in ("uniform", "karras"):
            x = sample_ode(
                lambda x, t: velocity(t[0], x), x0, method="heun", num_steps=n, schedule=schedule
            )
            out[schedule] = errors(x, ref)
        (ur, up), (kr, kp) = out["uniform"], out["karras"]
        print(
            f"{n:>10} {2 * n:>5} | {ur:>12.4f} {up:>6.2f} | {kr:>11.4f} {kp:>6.2f} | "
            f"{ur / kr:>10.2f} {up / kp:>11.2f}"
        )


if __name__ == "__main__":
    main()
