"""Triton causal depthwise conv1d (+ SiLU) on token rows: Mamba's short conv, fused, with backward.

    out[:, l] = act(bias + sum_k weight[:, 0, k] * x[:, l - K + 1 + k])     x (N, L, d), zero before 0

The plain definition is :func:`~dimsum.ops.causal_conv.causal_conv1d_tokens_ref`. One program per
(row, block of L, block of channels) reads the K shifted rows, adds the bias and applies the SiLU
before its single store, so the conv costs one read of x and one write (the reference: K
multiply-adds over the full tensor plus the activation). x may be a strided view (the in_proj
output's first half); channels must have a unit stride so the loads coalesce.

Backward (``causal_conv1d_tokens_triton`` is an autograd Function): with g_pre = grad_out *
act'(pre), dx[l] = sum_k w[k] * g_pre[l + K - 1 - k] (the same conv run forward in time, zero from
L on), dweight[k] = sum over N, L of g_pre[l] * x[l - K + 1 + k] and dbias = sum of g_pre. The
forward saves only its inputs: the backward recomputes the pre-activation (so the SiLU needs no
extra (N, L, d) tensor). Each backward program covers ``BWD_ROWS`` rows of one sequence and
writes float32 partials of dweight and dbias, which torch sums in a fixed order (deterministic,
unlike atomics). Computation is float32 whatever the dtypes; out and dx have x's dtype, dweight
and dbias their parameter's.

Under ``TRITON_INTERPRET=1`` (read when this module is imported) the kernels run on CPU tensors;
that is how the tests run them. Tile sizes are untuned guesses (no GPU timing of the backward yet).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["causal_conv1d_tokens_triton"]

# Module-level so the interpreter tests can shrink them (several row and channel blocks per call).
BLOCK_L = 16  # forward: rows per program
BLOCK_D_MAX = 128  # forward: channels per program
# The backward keeps more tiles live (the SiLU recompute at K shifts): compiled for sm_90 (bf16,
# K = 4, SiLU, 4 warps), 8 x 64 tiles take ~95 registers a thread, 16 x 128 spill. Not timed.
BWD_BLOCK_L = 8  # backward: rows per tile
BWD_BLOCK_D_MAX = 64  # backward: channels per program
BWD_ROWS = 128  # backward: rows per program (a loop over its tiles), one dweight partial each


@triton.jit
def _pre_act(x_ptr, w_ptr, bias, row, src0, d, md, L, sx_n, sx_l,
             K: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """bias + sum_k w[:, k] * x[src0 + k] as a float32 (BLOCK_L, BLOCK_D) tile, x zero outside
    [0, L): the pre-activation at rows src0 + K - 1. The forward and the backward's recompute
    share it, so both sum in the same order."""
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32) + bias[None, :]
    for k in tl.static_range(K):
        src = src0 + k
        m = ((src >= 0) & (src < L))[:, None] & md[None, :]
        xk = tl.load(x_ptr + row * sx_n + src[:, None] * sx_l + d[None, :], mask=m, other=0.0)
        wk = tl.load(w_ptr + d * K + k, mask=md, other=0.0).to(tl.float32)
        acc += xk.to(tl.float32) * wk[None, :]
    return acc


@triton.jit
def _load_bias(b_ptr, d, md, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr):
    if HAS_BIAS:
        bias = tl.load(b_ptr + d, mask=md, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    return bias


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
    bias = _load_bias(b_ptr, d, md, HAS_BIAS, BLOCK_D)
    # zero padding before position 0
    acc = _pre_act(x_ptr, w_ptr, bias, row, rows_l - (K - 1), d, md, L, sx_n, sx_l,
                   K, BLOCK_L, BLOCK_D)  # fmt: skip
    if SILU:
        acc = acc * tl.sigmoid(acc)
    m = (rows_l < L)[:, None] & md[None, :]
    tl.store(out_ptr + row * so_n + rows_l[:, None] * so_l + d[None, :], acc, mask=m)


@triton.jit
def _conv_bwd_kernel(
    x_ptr, w_ptr, b_ptr, g_ptr, dx_ptr, dw_ptr, db_ptr, L, dim, n_progs_l,
    sx_n, sx_l, sg_n, sg_l,
    K: tl.constexpr, K_PAD: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # g_pre[j] = g[j] * act'(pre[j]), zero from L on. dx[l] = sum_k w[k] * g_pre[l + K-1-k];
    # dw[k] = sum_l g_pre[l] * x[l-K+1+k]; db = sum_l g_pre[l]. With SiLU the pre-activation is
    # recomputed at each of the K shifts instead of being saved by the forward: K x K tile loads
    # of x, but of only 2K - 1 distinct row offsets, so mostly cache hits. dx is contiguous;
    # dw (n, n_progs_l, K, dim) and db (n, n_progs_l, dim) take this program's float32 partials.
    row, pl = tl.program_id(0), tl.program_id(1)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    kk = tl.arange(0, K_PAD)
    md = d < dim
    bias = _load_bias(b_ptr, d, md, HAS_BIAS, BLOCK_D)
    dw = tl.zeros((K_PAD, BLOCK_D), dtype=tl.float32)  # row k: dweight[:, k]
    db = tl.zeros((BLOCK_D,), dtype=tl.float32)
    start = pl * ROWS
    for i in range(tl.cdiv(tl.minimum(L - start, ROWS), BLOCK_L)):
        rows_l = start + i * BLOCK_L + tl.arange(0, BLOCK_L)
        dx = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
        for s in tl.static_range(K):  # g_pre at rows l + s meets weight tap K-1-s in dx[l]
            j = rows_l + s
            mj = (j < L)[:, None] & md[None, :]
            gp = tl.load(g_ptr + row * sg_n + j[:, None] * sg_l + d[None, :], mask=mj, other=0.0)
            gp = gp.to(tl.float32)
            if SILU:  # d silu(a) / da = sig(a) (1 + a (1 - sig(a)))
                a = _pre_act(x_ptr, w_ptr, bias, row, j - (K - 1), d, md, L, sx_n, sx_l,
                             K, BLOCK_L, BLOCK_D)  # fmt: skip
                sig = tl.sigmoid(a)
                gp = gp * sig * (1.0 + a * (1.0 - sig))
            w = tl.load(w_ptr + d * K + (K - 1 - s), mask=md, other=0.0).to(tl.float32)
            dx += gp * w[None, :]
            if s == 0:  # the tile's own rows: its share of dweight and dbias
                db += tl.sum(gp, axis=0)
                for k in tl.static_range(K):
                    src = rows_l - (K - 1) + k
                    m = ((src >= 0) & (src < L))[:, None] & md[None, :]
                    xk = tl.load(x_ptr + row * sx_n + src[:, None] * sx_l + d[None, :], mask=m,
                                 other=0.0)  # fmt: skip
                    dwk = tl.sum(gp * xk.to(tl.float32), axis=0)
                    dw += tl.where(kk[:, None] == k, dwk[None, :], 0.0)
        m = (rows_l < L)[:, None] & md[None, :]
        tl.store(dx_ptr + (row * L + rows_l[:, None]) * dim + d[None, :], dx, mask=m)
    part = row * n_progs_l + pl
    tl.store(dw_ptr + (part * K + kk[:, None]) * dim + d[None, :], dw,
             mask=(kk < K)[:, None] & md[None, :])  # fmt: skip
    tl.store(db_ptr + part * dim + d, db, mask=md)


# ------------------------------------------------------------------------------------------------
# Launchers and autograd
# ------------------------------------------------------------------------------------------------
def _fwd(x: Tensor, w: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
    n, L, dim = x.shape
    K = w.shape[1]
    out = torch.empty(n, L, dim, device=x.device, dtype=x.dtype)
    bl, bd = BLOCK_L, min(BLOCK_D_MAX, triton.next_power_of_2(dim))
    grid = (n, triton.cdiv(L, bl), triton.cdiv(dim, bd))
    _conv_kernel[grid](
        x, w, bias if bias is not None else w, out, L, dim, x.stride(0), x.stride(1),
        out.stride(0), out.stride(1),
        K=K, HAS_BIAS=bias is not None, SILU=silu, BLOCK_L=bl, BLOCK_D=bd,
    )  # fmt: skip
    return out


def _bwd(x: Tensor, w: Tensor, bias: Tensor | None, silu: bool, g: Tensor):
    """(dx in x's dtype, contiguous; dweight (dim, K), dbias (dim,) in float32)."""
    n, L, dim = x.shape
    K = w.shape[1]
    if g.stride(-1) != 1:
        g = g.contiguous()
    bl, bd = BWD_BLOCK_L, min(BWD_BLOCK_D_MAX, triton.next_power_of_2(dim))
    rows = max(bl, BWD_ROWS // bl * bl)  # a whole number of tiles
    n_progs_l = triton.cdiv(L, rows)
    dx = torch.empty(n, L, dim, device=x.device, dtype=x.dtype)
    dw = torch.empty(n, n_progs_l, K, dim, device=x.device, dtype=torch.float32)
    db = torch.empty(n, n_progs_l, dim, device=x.device, dtype=torch.float32)
    _conv_bwd_kernel[(n, n_progs_l, triton.cdiv(dim, bd))](
        x, w, bias if bias is not None else w, g, dx, dw, db, L, dim, n_progs_l,
        x.stride(0), x.stride(1), g.stride(0), g.stride(1),
        K=K, K_PAD=triton.next_power_of_2(K), HAS_BIAS=bias is not None, SILU=silu,
        ROWS=rows, BLOCK_L=bl, BLOCK_D=bd,
    )  # fmt: skip
    # fixed-order sums of the per-program partials: deterministic, unlike atomics
    return dx, dw.sum((0, 1)).t(), db.sum((0, 1))


class _CausalConvTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, silu):
        w = weight.reshape(weight.shape[0], weight.shape[-1]).contiguous()
        ctx.save_for_backward(x, w, bias)
        ctx.silu, ctx.w_shape = silu, weight.shape
        return _fwd(x, w, bias, silu)

    @staticmethod
    def backward(ctx, g):
        x, w, bias = ctx.saved_tensors
        dx, dw, db = _bwd(x, w, bias, ctx.silu, g)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return (
            dx if need_x else None,
            dw.reshape(ctx.w_shape).to(w.dtype) if need_w else None,
            db.to(bias.dtype) if need_b else None,
            None,
        )


def causal_conv1d_tokens_triton(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, silu: bool = False
) -> Tensor:
    """x (N, L, d) with x.stride(-1) == 1, weight (d, 1, K), bias (d,) -> (N, L, d) contiguous,
    in x's dtype; differentiable (dx, dweight, dbias in their inputs' dtypes)."""
    if x.dim() != 3 or x.stride(-1) != 1:
        raise ValueError("the Triton conv needs x (N, L, d) with a unit channel stride")
    return _CausalConvTriton.apply(x, weight, bias, silu)
