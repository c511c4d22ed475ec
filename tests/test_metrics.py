"""Tests for FD / precision-recall and the feature classifier (fast, synthetic data)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dimsum.eval import (
    ClassifierConfig,
    FeatureClassifier,
    compute_metrics,
    evaluate_classifier,
    fd_emoji,
    features,
    frechet_distance,
    inception_fid,
    load_classifier,
    manifold_membership,
    precision_recall,
    predict,
    save_classifier,
    train_feature_classifier,
)
from dimsum.eval.classifier import _random_shift, to_model_input

TINY = ClassifierConfig(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_classes=3, groups=4)


def _exact_gaussian(n: int, mu: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """Samples whose sample mean / covariance (ddof=1) equal ``mu`` / ``cov`` exactly."""
    z = np.random.default_rng(seed).standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mu


def _closed_form_fd(mu1, cov1, mu2, cov2) -> float:
    # eigenvalues of S1 S2 are real and >= 0 for PSD S1, S2 (independent of the implementation)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(cov1 @ cov2).real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def _random_cov(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------


def test_fd_identical_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 64))
    assert abs(frechet_distance(x, x)) < 1e-8
    assert abs(frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(x).float())) < 1e-4


def test_fd_grows_monotonically_with_shift():
    x = np.random.default_rng(1).standard_normal((400, 16))
    shifts = [0.0, 0.1, 0.5, 1.0, 2.0]
    fds = [frechet_distance(x, x + s) for s in shifts]
    assert all(b > a for a, b in zip(fds, fds[1:], strict=False))
    # same covariance -> FD is exactly the squared mean shift
    np.testing.assert_allclose(fds, [16 * s**2 for s in shifts], rtol=1e-8, atol=1e-8)


def test_fd_matches_closed_form_exact_moments():
    d = 6
    mu1, mu2 = np.zeros(d), np.linspace(-1, 1, d)
    cov1, cov2 = _random_cov(d, 2), _random_cov(d, 3)  # non-commuting covariances
    a, b = _exact_gaussian(2000, mu1, cov1, 4), _exact_gaussian(3000, mu2, cov2, 5)
    np.testing.assert_allclose(
        frechet_distance(a, b), _closed_form_fd(mu1, cov1, mu2, cov2), rtol=1e-8
    )


def test_fd_matches_closed_form_large_n():
    d, n = 4, 200_000
    rng = np.random.default_rng(6)
    mu1, mu2 = np.array([0.0, 1.0, 0.0, -1.0]), np.array([0.5, 0.0, 0.0, 1.0])
    cov1, cov2 = _random_cov(d, 7), _random_cov(d, 8)
    a = rng.multivariate_normal(mu1, cov1, size=n)
    b = rng.multivariate_normal(mu2, cov2, size=n)
    expected = _closed_form_fd(mu1, cov1, mu2, cov2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_fd_rank_deficient_covariance_is_finite():
    # fewer samples than dims -> singular covariances; must stay real, finite and >= 0
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((20, 64)), rng.standard_normal((30, 64)) + 0.3
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    with pytest.raises(ValueError):
        frechet_distance(a, b[:, :10])


# ----------------------------------------------------------------------------------------------
# Precision / recall
# ----------------------------------------------------------------------------------------------


def test_precision_recall_identical_sets():
    x = np.random.default_rng(10).standard_normal((300, 8))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_disjoint_sets():
    rng = np.random.default_rng(11)
    real, fake = rng.standard_normal((300, 8)), rng.standard_normal((200, 8)) + 100.0
    p, r = precision_recall(real, fake, k=3)
    assert p == 0.0 and r == 0.0


def test_precision_recall_partial_and_asymmetric():
    rng = np.random.default_rng(12)
    real = rng.standard_normal((1000, 4))
    # half of the fakes are on the real manifold, half far away -> precision ~ 0.5
    fake = np.concatenate([rng.standard_normal((500, 4)), rng.standard_normal((500, 4)) + 50])
    p, r = precision_recall(real, fake, k=3, batch_size=128)
    assert 0.4 < p < 0.55
    assert r > 0.9  # the on-manifold fakes still cover the real data
    # mode collapse: fakes on a small part of the real manifold -> high precision, low recall
    collapsed = real[real[:, 0] > 1.0]
    p2, r2 = precision_recall(real, collapsed, k=3)
    assert p2 == 1.0 and r2 < 0.4


def test_compute_metrics_report():
    rng = np.random.default_rng(13)
    real, fake = rng.standard_normal((200, 8)), rng.standard_normal((100, 8))
    requested = np.repeat([0, 1, 2, 5], 25)
    predicted = requested.copy()
    predicted[:5] = 1  # class 0: 20/25 correct
    predicted[25:50] = 0  # class 1: 0/25 correct
    out = compute_metrics(real, fake, requested, predicted)
    assert set(out) >= {"fd", "precision", "recall", "per_class_accuracy", "mean_accuracy"}
    assert out["fd"] == pytest.approx(frechet_distance(real, fake))
    assert (out["precision"], out["recall"]) == precision_recall(real, fake)
    assert out["per_class_accuracy"] == {
        "Activities": 0.8,
        "Animals & Nature": 0.0,
        "Flags": 1.0,
        "People & Body": 1.0,
    }
    assert out["mean_accuracy"] == pytest.approx(0.7)
    assert out["accuracy"] == pytest.approx(70 / 100)
    no_labels = compute_metrics(real, fake)
    assert "mean_accuracy" not in no_labels and "per_class_precision" not in no_labels


def test_per_class_precision_says_which_class_is_off_the_manifold():
    rng = np.random.default_rng(14)
    real = rng.standard_normal((400, 6))
    on = real[:30] + 1e-6  # on the real manifold for sure (a real point's ball has radius > 0)
    off = rng.standard_normal((30, 6)) + 40.0
    half = np.concatenate([on[:15], off[:15]])  # class 7: half of its samples off the manifold
    fake = np.concatenate([on, off, half])
    requested = np.repeat([0, 3, 7], 30)
    out = compute_metrics(real, fake, requested, requested)
    fake_in_real, real_in_fake = manifold_membership(real, fake)
    assert fake_in_real.shape == (90,) and real_in_fake.shape == (400,)
    assert out["per_class_precision"] == {"Activities": 1.0, "Food & Drink": 0.0, "Symbols": 0.5}
    assert out["precision"] == pytest.approx(45 / 90) == float(fake_in_real.mean())


# ----------------------------------------------------------------------------------------------
# Classifier
# ----------------------------------------------------------------------------------------------


def _synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """3 classes on white: a red square, a blue disc-ish blob, a green bar at random places."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 32, 32, 3), 255, np.uint8)
    labels = rng.integers(0, 3, n)
    for i, c in enumerate(labels):
        y, x = rng.integers(4, 20, 2)
        if c == 0:
            images[i, y : y + 10, x : x + 10] = (220, 30, 30)
        elif c == 1:
            images[i, y : y + 8, x + 2 : x + 8] = (30, 30, 220)
            images[i, y + 2 : y + 6, x : x + 10] = (30, 30, 220)
        else:
            images[i, y : y + 3, 2:30] = (30, 200, 30)
    return images, labels


