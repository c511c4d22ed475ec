"""Selective scan: every available fast path against the sequential reference.

The first run may compile the C++ extension (~20-60 s, cached afterwards in ~/.cache/dimsum/ext).
The C++ cases are always collected: without a compiler they skip with a reason, and under CI=true
they fail (`tests/ci.py`), so a CI without g++ can never go green by dropping them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dimsum.ops import (
    available_scan_impls,
    causal_conv1d_tokens,
    causal_conv1d_tokens_ref,
    selective_scan_fn,
    selective_scan_ref,
    selective_scan_tokens,
)
from dimsum.ops.selective_scan_cpu import selective_scan_chunked

from .ci import unavailable

ROOT = Path(__file__).resolve().parents[1]
_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _fast_impls() -> list[tuple[str, str]]:
    """(impl, device) pairs to test: the CPU fast paths always (the C++ one skips, or fails in CI,
    when it cannot be built), the CUDA ones where a GPU is present."""
    pairs = [("chunked", "cpu"), ("cpp", "cpu")]
    if torch.cuda.is_available():
        pairs += [(i, "cuda") for i in available_scan_impls() if i in ("chunked", "cuda")]
    return pairs


FAST = _fast_impls()


def need(impl: str) -> None:
    """Skip (locally) or fail (CI=true) when `impl` is not usable in this process."""
    if impl == "cpp" and "cpp" not in available_scan_impls():
        unavailable("the C++ extension is unavailable (no working C++ compiler?)")


@pytest.fixture(autouse=True)
def _impl_available(request) -> None:
    impl = request.node.callspec.params.get("impl") if hasattr(request.node, "callspec") else None
    if impl is not None:
        need(impl)


def make_inputs(
    batch: int,
    dim: int,
    L: int,
    N: int,
    *,
    groups: int = 0,
    with_z: bool = True,
    with_d: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | None]:
    """Mamba-like value ranges: dt = softplus(delta + bias) ~ 0.001-0.5, A = -(1..N)."""
    g = torch.Generator().manual_seed(seed)
    bc = (batch, groups, N, L) if groups else (batch, N, L)
    x = {
        "u": torch.randn(batch, dim, L, generator=g),
        "delta": torch.randn(batch, dim, L, generator=g) * 0.5 - 2.0,
        "A": -torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1)
        * (0.5 + torch.rand(dim, N, generator=g)),
        "B": torch.randn(*bc, generator=g),
        "C": torch.randn(*bc, generator=g),
        "D": torch.randn(dim, generator=g) if with_d else None,
        "z": torch.randn(batch, dim, L, generator=g) if with_z else None,
        "delta_bias": torch.randn(dim, generator=g) * 0.5 if with_d else None,
    }
    return {k: None if v is None else v.to(dtype) for k, v in x.items()}


def run(fn, inputs, device="cpu", dtype=None, **kw):
    """Forward + backward of loss = sum(sin(out)) + sum(last_state^2); returns
    (out, last_state, {name: grad})."""
    xs = {
        k: None
        if v is None
        else v.to(device=device, dtype=dtype or v.dtype).detach().requires_grad_()
        for k, v in inputs.items()
    }
    out, last = fn(**xs, return_last_state=True, **kw)
    (out.float().sin().sum() + last.float().pow(2).sum()).backward()
    return out, last, {k: v.grad for k, v in xs.items() if v is not None}


def assert_rel(got: torch.Tensor, want: torch.Tensor, tol: float, what: str = "") -> None:
    """max |got - want| <= tol * max |want| (scale-aware; gradients span many magnitudes)."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = (got - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-12)
    assert err <= tol * scale, f"{what}: max err {err:.3e} > {tol:.0e} * {scale:.3e}"


def check_against_ref(impl, device, inputs, softplus, tol_out=1e-5, tol_grad=5e-5):
    ref_out, ref_last, ref_g = run(
        selective_scan_ref, inputs, dtype=torch.float64, delta_softplus=softplus
    )
    out, last, grads = run(
        selective_scan_fn, inputs, device=device, delta_softplus=softplus, impl=impl
    )
    assert out.dtype == inputs["u"].dtype and out.device.type == device
    assert_rel(out, ref_out, tol_out, "out")
    assert_rel(last, ref_last, tol_out, "last_state")
    assert grads.keys() == ref_g.keys()
    for k in grads:
        assert grads[k].dtype == inputs[k].dtype, k
        assert_rel(grads[k], ref_g[k], tol_grad, f"d{k}")


