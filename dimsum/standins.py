"""Released files with random weights, for tests and benchmarks where the hub is unreachable.

    folder = write_released_standin("/tmp/imnet", "L2-imagenet256")  # pytorch_model.bin, 1.8 GB
    vae = write_vae_standin("/tmp/sd-vae")                             # SD VAE architecture

The files have the released forms exactly (a bare float32 state dict named `pytorch_model.bin`,
a diffusers VAE folder), so everything that reads them takes the same path as for the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import DiMSUMConfig, get_preset
from .models import DiMSUM
from .vae import random_vae


def write_released_standin(
    folder: str | Path, preset: str | DiMSUMConfig = "L2-imagenet256", seed: int = 0
) -> Path:
    """`folder/pytorch_model.bin`: a bare state dict of `preset`'s architecture, random weights
    (small noise on top of the official init, whose zeroed output layer would make every image
    the same)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = DiMSUM(get_preset(preset) if isinstance(preset, str) else preset)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def write_vae_standin(folder: str | Path, config: dict[str, Any] | None = None) -> Path:
    """A diffusers AutoencoderKL folder (default: the SD VAE's architecture), random weights."""
    random_vae(config).save_pretrained(folder)
    return Path(folder)