def test_default_classifier_shapes_and_size():
    model = FeatureClassifier()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model.forward_features(x).shape == (2, 256)
    assert model(x).shape == (2, 9)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params * 4 < 3 * 1024 * 1024  # safetensors checkpoint stays < 3 MB


def test_input_layouts_agree():
    images, _ = _synthetic_images(4, 0)
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(to_model_input(images), as_float)
    torch.testing.assert_close(
        to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2)), as_float
    )
    torch.testing.assert_close(to_model_input(as_float.permute(0, 2, 3, 1)), as_float)
    model = FeatureClassifier(TINY)
    torch.testing.assert_close(features(model, images), features(model, as_float))


def test_random_shift_fills_white():
    x = torch.zeros(64, 3, 8, 8)  # black images
    shifted = _random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}
    assert (shifted == 0).sum(dim=(1, 2, 3)).min() >= 3 * 6 * 6  # at most 2 px lost per side
    assert (shifted == 1).any()
    assert torch.equal(_random_shift(x, 0, torch.Generator()), x)


def test_save_load_round_trip(tmp_path):
    images, _ = _synthetic_images(16, 1)
    model = FeatureClassifier(ClassifierConfig(categories=["a"] * 9))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    w_path, j_path = save_classifier(model, tmp_path / "clf.safetensors", metadata={"acc": 0.5})
    assert w_path == tmp_path / "clf.safetensors" and j_path == tmp_path / "clf.json"
    doc = json.loads(j_path.read_text())
    assert doc["config"]["widths"] == [32, 64, 128, 256] and doc["metadata"] == {"acc": 0.5}
    assert set(load_file(w_path)) == set(model.state_dict())
    loaded = load_classifier(tmp_path / "clf")
    assert torch.equal(features(model, images), features(loaded, images))
    assert torch.equal(predict(model, images), predict(loaded, images))
    assert loaded.config == model.config


def test_training_reduces_loss_and_learns():
    images, labels = _synthetic_images(300, 2)
    losses: list[float] = []
    model = train_feature_classifier(
        (images, labels),
        steps=40,
        batch_size=32,
        lr=3e-3,
        seed=0,
        device="cpu",
        config=TINY,
        on_step=lambda step, loss: losses.append(loss),
    )
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    test_images, test_labels = _synthetic_images(90, 3)
    report = evaluate_classifier(model, test_images, test_labels, categories=["r", "b", "g"])
    assert report["accuracy"] > 0.6
    assert set(report["per_class_accuracy"]) == {"r", "b", "g"}
    assert not model.training


def test_training_is_deterministic():
    images, labels = _synthetic_images(64, 4)
    kw = dict(steps=3, batch_size=16, lr=1e-3, seed=7, device="cpu", config=TINY)
    a = train_feature_classifier((images, labels), **kw)
    b = train_feature_classifier((images, labels), **kw)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_fd_emoji_helper():
    images, _ = _synthetic_images(40, 5)
    model = FeatureClassifier(TINY)
    assert fd_emoji(model, images, images) == pytest.approx(0.0, abs=1e-6)
    assert fd_emoji(model, images[:20], images[20:]) > 0


# ----------------------------------------------------------------------------------------------
# Optional Inception FID: guarded imports
# ----------------------------------------------------------------------------------------------


def test_inception_fid_needs_weights_file(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        inception_fid(images, images, tmp_path / "missing.pth")


def test_inception_fid_names_missing_package(tmp_path, monkeypatch):
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", None)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ImportError, match="torch-fidelity") as info:
        inception_fid(images, images, weights)
    assert "pytorch-fid" in str(info.value)
