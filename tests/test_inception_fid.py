"""The body of `inception_fid` (image conversion, batching, the extractor, the Frechet distance)
on a tiny stand-in for Inception-v3: a fixed linear map of the pixels, substituted for each
backend's extractor (torch-fidelity, pytorch-fid), so no weights file or package is needed.

With a linear extractor the answer has a closed form: shifting every pixel by s moves every
feature by the same vector d (covariances unchanged), so FD = |d|^2; doubling each pixel's
deviation from a centre doubles each feature's (covariance x4), so FD = |mu_a - mu_b|^2 + tr(C_a)
(tr C + tr 4C - 2 tr 2C).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dimsum.eval.metrics as M

BACKENDS = {
    "torch_fidelity": "_inception_features_fidelity",
    "pytorch_fid": "_inception_features_pytorch_fid",
}


class StandIn:
    """Features = W (x / 255) + b of the flattened uint8 NCHW batch; records what it saw."""

    def __init__(self, dim: int = 6) -> None:
        gen = torch.Generator().manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, dim))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        self.rows = 0
        self.max_batch = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 8, 8), (x.dtype, x.shape)
        self.rows += len(x)
        self.max_batch = max(self.max_batch, len(x))
        return self.net(x.float() / 255).float()

    def features(self, images_nhwc: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            return self.net(x.float() / 255).double().numpy()


@pytest.fixture(params=list(BACKENDS))
def stand_in(request, monkeypatch, tmp_path):
    """(StandIn, weights path) with `inception_fid` routed to it through one backend."""
    net = StandIn()
    backend = request.param
    monkeypatch.setattr(M, "_installed", lambda module: module == backend)
    monkeypatch.setattr(M, BACKENDS[backend], lambda weights, device: net)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"stand-in")
    return net, weights


def images(n: int, seed: int, spread: int = 20) -> np.ndarray:
    """(n, 8, 8, 3) uint8 around 128 with integer deviations in [-spread, spread]."""
    rng = np.random.default_rng(seed)
    return (128 + rng.integers(-spread, spread + 1, size=(n, 8, 8, 3))).astype(np.uint8)


def test_identical_sets_give_zero(stand_in) -> None:
    net, weights = stand_in
    a = images(70, 0)
    fd = M.inception_fid(a, a, weights, batch_size=16)
    assert abs(fd) < 1e-6, fd
    assert net.rows == 140 and net.max_batch == 16  # every image, in batches of batch_size


def test_shifted_sets_give_the_squared_shift(stand_in) -> None:
    net, weights = stand_in
    a = images(90, 1)
    b = a + np.uint8(30)  # no overflow: a <= 148
    d = net.features(b[:1]) - net.features(a[:1])
    want = float((d**2).sum())
    fd = M.inception_fid(a, b, weights, batch_size=32)
    assert want > 1 and fd == pytest.approx(want, rel=1e-4)
    assert net.rows == 180


def test_scaled_sets_give_the_closed_form(stand_in) -> None:
    net, weights = stand_in
    a = images(120, 2)
    b = (128 + 2 * (a.astype(np.int64) - 128)).astype(np.uint8)  # deviations doubled, in range
    fa, fb = net.features(a), net.features(b)
    want = float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(np.cov(fa, rowvar=False)))
    fd = M.inception_fid(a, b, weights, batch_size=50)
    assert fd == pytest.approx(want, rel=1e-4)
    assert net.rows == 240


def test_float_images_match_uint8(stand_in) -> None:
    """(N, 3, H, W) floats in [-1, 1] are converted to the same uint8 pixels."""
    _, weights = stand_in
    a, b = images(40, 3), images(40, 4, spread=60)
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    want = M.inception_fid(a, b, weights)
    assert want > 0
    assert M.inception_fid(as_float(a), as_float(b), weights) == pytest.approx(want, rel=1e-9)
