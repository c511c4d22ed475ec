"""The released model (DiM-L/2 + SD VAE): load memory, guided evaluation, end to end.

    python benchmarks/bench_released.py                          # CPU, random-weight stand-ins
    python benchmarks/bench_released.py --device cuda            # one GPU (H100 / H200)
    python benchmarks/bench_released.py --checkpoint DIR --vae DIR   # the real files
    python benchmarks/bench_released.py --dry-run                # tiny model, every part, ~1 min

Without --checkpoint the files are written once into --cache (a 1.8 GB `pytorch_model.bin` of
DiM-L/2 in the official bare-state-dict form, and the SD VAE's architecture), random weights:
the same files, shapes and code paths as the released ones. Measures, each against a baseline
taken in the same run:
1. load: peak RSS of a fresh process that loads model + VAE, vs the files' size (target <= 1.3x);
2. one guided evaluation (batch 2 = one image, batch 8 = four) in fp32 and bf16 autocast, and
   one guided Euler step of one 256x256 image with the VAE decode (CPU target <= 3 s in bf16);
3. [cuda] the parity tests on CUDA (`DIMSUM_TEST_DEVICE=cuda pytest tests/test_parity.py`);
4. 4 images, Heun 20, guidance 4, VAE decode, through the app's HTTP API: click to final images
   (GPU target <= 3 s), and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from dimsum.config import DiMSUMConfig  # noqa: E402
from dimsum.pipeline import DiMSUMPipeline  # noqa: E402
from dimsum.standins import write_released_standin, write_vae_standin  # noqa: E402

TINY_MODEL = DiMSUMConfig(input_size=16, in_channels=4, hidden_size=64, depth=4, num_classes=10)
TINY_VAE = dict(
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[8, 16],
    latent_channels=4,
    norm_num_groups=4,
    layers_per_block=1,
)

LOAD_PROBE = """
import json, sys, torch
from dimsum.pipeline import DiMSUMPipeline

def kib(field):  # this process's own counters (ru_maxrss would carry the parent's peak over exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

before = kib("VmRSS")
pipe = DiMSUMPipeline.from_pretrained(sys.argv[1], vae=sys.argv[2])
loaded = kib("VmHWM")  # the weights are memory-mapped: resident once a forward reads them
pipe([0], [0], num_steps=1, method="euler", return_trajectory=False)
print(json.dumps({"peak_kb": kib("VmHWM"), "loaded_kb": loaded, "start_kb": before}))
"""


def files(checkpoint: str | None, vae: str | None, cache: Path, dry: bool) -> tuple[Path, Path]:
    if checkpoint and vae:
        return Path(checkpoint), Path(vae)
    model_dir = cache / ("tiny" if dry else "dimsum-L2-imagenet256")
    vae_dir = cache / ("tiny-vae" if dry else "sd-vae-ft-ema")
    if not (model_dir / "pytorch_model.bin").is_file():
        print(f"writing the stand-in weights to {model_dir} (once)...", flush=True)
        write_released_standin(model_dir, TINY_MODEL if dry else "L2-imagenet256")
    if not (vae_dir / "config.json").is_file():
        write_vae_standin(vae_dir, TINY_VAE if dry else None)
    return model_dir, vae_dir


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def load_memory(model_dir: Path, vae_dir: Path) -> str:
    """Peak RSS of a fresh process loading both, over the bytes of the files it reads."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, str(model_dir), str(vae_dir)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    weights = size_bytes(model_dir) + size_bytes(vae_dir)
    peak = probe["peak_kb"] * 1024
    base = probe["start_kb"] * 1024  # python + torch before anything is loaded
    loaded = probe["loaded_kb"] * 1024
    return (
        f"load + one sample: peak RSS {peak / 2**30:.2f} GiB (interpreter + torch "
        f"{base / 2**30:.2f} GiB; {loaded / 2**30:.2f} GiB right after loading, the weights "
        f"memory-mapped) for {weights / 2**30:.2f} GiB of files: {(peak - base) / weights:.2f}x "
        f"the files (target <= 1.3x)"
    )


