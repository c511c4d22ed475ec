"""Sample-quality metrics on feature vectors: Frechet distance and k-NN precision / recall.

``FD-emoji`` is the Frechet distance computed on the 256-d features of the small emoji
classifier in :mod:`dimsum.eval.classifier` (a cheap, offline stand-in for FID on 32x32
emoji). The standard Inception FID is available through :func:`inception_fid` when the user
supplies the ``pt_inception`` weights and has ``torch-fidelity`` or ``pytorch-fid`` installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch

from ..data.emoji import CATEGORIES
from .classifier import FeatureClassifier, ImagesLike, features

__all__ = [
    "compute_metrics",
    "fd_emoji",
    "frechet_distance",
    "inception_fid",
    "manifold_membership",
    "precision_recall",
]

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    return x


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((mat + mat.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})`` with
    ``feats_a`` (N, D) and ``feats_b`` (M, D). The trace term is computed as
    ``sum(sqrt(eig(S_a^{1/2} S_b S_a^{1/2})))``: the inner matrix is symmetric PSD, so the
    eigenvalues are real (tiny negative round-off is clipped) and no complex ``sqrtm`` with
    spurious imaginary parts is needed. Computed in float64.
    """
    a, b = _as_float64(feats_a), _as_float64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sqrt_a = _psd_sqrt(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean
    return float(max(fd, 0.0))


def _kth_nn_radii(feats: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest neighbour in the same set (not itself)."""
    radii = []
    for i in range(0, len(feats), batch):
        d = torch.cdist(feats[i : i + batch], feats)
        # k+1 smallest includes the point itself at distance 0.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _inside(
    manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, batch: int
) -> torch.Tensor:
    """(Q,) bool: is each of ``queries`` inside at least one ball (``manifold[i]``, ``radii[i]``)?"""
    inside = []
    for i in range(0, len(queries), batch):
        d = torch.cdist(queries[i : i + batch], manifold)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def manifold_membership(
    real_feats: ArrayLike, fake_feats: ArrayLike, k: int = 3, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample terms of improved precision / recall (Kynkaanniemi et al., 2019).

    Each set's manifold is the union of balls around its points with radius = distance to the
    k-th nearest neighbour. Returns ``fake_in_real`` (M,) bool (their mean is the precision)
    and ``real_in_fake`` (N,) bool (their mean is the recall).
    """
    real = torch.from_numpy(_as_float64(real_feats))
    fake = torch.from_numpy(_as_float64(fake_feats))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} samples per set")
    real_r = _kth_nn_radii(real, k, batch_size)
    fake_r = _kth_nn_radii(fake, k, batch_size)
    fake_in_real = _inside(real, real_r, fake, batch_size)
    real_in_fake = _inside(fake, fake_r, real, batch_size)
    return fake_in_real.numpy(), real_in_fake.numpy()


def precision_recall(
    real_feats: ArrayLike, fake_feats: ArrayLike, k: int = 3, *, batch_size: int = 1024
) -> tuple[float, float]:
    """Improved precision / recall on (N, D) real / (M, D) fake features.

    Precision = fraction of fake samples inside the real manifold; recall = fraction of real
    samples inside the fake manifold (see `manifold_membership`).
    """
    fake_in_real, real_in_fake = manifold_membership(
        real_feats, fake_feats, k, batch_size=batch_size
    )
    return float(fake_in_real.mean()), float(real_in_fake.mean())


def compute_metrics(
    real_feats: ArrayLike,
    fake_feats: ArrayLike,
    fake_labels_requested: ArrayLike | Sequence[int] | None = None,
    fake_pred_labels: ArrayLike | Sequence[int] | None = None,
    *,
    categories: Sequence[str] | None = None,
    k: int = 3,
    membership: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """FD-emoji report for a batch of generated samples.

    Args:
        real_feats: (N, D) classifier features of real images.
        fake_feats: (M, D) features of generated images.
        fake_labels_requested: (M,) class each sample was conditioned on (optional).
        fake_pred_labels: (M,) class the feature classifier predicts for each sample.
        categories: class names (default: :data:`dimsum.data.CATEGORIES`).
        membership: ``manifold_membership(real_feats, fake_feats, k)`` if the caller already
            has it (it is the costly part: k-NN over all real features); computed otherwise.

    Returns:
        ``{"fd", "precision", "recall", "num_real", "num_fake"}`` plus, when labels are given,
        ``"accuracy"`` (over all samples), ``"per_class_accuracy"`` ({name: acc} for classes
        that were requested), ``"mean_accuracy"`` (mean of the per-class values) and
        ``"per_class_precision"`` ({name: fraction of that class's samples inside the real
        manifold}: where the precision is lost).
    """
    fake_in_real, real_in_fake = membership or manifold_membership(real_feats, fake_feats, k)
    out: dict = {
        "fd": frechet_distance(real_feats, fake_feats),
        "precision": float(fake_in_real.mean()),
        "recall": float(real_in_fake.mean()),
        "num_real": int(len(real_feats)),
        "num_fake": int(len(fake_feats)),
    }
    if fake_labels_requested is None or fake_pred_labels is None:
        return out
    if categories is None:
        categories = CATEGORIES
    want = np.asarray(torch.as_tensor(np.asarray(fake_labels_requested)).cpu(), dtype=np.int64)
    got = np.asarray(torch.as_tensor(np.asarray(fake_pred_labels)).cpu(), dtype=np.int64)
    if want.shape != got.shape:
        raise ValueError(f"label shapes differ: {want.shape} vs {got.shape}")
    requested = {categories[c]: want == c for c in np.unique(want).tolist()}
    per_class = {name: float((got[m] == want[m]).mean()) for name, m in requested.items()}
    out["accuracy"] = float((want == got).mean())
    out["per_class_accuracy"] = per_class
    out["mean_accuracy"] = float(np.mean(list(per_class.values())))
    out["per_class_precision"] = {
        name: float(fake_in_real[m].mean()) for name, m in requested.items()
    }
    return out


def reference_metrics(
    model: FeatureClassifier,
    train_images: ImagesLike,
    heldout_images: ImagesLike,
    *,
    k: int = 3,
    seed: int = 0,
) -> dict:
    """Real-vs-real reference points for FD-emoji / precision / recall.

    * ``heldout_vs_train``: real = whole train split, fake = whole held-out split.
    * ``heldout_vs_train_matched``: real = a random train subset of the held-out size.
    * ``train_vs_train_matched``: two disjoint random train subsets of the held-out size (the
      finite-sample floor of the metrics at that sample size).
    """
    f_train, f_held = features(model, train_images), features(model, heldout_images)
    n = len(f_held)
    perm = torch.randperm(len(f_train), generator=torch.Generator().manual_seed(seed))
    sub_a, sub_b = f_train[perm[:n]], f_train[perm[n : 2 * n]]

    def pair(real: torch.Tensor, fake: torch.Tensor) -> dict:
        precision, recall = precision_recall(real, fake, k=k)
        fd = frechet_distance(real, fake)
        return {
            "fd": fd,
            "precision": precision,
            "recall": recall,
            "num_real": len(real),
            "num_fake": len(fake),
        }

    return {
        "heldout_vs_train": pair(f_train, f_held),
        "heldout_vs_train_matched": pair(sub_a, f_held),
        "train_vs_train_matched": pair(sub_a, sub_b),
        "k": k,
    }


def fd_emoji(model: torch.nn.Module, real_images: ArrayLike, fake_images: ArrayLike) -> float:
    """FD-emoji between two image sets: Frechet distance of the classifier's 256-d features.

    Images are (N, 32, 32, 3) uint8 or (N, 3, 32, 32) float in [-1, 1].
    """

    return frechet_distance(features(model, real_images), features(model, fake_images))


# ----------------------------------------------------------------------------------------------
# Optional standard FID (Inception-v3, user-supplied weights)
# ----------------------------------------------------------------------------------------------


def _to_uint8_nchw(images: ArrayLike) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).contiguous() if x.shape[-1] == 3 else x
    x = x.float()
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _inception_features_fidelity(weights_path: str, device: str):
    # deliberately lazy: torch-fidelity is optional (one of the two standard-FID backends)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path
    )
    net.eval().to(device)

    def run(x: torch.Tensor) -> torch.Tensor:  # uint8 NCHW
        return net(x.to(device))[0]

    return run


