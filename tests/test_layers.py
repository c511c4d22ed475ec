"""Fast inference paths of the layers equal their training (autograd) paths."""

from __future__ import annotations

import pytest
import torch

from dimsum.models.layers import GatedMLP
from dimsum.ops.gated_mlp import gelu_gate_ref


def test_gated_mlp_inference_path_equals_tanh_gelu() -> None:
    torch.manual_seed(0)
    mlp = GatedMLP(16, 40).double()
    x = torch.randn(3, 7, 16, dtype=torch.float64) * 3
    train_out = mlp(x)  # grad enabled: F.gelu(approximate="tanh")
    with torch.no_grad():
        fast = mlp(x)  # the inference path (float64: the reference on any machine)
    torch.testing.assert_close(fast, train_out.detach(), atol=1e-12, rtol=0)
    assert train_out.requires_grad and not fast.requires_grad


def _need_cpp() -> None:
    from dimsum.ops.selective_scan_cpu import load_cpp_extension

    assert load_cpp_extension(), "the C++ kernels did not build (a compiler is required)"


@pytest.mark.parametrize("H", [16, 21])  # a multiple of the 8-wide vectors, and a tail
@pytest.mark.parametrize("bias", [True, False])
def test_gelu_gate_kernel_matches_reference(H: int, bias: bool) -> None:
    """The C++ one-pass activation = the reference on a strided view of a projection."""
    _need_cpp()
    torch.manual_seed(0)
    h = (torch.randn(5, 3, 2 * H + 6) * 3)[..., 3:-3]  # rows with a stride of 2H + 6
    b = torch.randn(2 * H) if bias else None
    want = gelu_gate_ref(h, b)
    got = torch.ops.dimsum_scan.gelu_gate(h.reshape(-1, 2 * H), b).reshape(want.shape)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for dtype in (torch.bfloat16, torch.float16):  # widened inside, rounded once on the way out
        low = h.to(dtype)
        got = torch.ops.dimsum_scan.gelu_gate(low.reshape(-1, 2 * H), b).reshape(want.shape)
        assert got.dtype == dtype
        ref = gelu_gate_ref(low.float(), b).to(dtype)
        torch.testing.assert_close(got.float(), ref.float(), atol=2e-2, rtol=1e-2)


def test_gated_mlp_uses_the_kernel_without_grad() -> None:
    """Float32 CPU inference runs the one-pass kernel (seen by the profiler) and gives the
    training path's output."""
    _need_cpp()
    from torch.profiler import profile

    torch.manual_seed(0)
    mlp = GatedMLP(16, 40)
    x = torch.randn(3, 7, 16) * 3
    train_out = mlp(x).detach()
    with torch.inference_mode(), profile() as prof:
        fast = mlp(x)
    assert "dimsum_scan::gelu_gate" in {e.name for e in prof.events()}
    torch.testing.assert_close(fast, train_out, atol=1e-5, rtol=1e-5)