def seconds(fn, repeats: int, sync: bool) -> float:
    fn()  # warm-up (kernel compile, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def guided_evaluations(pipe: DiMSUMPipeline, repeats: int) -> list[str]:
    cfg, dev = pipe.config, pipe.device
    lines, base = [], {}
    for dtype in (None, torch.bfloat16):
        pipe.autocast = dtype
        name = "bf16" if dtype else "fp32"
        for images in (1, 4):
            # guided_velocity appends the null-class copies itself: `images` rows in, 2x the batch
            x = torch.randn(images, cfg.in_channels, cfg.input_size, cfg.input_size, device=dev)
            t = torch.full((images,), 0.5, device=dev)
            y = torch.arange(images, device=dev) % cfg.num_classes

            def call(x=x, t=t, y=y) -> None:
                with pipe.network_mode():
                    pipe.model.guided_velocity(x, t, y, 4.0)

            # as in a sampling run: the weights' casts are made once (in the warm-up call)
            with pipe.weight_cast_cache():
                s = seconds(call, repeats, dev.type == "cuda")
            base.setdefault(images, s)
            lines.append(
                f"guided evaluation, {images} image(s) (batch {2 * images}), {name}: {s * 1e3:.1f} ms"
                f" ({base[images] / s:.2f}x fp32)"
            )
    for dtype in (None, torch.bfloat16):
        pipe.autocast = dtype

        def step() -> None:  # no trajectory: no extra evaluation at t = 1, just the step
            pipe([207 % cfg.num_classes], [0], num_steps=1, method="euler", return_trajectory=False)

        s = seconds(step, repeats, dev.type == "cuda")
        lines.append(
            f"one guided Euler step of one image + VAE decode, {'bf16' if dtype else 'fp32'}: "
            f"{s:.2f} s (CPU target <= 3 s in bf16)"
        )
    pipe.autocast = None
    return lines


def cuda_parity() -> str:
    env = dict(os.environ, DIMSUM_TEST_DEVICE="cuda")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_parity.py", "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    return "parity on CUDA: " + (proc.stdout.strip().splitlines() or ["no output"])[-1]


def app_end_to_end(model_dir: Path, vae_dir: Path, device: str, steps: int, repeats: int) -> str:
    """Click to final images through the HTTP API, as the page sees it (the app's precision:
    bf16 autocast on GPUs that have it)."""
    from gradio_client import Client

    from app.config import AppConfig
    from app.testing import start_server

    config = AppConfig(checkpoint=str(model_dir), vae=str(vae_dir), device=device, threads=None)
    server = start_server(config)
    try:
        client = Client(server.url, verbose=False)
        label = (
            "207"
            if server.explorer.registry.get(server.explorer.default_key).config.num_classes > 207
            else "3"
        )
        request = (label, "0", steps, "heun", 4.0, 4)
        client.predict(*request, api_name="/generate")  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for seed in range(repeats):
            start = time.perf_counter()
            client.predict(label, str(seed + 1), *request[2:], api_name="/generate")
            times.append(time.perf_counter() - start)
        peak = (
            f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            if device == "cuda"
            else ""
        )
        return (
            f"app API, 4 images, Heun {steps}, guidance 4, VAE decode: click to final images "
            f"{statistics.median(times):.2f} s median of {repeats}{peak}"
        )
    finally:
        server.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--checkpoint", help="a released model folder (default: stand-ins)")
    p.add_argument("--vae", help="an SD VAE folder (default: stand-in)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "released-standins"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--app-steps", type=int, default=20, help="Heun steps of the app run")
    p.add_argument("--skip-app", action="store_true", help="no app end-to-end run")
    p.add_argument("--dry-run", action="store_true", help="tiny model: every part, quickly")
    a = p.parse_args()
    if a.dry_run:
        a.repeats, a.app_steps = 1, 2
    torch.backends.cuda.matmul.allow_tf32 = True
    card = (
        torch.cuda.get_device_name()
        if a.device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"# bench_released on {card}, torch {torch.__version__}{' (dry run)' if a.dry_run else ''}"
    )
    model_dir, vae_dir = files(a.checkpoint, a.vae, Path(a.cache), a.dry_run)
    print(load_memory(model_dir, vae_dir), flush=True)
    pipe = DiMSUMPipeline.from_pretrained(model_dir, vae=vae_dir, device=a.device)
    for line in guided_evaluations(pipe, a.repeats):
        print(line, flush=True)
    del pipe
    if a.device == "cuda":
        print(cuda_parity(), flush=True)
    if not a.skip_app:
        print(app_end_to_end(model_dir, vae_dir, a.device, a.app_steps, a.repeats), flush=True)


if __name__ == "__main__":
    main()
