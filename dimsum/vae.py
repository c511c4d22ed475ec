"""The SD VAE that latent DiMSUM models decode with (diffusers `AutoencoderKL`).

The released models are latent models of `stabilityai/sd-vae-ft-ema` (SPEC section 5): the
network samples 32x32x4 latents, `vae.decode(latents / 0.18215)` gives 256x256 RGB. Offline, the
VAE loads from a local folder; `SD_VAE_CONFIG` is its architecture as data, so tests and
benchmarks build the full-size VAE with random weights without the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import SD_VAE, DiMSUMConfig
from .validation import InputError

# stabilityai/sd-vae-ft-ema's config.json (the architecture; weights need the hub or a folder).
SD_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=256,
    scaling_factor=0.18215,
)


# Cheap latent -> RGB map for SD-VAE latents (per-step previews; the VAE decodes only the end).
# Rows: the 4 latent channels; columns: R, G, B. A widely used linear fit for SD 1.x latents.
SD_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)


class VAEUnavailableError(RuntimeError):
    """A latent model's VAE could not be loaded (offline, or diffusers missing)."""


def load_vae(vae: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """diffusers AutoencoderKL from a local folder or a hub id (cache only when offline)."""
    try:  # deliberately lazy: diffusers is optional (the `latent` extra) and slow to import
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise VAEUnavailableError(
            "this is a latent model: decoding needs the SD VAE through `diffusers` "
            "(pip install diffusers), then a local VAE folder or hub access"
        ) from err
    try:
        # low_cpu_mem_usage=False: the default without `accelerate`, said so (no warning).
        vae_module = AutoencoderKL.from_pretrained(str(vae), low_cpu_mem_usage=False)
        return vae_module.to(device).eval()
    except Exception as err:  # noqa: BLE001
        raise VAEUnavailableError(
            f"cannot load the VAE {str(vae)!r} ({type(err).__name__}). Offline? Download "
            f"`stabilityai/sd-vae-ft-ema` on a connected machine (`hf download "
            f"stabilityai/sd-vae-ft-ema --local-dir DIR`) and pass --vae DIR / DIMSUM_VAE=DIR."
        ) from err


def resolve_vae(
    config: DiMSUMConfig,
    vae: str | Path | torch.nn.Module | None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module | None:
    """The VAE a model decodes with: the explicit `vae` (path, hub id or module) first, else the
    model's `config.vae`, else the SD VAE; None for a pixel model (and an error if one was given,
    so an explicit VAE is never silently ignored)."""
    if config.space != "latent":
        if vae is not None:
            raise InputError(
                f"a VAE ({vae if isinstance(vae, (str, Path)) else type(vae).__name__}) was given "
                f"for a pixel-space model ({config.in_channels} input channels): only latent "
                f"models (4 channels, e.g. the released DiM-L/2) decode through a VAE"
            )
        return None
    if isinstance(vae, torch.nn.Module):
        return vae.to(device).eval()
    return load_vae(vae or config.vae or SD_VAE, device)


def random_vae(config: dict[str, Any] | None = None, seed: int = 0) -> torch.nn.Module:
    """An AutoencoderKL with random weights (default: the SD VAE's full architecture)."""
    from diffusers import AutoencoderKL  # deliberately lazy: optional (the `latent` extra)

    torch.manual_seed(seed)
    return AutoencoderKL(**(config or SD_VAE_CONFIG)).eval()
