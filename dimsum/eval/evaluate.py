"""`dimsum eval`: sample a checkpoint and score it offline (FD-emoji, precision/recall, accuracy).

Generated classes follow the training split's class proportions, so the generated and the real
distribution are comparable; the reference point is the same metrics between the held-out real
images and the training real images. Sampling shards over torchrun processes.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed as D
from ..data import load_emoji_dataset
from ..data.emoji import attribution_notice
from ..pipeline import DiMSUMPipeline
from ..settings import DEFAULTS, SamplingSettings
from ..validation import InputError, check_int
from .classifier import (
    evaluate_classifier,
    features,
    load_classifier,
    predict,
    save_classifier,
    train_feature_classifier,
)
from .gallery import nearest_indices, precision_gallery
from .metrics import compute_metrics, inception_fid, manifold_membership, reference_metrics
from .tradeoff import tradeoff_plot

log = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = Path(__file__).resolve().parents[2] / "checkpoints" / "feature_classifier"


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
def generate(
    pipe: DiMSUMPipeline,
    sampling: SamplingSettings,
    *,
    batch_size: int,
    info: D.DistInfo | None = None,
) -> np.ndarray:
    """(N, H, W, 3) uint8 samples, one per (class, seed) of `sampling`; under torchrun each
    process makes its shard, then all gather."""
    info = info or D.DistInfo()
    classes, seeds = sampling.classes, sampling.seeds
    idx = D.shard(list(range(len(classes))), info)
    chunks = []
    for i in range(0, len(idx), batch_size):
        part = idx[i : i + batch_size]
        out = pipe(
            [classes[j] for j in part],
            [seeds[j] for j in part],
            return_trajectory=False,
            **sampling.pipeline_kwargs(),
        )
        chunks.append((part, out.array))
    gathered = D.gather_objects(info, chunks)
    images = np.zeros((len(classes), *chunks[0][1].shape[1:]), np.uint8) if chunks else None
    for rank_chunks in gathered:
        for part, arr in rank_chunks:
            images[part] = arr  # type: ignore[index]
    return images  # type: ignore[return-value]


class Evaluator:
    """Scores generated samples against the training split in the feature classifier's space.

    Real features, the class quota, the seeds and the real-vs-real reference are computed once,
    so periodic evaluation during training compares every checkpoint on exactly the same terms.
    """

    def __init__(
        self,
        *,
        num_samples: int = 900,
        classifier: str | Path | None = None,
        data: str | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        check_int("num_samples", num_samples, 10, 1_000_000)
        self.clf = load_classifier(classifier or DEFAULT_CLASSIFIER, device=device)
        self.train = load_emoji_dataset("train", path=data) if data else load_emoji_dataset("train")
        held = load_emoji_dataset("heldout", path=data) if data else load_emoji_dataset("heldout")
        self.f_train = features(self.clf, self.train.images)
        ref = compute_metrics(self.f_train, features(self.clf, held.images))
        self.reference = {
            "fd_emoji": ref["fd"],
            "precision": ref["precision"],
            "recall": ref["recall"],
            "num_heldout": int(len(held)),
            "num_train": int(len(self.train)),
        }
        self.classes = class_quota(self.train.labels, len(self.train.categories), num_samples)
        self.seeds = [seed * 1_000_000 + i for i in range(num_samples)]
        self.num_samples, self.seed = num_samples, seed

    @torch.no_grad()
    def __call__(
        self,
        pipe: DiMSUMPipeline,
        sampling: SamplingSettings = DEFAULTS,
        *,
        batch_size: int = 64,
        info: D.DistInfo | None = None,
    ) -> dict[str, Any]:
        """Score `pipe` sampled with `sampling`; its classes and seeds are the evaluator's own
        (the class quota, from `seed`). A None temperature: the model's `sampling_temperature`."""
        sampling = dataclasses.replace(
            sampling,
            classes=self.classes,
            seeds=self.seeds,
            temperature=pipe.resolve_temperature(sampling.temperature),
        )
        start = time.perf_counter()
        fake = generate(pipe, sampling, batch_size=batch_size, info=info)
        seconds = time.perf_counter() - start
        fake_feats = features(self.clf, fake)
        membership = manifold_membership(self.f_train, fake_feats)  # kept for `gallery`
        m = compute_metrics(
            self.f_train,
            fake_feats,
            self.classes,
            predict(self.clf, fake),
            categories=self.train.categories,
            membership=membership,
        )
        out: dict[str, Any] = {
            "fd_emoji": m.pop("fd"),
            **m,
            "reference_heldout_vs_train": self.reference,
        }
        out["fd_ratio_to_reference"] = out["fd_emoji"] / max(self.reference["fd_emoji"], 1e-12)
        # The settings schema, less the hundreds of classes and seeds that these two imply.
        settings = {k: v for k, v in sampling.to_dict().items() if k not in ("classes", "seeds")}
        out["settings"] = {"num_samples": self.num_samples, **settings, "seed": self.seed}
        out["sampling_seconds"] = round(seconds, 2)
        out["hardware"] = hardware()
        self.last_fake, self.last_fake_feats = fake, fake_feats
        self.last_fake_in_real = membership[0]
        return out

    def gallery(self, path: str | Path, *, title: str = "", per_class: int = 8) -> Path:
        """Precision gallery of the last evaluated samples (`dimsum.eval.gallery`)."""
        nearest = nearest_indices(self.last_fake_feats, self.f_train)
        return precision_gallery(
            path,
            self.last_fake,
            self.classes,
            self.last_fake_in_real,
            self.train.images[nearest],
            self.train.categories,
            per_class=per_class,
            title=title,
        )


