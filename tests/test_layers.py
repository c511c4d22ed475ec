"""Fast inference paths of the layers equal their training (autograd) paths."""

from __future__ import annotations

import torch

from dimsum.models.layers import GatedMLP


def test_gated_mlp_inference_path_equals_tanh_gelu() -> None:
    torch.manual_seed(0)
    mlp = GatedMLP(16, 40).double()
    x = torch.randn(3, 7, 16, dtype=torch.float64) * 3
    train_out = mlp(x)  # grad enabled: F.gelu(approximate="tanh")
    with torch.no_grad():
        fast = mlp(x)  # in-place sigmoid form
    torch.testing.assert_close(fast, train_out.detach(), atol=1e-12, rtol=0)
    assert train_out.requires_grad and not fast.requires_grad
