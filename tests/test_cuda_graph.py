"""CUDA-graph sampling wrapper: clean fallback where capture is impossible; replay on a GPU."""

from __future__ import annotations

import logging

import pytest
import torch

from dimsum.flow.cuda_graph import GraphedVelocity, GraphUnavailable, graph_velocity


def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * t.view(-1, *([1] * (x.dim() - 1)))


def test_cpu_falls_back_to_the_eager_function(caplog: pytest.LogCaptureFixture):
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(GraphUnavailable, match="not CUDA"):
        GraphedVelocity(velocity, x)
    with caplog.at_level(logging.INFO, logger="dimsum.flow.cuda_graph"):
        fn = graph_velocity(velocity, x)
    assert fn is velocity
    assert "CUDA graph not used" in caplog.text and "not CUDA" in caplog.text


def test_capture_error_falls_back(monkeypatch: pytest.MonkeyPatch, caplog):
    # pretend the device check passed: building the buffers / capturing then fails (no CUDA in
    # this build; on a GPU, e.g. a function that syncs with the host), and fn must come back
    x = torch.randn(2, 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda")))
    with caplog.at_level(logging.INFO, logger="dimsum.flow.cuda_graph"):
        fn = graph_velocity(velocity, x)
    assert fn is velocity
    assert "capture failed" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_replay_matches_eager_and_outputs_survive_replays():
    x = torch.randn(2, 4, 8, 8, device="cuda")
    fn = graph_velocity(velocity, x)
    assert isinstance(fn, GraphedVelocity)
    t1, t2 = torch.full((2,), 0.25, device="cuda"), torch.full((2,), 0.75, device="cuda")
    v1 = fn(x, t1)
    v2 = fn(x * 2, t2)  # must not overwrite v1 (Heun keeps both)
    torch.testing.assert_close(v1, velocity(x, t1))
    torch.testing.assert_close(v2, velocity(x * 2, t2))
    fn(x[:1], t1[:1])  # another batch: eager
    assert fn.eager_calls == 1
