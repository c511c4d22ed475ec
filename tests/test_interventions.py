"""Interventions change exactly the part of the network they name, and nothing when off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dimsum
from dimsum.cli import main
from dimsum.interventions import (
    Intervention,
    apply_interventions,
    check_interventions,
    compare,
    subband_energy,
)
from dimsum.io import read_png_settings
from dimsum.models.layers import modulate
from dimsum.pipeline import DiMSUMPipeline
from dimsum.tracing import FeatureRecorder, trace_features
from dimsum.validation import InputError


def tiny_model(depth: int = 2, attn_every: int = 0) -> dimsum.DiMSUM:
    """Random weights around the official init (whose zero gates would hide the branches)."""
    torch.manual_seed(0)
    config = dimsum.get_preset("emoji-XS").replace(
        hidden_size=32, depth=depth, input_size=16, attn_every=attn_every
    )
    model = dimsum.build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 16, 16, generator=g), torch.full((n,), 0.3), torch.tensor([1, 4][:n])


def traced(model: dimsum.DiMSUM, interventions: list[Intervention] | None = None, t=None):
    """(output, {block: {name: tensor}}) of one forward, with the interventions applied."""
    x, tt, y = inputs()
    rec = FeatureRecorder()
    with (
        torch.no_grad(),
        trace_features(model, rec),
        apply_interventions(model, interventions or [], t),
    ):
        out = model(x, tt, y)
    return out, rec.features


# ---- off == official --------------------------------------------------------------------
def test_no_intervention_is_the_official_computation_exactly() -> None:
    model = tiny_model(depth=4, attn_every=4)
    x, t, y = inputs()
    with torch.no_grad():
        plain = model(x, t, y)
        with apply_interventions(model, []):
            empty = model(x, t, y)
        # active only for t in [0.5, 1]: this evaluation at t = 0.3 is the official one
        with apply_interventions(model, [Intervention("freq-off", t_range=(0.5, 1))], t=0.3):
            outside = model(x, t, y)
        with apply_interventions(model, [Intervention("freq-off")]):
            changed = model(x, t, y)
        after = model(x, t, y)
    assert torch.equal(plain, empty) and torch.equal(plain, outside) and torch.equal(plain, after)
    assert not torch.equal(plain, changed)
    assert all(b.edit is None for b in model.blocks) and model.attn_skip == frozenset()


def test_pipeline_without_interventions_is_unchanged() -> None:
    pipe = DiMSUMPipeline(tiny_model())
    kw = dict(classes=[1, 2], seeds=[0, 1], num_steps=2, method="euler", return_trajectory=False)
    plain, empty = pipe(**kw), pipe(**kw, interventions=[])
    assert np.array_equal(plain.array, empty.array)
    assert "interventions" not in plain.settings and "interventions" not in empty.settings


# ---- branches off -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["freq-off", "spatial-off"])
@pytest.mark.parametrize("replacement", ["zeros", "other"])
def test_branch_off_changes_only_that_branch_of_the_chosen_block(
    kind: str, replacement: str
) -> None:
    model = tiny_model()
    out0, plain = traced(model)
    out1, changed = traced(model, [Intervention(kind, blocks=(1,), replacement=replacement)])
    for name, value in plain[0].items():  # block 0 is not chosen: identical
        assert torch.equal(changed[0][name], value), name
    kept, off = ("spatial_out", "freq_out") if kind == "freq-off" else ("freq_out", "spatial_out")
    b1 = changed[1]
    assert torch.equal(b1[kept], plain[1][kept])  # the kept branch runs as before
    expected = torch.zeros_like(plain[1][off]) if replacement == "zeros" else plain[1][kept]
    assert torch.equal(b1[off], expected)
    s, w = b1["spatial_out"], b1["freq_out"]
    with torch.no_grad():
        assert torch.equal(b1["fusion_out"], model.blocks[1].proj(s, w))
    assert ("freq_bands" in b1) == (kind == "spatial-off")  # a branch switched off is not run
    assert not torch.equal(out0, out1)


# ---- fusion replaced by addition --------------------------------------------------------
def test_fusion_add_is_plain_addition_of_the_branches() -> None:
    model = tiny_model()
    _, plain = traced(model)
    _, changed = traced(model, [Intervention("fusion-add", blocks=(1,))])
    assert torch.equal(changed[0]["block_out"], plain[0]["block_out"])
    b1, blk = changed[1], model.blocks[1]
    s, w, n = b1["spatial_out"], b1["freq_out"], b1["normed"]
    assert torch.equal(s, plain[1]["spatial_out"]) and torch.equal(w, plain[1]["freq_out"])
    assert torch.equal(b1["fusion_out"], torch.cat([s, w], dim=-1))
    # the block output: n + cat(s, w), then the block's own MLP as usual
    _, t, y = inputs()
    with torch.no_grad():
        c = model.embed_condition(t, y)
        h = n + torch.cat([s, w], dim=-1)
        shift, scale, gate = blk.adaLN_modulation(c).chunk(3, dim=1)
        h = h + gate.unsqueeze(1) * blk.mlp(modulate(blk.norm_2(h), shift, scale))
    torch.testing.assert_close(b1["block_out"], h, atol=1e-6, rtol=0)
    assert not torch.equal(b1["block_out"], plain[1]["block_out"])


# ---- attention skipped ------------------------------------------------------------------
def test_attn_skip_skips_only_the_chosen_attention_calls() -> None:
    model = tiny_model(depth=8, attn_every=4)  # attention after blocks 3 and 7
    calls: list[int] = []
    model.attn_block.register_forward_hook(lambda *_: calls.append(1))
    _, plain = traced(model)
    assert len(calls) == 2
    calls.clear()
    _, changed = traced(model, [Intervention("attn-skip", blocks=(3,))])
    assert len(calls) == 1  # only the one after block 7
    for b in range(4):  # blocks up to the skipped attention are identical
        assert torch.equal(changed[b]["block_out"], plain[b]["block_out"])
    # block 4 now reads block 3's output directly (not through attention)
    assert not torch.equal(changed[4]["normed"], plain[4]["normed"])
    calls.clear()
    traced(model, [Intervention("attn-skip")])  # default: after every block that has one
    assert calls == []
    with pytest.raises(InputError, match=r"no attention block runs after blocks \[2\]"):
        check_interventions(model, [Intervention("attn-skip", blocks=(2, 3))])


# ---- frequency scan order ---------------------------------------------------------------
@pytest.mark.parametrize("replacement", ["raster", "spatial"])
def test_freq_raster_reads_the_wavelet_tokens_in_the_new_order(replacement: str) -> None:
    model = tiny_model()
    blk = model.blocks[1]
    seen: list[torch.Tensor] = []
    blk.freq_mamba.mixer.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    _, plain = traced(model)
    _, changed = traced(model, [Intervention("freq-raster", blocks=(1,), replacement=replacement)])
    window_seq, new_seq = seen
    # the same modulated wavelet tokens, read in another order: back to raster, then reorder
    raster = window_seq.index_select(1, blk.freq_mamba.scan_inv)
    order = blk.spatial_mamba.scan_perm if replacement == "spatial" else torch.arange(64)
    assert torch.equal(new_seq, raster.index_select(1, order))
    assert not torch.equal(new_seq, window_seq)
    assert torch.equal(changed[1]["spatial_out"], plain[1]["spatial_out"])
    assert torch.equal(changed[1]["freq_tokens"], plain[1]["freq_tokens"])
    assert not torch.equal(changed[1]["freq_out"], plain[1]["freq_out"])
    assert torch.equal(changed[0]["block_out"], plain[0]["block_out"])


# ---- the t gate in the pipeline ---------------------------------------------------------
def test_t_range_changes_only_the_evaluations_inside_it() -> None:
    model = tiny_model()
    pipe = DiMSUMPipeline(model)
    log: list[tuple[float, bool]] = []
    # guidance 1: the pipeline calls model(x, t, y), so this hook sees every evaluation
    model.register_forward_pre_hook(
        lambda m, args: log.append((round(float(args[1][0]), 4), m.blocks[0].edit is not None))
    )
    kw = dict(classes=[1, 2], seeds=[0, 1], num_steps=4, method="euler", guidance_scale=1.0)
    plain = pipe(**kw)
    log.clear()
    changed = pipe(**kw, interventions=[Intervention("freq-off", t_range=(0.5, 1.0))])
    assert log == [(0.0, False), (0.25, False), (0.5, True), (0.75, True), (1.0, True)]
    # Euler: the states at t = 0, 0.25, 0.5 come from evaluations before t = 0.5
    assert torch.equal(changed.trajectory.x_t[:3], plain.trajectory.x_t[:3])
    assert not torch.equal(changed.trajectory.x_t[3], plain.trajectory.x_t[3])
    assert changed.settings["interventions"] == [
        {"kind": "freq-off", "blocks": None, "t_range": [0.5, 1.0], "replacement": "zeros"}
    ]


# ---- the Intervention value ---------------------------------------------------------------
def test_text_and_dict_forms_round_trip() -> None:
    iv = Intervention.parse("freq-off:blocks=0-2,5:t=0-0.5:with=other")
    assert iv == Intervention("freq-off", (0, 1, 2, 5), (0.0, 0.5), "other")
    assert Intervention.parse(str(iv)) == iv and Intervention.from_dict(iv.to_dict()) == iv
    assert str(Intervention.parse("attn-skip")) == "attn-skip"
    assert Intervention("freq-raster").replacement == "raster"
    assert Intervention("fusion-add", blocks=[3, 1, 3]).blocks == (1, 3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Intervention("freq-of"), "unknown intervention 'freq-of'"),
        (lambda: Intervention("freq-off", t_range=(0.6, 0.2)), "0 <= t0 <= t1 <= 1"),
        (lambda: Intervention("freq-off", replacement="noise"), "choose zeros or other"),
        (lambda: Intervention("attn-skip", replacement="zeros"), "takes none"),
        (lambda: Intervention("freq-off", blocks=(-1,)), ">= 0"),
        (lambda: Intervention.parse("freq-off:t=0.5"), "t must be T0-T1"),
        (lambda: Intervention.parse("freq-off:blocks=3-1"), "blocks must look like"),
        (lambda: Intervention.parse("freq-off:layer=1"), "bad field"),
        (lambda: Intervention.from_dict({"kind": "freq-off", "when": 1}), "unknown keys"),
    ],
)
def test_bad_interventions_say_what_is_wrong(make, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make()


def test_checks_against_the_model() -> None:
    model = tiny_model()
    with pytest.raises(InputError, match=r"blocks \[5\] out of range"):
        check_interventions(model, ["freq-off:blocks=5"])
    with pytest.raises(InputError, match="no shared attention block"):
        check_interventions(model, ["attn-skip"])
    with pytest.raises(InputError, match="differently at the same t"):
        check_interventions(model, ["freq-off:t=0-0.6", "freq-off:t=0.5-1:with=other"])
    # disjoint t ranges, or freq-off + spatial-off (a swap with "other"), are fine
    check_interventions(model, ["freq-off:t=0-0.4", "freq-off:t=0.5-1:with=other"])
    check_interventions(model, ["freq-off:with=other", "spatial-off:with=other"])
    spatial = dimsum.build_model(
        dimsum.get_preset("emoji-XS").replace(hidden_size=32, depth=2, block_type="spatial")
    )
    with pytest.raises(InputError, match="needs the combined"):
        check_interventions(spatial, ["freq-raster"])
    with apply_interventions(model, [Intervention("freq-off")]):
        with pytest.raises(RuntimeError, match="already has interventions"):
            with apply_interventions(model, [Intervention("spatial-off")]):
                pass
        assert model.blocks[0].edit is not None  # the refused context left the first alone


# ---- compare ------------------------------------------------------------------------------
def test_compare_returns_both_runs_their_difference_and_subband_energies() -> None:
    pipe = DiMSUMPipeline(tiny_model())
    kw = dict(classes=[1, 2], seeds=[0, 1], num_steps=3, method="euler")
    original, changed, diff, energy = compare(pipe, "freq-off:blocks=1", **kw)
    assert diff.shape == (2, 16, 16, 3) and diff.dtype == np.float32
    expected = (changed.array.astype(np.float32) - original.array.astype(np.float32)) / 255
    np.testing.assert_array_equal(diff, expected)
    assert energy.original.shape == energy.changed.shape == (2, 16)
    # orthonormal packet (float32 Haar filters): the 16 energies sum to the mean square
    x = original.array.astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(energy.original.sum(1), (x**2).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(
        energy.of_difference.sum(1),
        ((2 * diff.astype(np.float64)) ** 2).mean(axis=(1, 2, 3)),
        rtol=1e-5,
    )
    assert set(energy.group_change()) == {"approximation", "coarse detail", "fine detail"}
    # reusing the original run: only the changed run is made; mismatched settings are refused
    again = compare(pipe, "freq-off:blocks=1", original=original, **kw)
    assert np.array_equal(again.changed.array, changed.array)
    with pytest.raises(InputError, match="differs from this one"):
        compare(pipe, "freq-off", original=original, **{**kw, "seeds": [0, 2]})


def test_subband_energy_puts_a_checkerboard_in_the_finest_diagonal_band() -> None:
    board = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    e = subband_energy(np.repeat(board[None, ..., None], 3, axis=-1))
    # a black/white 1-px checkerboard (mean 0 in [-1, 1] units) is level-1 diagonal detail,
    # constant at level 2: all its energy is in HH.LL
    assert np.flatnonzero(e[0] > 1e-12).tolist() == [12]
    np.testing.assert_allclose(e[0, 12], 1.0, rtol=1e-6)


# ---- CLI ----------------------------------------------------------------------------------
def test_cli_sample_with_interventions(tmp_path: Path) -> None:
    ckpt = dimsum.save_pretrained(tiny_model(depth=4, attn_every=4), tmp_path / "tiny")
    grid = tmp_path / "grid.png"
    base = ["sample", "--checkpoint", str(ckpt), "--steps", "2", "--method", "euler"]
    rc = main(
        [*base, "--out", str(grid), "--intervention", "freq-off:blocks=0-1:t=0-0.5"]
        + ["--intervention", "attn-skip"]
    )
    assert rc == 0
    assert [d["kind"] for d in read_png_settings(grid)["interventions"]] == [
        "freq-off",
        "attn-skip",
    ]
    assert main([*base, "--out", str(grid), "--intervention", "freq-off:blocks=9"]) == 2
