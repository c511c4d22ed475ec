"""Triton selective scan (``impl="triton"``): forward and reverse-scan backward, any layout.

Same semantics as :func:`~dimsum.ops.selective_scan.selective_scan_ref` (the definition)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t ;  y_t = <C_t, h_t> + D * u_t
    out_t = y_t * silu(z_t)

One program per (batch, block of ``BLOCK_D`` channels) holds the (BLOCK_D, N) state in registers
and loops over L; nothing of size (batch, L, dim, N) is ever written. The kernels take every
tensor as logical (batch, dim, L) / (batch, N, L) with arbitrary strides, so mamba-ssm's
channel-major layout and the model's token-major layout (transposed views of the projections,
unit channel stride, coalesced loads) run the same code without copies.

Backward: the forward (when a gradient is needed) saves the state every ``CHUNK`` steps, a
(batch, dim, L / CHUNK, N) float32 checkpoint. The backward program walks the chunks in reverse:
it recomputes the chunk's states from its checkpoint into a program-private scratch slice
(BLOCK_D, CHUNK, N), then runs the adjoint recurrence ``dh_{t-1} = exp(delta_t A) dh_t`` step by
step. Per-channel grads (du, ddelta, dz, dA, dD) come out directly; dB and dC sum over channels,
so each channel block writes a partial (batch, n_blocks, N, L) that torch sums afterwards.

Computation is float32 whatever the input dtype; the output has u's dtype, the last state is
float32. Grouped B/C (batch, G, N, L) is not supported here (the model does not use it): the
dispatcher sends it to the chunked scan.

Under ``TRITON_INTERPRET=1`` (read when this module is imported, as ``triton.jit`` decorates)
the kernels run on CPU tensors; that is how CI tests them.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["interpreting", "selective_scan_triton"]

# Module-level so the interpreter tests can shrink them (more chunks and channel blocks per call).
CHUNK = 32  # steps between saved states; scratch per program is BLOCK_D * CHUNK * N floats
BLOCK_D_MAX = 32  # channels per program


def interpreting() -> bool:
    """Whether the kernels in this module were built for Triton's CPU interpreter."""
    return not isinstance(_scan_fwd_kernel, triton.runtime.JITFunction)


@triton.jit
def _softplus(x):
    # torch's softplus threshold (20): above it softplus(x) == x in float32
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)


@triton.jit
def _load_delta(p, bias, valid, SOFTPLUS: tl.constexpr):
    """delta_t (+ bias, softplus), forced to 0 on padded steps so they leave the state alone."""
    raw = tl.load(p, mask=valid, other=0.0).to(tl.float32) + bias
    dt = _softplus(raw) if SOFTPLUS else raw
    return tl.where(valid, dt, 0.0), raw


