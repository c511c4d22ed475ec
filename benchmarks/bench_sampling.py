"""Wall time and NFE of the flow-matching ODE samplers, with and without CFG.

    python benchmarks/bench_sampling.py                       # dimsum "emoji-S" if it builds
    python benchmarks/bench_sampling.py --device cuda --repeats 3
    python benchmarks/bench_sampling.py --fallback            # force the small stand-in net

Any callable works: ``run_benchmark`` takes ``model(x, t, y) -> velocity`` plus the input
geometry. The CLI tries ``dimsum.build_model(preset)`` (random weights; a real checkpoint
changes dopri5's NFE, which depends on how smooth the learned field is) and falls back to a
small conv net when the package or the model is not usable yet. The table says which ran.

CFG evaluates the model once per NFE on a doubled batch ``[x, x]`` with labels
``[y, null]`` and combines ``uncond + s * (cond - uncond)`` (official DiMSUM / DiT).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def _import_flow():
    """``dimsum.flow``, or the subpackage loaded on its own if ``dimsum`` does not import."""
    try:
        import dimsum.flow as flow

        return flow
    except ImportError:
        root = ROOT / "dimsum" / "flow"
        spec = importlib.util.spec_from_file_location(
            "_dimsum_flow_standalone", root / "__init__.py", submodule_search_locations=[str(root)]
        )
        flow = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = flow
        spec.loader.exec_module(flow)
        return flow


flow = _import_flow()


class TinyVelocityNet(nn.Module):
    """Stand-in velocity net: (N, C, H, W), t (N,), y (N,) -> (N, C, H, W)."""

    def __init__(self, channels: int = 3, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.label = nn.Embedding(num_classes + 1, width)  # + null class for CFG
        self.time = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.time(t[:, None].float()) + self.label(y)
        h = self.inp(x) + c[:, :, None, None]
        return self.out(h + self.body(h))


@dataclass
class ModelSpec:
    model: ModelFn
    name: str
    channels: int
    size: int
    num_classes: int
    null_class: int


def build_model(preset: str, device: torch.device, force_fallback: bool) -> ModelSpec:
    """``dimsum.build_model(preset)`` when it builds and runs a forward pass, else the stand-in."""
    if not force_fallback:
        try:
            import dimsum

            net = dimsum.build_model(preset).to(device).eval()
            cfg = net.config
            c, size = cfg.in_channels, cfg.input_size
            null = cfg.num_classes  # index of the learned null label (learn_null_class)
            with torch.no_grad():  # smoke test: the package may be mid-development
                net(
                    torch.zeros(1, c, size, size, device=device),
                    torch.zeros(1, device=device),
                    torch.zeros(1, dtype=torch.long, device=device),
                )

            def model(x, t, y):
                return net(x, t, y)[:, :c]  # drop learned-sigma channels if any

            n_params = sum(p.numel() for p in net.parameters()) / 1e6
            return ModelSpec(
                model,
                f"dimsum {preset} ({n_params:.2f}M params, random init)",
                c,
                size,
                cfg.num_classes,
                null,
            )
        except Exception:  # noqa: BLE001 - any failure means "not usable yet"
            print(
                f"[bench] dimsum.build_model({preset!r}) unavailable, using the stand-in net:",
                file=sys.stderr,
            )
            traceback.print_exc(limit=2, file=sys.stderr)
    torch.manual_seed(0)
    net = TinyVelocityNet().to(device).eval()
    n_params = sum(p.numel() for p in net.parameters()) / 1e6
    return ModelSpec(
        net, f"fallback TinyVelocityNet ({n_params:.2f}M params, random init)", 3, 32, 10, 10
    )


def make_velocity_fn(spec: ModelSpec, y: torch.Tensor, cfg_scale: float | None) -> Callable:
    """``velocity_fn(x, t)`` for the sampler; with ``cfg_scale`` one 2N-batch pass per call."""
    if cfg_scale is None:
        return lambda x, t: spec.model(x, t, y)
    y2 = torch.cat([y, torch.full_like(y, spec.null_class)])

    def velocity_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = spec.model(torch.cat([x, x]), torch.cat([t, t]), y2).chunk(2)
        return uncond + cfg_scale * (cond - uncond)

    return velocity_fn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_benchmark(
    spec: ModelSpec,
    *,
    device: torch.device,
    batch_sizes: list[int],
    steps: list[int],
    dopri5_grid: int = 250,
    cfg_scale: float = 4.0,
    repeats: int = 1,
    path: str = "gvp",
    methods: tuple[str, ...] = ("euler", "heun", "dopri5"),
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Time every (method, steps, batch, cfg) combination; median wall time over repeats."""
    configs = [(m, n) for m in ("euler", "heun") if m in methods for n in steps]
    if "dopri5" in methods:
        configs.append(("dopri5", dopri5_grid))
    rows = []
    for batch in batch_sizes:
        g = torch.Generator().manual_seed(batch)
        x0 = torch.randn(batch, spec.channels, spec.size, spec.size, generator=g).to(device)
        y = torch.randint(0, spec.num_classes, (batch,), generator=g).to(device)
        for use_cfg in (False, True):
            base = make_velocity_fn(spec, y, cfg_scale if use_cfg else None)
            with torch.no_grad():  # warm-up (allocator, kernels, lazy init)
                for _ in range(2):
                    base(x0, torch.full((batch,), 0.5, device=device))
            for method, n in configs:
                times, nfe = [], 0
                for _ in range(repeats):
                    calls = [0]

                    def counted(x, t, _base=base, _calls=calls):
                        _calls[0] += 1
                        return _base(x, t)

                    _sync(device)
                    start = time.perf_counter()
                    out = flow.sample_ode(counted, x0, path=path, method=method, num_steps=n)
                    _sync(device)
                    times.append(time.perf_counter() - start)
                    nfe = calls[0]
                    assert torch.isfinite(out).all()
                wall = statistics.median(times)
                row = {
                    "method": method,
                    "steps": "adaptive" if method == "dopri5" else n,
                    "batch": batch,
                    "cfg": f"s={cfg_scale:g}" if use_cfg else "no",
                    "forward_batch": 2 * batch if use_cfg else batch,
                    "nfe": nfe,
                    "wall_s": wall,
                    "ms_per_nfe": 1e3 * wall / max(nfe, 1),
                }
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


