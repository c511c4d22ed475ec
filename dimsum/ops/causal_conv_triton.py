"""Triton causal depthwise conv1d (+ SiLU) on token rows: Mamba's short conv, fused.

    out[:, l] = act(bias + sum_k weight[:, 0, k] * x[:, l - K + 1 + k])     x (N, L, d), zero before 0

The plain definition is :func:`~dimsum.ops.causal_conv.causal_conv1d_tokens_ref`. One program per
(row, block of L, block of channels) reads the K shifted rows, adds the bias and applies the SiLU
before its single store, so the conv costs one read of x and one write (the reference: K
multiply-adds over the full tensor plus the activation). x may be a strided view (the in_proj
output's first half); channels must have a unit stride so the loads coalesce. Forward only:
callers needing a gradient use the reference (see ``causal_conv1d_tokens``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["causal_conv1d_tokens_triton"]

# Module-level so the interpreter tests can shrink them (several row and channel blocks per call).
BLOCK_L = 16  # rows per program
BLOCK_D_MAX = 128  # channels per program


@triton.jit
def _conv_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, L, dim, sx_n, sx_l, so_n, so_l,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    rows_l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    md = d < dim
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + d, mask=md, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        src = rows_l - (K - 1) + k  # zero padding before position 0
        m = ((src >= 0) & (src < L))[:, None] & md[None, :]
        xk = tl.load(x_ptr + row * sx_n + src[:, None] * sx_l + d[None, :], mask=m, other=0.0)
        wk = tl.load(w_ptr + d * K + k, mask=md, other=0.0).to(tl.float32)
        acc += xk.to(tl.float32) * wk[None, :]
    if SILU:
        acc = acc * tl.sigmoid(acc)
    m = (rows_l < L)[:, None] & md[None, :]
    tl.store(out_ptr + row * so_n + rows_l[:, None] * so_l + d[None, :], acc, mask=m)


def causal_conv1d_tokens_triton(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, silu: bool = False
) -> Tensor:
    """x (N, L, d) with x.stride(-1) == 1, weight (d, 1, K), bias (d,) -> (N, L, d) contiguous."""
    if x.stride(-1) != 1:
        raise ValueError("the Triton conv needs a unit channel stride")
    n, L, dim = x.shape
    K = weight.shape[-1]
    w = weight.reshape(dim, K).contiguous()
    out = torch.empty(n, L, dim, device=x.device, dtype=x.dtype)
    bl, bd = BLOCK_L, min(BLOCK_D_MAX, triton.next_power_of_2(dim))
    grid = (n, triton.cdiv(L, bl), triton.cdiv(dim, bd))
    _conv_kernel[grid](
        x, w, bias if bias is not None else w, out, L, dim, x.stride(0), x.stride(1),
        out.stride(0), out.stride(1),
        K=K, HAS_BIAS=bias is not None, SILU=silu, BLOCK_L=bl, BLOCK_D=bd,
    )  # fmt: skip
    return out