@triton.jit
def _scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, ckpt_ptr,
    dim, L, N, n_chunks,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sA_d, sA_n,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sz_b, sz_d, sz_l, so_b, so_d, so_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_CKPT: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    md, mn = d < dim, n < N
    mdn = md[:, None] & mn[None, :]
    # exp(dt * A) as exp2(dt * A * log2(e)): one multiply saved per state element and step
    A2 = tl.load(A_ptr + d[:, None] * sA_d + n[None, :] * sA_n, mask=mdn, other=0.0)
    A2 = A2.to(tl.float32) * 1.4426950408889634
    Dv = tl.load(D_ptr + d, mask=md, other=0.0).to(tl.float32) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d, mask=md, other=0.0).to(tl.float32) if HAS_BIAS else 0.0
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    ck = ckpt_ptr + ((b * dim + d[:, None]) * n_chunks) * N + n[None, :]
    for c in range(n_chunks):
        if SAVE_CKPT:  # state entering chunk c
            tl.store(ck + c * N, h, mask=mdn)
        for i in range(CHUNK):
            t = c * CHUNK + i
            # masks as tensors (d * 0 + t): a Python bool would not do under the interpreter
            m, mt = md & (d * 0 + t < L), mn & (n * 0 + t < L)
            u = tl.load(u_ptr + b * su_b + d * su_d + t * su_l, mask=m, other=0.0).to(tl.float32)
            dt, _ = _load_delta(dt_ptr + b * sdt_b + d * sdt_d + t * sdt_l, bias, m, SOFTPLUS)
            Bt = tl.load(B_ptr + b * sB_b + n * sB_n + t * sB_l, mask=mt, other=0.0)
            Ct = tl.load(C_ptr + b * sC_b + n * sC_n + t * sC_l, mask=mt, other=0.0)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt.to(tl.float32)[None, :]
            y = tl.sum(h * Ct.to(tl.float32)[None, :], axis=1) + Dv * u
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + d * sz_d + t * sz_l, mask=m, other=0.0)
                z = z.to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + b * so_b + d * so_d + t * so_l, y, mask=m)
    tl.store(last_ptr + (b * dim + d[:, None]) * N + n[None, :], h, mask=mdn)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr,
    ckpt_ptr, scratch_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr, dB_ptr, dC_ptr,
    dim, L, N, n_chunks, n_blocks,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sA_d, sA_n,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l, sx_b, sx_d, sx_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # du, ddt, dz share the strides sx_*; dout has sg_*; dB, dC partials are contiguous
    # (batch, n_blocks, N, L); dA (batch, dim, N) and dD (batch, dim) are per-batch partials.
    b, blk = tl.program_id(0), tl.program_id(1)
    lane = tl.arange(0, BLOCK_D)
    d = blk * BLOCK_D + lane
    n = tl.arange(0, BLOCK_N)
    md, mn = d < dim, n < N
    mdn = md[:, None] & mn[None, :]
    A = tl.load(A_ptr + d[:, None] * sA_d + n[None, :] * sA_n, mask=mdn, other=0.0)
    A = A.to(tl.float32)
    Dv = tl.load(D_ptr + d, mask=md, other=0.0).to(tl.float32) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d, mask=md, other=0.0).to(tl.float32) if HAS_BIAS else 0.0
    dn = (b * dim + d[:, None]) * N + n[None, :]
    if HAS_DLAST:
        dh = tl.load(dlast_ptr + dn, mask=mdn, other=0.0).to(tl.float32)
    else:
        dh = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    scr = scratch_ptr + (b * n_blocks + blk) * CHUNK * BLOCK_D * BLOCK_N
    scr = scr + lane[:, None] * BLOCK_N + n[None, :]
    part = (b * n_blocks + blk) * N * L + n * L  # row of this program's dB / dC partials
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        h0 = tl.load(ckpt_ptr + ((b * dim + d[:, None]) * n_chunks + c) * N + n[None, :],
                     mask=mdn, other=0.0)  # fmt: skip
        # 1. recompute this chunk's states h_t into the scratch slice
        h = h0
        for i in range(CHUNK):
            t = c * CHUNK + i
            m, mt = md & (d * 0 + t < L), mn & (n * 0 + t < L)
            u = tl.load(u_ptr + b * su_b + d * su_d + t * su_l, mask=m, other=0.0).to(tl.float32)
            dt, _ = _load_delta(dt_ptr + b * sdt_b + d * sdt_d + t * sdt_l, bias, m, SOFTPLUS)
            Bt = tl.load(B_ptr + b * sB_b + n * sB_n + t * sB_l, mask=mt, other=0.0)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt.to(tl.float32)[None, :]
            tl.store(scr + i * BLOCK_D * BLOCK_N, h)
        tl.debug_barrier()  # the states are read back below, possibly by other threads
        # 2. adjoint recurrence, last step of the chunk first
        for ii in range(CHUNK):
            i = CHUNK - 1 - ii
            t = c * CHUNK + i
            m, mt = md & (d * 0 + t < L), mn & (n * 0 + t < L)
            u = tl.load(u_ptr + b * su_b + d * su_d + t * su_l, mask=m, other=0.0).to(tl.float32)
            dt, raw = _load_delta(dt_ptr + b * sdt_b + d * sdt_d + t * sdt_l, bias, m, SOFTPLUS)
            Bt = tl.load(B_ptr + b * sB_b + n * sB_n + t * sB_l, mask=mt, other=0.0)
            Ct = tl.load(C_ptr + b * sC_b + n * sC_n + t * sC_l, mask=mt, other=0.0)
            Bt, Ct = Bt.to(tl.float32), Ct.to(tl.float32)
            g = tl.load(dout_ptr + b * sg_b + d * sg_d + t * sg_l, mask=m, other=0.0)
            g = g.to(tl.float32)
            h = tl.load(scr + i * BLOCK_D * BLOCK_N)
            first = (lane * 0 + i)[:, None] == 0  # step 0 of the chunk: h_prev is the checkpoint
            h_prev = tl.load(scr + (i - 1) * BLOCK_D * BLOCK_N, mask=mdn & ~first, other=0.0)
            h_prev = tl.where(first, h0, h_prev)
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + d * sz_d + t * sz_l, mask=m, other=0.0)
                z = z.to(tl.float32)
                sig = tl.sigmoid(z)
                y = tl.sum(h * Ct[None, :], axis=1) + Dv * u
                dz = g * y * sig * (1.0 + z * (1.0 - sig))  # d silu(z) / dz
                tl.store(dz_ptr + b * sx_b + d * sx_d + t * sx_l, dz, mask=m)
                g = g * z * sig
            dh += g[:, None] * Ct[None, :]
            decay = tl.exp(dt[:, None] * A)
            dC = tl.sum(h * g[:, None], axis=0)
            dB = tl.sum(dh * (dt * u)[:, None], axis=0)
            ddt = tl.sum(dh * (A * decay * h_prev + u[:, None] * Bt[None, :]), axis=1)
            du = tl.sum(dh * Bt[None, :], axis=1) * dt + Dv * g
            dA += dh * h_prev * dt[:, None] * decay
            dD += g * u
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            tl.store(du_ptr + b * sx_b + d * sx_d + t * sx_l, du, mask=m)
            tl.store(ddt_ptr + b * sx_b + d * sx_d + t * sx_l, ddt, mask=m)
            tl.store(dB_ptr + part + t, dB, mask=mt)
            tl.store(dC_ptr + part + t, dC, mask=mt)
            dh = dh * decay
        tl.debug_barrier()  # the next chunk overwrites the scratch slice
    tl.store(dA_ptr + dn, dA, mask=mdn)
    if HAS_D:
        tl.store(dD_ptr + b * dim + d, dD, mask=md)


