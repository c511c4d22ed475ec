"""Small emoji feature classifier: the feature space of FD-emoji and the class-accuracy judge.

A compact CNN (conv stages 32 -> 64 -> 128 -> 256 with GroupNorm + SiLU, 2x average pooling
between stages, global average pool -> 256-d feature -> linear head over the 9 emoji
categories). It is trained on the training split of Emoji-32 only, so held-out emoji measure
how well it generalises. Weights are stored as safetensors + a json config (no pickle).

Train the checkpoint shipped in ``checkpoints/``::

    dimsum train-classifier --out checkpoints/feature_classifier
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data import class_weights
from ..data.emoji import CATEGORIES

__all__ = [
    "ClassifierConfig",
    "FeatureClassifier",
    "evaluate_classifier",
    "features",
    "load_classifier",
    "predict",
    "save_classifier",
    "train_feature_classifier",
]

ImagesLike = np.ndarray | torch.Tensor


@dataclass
class ClassifierConfig:
    """Architecture of :class:`FeatureClassifier` (stored in the json next to the weights)."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 1)  # 3x3 convs per stage
    num_classes: int = 9
    groups: int = 8  # GroupNorm groups
    in_channels: int = 3
    image_size: int = 32
    categories: list[str] = field(default_factory=list)

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("widths", "depths"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


class ConvBlock(nn.Module):
    """3x3 conv -> GroupNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(groups, cout)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FeatureClassifier(nn.Module):
    """Compact CNN: (N, 3, 32, 32) in [-1, 1] -> (N, 256) features -> (N, num_classes) logits."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ClassifierConfig()
        if len(config.widths) != len(config.depths):
            raise ValueError("widths and depths must have the same length")
        stages = []
        cin = config.in_channels
        for i, (width, depth) in enumerate(zip(config.widths, config.depths, strict=True)):
            blocks: list[nn.Module] = []
            for _ in range(depth):
                blocks.append(ConvBlock(cin, width, config.groups))
                cin = width
            if i < len(config.widths) - 1:
                blocks.append(nn.AvgPool2d(2))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, feature_dim) globally pooled features."""
        return self.stages(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, num_classes) logits."""
        return self.head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def to_model_input(images: ImagesLike) -> torch.Tensor:
    """Images -> (N, 3, H, W) float32 in [-1, 1].

    Accepts uint8 (N, H, W, 3) or (N, 3, H, W) in [0, 255], or float (N, 3, H, W) /
    (N, H, W, 3) already in [-1, 1] (the diffusion model's output range).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.ndim != 4:
        raise ValueError(
            f"expected a batch of images (N, C, H, W) or (N, H, W, C), got {tuple(x.shape)}"
        )
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0).contiguous()
    return x.float().contiguous()


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` px, filling with white (+1)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=1.0)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def _images_labels(data) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    if isinstance(data, tuple | list) and len(data) == 2:
        return data[0], data[1]
    return data.images, data.labels


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def train_feature_classifier(
    data,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    config: ClassifierConfig | None = None,
    model: FeatureClassifier | None = None,
    balanced: bool = True,
    max_shift: int = 2,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    on_step: Callable[[int, float], None] | None = None,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` and return it in eval mode.

    Args:
        data: an :class:`~dimsum.data.EmojiData` (its ``images`` / ``labels``) or a tuple
            ``(images, labels)`` with images (N, 32, 32, 3) uint8 and labels (N,) int.
        steps, batch_size, lr: AdamW steps with 5% warm-up and cosine decay to 0.
        seed: seeds initialisation, sampling and augmentation (global RNG is left untouched).
        balanced: draw batches with class weights 1/count (the data set is ~60% People & Body).
        max_shift: random translation augmentation in pixels (white fill).
        config: architecture (default: :class:`ClassifierConfig` with the 9 emoji categories).
        model: train this model in place instead of a freshly initialised one.
        on_step: called as ``on_step(step, loss)`` after every optimiser step.
    """
    device = torch.device(device)
    images, labels = _images_labels(data)
    x_all = to_model_input(images)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if model is not None:
        config = model.config
    elif config is None:
        num_classes = max(int(y_all.max()) + 1, len(CATEGORIES))
        names = list(CATEGORIES) if num_classes == len(CATEGORIES) else []
        config = ClassifierConfig(num_classes=num_classes, categories=names)
    x_all, y_all = x_all.to(device), y_all.to(device)

    gen = torch.Generator().manual_seed(seed)
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = FeatureClassifier(config)
    model.to(device).train()

    weights = class_weights(y_all.cpu(), 1.0 if balanced else 0.0)  # float64, 1/count exactly

    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )
    warmup = max(1, int(0.05 * steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1 + math.cos(math.pi * t))

    for step in range(steps):
        idx = torch.multinomial(weights, batch_size, replacement=True, generator=gen).to(device)
        xb = _random_shift(x_all[idx], max_shift, gen)
        loss = F.cross_entropy(model(xb), y_all[idx], label_smoothing=label_smoothing)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, float(loss.detach()))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def features(model: FeatureClassifier, images: ImagesLike, batch_size: int = 512) -> torch.Tensor:
    """(N, feature_dim) float32 CPU features of images (see :func:`to_model_input`)."""
    was_training = model.training
    model.eval()
    x, dev = to_model_input(images), _device_of(model)
    out = [
        model.forward_features(x[i : i + batch_size].to(dev)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.feature_dim)


@torch.no_grad()
def predict(model: FeatureClassifier, images: ImagesLike, batch_size: int = 512) -> torch.Tensor:
    """(N,) int64 predicted class indices."""
    was_training = model.training
    model.eval()
    x, dev = to_model_input(images), _device_of(model)
    out = [
        model(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def evaluate_classifier(
    model: FeatureClassifier,
    images: ImagesLike,
    labels: np.ndarray | torch.Tensor | Sequence[int],
    categories: Sequence[str] | None = None,
) -> dict:
    """``{"accuracy", "mean_class_accuracy", "per_class_accuracy": {name: acc}}``."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    pred = predict(model, images)
    names = list(categories or model.config.categories or range(model.config.num_classes))
    per_class = {
        str(names[c]): float((pred[y == c] == c).double().mean()) for c in torch.unique(y).tolist()
    }
    return {
        "accuracy": float((pred == y).double().mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))),
        "per_class_accuracy": per_class,
    }


# ----------------------------------------------------------------------------------------------
# Save / load (safetensors + json, no pickle)
# ----------------------------------------------------------------------------------------------


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_classifier(
    model: FeatureClassifier, path: str | os.PathLike, *, metadata: dict | None = None
) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (config + metadata).

    ``path`` may end in ``.safetensors`` or have no suffix. Returns both paths.
    """
    weights_path, config_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"format": "pt", "model": "FeatureClassifier"})
    cfg = asdict(model.config)
    cfg["widths"], cfg["depths"] = list(cfg["widths"]), list(cfg["depths"])
    doc = {
        "model": "FeatureClassifier",
        "config": cfg,
        "input": "(N, 3, 32, 32) float32 in [-1, 1] (RGB on white)",
        "feature_dim": model.config.feature_dim,
        "weights": weights_path.name,
        "metadata": metadata or {},
    }
    config_path.write_text(json.dumps(doc, indent=2) + "\n")
    return weights_path, config_path


def load_classifier(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> FeatureClassifier:
    """Load a classifier written by :func:`save_classifier` (in eval mode)."""
    weights_path, config_path = _paths(path)
    doc = json.loads(config_path.read_text())
    model = FeatureClassifier(ClassifierConfig.from_dict(doc["config"]))
    model.load_state_dict(load_file(str(weights_path), device="cpu"))
    return model.to(device).eval()
