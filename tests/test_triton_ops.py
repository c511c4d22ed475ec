"""Triton kernels (selective scan, causal conv) against the plain references.

Without a GPU these run on CPU tensors under Triton's interpreter. ``triton.jit`` reads
``TRITON_INTERPRET`` when it decorates a kernel, i.e. when ``dimsum.ops.selective_scan_triton``
is imported, and triton's own ``@jit`` helpers (``tl.sigmoid``, ...) are decorated when triton is
first imported. So the variable is set here before either import. If our kernels were imported
earlier in compiled mode they are reloaded; if triton itself was (another test module, torch
internals), nothing can be fixed in this process, and one test reruns this file in a subprocess
with TRITON_INTERPRET=1 while the others skip. The interpreter runs each program in Python, so
shapes are small and the kernels' ``CHUNK`` / ``BLOCK_D_MAX`` are shrunk to still cover several
chunks and channel blocks per call.

Triton missing is a skip locally but a failure in CI (``CI=true``), where requirements-dev.txt
installs it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

try:
    import triton
    from triton.runtime import JITFunction
except ImportError as e:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(
            f"CI must test the Triton kernels but triton does not import: {e}"
        ) from e
    pytest.skip(f"triton not installed ({e})", allow_module_level=True)

import dimsum.ops.causal_conv_triton as conv_tr  # noqa: E402
import dimsum.ops.selective_scan_triton as scan_tr  # noqa: E402
from dimsum.ops import (  # noqa: E402
    causal_conv1d_tokens,
    causal_conv1d_tokens_ref,
    selective_scan_fn,
    selective_scan_ref,
    selective_scan_tokens,
)
from dimsum.ops.selective_scan import _resolve  # noqa: E402

# In-process tests need the interpreter on CPU, including triton.language's helpers.
IN_PROCESS = torch.cuda.is_available() or not isinstance(triton.language.sigmoid, JITFunction)
if IN_PROCESS and not torch.cuda.is_available() and not scan_tr.interpreting():
    scan_tr = importlib.reload(scan_tr)  # our kernels were decorated before TRITON_INTERPRET
    conv_tr = importlib.reload(conv_tr)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _small_tiles(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not IN_PROCESS and request.node.name != "test_all_in_subprocess":
        pytest.skip("triton was imported before TRITON_INTERPRET was set: see the subprocess test")
    # 8-step chunks and 8-channel blocks: L = 19 spans 3 chunks (last one partial), dim = 12 two
    # blocks (second one half masked), so checkpoints and the dB/dC block partials are exercised.
    monkeypatch.setattr(scan_tr, "CHUNK", 8)
    monkeypatch.setattr(scan_tr, "BLOCK_D_MAX", 8)
    # the conv in 8 x 8 tiles: L = 19 spans 3 row blocks, dim = 12 two channel blocks; backward
    # programs of 16 rows: two per sequence at L = 19 (2 tiles, then 1), so two dweight partials
    for name in ("BLOCK_L", "BLOCK_D_MAX", "BWD_BLOCK_L", "BWD_BLOCK_D_MAX"):
        monkeypatch.setattr(conv_tr, name, 8)
    monkeypatch.setattr(conv_tr, "BWD_ROWS", 16)


def inputs(batch, dim, L, N, *, z=True, d=True, bias=True, seed=0, dtype=torch.float32):
    """Mamba-like ranges: softplus(delta + bias) ~ 0.05-0.5, A = -(1..N) * [0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    x = {
        "u": torch.randn(batch, dim, L, generator=g),
        "delta": torch.randn(batch, dim, L, generator=g) * 0.5 - 1.0,
        "A": -torch.arange(1, N + 1).float().repeat(dim, 1)
        * (0.5 + torch.rand(dim, N, generator=g)),
        "B": torch.randn(batch, N, L, generator=g),
        "C": torch.randn(batch, N, L, generator=g),
        "D": torch.randn(dim, generator=g) if d else None,
        "z": torch.randn(batch, dim, L, generator=g) if z else None,
        "delta_bias": torch.randn(dim, generator=g) * 0.5 if bias else None,
    }
    # A stays float32 (the model passes -exp(A_log.float())); the activations take `dtype`
    return {
        k: None if v is None else v.to(DEV, v.dtype if k == "A" else dtype) for k, v in x.items()
    }


def fwd_bwd(fn, xs, softplus, last, seed=1):
    """out, last state and the grads of sum(out * g) + sum(state * g2), for fixed g, g2."""
    leaves = {k: None if v is None else v.detach().clone().requires_grad_() for k, v in xs.items()}
    res = fn(*[leaves[k] for k in NAMES], delta_softplus=softplus, return_last_state=last)
    out, state = res if last else (res, None)
    g = torch.Generator().manual_seed(seed)
    loss = (out.float() * torch.randn(out.shape, generator=g).to(DEV)).sum()
    if state is not None:
        loss = loss + (state * torch.randn(state.shape, generator=g).to(DEV)).sum()
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return out, state, grads


def triton_scan(*args, **kw):
    return selective_scan_fn(*args, **kw, impl="triton")


def assert_close(got, want, rtol, atol_rel, what):
    """|got - want| <= atol_rel * max|want| + rtol * |want|, in float32."""
    got, want = got.float(), want.float()
    atol = atol_rel * want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# float32: same math, different summation order (sum over N, block partials) -> ~1e-6 relative.
F32 = (1e-4, 1e-5)


@pytest.mark.parametrize(
    "batch,dim,L,N,z,d,bias,softplus,last",
    [
        (2, 12, 19, 16, True, True, True, True, True),  # everything, 3 chunks, 2 blocks
        (1, 12, 17, 8, False, False, False, False, True),  # bare recurrence
        (1, 8, 9, 4, True, False, True, True, False),  # one partial chunk, no D
    ],
)
def test_scan_forward_backward_fp32(batch, dim, L, N, z, d, bias, softplus, last):
    xs = inputs(batch, dim, L, N, z=z, d=d, bias=bias)
    if not softplus:  # delta is the step itself: keep it positive, as softplus would
        xs["delta"] = xs["delta"].abs() * 0.2
    out, state, grads = fwd_bwd(triton_scan, xs, softplus, last)
    out_r, state_r, grads_r = fwd_bwd(selective_scan_ref, xs, softplus, last)
    assert out.dtype == out_r.dtype and out.shape == out_r.shape
    assert_close(out, out_r, *F32, "out")
    if last:
        assert state.dtype == torch.float32
        assert_close(state, state_r, *F32, "last state")
    assert grads.keys() == grads_r.keys()
    for k in grads:
        assert grads[k].shape == xs[k].shape and grads[k].dtype == xs[k].dtype, k
        assert_close(grads[k], grads_r[k], 1e-4, 1e-4, f"grad {k}")


def test_scan_forward_non_power_of_two_state_and_no_grad():
    # N = 5 pads the state tile to 8 (masked lanes); no grad -> no checkpoint is written
    xs = inputs(2, 12, 11, 5)
    with torch.no_grad():
        out, state = triton_scan(*xs.values(), delta_softplus=True, return_last_state=True)
    out_r, state_r = selective_scan_ref(*xs.values(), delta_softplus=True, return_last_state=True)
    assert_close(out, out_r, *F32, "out")
    assert_close(state, state_r, *F32, "last state")


# bf16 / fp16 inputs: both sides compute in float32 from the same rounded inputs, so the float32
# last state must match to float32 precision (a state kept in bf16 would be off by ~1e-2); out
# and the grads are rounded once to the input dtype at the end: 2^-8 (bf16) / 2^-11 (fp16)
# relative, so rtol 2e-2 / 4e-3 is a couple of ulps, plus that much of the tensor's scale for
# values near zero after cancellation.
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_scan_half_inputs_keep_float32_state(dtype, tol):
    xs = inputs(1, 12, 13, 16, dtype=dtype)
    out, state, grads = fwd_bwd(triton_scan, xs, True, True)
    out_r, state_r, grads_r = fwd_bwd(selective_scan_ref, xs, True, True)
    assert out.dtype == dtype and state.dtype == torch.float32
    assert_close(state, state_r, *F32, "last state (float32)")
    assert_close(out, out_r, tol, tol, "out")
    for k in grads:
        assert grads[k].dtype == xs[k].dtype, k
        assert_close(grads[k], grads_r[k], tol, tol, f"grad {k}")


def test_scan_tokens_reads_projection_views():
    # the mixer's layout: x, z halves of one in_proj output; B, C slices of the x_proj output
    batch, L, dim, N = 2, 11, 12, 8
    g = torch.Generator().manual_seed(3)
    xz = torch.randn(batch, L, 2 * dim, generator=g).to(DEV)
    proj = torch.randn(batch, L, dim + 2 * N, generator=g).to(DEV)
    A = -torch.rand(dim, N, generator=g).to(DEV) * 4 - 0.5
    D, bias = torch.randn(dim, generator=g).to(DEV), torch.randn(dim, generator=g).to(DEV)

    def run(impl):
        xz_, proj_ = xz.clone().requires_grad_(), proj.clone().requires_grad_()
        x, z = xz_.chunk(2, dim=-1)
        dt, B, C = proj_.split([dim, N, N], dim=-1)
        y = selective_scan_tokens(x, dt, A, B, C, D, z, bias, True, impl=impl)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y).to(DEV)).sum().backward()
        return y, xz_.grad, proj_.grad

    y, gxz, gproj = run("triton")
    y_r, gxz_r, gproj_r = run("ref")
    assert y.shape == (batch, L, dim)
    assert_close(y, y_r, *F32, "out")
    assert_close(gxz, gxz_r, 1e-4, 1e-4, "grad in_proj output")
    assert_close(gproj, gproj_r, 1e-4, 1e-4, "grad x_proj output")


