"""Selective scan (Mamba-1 S6) with mamba-ssm's signature and semantics.

Recurrence, per batch b, channel d, state n (delta after ``+ delta_bias`` and optional softplus)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t ;  out_t = y_t * silu(z_t)   (if z is given)

Shapes: u, delta, z (batch, dim, L); A (dim, N) real; B, C (batch, N, L) or (batch, G, N, L)
with dim % G == 0; D, delta_bias (dim,). The scan runs in float32 whatever the input dtype (as in
mamba-ssm); the output has u's dtype, the optional last state (batch, dim, N) is float32.

Implementations (``DIMSUM_SCAN_IMPL`` or the ``impl=`` keyword picks one, default ``auto``):

* ``ref``: :func:`selective_scan_ref`, a readable sequential loop, plain autograd.
* ``chunked``: pure PyTorch, chunked ``exp(segsum)`` scan with a custom backward; any device.
* ``cpp``: JIT-compiled C++/OpenMP CPU kernels (built once, cached), CPU only.
* ``triton``: Triton kernels (:mod:`.selective_scan_triton`), forward and backward, CUDA
  tensors (CPU tensors only under ``TRITON_INTERPRET=1``, for tests); no grouped B/C.
* ``cuda``: ``mamba_ssm``'s CUDA kernel, CUDA tensors only, used if it imports and passes a
  smoke test.
* ``auto``: CPU -> ``cpp`` if it builds, else ``chunked``; CUDA -> ``triton`` if triton imports,
  else ``cuda`` if usable, else ``chunked`` (grouped B/C, which the Triton kernel lacks, takes
  ``cuda`` / ``chunked``). Triton comes before mamba-ssm: it ships with CUDA builds of torch,
  needs no nvcc build and runs on every arch torch does; mamba-ssm is used when asked for by name.

:func:`selective_scan_tokens` is the same scan in the model's token-major layout (batch, L, dim);
it serves no-grad CPU calls with the C++ token-major kernel, passes transposed views (no copies)
to the Triton kernel, and transposes into :func:`selective_scan_fn` otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .selective_scan_cpu import cpp_available, selective_scan_chunked, selective_scan_cpp

__all__ = [
    "SCAN_IMPLS",
    "ScanStateInputs",
    "available_scan_impls",
    "scan_state_magnitudes",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_scan_state_magnitude",
    "selective_scan_tokens",
]

log = logging.getLogger(__name__)

SCAN_IMPLS = ("auto", "ref", "chunked", "cpp", "triton", "cuda")
_ENV = "DIMSUM_SCAN_IMPL"


def selective_scan_ref(
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
    """Reference scan: a Python loop over L, differentiable by plain autograd.

    Computes in float32 (float64 inputs stay float64, for gradcheck). Returns out (batch, dim, L)
    in u's dtype, and the last state (batch, dim, N) if ``return_last_state``.
    """
    dtype_in = u.dtype
    ct = torch.float64 if dtype_in == torch.float64 else torch.float32
    u = u.to(ct)
    delta = delta.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, L = u.shape
    A, B, C = A.to(ct), B.to(ct), C.to(ct)
    if B.dim() == 4:  # groups: channel d uses group d // (dim // G)
        B = B.repeat_interleave(dim // B.shape[1], dim=1)  # (batch, dim, N, L)
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    else:
        deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind (not deltaA[:, :, i]) so autograd stacks the per-step grads once instead of
    # materialising a full-size zero tensor per step (O(L^2) memory traffic in backward)
    steps = zip(deltaA.unbind(2), deltaB_u.unbind(2), C.unbind(-1), strict=True)
    for dA_i, dBu_i, C_i in steps:
        x = dA_i * x + dBu_i
        # C_i: (batch, N) or, grouped, (batch, dim, N)
        ys.append((x * (C_i if C_i.dim() == 3 else C_i[:, None])).sum(-1))
    y = torch.stack(ys, dim=2)  # (batch, dim, L)
    out = y if D is None else y + u * D.to(ct)[:, None]
    if z is not None:
        out = out * F.silu(z.to(ct))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out


# ------------------------------------------------------------------------------------------------
# mamba_ssm CUDA kernel (optional)
# ------------------------------------------------------------------------------------------------
_mamba_lock = threading.Lock()
_mamba_state: dict[str, object] = {"fn": None, "ok": None}


def _mamba_fn() -> Callable | None:
    """mamba_ssm's selective_scan_fn if it imports and matches the chunked path on a tiny CUDA
    problem (catches wheels built for another GPU arch / torch ABI). Checked once."""
    with _mamba_lock:
        if _mamba_state["ok"] is None:
            _mamba_state["ok"] = False
            if torch.cuda.is_available():
                try:  # deliberately lazy: mamba-ssm is optional (CUDA wheels only)
                    from mamba_ssm.ops.selective_scan_interface import (
                        selective_scan_fn as mamba_scan,
                    )

                    g = torch.Generator(device="cpu").manual_seed(0)
                    args = [
                        torch.randn(s, generator=g).cuda()
                        for s in [(1, 4, 9), (1, 4, 9), (4, 8), (1, 8, 9), (1, 8, 9), (4,)]
                    ]
                    args[1] = args[1].abs() * 0.1
                    args[2] = -args[2].abs()
                    got = mamba_scan(*args, delta_softplus=False)
                    want = selective_scan_chunked(*args, delta_softplus=False)
                    if not torch.allclose(got.float(), want.float(), rtol=1e-3, atol=1e-4):
                        raise RuntimeError("mamba_ssm smoke test mismatch")
                    _mamba_state["fn"] = mamba_scan
                    _mamba_state["ok"] = True
                except Exception as e:  # ImportError, bad arch, ABI mismatch, ...
                    log.info("dimsum: mamba_ssm selective scan unavailable (%s)", e)
        return _mamba_state["fn"] if _mamba_state["ok"] else None


# ------------------------------------------------------------------------------------------------
# Triton kernels (optional): imported on first use, so CPU-only processes never load triton and
# tests can set TRITON_INTERPRET before the kernels are decorated.
# ------------------------------------------------------------------------------------------------
_triton_state: dict[str, object] = {"mod": None, "ok": None}


def _triton_mod():
    """dimsum.ops.selective_scan_triton if triton imports, else None (checked once)."""
    with _mamba_lock:
        if _triton_state["ok"] is None:
            try:  # deliberately lazy: triton is optional (the `gpu` extra), slow to import
                from . import selective_scan_triton

                _triton_state["mod"], _triton_state["ok"] = selective_scan_triton, True
            except Exception as e:  # ImportError, or a triton too old for the kernels
                _triton_state["ok"] = False
                log.info("dimsum: Triton selective scan unavailable (%s)", e)
        return _triton_state["mod"]


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton kernels can run on tensors of ``device``: CUDA with triton, or any
    device under the interpreter."""
    mod = _triton_mod()
    return mod is not None and (device.type == "cuda" or mod.interpreting())


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------
def available_scan_impls() -> list[str]:
    """Implementations usable in this process, e.g. ``['ref', 'chunked', 'cpp']``.

    Calling it may compile the C++ extension (first time only, ~30-60 s).
    """
    impls = ["ref", "chunked"]
    if cpp_available():
        impls.append("cpp")
    if triton_usable(torch.device("cuda" if torch.cuda.is_available() else "cpu")):
        impls.append("triton")
    if _mamba_fn() is not None:
        impls.append("cuda")
    return impls


