"""Model configuration as data, and the named presets.

A `DiMSUMConfig` fully describes a network: it is what `save_pretrained` writes to `config.json`
and what `build_model` consumes. The released (official) architectures and our own small
pixel-space models are both presets here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK_TYPES = ("combined", "spatial", "attention")
MAX_TEMPERATURE = 2.0  # initial-noise scale; beyond 2 the ODE starts far off its trained prior


@dataclass
class DiMSUMConfig:
    """Architecture of a DiMSUM network (and of the ablation variants built from the same code).

    input_size: side of the (latent) image the network sees, e.g. 32 for 256-px latents.
    num_classes: number of real classes. The label table has `num_classes + learn_null_class`
        rows; the last row is what `y=None` selects (the null class when there is one).
    block_type: "combined" (official DiMSUM), "spatial" (both halves spatial Mamba, ablation),
        "attention" (DiT blocks, ablation).
    attn_every: the shared attention block runs after every `attn_every`-th block (0 = never).
    sampling_temperature: the trained model's recommended initial-noise scale for sampling,
        x_0 ~ N(0, T^2 I) (1 = the prior it was trained on; below 1 trades variety for fidelity,
        like GANs' truncation). What `DiMSUMPipeline(..., temperature=None)` uses. Not part of
        the architecture: official checkpoints keep 1.
    """

    input_size: int = 32
    in_channels: int = 4
    patch_size: int = 2
    hidden_size: int = 1024
    depth: int = 16
    num_classes: int = 1000
    learn_null_class: bool = True
    block_type: str = "combined"
    attn_every: int = 4
    attn_heads: int = 16
    fusion_heads: int = 8
    mlp_ratio: float = 4.0
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None = ceil(branch_width / 16), as mamba-ssm's "auto"
    learn_sigma: bool = False
    drop_path: float = 0.0
    # What the network's input space is: "pixel" (RGB in [-1, 1]) or "latent" (SD VAE latents).
    space: str = "pixel"
    vae: str | None = None  # hub id or local folder of the VAE for latent models
    latent_scale: float = 0.18215
    class_names: list[str] | None = None
    name: str | None = None
    sampling_temperature: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type={self.block_type!r}: must be one of {BLOCK_TYPES}")
        if self.input_size % self.patch_size:
            raise ValueError(
                f"input_size={self.input_size} must be a multiple of patch_size={self.patch_size}"
            )
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size={self.hidden_size} must be even (two branches)")
        if self.block_type == "combined" and self.grid_size % 4:
            raise ValueError(
                f"token grid side {self.grid_size} must be a multiple of 4 for the 2-level wavelet"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1")
        if not 0.0 <= self.sampling_temperature <= MAX_TEMPERATURE:
            raise ValueError(
                f"sampling_temperature={self.sampling_temperature} must be in [0, {MAX_TEMPERATURE}]"
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries, num_classes={self.num_classes}"
            )

    # ---- derived quantities -------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Tokens on a side of the token grid."""
        return self.input_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def branch_width(self) -> int:
        """Width D/2 of each branch (spatial, frequency)."""
        return self.hidden_size // 2

    @property
    def mamba_dt_rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.branch_width / 16)

    @property
    def num_label_rows(self) -> int:
        return self.num_classes + int(self.learn_null_class)

    @property
    def null_class(self) -> int:
        """The label row `y=None` selects: the null class, or label 0 of a one-class model."""
        return self.num_label_rows - 1

    @property
    def is_class_conditional(self) -> bool:
        return self.learn_null_class and self.num_classes > 1

    @property
    def uses_guidance(self) -> bool:
        """Whether classifier-free guidance changes this model's samples: it needs a learned
        null class to contrast a label with. An unconditional model (CelebA-HQ, Church: one
        class, no null class) samples with guidance 1 whatever scale is asked for."""
        return self.learn_null_class and self.num_label_rows > 1

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiMSUMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> DiMSUMConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> DiMSUMConfig:
        return dataclasses.replace(self, **changes)


SD_VAE = "stabilityai/sd-vae-ft-ema"

EMOJI_CATEGORIES = [
    "Activities",
    "Animals & Nature",
    "Flags",
    "Food & Drink",
    "Objects",
    "People & Body",
    "Smileys & Emotion",
    "Symbols",
    "Travel & Places",
]


def _official(hidden: int, depth: int, num_classes: int, null: bool, name: str) -> DiMSUMConfig:
    return DiMSUMConfig(
        input_size=32,
        in_channels=4,
        patch_size=2,
        hidden_size=hidden,
        depth=depth,
        num_classes=num_classes,
        learn_null_class=null,
        space="latent",
        vae=SD_VAE,
        name=name,
    )


def _emoji(hidden: int, depth: int, block_type: str = "combined", **kw: Any) -> DiMSUMConfig:
    return DiMSUMConfig(
        input_size=32,
        in_channels=3,
        patch_size=2,
        hidden_size=hidden,
        depth=depth,
        num_classes=len(EMOJI_CATEGORIES),
        learn_null_class=True,
        block_type=block_type,
        space="pixel",
        class_names=list(EMOJI_CATEGORIES),
        **kw,
    )


# Released checkpoints (VinAIResearch/DiMSUM): hub ids of the official weights, where known.
OFFICIAL_HUB_IDS = {"L2-imagenet256": "haopt/dimsum-L2-imagenet256"}

PRESETS: dict[str, DiMSUMConfig] = {
    "L2-imagenet256": _official(1024, 16, 1000, True, "L2-imagenet256"),
    "L2-celebahq256": _official(1024, 16, 1, False, "L2-celebahq256"),
    "L2-church256": _official(1024, 16, 1, False, "L2-church256"),
    "XL2-church256": _official(1152, 24, 1, False, "XL2-church256"),
    "B2-imagenet256": _official(768, 12, 1000, True, "B2-imagenet256"),
    # Our small pixel-space models on 32x32 emoji (same token geometry as the released models).
    # Sized for the CPU: 4 images x 20 Heun steps with guidance in a few seconds on 2 cores.
    # Fewer, wider heads than the official 8/16: with 8-dim heads the attention cost is all
    # memory traffic over 256x256 score maps (see benchmarks/bench_forward.py).
    "emoji-S": _emoji(96, 6, mlp_ratio=3.0, fusion_heads=2, attn_heads=4, name="emoji-S"),
    # The shipped default: one full 4-layer scan cycle with the shared attention block after it;
    # single-head fusion and 2-head shared attention, gated MLP of width 2D (hidden 128): 62 ms per
    # guided forward of 4 images on the 2-core dev CPU (was 81 ms with 2/4 heads and width 4D).
    "emoji-XS": _emoji(64, 4, mlp_ratio=2.0, fusion_heads=1, attn_heads=2, name="emoji-XS"),
    # Ablation variants at the shipped size (435,340 trainable parameters; attention +2.6%;
    # cond_proj is frozen and has no effect, see models/mamba.py): spatial-only Mamba, and DiT
    # attention blocks.
    "emoji-XS-spatial": _emoji(
        64, 4, "spatial", mlp_ratio=2.0, fusion_heads=1, attn_heads=2, name="emoji-XS-spatial"
    ),
    "emoji-XS-attention": _emoji(
        64, 6, "attention", attn_every=0, mlp_ratio=2.0, attn_heads=2, name="emoji-XS-attention"
    ),
}


def get_preset(name: str) -> DiMSUMConfig:
    """A copy of a named preset; raises a ValueError listing the presets when unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name])