SHAPES = [(1, 4, 1, 16), (2, 8, 7, 16), (1, 5, 33, 5), (2, 6, 257, 16), (1, 3, 20, 32)]


@pytest.mark.parametrize(("impl", "device"), FAST)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("softplus", [True, False])
@pytest.mark.parametrize("with_z", [True, False])
def test_matches_reference(impl, device, shape, softplus, with_z):
    inputs = make_inputs(*shape, with_z=with_z, seed=sum(shape))
    if not softplus:  # raw delta must be a valid (positive) step size
        inputs["delta"] = F.softplus(inputs["delta"])
        inputs["delta_bias"] = inputs["delta_bias"].abs() * 0.1
    check_against_ref(impl, device, inputs, softplus)


@pytest.mark.parametrize(("impl", "device"), FAST)
def test_without_optional_inputs(impl, device):
    inputs = make_inputs(2, 8, 19, 16, with_z=False, with_d=False)
    check_against_ref(impl, device, inputs, softplus=True)


@pytest.mark.parametrize(("impl", "device"), FAST)
def test_grouped_bc(impl, device):
    """B/C of shape (batch, G, N, L): channel d uses group d // (dim // G)."""
    if impl == "cuda":
        pytest.skip("grouped B/C is not routed to mamba_ssm here")
    check_against_ref(impl, device, make_inputs(2, 8, 21, 16, groups=2), softplus=True)


@pytest.mark.parametrize(("impl", "device"), FAST)
def test_bf16_inputs(impl, device):
    """bf16 in, float32 inside, bf16 out/grads: compare with the float32 reference run on the
    same (bf16-rounded) values."""
    inputs = make_inputs(2, 8, 64, 16, dtype=torch.bfloat16)
    ref_out, ref_last, ref_g = run(
        selective_scan_ref, inputs, dtype=torch.float32, delta_softplus=True
    )
    out, last, grads = run(selective_scan_fn, inputs, device=device, delta_softplus=True, impl=impl)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert_rel(out, ref_out, 1e-2, "out")
    assert_rel(last, ref_last, 1e-4, "last_state")
    for k in grads:
        assert grads[k].dtype == torch.bfloat16, k
        assert_rel(grads[k], ref_g[k], 2e-2, f"d{k}")


@pytest.mark.parametrize(("impl", "device"), FAST)
def test_non_contiguous_inputs(impl, device):
    inputs = make_inputs(2, 8, 12, 16)
    # same values, transposed storage
    inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["B"] = inputs["B"].transpose(1, 2).contiguous().transpose(1, 2)
    check_against_ref(impl, device, inputs, softplus=True)


def test_reference_gradcheck():
    inputs = make_inputs(1, 2, 5, 3, dtype=torch.float64)
    xs = tuple(v.requires_grad_() for v in inputs.values())

    def f(*a):
        out, last = selective_scan_ref(*a, delta_softplus=True, return_last_state=True)
        return out, last

    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 4, 16])
def test_chunked_gradcheck(chunk):
    """The chunked path's hand-written backward, in float64, for several chunk sizes."""
    inputs = make_inputs(1, 2, 9, 3, groups=1, dtype=torch.float64)
    xs = tuple(v.requires_grad_() for v in inputs.values())

    def f(*a):
        return selective_scan_chunked(*a, delta_softplus=True, return_last_state=True, chunk=chunk)

    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-6)


def test_cpp_realistic_shape_exact():
    """Larger Mamba-like problem: forward within 1e-5 relative of the reference."""
    need("cpp")
    inputs = make_inputs(1, 64, 256, 16)
    want = selective_scan_ref(**inputs, delta_softplus=True)
    got = selective_scan_fn(**inputs, delta_softplus=True, impl="cpp")
    assert_rel(got, want, 1e-5, "out")