# ------------------------------------------------------------------------------------------------
# Launchers and autograd
# ------------------------------------------------------------------------------------------------
def _blocks(dim: int, N: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): all N states of 32 channels per program (32 x 16 floats of state
    at N = 16, a few registers per thread; batch * dim / 32 programs)."""
    return min(BLOCK_D_MAX, triton.next_power_of_2(dim)), triton.next_power_of_2(N)


def _strides3(t: Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if t is None else tuple(t.stride())  # type: ignore[return-value]


def _like_u(u: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty (batch, dim, L) tensor in u's memory order: token-major if u's channel stride is
    1 (so the kernel's stores coalesce and the caller's transpose back is free), else contiguous."""
    batch, dim, L = u.shape
    if u.stride(1) == 1 and L > 1:
        return u.new_empty(batch, L, dim, dtype=dtype).transpose(1, 2)
    return u.new_empty(batch, dim, L, dtype=dtype)


def _fwd(u, delta, A, B, C, D, z, delta_bias, softplus: bool, save_ckpt: bool):
    batch, dim, L = u.shape
    N = A.shape[1]
    bd, bn = _blocks(dim, N)
    n_chunks = triton.cdiv(L, CHUNK)
    out = _like_u(u, u.dtype)
    last = u.new_empty(batch, dim, N, dtype=torch.float32)
    ckpt = u.new_empty(batch, dim, n_chunks if save_ckpt else 1, N, dtype=torch.float32)
    _scan_fwd_kernel[(batch, triton.cdiv(dim, bd))](
        u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, out, last, ckpt,
        dim, L, N, n_chunks, *u.stride(), *delta.stride(), *A.stride(),
        *B.stride(), *C.stride(), *_strides3(z), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus, SAVE_CKPT=save_ckpt, CHUNK=CHUNK, BLOCK_D=bd, BLOCK_N=bn,
    )  # fmt: skip
    return out, last, ckpt