def test_dispatch():
    xs = inputs(1, 8, 5, 4)
    if DEV == "cpu":
        # CPU behaviour unchanged: auto never picks triton for CPU tensors
        assert _resolve("auto", torch.device("cpu")) in ("cpp", "chunked")
    else:
        assert _resolve("auto", torch.device("cuda")) == "triton"
        assert _resolve("auto", torch.device("cuda"), grouped=True) != "triton"
    grouped = dict(xs, B=xs["B"][:, None], C=xs["C"][:, None])
    with pytest.raises(NotImplementedError):
        selective_scan_fn(*grouped.values(), impl="triton")


@pytest.mark.parametrize("bias,silu", [(True, True), (False, False)])
def test_causal_conv_forward(bias, silu):
    g = torch.Generator().manual_seed(4)
    xz = torch.randn(2, 21, 2 * 40, generator=g).to(DEV)
    x = xz[..., :40]  # strided view, as the mixer passes it
    w = torch.randn(40, 1, 4, generator=g).to(DEV)
    b = torch.randn(40, generator=g).to(DEV) if bias else None
    with torch.no_grad():
        got = causal_conv1d_tokens(x, w, b, silu=silu, impl="triton")
    want = causal_conv1d_tokens_ref(x, w, b, silu=silu)
    assert got.shape == want.shape
    assert_close(got, want, *F32, "conv")
    direct = conv_tr.causal_conv1d_tokens_triton(x, w, b, silu=silu)
    assert_close(direct, want, *F32, "conv (direct)")