def token_major_inputs(batch: int, dim: int, L: int, N: int, *, with_z: bool = True, seed: int = 0):
    """make_inputs in the model's layout, as views: u, z halves of one (batch, L, 2 dim) tensor;
    B, C slices of one (batch, L, 3 + 2N) tensor (as Mamba's projections give them)."""
    x = make_inputs(batch, dim, L, N, with_z=with_z, seed=seed)
    xz = torch.cat([x["u"], x["z"] if with_z else torch.zeros_like(x["u"])], 1).transpose(1, 2)
    dbc = torch.cat([torch.zeros(batch, 3, L), x["B"], x["C"]], 1).transpose(1, 2).contiguous()
    tok = dict(x)
    tok.update(
        u=xz.contiguous()[..., :dim],
        z=xz.contiguous()[..., dim:] if with_z else None,
        delta=x["delta"].transpose(1, 2).contiguous(),
        B=dbc[..., 3 : 3 + N],
        C=dbc[..., 3 + N :],
    )
    return x, tok


@pytest.mark.parametrize("impl", ["chunked", "cpp"])
@pytest.mark.parametrize(
    "shape", [(2, 16, 37, 16), (1, 64, 256, 16), (2, 8, 9, 5), (1, 12, 20, 16)]
)
@pytest.mark.parametrize("with_z", [True, False])
def test_token_major_scan_matches_reference(impl, shape, with_z):
    """selective_scan_tokens on strided views = the reference on the transposed inputs, with and
    without gradients (the cpp kernel serves the no-grad float32 case when dim % 8 == 0)."""
    x, tok = token_major_inputs(*shape, with_z=with_z)
    assert not tok["u"].is_contiguous() and not tok["B"].is_contiguous()
    want = selective_scan_ref(**x, delta_softplus=True).transpose(1, 2)
    with torch.no_grad():
        got = selective_scan_tokens(**tok, delta_softplus=True, impl=impl)
    assert got.shape == want.shape
    assert_rel(got, want, 1e-5, "out (no grad)")
    leaf = {k: v.detach().requires_grad_() if v is not None else None for k, v in tok.items()}
    got_g = selective_scan_tokens(**leaf, delta_softplus=True, impl=impl)
    assert got_g.requires_grad
    assert_rel(got_g, want, 1e-5, "out (grad)")


def test_token_major_kernel_is_used_without_grad(monkeypatch):
    """No grad + cpp: the token-major kernels run, not the reference fallbacks."""
    need("cpp")
    import dimsum.ops.selective_scan as ss

    def no_fallback(*a, **k):
        raise AssertionError("fell back to selective_scan_fn")

    monkeypatch.setattr(ss, "selective_scan_fn", no_fallback)
    _, tok = token_major_inputs(2, 16, 12, 16)
    with torch.inference_mode():
        assert selective_scan_tokens(**tok, delta_softplus=True, impl="cpp").is_contiguous()
    with pytest.raises(AssertionError, match="fell back"):
        selective_scan_tokens(**tok, delta_softplus=True, impl="chunked")
    # the same for the conv before the scan
    import dimsum.ops.causal_conv as cc

    monkeypatch.setattr(cc, "causal_conv1d_tokens_ref", no_fallback)
    w = torch.randn(16, 1, 4)
    with torch.inference_mode():
        assert cc.causal_conv1d_tokens(tok["u"], w, None, silu=True, impl="cpp").is_contiguous()
    with pytest.raises(AssertionError, match="fell back"):
        cc.causal_conv1d_tokens(tok["u"], w, None, silu=True, impl="chunked")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_major_kernels_widen_low_precision(monkeypatch, dtype):
    """CPU autocast hands the conv and the scan bf16 / fp16 rows: the C++ kernels take them
    (widened to float32, no transposing fallback) and give the reference's result on the same
    rounded values, in the input dtype."""
    need("cpp")
    import dimsum.ops.causal_conv as cc
    import dimsum.ops.selective_scan as ss

    def no_fallback(*a, **k):
        raise AssertionError("fell back to the reference")

    x, tok = token_major_inputs(2, 16, 37, 16)
    low = {k: v.to(dtype) if k in ("u", "z", "delta", "B", "C") else v for k, v in tok.items()}
    want = selective_scan_ref(
        **{k: v.float().transpose(1, 2) if k in ("u", "z", "delta", "B", "C") else v
           for k, v in low.items()},
        delta_softplus=True,
    ).transpose(1, 2)  # fmt: skip
    w, b = torch.randn(16, 1, 4), torch.randn(16)
    conv_want = causal_conv1d_tokens_ref(low["u"].float(), w, b, silu=True)
    monkeypatch.setattr(ss, "selective_scan_fn", no_fallback)
    monkeypatch.setattr(cc, "causal_conv1d_tokens_ref", no_fallback)
    with torch.inference_mode():
        got = selective_scan_tokens(**low, delta_softplus=True, impl="cpp")
        conv = cc.causal_conv1d_tokens(low["u"], w, b, silu=True, impl="cpp")
    assert got.dtype == conv.dtype == dtype
    assert_rel(got.float(), want.to(dtype).float(), 1e-2, "scan")
    assert_rel(conv.float(), conv_want.to(dtype).float(), 1e-2, "conv")


