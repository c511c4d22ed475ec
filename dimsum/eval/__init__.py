"""Offline evaluation: FD-emoji, k-NN precision / recall, class accuracy, optional FID.

Names are imported lazily: `import dimsum.eval` stays cheap until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "ClassifierConfig": "classifier",
    "FeatureClassifier": "classifier",
    "evaluate_classifier": "classifier",
    "features": "classifier",
    "load_classifier": "classifier",
    "predict": "classifier",
    "reference_metrics": "metrics",
    "save_classifier": "classifier",
    "train_feature_classifier": "classifier",
    "compute_metrics": "metrics",
    "fd_emoji": "metrics",
    "frechet_distance": "metrics",
    "inception_fid": "metrics",
    "manifold_membership": "metrics",
    "precision_recall": "metrics",
}

__all__ = [
    "ClassifierConfig",
    "FeatureClassifier",
    "compute_metrics",
    "evaluate_classifier",
    "fd_emoji",
    "features",
    "frechet_distance",
    "inception_fid",
    "load_classifier",
    "manifold_membership",
    "precision_recall",
    "predict",
    "reference_metrics",
    "save_classifier",
    "train_feature_classifier",
]

if TYPE_CHECKING:
    from dimsum.eval.classifier import (
        ClassifierConfig,
        FeatureClassifier,
        evaluate_classifier,
        features,
        load_classifier,
        predict,
        save_classifier,
        train_feature_classifier,
    )
    from dimsum.eval.metrics import (
        compute_metrics,
        fd_emoji,
        frechet_distance,
        inception_fid,
        manifold_membership,
        precision_recall,
        reference_metrics,
    )


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dimsum.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dimsum.eval' has no attribute {name!r}")
