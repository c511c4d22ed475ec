"""The optional hidden-state trace (`spatial_state`, `freq_state`) against the reference scan.

What is compared is what the app displays: the summaries `summarize_run` makes of the traces
(the reduction the app runs after the images are on the page), against `selective_scan_ref`'s
state on the mixers' real inputs.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dimsum.ops.selective_scan as ss
from app.features import summarize_run
from app.models import random_demo_model
from app.sampling import APP_TRACE_NAMES
from dimsum.ops import (
    ScanStateInputs,
    scan_state_magnitudes,
    selective_scan_ref,
    selective_scan_state_magnitude,
)
from dimsum.pipeline import DiMSUMPipeline
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
    want = torch.stack([_ref_magnitude(u, delta, A, B, bias, t) for t in range(L)], 1)
    for chunk in (1, 3 * b * d * n, 2**18):  # 1 step, 3 steps (40 = 13 x 3 + 1), all at once
        got = selective_scan_state_magnitude(
            u, delta, A, B, bias, delta_softplus=True, chunk_elements=chunk
        )
        assert got.shape == (b, L)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_batched_magnitudes_equal_one_scan_per_entry() -> None:
    """`scan_state_magnitudes` batches the entries of one layer and keeps layers apart."""
    g = torch.Generator().manual_seed(2)
    L, d, n, r = 24, 16, 4, 2

    def layer() -> dict:
        return dict(
            A=-torch.rand(d, n, generator=g) * 4,
            dt_weight=torch.randn(d, r, generator=g),
            delta_bias=torch.randn(d, generator=g),
            delta_softplus=True,
        )

    def entry(rows: int, params: dict) -> ScanStateInputs:
        u, dt = torch.randn(rows, L, d, generator=g), torch.randn(rows, L, r, generator=g)
        return ScanStateInputs(u, dt, torch.randn(rows, L, n, generator=g), **params)

    one, two = layer(), layer()
    entries = [entry(2, one), entry(1, two), entry(3, one), entry(2, two)]
    got = scan_state_magnitudes(entries)
    for e, mag in zip(entries, got, strict=True):
        delta = e.dt @ e.dt_weight.t()
        want = selective_scan_state_magnitude(e.u, delta, e.A, e.B, e.delta_bias, True)
        torch.testing.assert_close(mag, want, rtol=1e-6, atol=1e-7)


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
        shown = summarize_run({0: rec.features})[(0, 1)].states[f"{branch}_state"]
        got = torch.from_numpy(shown)
        assert got.shape == (2, 256) and got.dtype == torch.float32
        for pos in (0, 1, 100, 255):
            want = _ref_from_mixer_input(mixer, seen[branch][rows], pos)
            torch.testing.assert_close(got[:, pos], want, rtol=1e-4, atol=1e-6)


def _ref_from_mixer_input(mixer, u: torch.Tensor, pos: int) -> torch.Tensor:
    """The reference mean |h_pos| of a mixer on its input u (N, L, d_model), recomputed by hand."""
    with torch.no_grad():
        xs, _ = mixer.in_proj(u).chunk(2, dim=-1)
        xs = F.silu(mixer.conv1d(xs.transpose(1, 2))[..., : u.shape[1]]).transpose(1, 2)
        dt, B, _ = torch.split(
            mixer.x_proj(xs), [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1
        )
        delta, A = dt @ mixer.dt_proj.weight.t(), -torch.exp(mixer.A_log)
        return _ref_magnitude(xs, delta, A, B, mixer.dt_proj.bias, pos)


def _count_state_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls of the hidden-state scan, under every name it is imported by."""
    calls = [0]
    original = ss.selective_scan_state_magnitude

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    for mod in list(sys.modules.values()):
        if getattr(mod, "selective_scan_state_magnitude", None) is original:
            monkeypatch.setattr(mod, "selective_scan_state_magnitude", counted)
    return calls


@pytest.mark.parametrize("method", ["heun", "euler"])
def test_generate_scans_no_state_while_sampling_and_shows_the_reference_state(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's Generate (its trace names, guided, float16 traces) runs no hidden-state scan
    while sampling; the reduction after it shows, for the evaluation whose other traces are
    kept (Heun evaluates twice at a recorded time: the last one), the reference scan's |h|."""
    torch.manual_seed(0)
    pipe = DiMSUMPipeline(random_demo_model("emoji-XS").eval())
    model, n, steps, blocks = pipe.model, 2, [1, 3], [0, 2]
    now: dict[str, float] = {}
    seen: dict[tuple[float, int, str], torch.Tensor] = {}  # the last input at each time
    forward = model.forward  # the guided path calls self.forward: no module hook sees it

    def timed(x, t, *args, **kwargs):
        now["t"] = float(t[0])
        return forward(x, t, *args, **kwargs)

    monkeypatch.setattr(model, "forward", timed)
    hooks = []
    for b in blocks:
        for branch in ("spatial", "freq"):
            mixer = getattr(model.blocks[b], f"{branch}_mamba").mixer
            hooks.append(
                mixer.register_forward_pre_hook(
                    lambda m, a, b=b, br=branch: seen.__setitem__(
                        (round(now["t"], 6), b, br), a[0][:n].clone()
                    )
                )
            )
    calls = _count_state_scans(monkeypatch)
    out = pipe(
        [1, 2], [0, 1], guidance_scale=2.0, num_steps=3, method=method,
        trace_steps=steps, trace_blocks=blocks, trace_names=APP_TRACE_NAMES,
    )  # fmt: skip
    for h in hooks:
        h.remove()
    assert calls[0] == 0  # nothing of the scan animation ran during sampling
    shown = summarize_run(out.features)
    assert 0 < calls[0] <= 2 * len(blocks)  # batched over steps: one per (block, branch)
    grid = pipe.record_times(method, 3)
    for step in steps:
        for b in blocks:
            for branch in ("spatial", "freq"):
                mixer = getattr(model.blocks[b], f"{branch}_mamba").mixer
                got = shown[(step, b)].states[f"{branch}_state"]
                assert got.shape == (n, 256) and got.dtype == np.float32
                u = seen[(round(grid[step], 6), b, branch)]
                for pos in (0, 37, 255):
                    want = _ref_from_mixer_input(mixer, u, pos).numpy()
                    # float16 traces (the pipeline's storage dtype): a few 1e-4 relative
                    np.testing.assert_allclose(got[:, pos], want, rtol=3e-3, atol=1e-6)


def test_optional_names_are_off_by_default() -> None:
    model = random_demo_model("emoji-XS").eval()
    rec = FeatureRecorder()
    assert not any(rec.wants(n) for n in OPTIONAL_TRACE_NAMES)
    with torch.no_grad(), trace_features(model, rec, [0]):
        model(torch.randn(1, 3, 32, 32), torch.rand(1), torch.tensor([0]))
    assert not set(OPTIONAL_TRACE_NAMES) & set(rec.features[0])