def triton_conv(*args, **kw):
    return causal_conv1d_tokens(*args, **kw, impl="triton")


def conv_inputs(n, L, dim, K, *, bias=True, view=False, dtype=torch.float32, seed=5):
    """(base, weight, bias): x is base[..., :dim]; with ``view`` base is (n, L, 2 * dim), so x
    has row stride 2 * dim, as the mixer's x half of the in_proj output."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, L, 2 * dim if view else dim, generator=g)
    w = torch.randn(dim, 1, K, generator=g) * 0.5
    b = torch.randn(dim, generator=g) if bias else None
    return [None if t is None else t.to(DEV, dtype) for t in (base, w, b)]


def conv_fwd_bwd(fn, base, w, b, dim, silu, seed=6):
    """out and the grads of (base, weight, bias) of sum(out * g) for a fixed g."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (base, w, b)]
    out = fn(leaves[0][..., :dim], leaves[1], leaves[2], silu=silu)
    g = torch.Generator().manual_seed(seed)
    (out.float() * torch.randn(out.shape, generator=g).to(DEV)).sum().backward()
    return out, [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize(
    "n,L,dim,K,bias,silu,view",
    [
        (2, 19, 12, 4, True, True, True),  # the mixer's case: 3 row blocks, 2 channel blocks
        (1, 19, 12, 4, False, False, False),  # plain conv, contiguous x
        (2, 5, 12, 3, True, False, True),  # L shorter than one row block, K = 3
        (1, 19, 8, 2, False, True, False),  # K = 2, SiLU without bias
    ],
)
def test_causal_conv_forward_backward(n, L, dim, K, bias, silu, view):
    base, w, b = conv_inputs(n, L, dim, K, bias=bias, view=view)
    out_r, grads_r = conv_fwd_bwd(causal_conv1d_tokens_ref, base, w, b, dim, silu)
    for fn in (triton_conv, conv_tr.causal_conv1d_tokens_triton):
        out, grads = conv_fwd_bwd(fn, base, w, b, dim, silu)
        assert "Triton" in type(out.grad_fn).__name__, out.grad_fn  # not the reference's graph
        assert out.shape == out_r.shape and out.dtype == out_r.dtype
        assert_close(out, out_r, *F32, "conv")
        for name, got, want in zip(("x", "weight", "bias"), grads, grads_r, strict=True):
            if want is None:
                assert got is None, name
                continue
            assert got.shape == want.shape and got.dtype == want.dtype, name
            assert_close(got, want, *F32, f"grad {name}")


# Half inputs: the kernels accumulate in float32 and round once per output, so they are compared
# with the float32 reference on the same rounded values (a couple of ulps; the reference run in
# bf16 would round at every multiply-add). Weight and bias float32 with x half is the mixer under
# autocast; their grads keep their own dtype.
@pytest.mark.parametrize(
    "x_dtype,w_dtype,tol",
    [
        (torch.bfloat16, torch.bfloat16, 2e-2),
        (torch.bfloat16, torch.float32, 2e-2),
        (torch.float16, torch.float32, 4e-3),
    ],
)
def test_causal_conv_half_inputs(x_dtype, w_dtype, tol):
    base, w, b = conv_inputs(2, 19, 12, 4, view=True, dtype=x_dtype)
    w, b = w.to(w_dtype), b.to(w_dtype)
    out, grads = conv_fwd_bwd(triton_conv, base, w, b, 12, True)
    out_r, grads_r = conv_fwd_bwd(
        causal_conv1d_tokens_ref, base.float(), w.float(), b.float(), 12, True
    )
    assert out.dtype == x_dtype
    assert_close(out, out_r, tol, tol, "conv")
    for name, got, want, leaf in zip(
        ("x", "weight", "bias"), grads, grads_r, (base, w, b), strict=True
    ):
        assert got.dtype == leaf.dtype, name
        assert_close(got, want, tol, tol, f"grad {name}")


def test_mamba_mixer_with_triton_matches_chunked(monkeypatch: pytest.MonkeyPatch):
    from dimsum.models.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(8, 8, d_state=8).to(DEV)
    u = torch.randn(1, 9, 8, device=DEV)
    g = torch.randn(1, 9, 8, device=DEV)

    def run(impl):
        monkeypatch.setenv("DIMSUM_SCAN_IMPL", impl)
        layer.zero_grad(set_to_none=True)
        out = layer(u)
        (out * g).sum().backward()
        return out, {k: p.grad for k, p in layer.named_parameters() if p.requires_grad}

    want, grads_r = run("chunked")
    got, grads = run("triton")  # with grad: Triton scan and Triton conv, forward and backward
    with torch.no_grad():
        got_ng = layer(u)
    assert_close(got, want, *F32, "mixer")
    assert_close(got_ng, want, *F32, "mixer (no grad)")
    assert grads.keys() == grads_r.keys()
    for k in grads:
        assert_close(grads[k], grads_r[k], 1e-4, 1e-4, f"grad {k}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compiled kernels)")
def test_cuda_scan_large_and_faster_than_chunked():
    from dimsum.ops.selective_scan_cpu import selective_scan_chunked

    scan_tr.CHUNK, scan_tr.BLOCK_D_MAX = 32, 32  # production tiles (fixture restores)
    xs = inputs(2, 256, 1024, 16)
    args = list(xs.values())
    out = triton_scan(*args, delta_softplus=True)
    ref = selective_scan_chunked(*args, delta_softplus=True)
    assert_close(out, ref, 1e-3, 1e-4, "out (CUDA, L = 1024)")

    def bench(fn):
        for _ in range(3):
            fn(*args, delta_softplus=True)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            fn(*args, delta_softplus=True)
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / 10

    assert bench(triton_scan) < bench(selective_scan_chunked)


@pytest.mark.skipif(IN_PROCESS, reason="the tests above ran in this process")
def test_all_in_subprocess():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout, r.stdout[-2000:]
