"""dimsum: DiMSUM (Diffusion Mamba, spatial + frequency) in plain PyTorch.

import dimsum
model = dimsum.load_checkpoint("checkpoints/")          # ours, or an official file
model = dimsum.build_model("L2-imagenet256", device="meta")
"""

from __future__ import annotations

import torch

from ._version import __version__
from .config import PRESETS, DiMSUMConfig, get_preset
from .models import DiMSUM


def build_model(
    preset_or_config: str | DiMSUMConfig | dict,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> DiMSUM:
    """Build a randomly initialised model from a preset name, a config, or a config dict.

    `device="meta"` builds the structure without allocating weights (e.g. to check the
    1.8 GB official architectures against their manifests).
    """
    if isinstance(preset_or_config, str):
        config = get_preset(preset_or_config)
    elif isinstance(preset_or_config, dict):
        config = DiMSUMConfig.from_dict(preset_or_config)
    elif isinstance(preset_or_config, DiMSUMConfig):
        config = preset_or_config
    else:
        raise TypeError(
            f"preset_or_config must be a preset name, DiMSUMConfig or dict, got {type(preset_or_config).__name__}"
        )
    with torch.device(device or "cpu"):
        model = DiMSUM(config)
    # The scan permutations are cached CPU tensors (scan_orders.py), which the device context
    # does not move: without this, a model built on CUDA kept its index buffers on the CPU.
    model = model.to(device or "cpu")
    if dtype is not None:
        model = model.to(dtype)
    return model


def __getattr__(name: str):
    # Lazy imports keep `import dimsum` light (the app and CLI import only what they use).
    if name in ("load_checkpoint", "save_pretrained", "CheckpointError"):
        from . import checkpoints

        return getattr(checkpoints, name)
    if name in ("sample_ode", "flow_matching_loss", "Trajectory"):
        from . import flow

        return getattr(flow, name)
    if name in ("DiMSUMPipeline",):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'dimsum' has no attribute {name!r}")


__all__ = [
    "__version__",
    "DiMSUM",
    "DiMSUMConfig",
    "PRESETS",
    "get_preset",
    "build_model",
    "load_checkpoint",
    "save_pretrained",
    "sample_ode",
    "flow_matching_loss",
    "DiMSUMPipeline",
]