def _bwd(u, delta, A, B, C, D, z, delta_bias, softplus: bool, ckpt, chunk: int, dout, dlast):
    batch, dim, L = u.shape
    N = A.shape[1]
    bd, bn = _blocks(dim, N)
    n_chunks, n_blocks = ckpt.shape[2], triton.cdiv(dim, bd)
    f32 = torch.float32
    du, ddelta = _like_u(u, f32), _like_u(u, f32)
    dz = _like_u(u, f32) if z is not None else None
    dA = u.new_empty(batch, dim, N, dtype=f32)
    dD = u.new_empty(batch, dim, dtype=f32)
    dB = u.new_empty(batch, n_blocks, N, L, dtype=f32)
    dC = u.new_empty(batch, n_blocks, N, L, dtype=f32)
    scratch = u.new_empty(batch, n_blocks, chunk, bd, bn, dtype=f32)
    _scan_bwd_kernel[(batch, n_blocks)](
        u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, dout,
        dlast if dlast is not None else u, ckpt, scratch,
        du, ddelta, dz if dz is not None else du, dA, dD, dB, dC,
        dim, L, N, n_chunks, n_blocks, *u.stride(), *delta.stride(), *A.stride(),
        *B.stride(), *C.stride(), *_strides3(z), *dout.stride(), *du.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus, HAS_DLAST=dlast is not None, CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn,
    )  # fmt: skip
    return du, ddelta, dA.sum(0), dB.sum(1), dC.sum(1), dD.sum(0), dz


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
        need_grad = any(ctx.needs_input_grad[:8])
        out, last, ckpt = _fwd(u, delta, A, B, C, D, z, delta_bias, softplus, need_grad)
        if need_grad:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.softplus, ctx.chunk = softplus, CHUNK  # the checkpoint spacing backward must use
        if not return_last_state:
            ctx.mark_non_differentiable(last)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dz = _bwd(
            u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ckpt, ctx.chunk, dout, dlast
        )
        dbias = ddelta.sum((0, 2)) if delta_bias is not None else None
        return (
            du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype),
            dC.to(C.dtype), None if D is None else dD.to(D.dtype),
            None if z is None else dz.to(z.dtype),
            None if dbias is None else dbias.to(delta_bias.dtype), None, None,
        )  # fmt: skip


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` on the Triton kernels; see the module docstring.

    u, delta, z (batch, dim, L) and B, C (batch, N, L) may be any strided views (e.g. transposed
    token-major projections); the output follows u's memory order.
    """
    if B.dim() != 3 or C.dim() != 3:
        raise NotImplementedError("the Triton scan takes B, C (batch, N, L); no groups")
    if A.is_complex():
        raise NotImplementedError("the Triton scan takes a real A")
    if u.device.type != "cuda" and not interpreting():
        raise RuntimeError(
            "the Triton scan needs CUDA tensors (or TRITON_INTERPRET=1 set before "
            "dimsum.ops.selective_scan_triton is imported, for CPU tests)"
        )
    out, last = _SelectiveScanTriton.apply(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )
    return (out, last) if return_last_state else out


def triton_env_note() -> str:
    """One line for logs and benchmarks: device mode of these kernels."""
    return f"triton {triton.__version__}, interpreter={interpreting()}, " + (
        f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')!r}"
    )