def _inception_features_pytorch_fid(weights_path: str, device: str):
    import pytorch_fid.inception as pfi  # deliberately lazy: optional (standard-FID backend)

    def load_local(*args, **kwargs):
        return torch.load(weights_path, map_location="cpu", weights_only=True)

    # pytorch-fid downloads the FID weights by URL; point that loader at the local file.
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = load_local
    try:
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True)
    finally:
        pfi.load_state_dict_from_url = original
    net.eval().to(device)

    def run(x: torch.Tensor) -> torch.Tensor:  # uint8 NCHW -> float in [0, 1]
        return net(x.to(device).float() / 255.0)[0].flatten(1)

    return run


@torch.no_grad()
def inception_fid(
    real_images: ArrayLike,
    fake_images: ArrayLike,
    weights_path: str | os.PathLike,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> float:
    """Standard FID (Inception-v3 pool features) with a user-supplied weights file.

    ``weights_path`` is the FID Inception file ``pt_inception-2015-12-05-6726825d.pth``; it is
    never downloaded here. Needs ``pip install torch-fidelity`` (preferred) or
    ``pip install pytorch-fid``. Images are (N, 32, 32, 3) uint8 or (N, 3, H, W) float in
    [-1, 1]; both backends resize to 299x299 internally. 32x32 FID numbers are only comparable
    with other 32x32 FID numbers.
    """
    weights_path = os.fspath(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"Inception weights not found at {weights_path!r}: supply the FID Inception file "
            "pt_inception-2015-12-05-6726825d.pth (it is not downloaded automatically)."
        )
    device = str(device)
    if _installed("torch_fidelity"):
        extractor = _inception_features_fidelity(weights_path, device)
    elif _installed("pytorch_fid"):
        extractor = _inception_features_pytorch_fid(weights_path, device)
    else:
        raise ImportError(
            "inception_fid needs the `torch-fidelity` package (pip install torch-fidelity) "
            "or the `pytorch-fid` package (pip install pytorch-fid)."
        )

    def feats(images: ArrayLike) -> np.ndarray:
        x = _to_uint8_nchw(images)
        chunks = [
            extractor(x[i : i + batch_size]).double().cpu() for i in range(0, len(x), batch_size)
        ]
        return torch.cat(chunks).numpy()

    return frechet_distance(feats(real_images), feats(fake_images))
