"""App settings: command line, environment, limits for a public server.

Everything the app reads from the environment is read here, once, so the rest of the code
receives an `AppConfig` and never looks at `os.environ`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from dimsum.validation import Limits

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints"
DEFAULT_ABLATION_CHECKPOINTS = REPO_ROOT / "checkpoints" / "ablation"
DEFAULT_ABLATION_CURVES = REPO_ROOT / "assets" / "ablation" / "curves.json"
OFFICIAL_IMAGENET_HUB_ID = "haopt/dimsum-L2-imagenet256"

# A public server bounds every request: at most 16 images, 250 steps (fixed-step samplers),
# guidance up to 20, and images x evaluations x tokens at most that of 4 images x 250 guided
# Heun steps on a 16x16 token grid (16 images x 62 guided Heun steps) - one request may not
# hold the sampling queue for long.
APP_LIMITS = Limits(max_images=16, max_steps=250, max_cfg=20.0, max_work=4 * 250 * 2 * 2 * 256)


def _cuda() -> bool:
    import torch

    # ZeroGPU: no GPU is attached at start-up, but models go to "cuda" then (spaces defers it).
    return torch.cuda.is_available() or on_zerogpu()


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (GPUs are leased per call; models must be on "cuda" at start)."""
    try:
        import spaces  # type: ignore[import-not-found]

        return bool(spaces.config.Config.zero_gpu)
    except Exception:  # noqa: BLE001 - no spaces package, or an older one
        return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class AppConfig:
    """What the app serves and how; built by `parse_args` (CLI + environment)."""

    checkpoint: str | None = None  # None: the embedded default (checkpoints/) if present
    vae: str | None = None
    online: bool = False  # may the app download from the Hugging Face hub?
    allow_custom_models: bool = True  # may users load paths / hub ids from the UI?
    ablation_checkpoints: Path = DEFAULT_ABLATION_CHECKPOINTS
    ablation_curves: Path = DEFAULT_ABLATION_CURVES
    limits: Limits = field(default_factory=lambda: APP_LIMITS)
    queue_size: int = 16
    max_loaded_models: int = 2
    run_memory_mb: int = 512  # all sessions' stored runs together
    threads: int | None = None  # torch intra-op threads (None: leave torch's default)
    device: str = field(default_factory=lambda: "cuda" if _cuda() else "cpu")
    # Mixed precision of the network: "auto" = bf16 autocast on GPUs that have it, fp32 on
    # CPUs; "fp32", "bf16", "fp16" force one.
    precision: str = "auto"
    # x̂ of a latent run's scrubbed steps through the VAE: "auto" (on a GPU), "always", "never".
    vae_previews: str = "auto"
    # Released models first (default model and loaded at start): on a Space with a GPU.
    prefer_released: bool = False
    server_name: str | None = None  # None: gradio reads GRADIO_SERVER_NAME (default 127.0.0.1)
    server_port: int | None = None  # None: gradio reads GRADIO_SERVER_PORT (default 7860)

    @property
    def public(self) -> bool:
        """Running as a public Space: stricter defaults (no arbitrary local paths)."""
        return bool(os.environ.get("SPACE_ID"))


def parse_args(argv: list[str] | None = None) -> AppConfig:
    p = argparse.ArgumentParser(description="DiMSUM explorer (Gradio app)")
    p.add_argument(
        "--checkpoint",
        default=os.environ.get("DIMSUM_CHECKPOINT"),
        help="model folder/file or hub id (default: $DIMSUM_CHECKPOINT, else checkpoints/)",
    )
    p.add_argument(
        "--vae", default=os.environ.get("DIMSUM_VAE"), help="SD VAE folder for latent models"
    )
    p.add_argument(
        "--online",
        action="store_true",
        default=_env_flag("DIMSUM_ONLINE", default=bool(os.environ.get("SPACE_ID"))),
        help="allow downloads from the Hugging Face hub (default: offline unless on Spaces)",
    )
    p.add_argument(
        "--no-custom-models",
        action="store_true",
        default=not _env_flag("DIMSUM_ALLOW_CUSTOM", default=not os.environ.get("SPACE_ID")),
        help="hide loading arbitrary paths / hub ids from the UI",
    )
    p.add_argument("--ablation-checkpoints", default=os.environ.get("DIMSUM_ABLATION_CHECKPOINTS"))
    p.add_argument("--ablation-curves", default=os.environ.get("DIMSUM_ABLATION_CURVES"))
    p.add_argument("--queue-size", type=int, default=_env_int("DIMSUM_QUEUE_SIZE", 16))
    p.add_argument("--threads", type=int, default=_env_int("DIMSUM_THREADS", 0) or None)
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=os.environ.get("DIMSUM_PRECISION", "auto"),
        help="network precision (auto: bf16 autocast on a GPU that has it, else fp32)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=os.environ.get("DIMSUM_DEVICE", "auto"),
        help="where the models run (auto: cuda when a GPU or ZeroGPU is there, else cpu)",
    )
    p.add_argument(
        "--vae-previews",
        choices=["auto", "always", "never"],
        default=os.environ.get("DIMSUM_VAE_PREVIEWS", "auto"),
        help="decode a latent run's scrubbed steps with the VAE (auto: on a GPU)",
    )
    p.add_argument(
        "--released-first",
        action="store_true",
        default=_env_flag("DIMSUM_RELEASED_FIRST", default=False),
        help="open on the released ImageNet model and load it at start "
        "(default on a Space with a GPU)",
    )
    p.add_argument("--host", default=None, help="bind address (default: $GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT)")
    a = p.parse_args(argv)
    device = a.device if a.device != "auto" else ("cuda" if _cuda() else "cpu")
    return AppConfig(
        device=device,
        precision=a.precision,
        vae_previews=a.vae_previews,
        prefer_released=a.released_first or (bool(os.environ.get("SPACE_ID")) and device == "cuda"),
        checkpoint=a.checkpoint or None,
        vae=a.vae or None,
        online=a.online,
        allow_custom_models=not a.no_custom_models,
        ablation_checkpoints=Path(a.ablation_checkpoints)
        if a.ablation_checkpoints
        else DEFAULT_ABLATION_CHECKPOINTS,
        ablation_curves=Path(a.ablation_curves) if a.ablation_curves else DEFAULT_ABLATION_CURVES,
        queue_size=max(1, a.queue_size),
        threads=a.threads,
        server_name=a.host,
        server_port=a.port,
    )
