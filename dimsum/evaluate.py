"""`dimsum eval`: sample a checkpoint and score it offline (FD-emoji, precision/recall, accuracy).

Generated classes follow the training split's class proportions, so the generated and the real
distribution are comparable; the reference point is the same metrics between the held-out real
images and the training real images. Sampling shards over torchrun processes.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as D

DEFAULT_CLASSIFIER = Path(__file__).resolve().parent.parent / "checkpoints" / "feature_classifier"


def class_quota(labels: np.ndarray, num_classes: int, n: int) -> list[int]:
    """n class ids in the proportions of `labels` (largest remainders; deterministic order)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    exact = counts / counts.sum() * n
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota))[: n - quota.sum()]:
        quota[i] += 1
    return [c for c in range(num_classes) for _ in range(quota[c])]


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


@torch.no_grad()
def generate(pipe, classes: list[int], seeds: list[int], *, batch_size: int, **kw: Any) -> np.ndarray:
    """(N, H, W, 3) uint8 samples, this process's shard gathered from all processes."""
    info = D.setup(str(pipe.device.type))
    idx = D.shard(list(range(len(classes))), info)
    chunks = []
    for i in range(0, len(idx), batch_size):
        part = idx[i : i + batch_size]
        out = pipe([classes[j] for j in part], [seeds[j] for j in part], return_trajectory=False, **kw)
        chunks.append((part, out.array))
    gathered = D.gather_objects(info, chunks)
    images = np.zeros((len(classes), *chunks[0][1].shape[1:]), np.uint8) if chunks else None
    for rank_chunks in gathered:
        for part, arr in rank_chunks:
            images[part] = arr  # type: ignore[index]
    return images  # type: ignore[return-value]


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    num_samples: int = 900,
    guidance_scale: float = 4.0,
    num_steps: int = 20,
    method: str = "heun",
    classifier: str | Path | None = None,
    data: str | None = None,
    device: str | None = None,
    seed: int = 0,
    inception_weights: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Sample `num_samples` images and report metrics plus the real-vs-real reference."""
    from .data import load_emoji_dataset
    from .eval import compute_metrics, features, load_classifier, predict
    from .pipeline import DiMSUMPipeline
    from .validation import check_int

    check_int("num_samples", num_samples, 10, 1_000_000)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = DiMSUMPipeline.from_pretrained(checkpoint, device=dev)
    clf = load_classifier(classifier or DEFAULT_CLASSIFIER, device=dev)
    train = load_emoji_dataset("train", path=data) if data else load_emoji_dataset("train")
    held = load_emoji_dataset("heldout", path=data) if data else load_emoji_dataset("heldout")

    classes = class_quota(train.labels, pipe.config.num_classes, num_samples)
    seeds = [seed * 1_000_000 + i for i in range(num_samples)]
    start = time.perf_counter()
    fake = generate(pipe, classes, seeds, batch_size=batch_size, guidance_scale=guidance_scale,
                    num_steps=num_steps, method=method)
    gen_seconds = time.perf_counter() - start

    f_train = features(clf, train.images)
    f_held = features(clf, held.images)
    f_fake = features(clf, fake)
    report = compute_metrics(f_train, f_fake, classes, predict(clf, fake), categories=train.categories)
    ref = compute_metrics(f_train, f_held)
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "fd_emoji": report.pop("fd"),
        **report,
        "reference_heldout_vs_train": {"fd_emoji": ref["fd"], "precision": ref["precision"], "recall": ref["recall"],
                                       "num_heldout": int(len(held)), "num_train": int(len(train))},
        "settings": {"num_samples": num_samples, "guidance_scale": guidance_scale, "steps": num_steps,
                     "method": method, "seed": seed},
        "sampling_seconds": round(gen_seconds, 2),
        "hardware": hardware(),
    }
    out["fd_ratio_to_reference"] = out["fd_emoji"] / max(ref["fd"], 1e-12)
    if inception_weights:
        from .eval import inception_fid

        out["fid_inception"] = inception_fid(train.images, fake, inception_weights)
    return out


def train_and_save_classifier(out: str | Path, *, steps: int = 3000, data: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Train the FD-emoji feature classifier on the training split and save it (safetensors)."""
    from .data import load_emoji_dataset
    from .eval import evaluate_classifier, save_classifier, train_feature_classifier

    train = load_emoji_dataset("train", path=data) if data else load_emoji_dataset("train")
    held = load_emoji_dataset("heldout", path=data) if data else load_emoji_dataset("heldout")
    start = time.perf_counter()
    model = train_feature_classifier(train, steps=steps, seed=seed)
    seconds = time.perf_counter() - start
    acc = evaluate_classifier(model, held.images, held.labels, held.categories)
    save_classifier(model, out, metadata={"steps": steps, "seed": seed, "train_seconds": round(seconds, 1),
                                          "heldout_accuracy": acc})
    return {"out": str(out), "heldout_accuracy": acc, "train_seconds": round(seconds, 1)}