def _resolve(impl: str | None, device: torch.device, grouped: bool = False) -> str:
    name = (impl or os.environ.get(_ENV) or "auto").strip().lower()
    if name not in SCAN_IMPLS:
        raise ValueError(f"unknown selective-scan impl {name!r}; expected one of {SCAN_IMPLS}")
    if name != "auto":
        return name
    if device.type == "cuda":
        if not grouped and triton_usable(device):
            return "triton"
        return "cuda" if _mamba_fn() is not None else "chunked"
    if device.type == "cpu" and cpp_available():
        return "cpp"
    return "chunked"


def selective_scan_fn(
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
    *,
    impl: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with mamba-ssm's API; see the module docstring for shapes.

    ``impl`` (keyword only) overrides ``$DIMSUM_SCAN_IMPL``; a forced implementation that cannot
    run here raises instead of silently falling back.
    """
    name = _resolve(impl, u.device, grouped=B.dim() == 4)
    if name == "ref":
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    if name == "chunked":
        return selective_scan_chunked(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    if name == "cpp":
        return selective_scan_cpp(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    if name == "triton":
        mod = _triton_mod()
        if mod is None:
            raise RuntimeError("impl='triton' but triton does not import")
        return mod.selective_scan_triton(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    # name == "cuda"
    fn = _mamba_fn()
    if fn is None:
        raise RuntimeError("DIMSUM_SCAN_IMPL=cuda but mamba_ssm's selective scan is not usable")
    if u.device.type != "cuda":
        raise RuntimeError("the 'cuda' selective scan needs CUDA tensors")
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# Input dtypes the C++ token-major kernels take (low precision is widened to float32 on entry)
CPP_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def use_cpp_inference_kernel(impl: str | None, *tensors: Tensor | None) -> bool:
    """Whether a call may take one of the C++ token-major inference kernels: the implementation
    resolves to ``cpp``, the first tensor is on the CPU, and autograd would record nothing (those
    kernels have no backward)."""
    device = tensors[0].device
    if _resolve(impl, device) != "cpp" or device.type != "cpu":
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def _transposed(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.transpose(1, 2)


def selective_scan_tokens(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    impl: str | None = None,
) -> Tensor:
    """The same scan in the token-major layout the model's linear layers use.

    Shapes: u, delta, z (batch, L, dim); B, C (batch, L, N); A (dim, N); D, delta_bias (dim,).
    Returns out (batch, L, dim). Views with a unit last stride (e.g. slices of one projection's
    output) are read in place. Without gradients on a CPU problem (float32, or bf16 / fp16 widened
    to float32) with dim % 8 == 0, the ``cpp`` implementation runs its token-major kernel (no
    transposing copies); otherwise this transposes and calls :func:`selective_scan_fn`, which
    defines the semantics.
    """
    rows = (u, delta, B, C) + ((z,) if z is not None else ())
    if (
        use_cpp_inference_kernel(impl, u, delta, A, B, C, D, z, delta_bias)
        and all(t.dtype in CPP_DTYPES for t in rows)
        and u.shape[-1] % 8 == 0
        and A.shape[1] <= 64
        and B.dim() == 3
        and all(t.stride(-1) == 1 for t in rows)
    ):
        # bf16 / fp16 inputs (CPU autocast) are widened (a no-op for float32): the kernel keeps
        # the state in float32 like every implementation, and reads float32 rows
        u32, delta32, B32, C32 = u.float(), delta.float(), B.float(), C.float()
        z32 = None if z is None else z.float()
        out = torch.ops.dimsum_scan.fwd_tokens(
            u32, delta32, A, B32, C32, D, z32, delta_bias, delta_softplus
        )
        return out.to(u.dtype)
    t = _transposed  # views, no copies
    if B.dim() == 3 and _resolve(impl, u.device) == "triton":
        # the kernel reads the transposed views in place and writes (batch, L, dim) memory
        mod = _triton_mod()
        if mod is None:
            raise RuntimeError("impl='triton' but triton does not import")
        y = mod.selective_scan_triton(
            t(u), t(delta), A, t(B), t(C), D, t(z), delta_bias, delta_softplus
        )
        return y.transpose(1, 2)
    y = selective_scan_fn(
        u.transpose(1, 2),
        delta.transpose(1, 2),
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D,
        z=None if z is None else z.transpose(1, 2),
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        impl=impl,
    )
    return y.transpose(1, 2)


def selective_scan_state_magnitude(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk_elements: int = 2**18,
) -> Tensor:
    """Mean |h_t| over channels and state of the scan's hidden state at every step, (batch, L).

    Token-major inputs as :func:`selective_scan_tokens`: u, delta (batch, L, dim); A (dim, N);
    B (batch, L, N); delta_bias (dim,). Same recurrence and float32 arithmetic as
    :func:`selective_scan_ref` (``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, h_0 = 0);
    C, D and z do not enter the state. For display (the app's scan animation), no autograd:
    one in-place fused multiply-add per step over (batch, dim, N), in chunks of steps whose
    buffers stay in cache (two of `chunk_elements` floats, reused; the whole (L, batch, dim,
    N) state is never held).
    """
    with torch.no_grad():
        ct = torch.float64 if u.dtype == torch.float64 else torch.float32
        delta = delta.to(ct)
        if delta_bias is not None:
            delta = delta + delta_bias.to(ct)
        if delta_softplus:
            delta = F.softplus(delta)
        # step-major: each step's state is one contiguous block
        du = (delta * u.to(ct)).transpose(0, 1).contiguous()  # (L, batch, dim)
        delta = delta.transpose(0, 1).contiguous()
        Bt = B.to(ct).transpose(0, 1)  # (L, batch, N)
        A = A.to(ct)
        length, batch, dim = du.shape
        n = A.shape[1]
        steps = max(1, min(length, chunk_elements // max(1, batch * dim * n)))
        decay = du.new_empty(steps, batch, dim, n)
        h = du.new_empty(steps, batch, dim, n)
        prev = du.new_zeros(batch, dim, n)
        out = du.new_empty(length, batch)
        for t0 in range(0, length, steps):
            k = min(steps, length - t0)
            dec, hk = decay[:k], h[:k]
            torch.mul(delta[t0 : t0 + k, :, :, None], A, out=dec).exp_()
            torch.mul(du[t0 : t0 + k, :, :, None], Bt[t0 : t0 + k, :, None, :], out=hk)
            for j in range(k):  # h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, in place
                hk[j].addcmul_(dec[j], prev)
                prev = hk[j]
            prev = prev.clone()  # the next chunk overwrites h
            torch.mean(torch.abs(hk, out=dec), dim=(2, 3), out=out[t0 : t0 + k])
        return out.t()


@dataclass(frozen=True)
class ScanStateInputs:
    """What a selective scan's hidden state depends on, kept to compute its magnitude later.

    Token-major, as :func:`selective_scan_tokens`: u (batch, L, dim); dt (batch, L, R), the
    low-rank time step before its projection, ``delta = dt @ dt_weight.T`` (dim, R) (Mamba's
    ``dt_proj``, R = dt_rank: far smaller than delta); B (batch, L, N); A (dim, N); delta_bias
    (dim,) or None; delta_softplus as the scan's. Nothing of size (batch, L, dim, N): taking
    these costs a copy of the scan's own inputs, no arithmetic (the app's tracing, which must
    not slow sampling down); :func:`scan_state_magnitudes` does the scans afterwards, batched.
    """

    u: Tensor
    dt: Tensor
    B: Tensor
    A: Tensor
    dt_weight: Tensor
    delta_bias: Tensor | None
    delta_softplus: bool

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ScanStateInputs:
        """Detached copies: the per-token tensors in `dtype` (a trace's storage dtype), the
        small per-layer parameters (A, dt_weight, delta_bias) in float32."""

        def keep(t: Tensor, dt: torch.dtype) -> Tensor:
            return t.detach().to(device=device, dtype=dt, copy=True)

        f32 = torch.float32
        return ScanStateInputs(
            keep(self.u, dtype),
            keep(self.dt, dtype),
            keep(self.B, dtype),
            keep(self.A, f32),
            keep(self.dt_weight, f32),
            None if self.delta_bias is None else keep(self.delta_bias, f32),
            self.delta_softplus,
        )

    @property
    def nbytes(self) -> int:
        tensors = (self.u, self.dt, self.B, self.A, self.dt_weight, self.delta_bias)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def _same_scan(self, other: ScanStateInputs) -> bool:
        """Whether `other` can share one batched scan with this (same layer, same shapes)."""
        if self.delta_softplus != other.delta_softplus or (self.delta_bias is None) != (
            other.delta_bias is None
        ):
            return False
        if self.u.shape[1:] != other.u.shape[1:] or self.dt.shape[1:] != other.dt.shape[1:]:
            return False
        pairs = [(self.A, other.A), (self.dt_weight, other.dt_weight)]
        if self.delta_bias is not None:
            pairs.append((self.delta_bias, other.delta_bias))  # type: ignore[arg-type]
        return all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)


def scan_state_magnitudes(inputs: list[ScanStateInputs]) -> list[Tensor]:
    """Mean |h_t| (:func:`selective_scan_state_magnitude`, float32) of each entry, (batch, L).

    Entries of one layer (equal A, dt_weight, delta_bias, shapes) are scanned together: one
    batched scan per layer, whatever the number of entries.
    """
    out: list[Tensor | None] = [None] * len(inputs)
    groups: list[list[int]] = []
    for i, item in enumerate(inputs):
        for g in groups:
            if inputs[g[0]]._same_scan(item):
                g.append(i)
                break
        else:
            groups.append([i])
    for g in groups:
        first = inputs[g[0]]
        with torch.no_grad():
            u = torch.cat([inputs[i].u for i in g])
            dt = torch.cat([inputs[i].dt for i in g]).float()
            B = torch.cat([inputs[i].B for i in g])
            delta = dt @ first.dt_weight.float().t()
            mags = selective_scan_state_magnitude(
                u, delta, first.A, B, first.delta_bias, first.delta_softplus
            )
        start = 0
        for i in g:
            rows = inputs[i].u.shape[0]
            out[i] = mags[start : start + rows]
            start += rows
    return out  # type: ignore[return-value]
