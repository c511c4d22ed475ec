"""The gated MLP's activation: tanh-GELU of one half times the other, bias included.

    out = gelu_tanh(a + bias_a) * (b + bias_b),   [a | b] = h = x @ w12^T     (rows, 2H) -> (rows, H)

``gelu_gate_ref`` is plain PyTorch (autograd, any device). Without gradients on the CPU, the C++
extension's ``gelu_gate`` does it in one pass over h (float32, bf16 or fp16, computing in
float32): ``nn.Linear`` with a bias first writes the broadcast bias over the whole (rows, 2H)
output and then accumulates the product into it, and the activation takes five more passes over
strided halves; on a 2-core CPU these were ~10% of a DiM-L/2 evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .selective_scan import CPP_DTYPES, use_cpp_inference_kernel

__all__ = ["gelu_gate", "gelu_gate_ref"]


def gelu_gate_ref(h: Tensor, bias: Tensor | None = None) -> Tensor:
    """Reference: h (..., 2H), bias (2H,) -> gelu_tanh(a) * b, (..., H)."""
    if bias is not None:
        h = h + bias
    a, b = h.chunk(2, dim=-1)
    return F.gelu(a, approximate="tanh") * b


def gelu_gate(h: Tensor, bias: Tensor | None = None, *, impl: str | None = None) -> Tensor:
    """gelu_tanh(a + bias_a) * (b + bias_b) for h = [a | b] (..., 2H); see the module docstring.

    Runs the C++ kernel when the selective-scan implementation resolves to ``cpp`` (``impl`` /
    ``$DIMSUM_SCAN_IMPL``) on a CPU input that needs no gradient, else the reference.
    """
    if use_cpp_inference_kernel(impl, h, bias) and h.dtype in CPP_DTYPES and h.stride(-1) == 1:
        rows = h.reshape(-1, h.shape[-1])  # a view for the linear layer's output
        out = torch.ops.dimsum_scan.gelu_gate(rows, bias)
        return out.reshape(*h.shape[:-1], h.shape[-1] // 2)
    return gelu_gate_ref(h, bias)
