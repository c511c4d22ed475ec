"""Count a model's network evaluations from a test, without touching library code."""

from __future__ import annotations

import threading

import pytest
import torch


class ForwardCounter:
    """Number of `model.forward` calls since `count_forwards` (thread-safe)."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._n += 1

    @property
    def n(self) -> int:
        with self._lock:
            return self._n


def count_forwards(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> ForwardCounter:
    """Wrap `model.forward` (an instance attribute, so both `model(...)` and the guided path's
    `self.forward(...)` go through it) with a counter; monkeypatch restores it after the test."""
    counter = ForwardCounter()
    original = model.forward

    def counted(*args, **kwargs):
        counter.add()
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counted)
    return counter
