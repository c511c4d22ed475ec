"""The embedded model in checkpoints/: it loads, generates class-distinct images, and a small
re-evaluation through dimsum's evaluation code agrees with its own checkpoints/eval.json.

The re-evaluation samples k images per class at eval.json's settings (steps, sampler, guidance,
schedule, temperature; seeds as the evaluator draws them) and scores them with the shipped
feature classifier. Its check is the mean per-class accuracy (eval.json's `mean_accuracy`):
both figures are estimates, so the tolerance is three standard deviations of their difference
under binomial sampling noise, computed from eval.json's per-class accuracies:

    var = sum_c p_c (1 - p_c) / 9^2 * (1 / k + 1 / (num_samples / 9))

k = 1 (the fast test, 9 samples): tolerance 0.33 around 0.733, a smoke check; k = 10 (slow, 90
samples): 0.11. A random-weight model of the same configuration scores near chance (1/9) and
fails even the fast band (a slow test checks that, so the band is known to exclude it).

FD-emoji, precision and recall need the Emoji-32 real images (built with npm, not shipped), so
they are not re-checked here.
"""

from __future__ import annotations

import json
import math
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


def _reported() -> dict:
    return json.loads((SHIPPED / "eval.json").read_text())


def tolerance(report: dict, per_class: int) -> float:
    """Three standard deviations of (re-evaluated - reported) mean per-class accuracy."""
    p = np.array(list(report["per_class_accuracy"].values()))
    c = len(p)
    ref_per_class = report["settings"]["num_samples"] / c
    var = float(np.sum(p * (1 - p))) / c**2 * (1 / per_class + 1 / ref_per_class)
    return 3 * math.sqrt(var)


def mean_class_accuracy(pipe: DiMSUMPipeline, report: dict, per_class: int) -> float:
    """Mean per-class accuracy of `per_class` samples per class at eval.json's settings."""
    from dimsum.eval import load_classifier, predict
    from dimsum.eval.evaluate import generate
    from dimsum.settings import SamplingSettings

    s = report["settings"]
    c = pipe.config.num_classes
    classes = [k for k in range(c) for _ in range(per_class)]
    seeds = [s["seed"] * 1_000_000 + i for i in range(len(classes))]  # as the evaluator draws them
    sampling = SamplingSettings.from_dict({**s, "classes": classes, "seeds": seeds})
    fake = generate(pipe, sampling, batch_size=len(classes))
    pred = predict(load_classifier(SHIPPED / "feature_classifier"), fake).numpy()
    correct = pred == np.array(classes)
    return float(np.mean([correct[np.array(classes) == k].mean() for k in range(c)]))


def _pipe(model=None) -> DiMSUMPipeline:
    # The library pipeline has no request quota (the app applies its own): no limits to lift.
    if model is None:
        return DiMSUMPipeline.from_pretrained(SHIPPED)
    return DiMSUMPipeline(model)


def _random_like(pipe: DiMSUMPipeline):
    from app.models import random_demo_model

    return random_demo_model(pipe.config.replace(), seed=0)


def _check(pipe: DiMSUMPipeline, per_class: int) -> tuple[bool, float, float, float]:
    """(within tolerance, re-evaluated, reported, tolerance) for `per_class` samples per class."""
    report = _reported()
    got = mean_class_accuracy(pipe, report, per_class)
    want, tol = report["mean_accuracy"], tolerance(report, per_class)
    print(f"mean per-class accuracy {got:.3f}, eval.json {want:.3f} +- {tol:.3f} (k={per_class})")
    return abs(got - want) <= tol, got, want, tol


def test_shipped_model_matches_its_eval_json_fast() -> None:
    """One sample per class (9 images, ~30 s of one core): a smoke check, tolerance 0.33."""
    ok, got, want, tol = _check(_pipe(), per_class=1)
    assert ok, f"mean per-class accuracy {got:.3f}, eval.json {want:.3f} +- {tol:.3f}"


@pytest.mark.slow
def test_shipped_model_matches_its_eval_json() -> None:
    """Ten samples per class (90 images): tolerance 0.11."""
    ok, got, want, tol = _check(_pipe(), per_class=10)
    assert ok, f"mean per-class accuracy {got:.3f}, eval.json {want:.3f} +- {tol:.3f}"


@pytest.mark.slow
def test_random_weights_fail_the_eval_json_check() -> None:
    """The fast check's band excludes an untrained model of the same configuration (chance is
    1/9), so passing it says something about the weights."""
    ok, got, _, _ = _check(_pipe(_random_like(_pipe())), per_class=1)
    assert not ok, f"a random-weight model passed with mean per-class accuracy {got:.3f}"
