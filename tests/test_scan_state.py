"""The optional hidden-state trace (`spatial_state`, `freq_state`) against the reference scan."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from app.models import random_demo_model
from dimsum.ops import selective_scan_ref, selective_scan_state_magnitude
from dimsum.tracing import OPTIONAL_TRACE_NAMES, FeatureRecorder, trace_features


def _ref_magnitude(u, delta, A, B, bias, t: int) -> torch.Tensor:
    """Mean |h_t| from selective_scan_ref's last state on the prefix 0..t (channel-major)."""
    cut = lambda a: a[:, : t + 1].transpose(1, 2)  # noqa: E731
    _, last = selective_scan_ref(
        cut(u), cut(delta), A, cut(B), cut(B), None, None, bias, True, return_last_state=True
    )
    return last.abs().mean(dim=(1, 2))


def test_state_magnitude_equals_the_reference_scan_at_every_step() -> None:
    g = torch.Generator().manual_seed(0)
    b, L, d, n = 3, 40, 16, 8
    u = torch.randn(b, L, d, generator=g)
    delta = torch.randn(b, L, d, generator=g) * 0.5 - 1.0
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B = torch.randn(b, L, n, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    got = selective_scan_state_magnitude(u, delta, A, B, bias, delta_softplus=True)
    assert got.shape == (b, L)
    want = torch.stack([_ref_magnitude(u, delta, A, B, bias, t) for t in range(L)], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_traced_state_is_the_mixer_scan_in_scan_order_and_changes_nothing() -> None:
    model = random_demo_model("emoji-XS").eval()
    torch.manual_seed(1)
    x, t, y = torch.randn(4, 3, 32, 32), torch.rand(4), torch.tensor([0, 1, 2, 3])
    block = model.blocks[1]
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        block.spatial_mamba.mixer.register_forward_pre_hook(
            lambda m, a: seen.__setitem__("spatial", a[0])
        ),
        block.freq_mamba.mixer.register_forward_pre_hook(
            lambda m, a: seen.__setitem__("freq", a[0])
        ),
    ]
    rows = slice(1, 3)
    rec = FeatureRecorder(("block_out", *OPTIONAL_TRACE_NAMES), rows=rows)
    with torch.no_grad():
        plain = model(x, t, y)
        with trace_features(model, rec, [1]):
            traced = model(x, t, y)
    for h in hooks:
        h.remove()
    assert torch.equal(plain, traced)  # tracing never changes the computation
    for branch, mixer in (("spatial", block.spatial_mamba.mixer), ("freq", block.freq_mamba.mixer)):
        got = rec.features[1][f"{branch}_state"]
        assert got.shape == (2, 256)
        with torch.no_grad():  # the mixer's scan inputs, recomputed by hand
            u = seen[branch][rows]
            xs, _ = mixer.in_proj(u).chunk(2, dim=-1)
            xs = F.silu(mixer.conv1d(xs.transpose(1, 2))[..., : u.shape[1]]).transpose(1, 2)
            dt, B, _ = torch.split(
                mixer.x_proj(xs), [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1
            )
            delta, A = dt @ mixer.dt_proj.weight.t(), -torch.exp(mixer.A_log)
            for pos in (0, 1, 100, 255):
                want = _ref_magnitude(xs, delta, A, B, mixer.dt_proj.bias, pos)
                torch.testing.assert_close(got[:, pos], want, rtol=1e-4, atol=1e-6)


def test_optional_names_are_off_by_default() -> None:
    model = random_demo_model("emoji-XS").eval()
    rec = FeatureRecorder()
    assert not any(rec.wants(n) for n in OPTIONAL_TRACE_NAMES)
    with torch.no_grad(), trace_features(model, rec, [0]):
        model(torch.randn(1, 3, 32, 32), torch.rand(1), torch.tensor([0]))
    assert not set(OPTIONAL_TRACE_NAMES) & set(rec.features[0])
