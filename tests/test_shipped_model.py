"""The embedded model in checkpoints/ loads and generates non-blank, class-distinct images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dimsum.pipeline import DiMSUMPipeline

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
pytestmark = pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").exists(), reason="no embedded checkpoint shipped"
)


def test_shipped_model_generates_class_distinct_images() -> None:
    pipe = DiMSUMPipeline.from_pretrained(SHIPPED)
    cfg = pipe.config
    assert cfg.space == "pixel" and cfg.num_classes == 9 and cfg.class_names
    # Same seed, three different classes: Flags, People & Body, Symbols.
    out = pipe(
        [2, 5, 7],
        [0, 0, 0],
        num_steps=10,
        method="heun",
        guidance_scale=4.0,
        return_trajectory=False,
    )
    imgs = out.array.astype(np.float32)
    assert imgs.shape == (3, 32, 32, 3)
    assert all(im.std() > 10 for im in imgs), "blank image"
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(imgs[i] - imgs[j]).mean() > 5, f"classes {i} and {j} look the same"