TABLE_HEAD = (
    "| method | steps | batch | CFG | fwd batch | NFE | wall (s) | ms / NFE |\n"
    "|---|---:|---:|---|---:|---:|---:|---:|"
)


def format_row(r: dict) -> str:
    return (
        f"| {r['method']} | {r['steps']} | {r['batch']} | {r['cfg']} | {r['forward_batch']} "
        f"| {r['nfe']} | {r['wall_s']:.3f} | {r['ms_per_nfe']:.2f} |"
    )


def format_table(rows: list[dict]) -> str:
    return "\n".join([TABLE_HEAD, *map(format_row, rows)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="emoji-S")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--dopri5-grid", type=int, default=250, help="output grid points (official 250)")
    p.add_argument("--cfg-scale", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--path", default="gvp", choices=["gvp", "linear"])
    p.add_argument("--methods", nargs="+", default=["euler", "heun", "dopri5"])
    p.add_argument("--fallback", action="store_true", help="use the stand-in net")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = build_model(args.preset, device, args.fallback)
    dev = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"\nModel: {spec.name}; input ({spec.channels}, {spec.size}, {spec.size}); "
        f"path {args.path}; device: {dev}; torch {torch.__version__}; "
        f"median of {args.repeats} run(s); dopri5 atol=1e-6 rtol=1e-3, grid {args.dopri5_grid}.\n"
    )
    print(TABLE_HEAD, flush=True)  # rows are printed as they finish
    rows = run_benchmark(
        spec,
        device=device,
        batch_sizes=args.batch_sizes,
        steps=args.steps,
        dopri5_grid=args.dopri5_grid,
        cfg_scale=args.cfg_scale,
        repeats=args.repeats,
        path=args.path,
        methods=tuple(args.methods),
        on_row=lambda r: print(format_row(r), flush=True),
    )
    total = sum(r["wall_s"] for r in rows) * args.repeats
    print(
        f"\n(total timed: {total:.1f} s; NFE = velocity_fn calls; with CFG each is one forward "
        f"on a 2x batch)"
    )


if __name__ == "__main__":
    main()