@pytest.mark.parametrize("impl", ["chunked", "cpp"])
@pytest.mark.parametrize("dim", [6, 16, 20])
def test_causal_conv_tokens_matches_conv1d(impl, dim):
    """Mamba's token-major conv (+ SiLU) = nn.Conv1d(groups=d, padding=K-1) truncated to L, for
    the reference (with autograd) and, without grad, the C++ kernel (impl="cpp"); incl. L < K and
    widths that are not multiples of 8 (the kernel's scalar tail)."""
    g = torch.Generator().manual_seed(0)
    for L in (1, 3, 4, 50):
        conv = torch.nn.Conv1d(dim, dim, 4, groups=dim, padding=3)
        x = torch.randn(2, L, 2 * dim, generator=g)[..., :dim]  # a strided view, like in_proj's
        want = conv(x.transpose(1, 2))[..., :L].transpose(1, 2)
        for silu in (False, True):
            w = F.silu(want) if silu else want
            ref = causal_conv1d_tokens_ref(x, conv.weight, conv.bias, silu=silu)
            assert_rel(ref, w, 1e-6, f"ref L={L} silu={silu}")
            assert ref.requires_grad  # the reference keeps autograd
            with torch.no_grad():
                got = causal_conv1d_tokens(x, conv.weight, conv.bias, silu=silu, impl=impl)
                nob = causal_conv1d_tokens(x, conv.weight, None, silu=silu, impl=impl)
            assert_rel(got, w, 1e-6, f"{impl} L={L} silu={silu}")
            want_nob = want - conv.bias
            assert_rel(nob, F.silu(want_nob) if silu else want_nob, 1e-6, f"{impl} no bias")


def test_env_var_selects_impl(monkeypatch):
    inputs = make_inputs(1, 4, 6, 16)
    want = selective_scan_ref(**inputs, delta_softplus=True)
    monkeypatch.setenv("DIMSUM_SCAN_IMPL", "ref")
    assert torch.equal(selective_scan_fn(**inputs, delta_softplus=True), want)
    monkeypatch.setenv("DIMSUM_SCAN_IMPL", "chunked")
    assert_rel(selective_scan_fn(**inputs, delta_softplus=True), want, 1e-5)
    monkeypatch.setenv("DIMSUM_SCAN_IMPL", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        selective_scan_fn(**inputs)
    monkeypatch.setenv("DIMSUM_SCAN_IMPL", "cuda")
    if "cuda" not in available_scan_impls():
        with pytest.raises(RuntimeError):
            selective_scan_fn(**inputs)


def test_available_impls():
    impls = available_scan_impls()
    assert impls[:2] == ["ref", "chunked"]
    # triton: on CUDA, or on CPU tensors under TRITON_INTERPRET=1 (tests/test_triton_ops.py)
    assert set(impls) <= {"ref", "chunked", "cpp", "triton", "cuda"}


def test_build_failure_falls_back(tmp_path):
    """A broken compiler must not crash: auto falls back to chunked with a warning."""
    code = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from dimsum.ops import selective_scan_fn, available_scan_impls\n"
        "u = torch.randn(1, 2, 5)\n"
        "out = selective_scan_fn(u, u.abs(), -torch.ones(2, 4), torch.randn(1, 4, 5),"
        " torch.randn(1, 4, 5))\n"
        "print('IMPLS', available_scan_impls(), tuple(out.shape))\n"
    )
    env = {
        # a plain CPU process: no Triton interpreter (another test module may have set it)
        **{k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"},
        "DIMSUM_EXT_DIR": str(tmp_path),
        "CXX": str(tmp_path / "no-such-compiler"),
        "DIMSUM_SCAN_IMPL": "auto",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "IMPLS ['ref', 'chunked'] (1, 2, 5)" in r.stdout
    assert "C++ extension unavailable" in r.stderr