def _setup(
    checkpoint: str | Path,
    num_samples: int,
    classifier: str | Path | None,
    data: str | None,
    device: str | None,
    seed: int,
) -> tuple[DiMSUMPipeline, Evaluator, D.DistInfo]:
    """The pipeline, the evaluator and the process info of an evaluation command."""
    info = D.setup(device)  # under torchrun: one process per GPU, samples sharded
    dev = info.device
    pipe = DiMSUMPipeline.from_pretrained(checkpoint, device=dev)
    ev = Evaluator(num_samples=num_samples, classifier=classifier, data=data, device=dev, seed=seed)
    return pipe, ev, info


def _title(checkpoint: str | Path, num_samples: int, sampling: SamplingSettings) -> str:
    return (
        f"{Path(checkpoint).name}: {num_samples} samples, {sampling.sampler} {sampling.steps} "
        f"steps, guidance {sampling.guidance_scale:g}"
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    sampling: SamplingSettings = DEFAULTS,
    *,
    num_samples: int = 900,
    classifier: str | Path | None = None,
    data: str | None = None,
    device: str | None = None,
    seed: int = 0,
    inception_weights: str | None = None,
    batch_size: int = 64,
    gallery: str | Path | None = None,
) -> dict[str, Any]:
    """Sample `num_samples` images and report metrics plus the real-vs-real reference.

    sampling: how to sample (its classes and seeds are the evaluator's: see `Evaluator`); a None
        temperature = the checkpoint's `sampling_temperature`.
    gallery: also write a precision gallery PNG there (`dimsum.eval.gallery`).
    """
    pipe, ev, info = _setup(checkpoint, num_samples, classifier, data, device, seed)
    out = {"checkpoint": str(checkpoint), **ev(pipe, sampling, batch_size=batch_size, info=info)}
    if inception_weights:
        out["fid_inception"] = inception_fid(ev.train.images, ev.last_fake, inception_weights)
    if gallery and info.is_main:
        title = (
            f"{_title(checkpoint, num_samples, sampling)}, precision {out['precision']:.3f}, "
            f"temperature {out['settings']['temperature']:g}"
        )
        out["gallery"] = str(ev.gallery(gallery, title=title))
    return out


def temperature_sweep(
    checkpoint: str | Path,
    temperatures: Sequence[float],
    sampling: SamplingSettings = DEFAULTS,
    *,
    num_samples: int = 450,
    classifier: str | Path | None = None,
    data: str | None = None,
    device: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    plot: str | Path | None = None,
) -> dict[str, Any]:
    """The same classes and seeds sampled at each initial-noise temperature, each scored as in
    `evaluate_checkpoint`: the precision / recall / FD trade-off. plot: a PNG of it there.

    Returns ``{"checkpoint", "reference_heldout_vs_train", "sampling_temperature", "runs"}``
    with one `Evaluator` report per temperature, in the given order.
    """
    if len(temperatures) < 1:
        raise InputError("temperatures: give at least one value")
    pipe, ev, info = _setup(checkpoint, num_samples, classifier, data, device, seed)
    temps = [pipe.resolve_temperature(t) for t in temperatures]  # all checked before sampling
    runs = []
    for t in tqdm(temps, desc="temperatures", disable=not info.is_main):
        at_t = dataclasses.replace(sampling, temperature=t)
        report = ev(pipe, at_t, batch_size=batch_size, info=info)
        runs.append(report)
        log.info(
            "temperature %g: %s", t, {k: report[k] for k in ("fd_emoji", "precision", "recall")}
        )
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "reference_heldout_vs_train": ev.reference,
        "sampling_temperature": pipe.config.sampling_temperature,
        "runs": runs,
    }
    if plot and info.is_main:
        chosen = pipe.config.sampling_temperature
        title = _title(checkpoint, num_samples, sampling)
        out["plot"] = str(tradeoff_plot(plot, runs, ev.reference, chosen=chosen, title=title))
    return out


def train_and_save_classifier(
    out: str | Path,
    *,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    data: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train the FD-emoji feature classifier on the training split and save it (safetensors),
    with its accuracies and the real-vs-real reference metrics. The defaults are the recipe of
    the classifier shipped in checkpoints/feature_classifier."""
    train = load_emoji_dataset("train", path=data) if data else load_emoji_dataset("train")
    held = load_emoji_dataset("heldout", path=data) if data else load_emoji_dataset("heldout")
    start = time.perf_counter()
    model = train_feature_classifier(train, steps, batch_size, lr, seed, device)
    seconds = round(time.perf_counter() - start, 1)
    report = {
        "train_time_s": seconds,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train": evaluate_classifier(model, train.images, train.labels),
        "heldout": evaluate_classifier(model, held.images, held.labels, held.categories),
        "reference": reference_metrics(model, train.images, held.images, seed=seed),
        "data": "Emoji-32 (emoji-datasource@16.0.0, google+twitter), train split only",
        "attribution": attribution_notice(),
    }
    save_classifier(model, out, metadata=report)
    return {"out": str(out), **{k: v for k, v in report.items() if k != "attribution"}}
