"""Causal depthwise conv1d in token layout: Mamba's short conv before the scan.

    out[:, l] = act(bias + sum_k weight[:, 0, k] * x[:, l - K + 1 + k])     x (N, L, d), zero before 0

The same as ``nn.Conv1d(d, d, K, groups=d, padding=K - 1)`` on x^T truncated to L outputs, but
computed on token rows, so x can stay a view of the in_proj output (no transposing copies).
``causal_conv1d_tokens_ref`` is plain PyTorch (autograd, any device) and the definition. The C++
extension's ``conv_tokens`` (CPU, no gradient) and the Triton kernels in
:mod:`.causal_conv_triton` (CUDA, forward and backward) do the conv and the SiLU in one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .selective_scan import CPP_DTYPES, _resolve, triton_usable, use_cpp_inference_kernel

__all__ = ["causal_conv1d_tokens", "causal_conv1d_tokens_ref"]


def causal_conv1d_tokens_ref(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, silu: bool = False
) -> Tensor:
    """Reference: K shifted multiply-adds. x (N, L, d), weight (d, 1, K), bias (d,) -> (N, L, d)."""
    k = weight.shape[-1]
    w = weight.reshape(weight.shape[0], k)
    out = x * w[:, k - 1] if bias is None else torch.addcmul(bias, x, w[:, k - 1])
    for lag in range(1, k):
        out[:, lag:].addcmul_(x[:, :-lag], w[:, k - 1 - lag])
    return F.silu(out, inplace=True) if silu else out


def causal_conv1d_tokens(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    silu: bool = False,
    impl: str | None = None,
) -> Tensor:
    """Causal depthwise conv (+ SiLU if ``silu``) on token rows; see the module docstring.

    Runs the C++ kernel for float32 (or bf16 / fp16, widened) CPU inputs that need no gradient
    when the selective-scan implementation resolves to ``cpp`` (``impl`` / ``$DIMSUM_SCAN_IMPL``),
    the Triton kernels (with their backward) when it resolves to ``triton``, else the reference.
    The Triton output has x's dtype, where the reference promotes (bf16 x, float32 weight:
    float32).
    """
    if (
        use_cpp_inference_kernel(impl, x, weight, bias)
        and x.dtype in CPP_DTYPES
        and x.dim() == 3
        and x.stride(-1) == 1
    ):
        # bf16 / fp16 activations (CPU autocast) are widened: the kernel computes in float32
        return torch.ops.dimsum_scan.conv_tokens(x.float(), weight, bias, silu).to(x.dtype)
    if _use_triton_conv(impl, x):
        # deliberately lazy: triton is optional (the `gpu` extra), slow to import
        from .causal_conv_triton import causal_conv1d_tokens_triton

        return causal_conv1d_tokens_triton(x, weight, bias, silu=silu)
    return causal_conv1d_tokens_ref(x, weight, bias, silu=silu)


def _use_triton_conv(impl: str | None, x: Tensor) -> bool:
    """Triton conv: the scan resolves to ``triton`` here, triton can run on x's device, and x is
    (N, L, d) with a unit channel stride; with or without a gradient."""
    if x.dim() != 3 or x.stride(-1) != 1 or _resolve(impl, x.device) != "triton":
        return False
    return triton_usable(x.device)
