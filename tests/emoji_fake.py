"""A tiny synthetic stand-in for the emoji data set file (no network in tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dimsum.config import EMOJI_CATEGORIES


def make_fake_emoji_npz(path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Each class is a coloured disc on white at a class-specific place: easy to learn."""
    rng = np.random.default_rng(seed)
    n_cls = len(EMOJI_CATEGORIES)
    yy, xx = np.mgrid[:32, :32]
    images, labels = [], []
    for c in range(n_cls):
        colour = np.array([(37 * c) % 256, (91 * c + 40) % 256, (151 * c + 80) % 256], np.uint8)
        cy, cx = 8 + (c // 3) * 8, 8 + (c % 3) * 8
        for _ in range(per_class):
            r = rng.integers(4, 8)
            img = np.full((32, 32, 3), 255, np.uint8)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
            images.append(img)
            labels.append(c)
    n = len(labels)
    split = (np.arange(n) % 5 == 0).astype(np.int64)
    np.savez(
        path,
        images=np.stack(images),
        labels=np.array(labels, np.int64),
        emoji_id=np.arange(n, dtype=np.int64),
        style=np.zeros(n, np.int64),
        split=split,
        unified=np.array([f"{i:04X}" for i in range(n)]),
        names=np.array([f"e{i}" for i in range(n)]),
        categories=np.array(EMOJI_CATEGORIES),
    )
    return path
