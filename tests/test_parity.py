"""Our network against vectors produced by the official DiMSUM code (SPEC section 4)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dimsum
from dimsum.tracing import FeatureRecorder, trace_features

from .ci import unavailable
from .conftest import PARITY

CASES = ["uncond_tiny", "cond_tiny"]
# DIMSUM_TEST_DEVICE=cuda runs the parity tests on a GPU (fp32, TF32 off).
DEVICE = os.environ.get("DIMSUM_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda"):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
FILES = ["model.safetensors", "checkpoint.pt"]


def assert_pass_rule(ours: torch.Tensor, official: torch.Tensor, name: str) -> None:
    """SPEC pass rule: max|ours - official| <= 1e-4 * max(1, max|official|), float32."""
    assert ours.shape == official.shape, (
        f"{name}: shape {tuple(ours.shape)} vs {tuple(official.shape)}"
    )
    err = (ours.float().cpu() - official.float()).abs().max().item()
    bound = 1e-4 * max(1.0, official.abs().max().item())
    assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e}"


def load_case(case: str):
    """(inputs on DEVICE, official outputs on the CPU)."""
    return load_file(PARITY / case / "inputs.safetensors", device=DEVICE), load_file(
        PARITY / case / "outputs.safetensors"
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("file", FILES)
def test_outputs(case: str, file: str) -> None:
    model = dimsum.load_checkpoint(PARITY / case / file, device=DEVICE)
    inp, out = load_case(case)
    with torch.no_grad():
        assert_pass_rule(model(inp["x"], inp["t"], inp["y"]), out["out"], "out")
        assert_pass_rule(model(inp["x"], inp["t"], None), out["out_y_none"], "out_y_none")
        if "out_cfg" in out:
            cfg = model.forward_with_cfg(inp["x_cfg"], inp["t_cfg"], inp["y_cfg"], 4.0)
            assert_pass_rule(cfg, out["out_cfg"], "out_cfg")
            raw = model(inp["x_cfg"], inp["t_cfg"], inp["y_cfg"])
            assert_pass_rule(raw, out["out_cfg_raw"], "out_cfg_raw")


@pytest.mark.parametrize("impl", ["ref", "chunked", "cpp"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_outputs_on_every_scan_path(impl: str, grad: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same official vectors through each way the Mamba layers can run: without gradients
    and impl=cpp the token-major C++ kernels; with gradients (training) or another impl the
    references (conv on token rows, the scan transposed into selective_scan_fn) — the path CUDA
    takes too."""
    if impl == "cpp" and DEVICE != "cpu":
        pytest.skip("the C++ kernels run on the CPU only")
    if impl == "cpp" and "cpp" not in dimsum.ops.available_scan_impls():
        unavailable("the C++ extension is unavailable (no working C++ compiler?)")
    monkeypatch.setenv("DIMSUM_SCAN_IMPL", impl)
    model = dimsum.load_checkpoint(PARITY / "cond_tiny" / "model.safetensors", device=DEVICE)
    inp, out = load_case("cond_tiny")
    with torch.set_grad_enabled(grad):
        ours = model(inp["x"], inp["t"], inp["y"])
    assert ours.requires_grad == grad
    assert_pass_rule(ours.detach(), out["out"], f"out ({impl}, grad={grad})")


def test_training_checkpoint_uses_ema() -> None:
    """The official file differs between 'model' and 'ema' on purpose; we must read 'ema'."""
    model = dimsum.load_checkpoint(PARITY / "cond_tiny" / "checkpoint.pt")
    ema = load_file(PARITY / "cond_tiny" / "model.safetensors")
    assert torch.equal(model.final_layer.linear.bias, ema["final_layer.linear.bias"])
    assert model.checkpoint_info["format"] == "official-training-checkpoint"


@pytest.mark.parametrize("case", CASES)
def test_intermediates(case: str) -> None:
    model = dimsum.load_checkpoint(PARITY / case / "model.safetensors", device=DEVICE)
    inp, out = load_case(case)
    x, t, y = inp["x"], inp["t"], inp["y"]
    got: dict[str, torch.Tensor] = {}
    hooks = []

    def keep(name, fn):
        return lambda mod, args, res: got.__setitem__(name, fn(args, res))

    b0 = model.blocks[0]
    hooks.append(
        b0.spatial_mamba.mixer.register_forward_hook(keep("b0_spatial_mixer_in", lambda a, r: a[0]))
    )
    hooks.append(
        b0.spatial_mamba.mixer.register_forward_hook(keep("b0_spatial_mixer_out", lambda a, r: r))
    )
    hooks.append(
        b0.freq_mamba.mixer.register_forward_hook(keep("b0_freq_mixer_in", lambda a, r: a[0]))
    )
    hooks.append(
        b0.freq_mamba.mixer.register_forward_hook(keep("b0_freq_mixer_out", lambda a, r: r))
    )
    hooks.append(b0.mlp.register_forward_hook(keep("b0_mlp_out", lambda a, r: r)))
    hooks.append(b0.register_forward_hook(keep("b0_out_residual", lambda a, r: r[1])))
    hooks.append(model.final_layer.register_forward_hook(keep("final_in", lambda a, r: a[0])))
    hooks.append(model.final_layer.register_forward_hook(keep("final_out_tokens", lambda a, r: r)))
    calls: list[torch.Tensor] = []
    hooks.append(model.attn_block.register_forward_hook(lambda m, a, r: calls.append(r)))
    block_out: list[torch.Tensor] = []
    for blk in model.blocks:
        hooks.append(blk.register_forward_hook(lambda m, a, r: block_out.append(r[0])))

    rec = FeatureRecorder()
    with torch.no_grad(), trace_features(model, rec, blocks=[0]):
        model(x, t, y)
        got["c"] = model.embed_condition(t, y)
        got["b0_in_hidden"] = model.x_embedder(x) + model.pos_embed
    for h in hooks:
        h.remove()
    f = rec.features[0]
    got.update(
        b0_normed=f["normed"],
        b0_spatial_out=f["spatial_out"],
        b0_freq_dwt_tokens=f["freq_tokens"],
        b0_freq_out=f["freq_out"],
        b0_fusion_out=f["fusion_out"],
        b0_out_hidden=f["block_out"],
        blocks_out_hidden=torch.stack(block_out),
    )
    for k, v in enumerate(calls):
        got[f"attn_call{k}_out"] = v
    expected = [
        k for k in out if k.startswith(("b0_", "attn_call", "final_", "blocks_")) or k == "c"
    ]
    assert set(expected) <= set(got), sorted(set(expected) - set(got))
    for name in expected:
        assert_pass_rule(got[name], out[name], name)


@pytest.mark.parametrize("case", CASES)
def test_scan_permutations_match_official(case: str) -> None:
    from dimsum.models.scan_orders import freq_scan_order

    _, out = load_case(case)
    side = json.loads((PARITY / case / "config.json").read_text())["scan"]["token_grid"][0]
    assert torch.equal(freq_scan_order(0, side), out["freq_scan_perm_rowfirst"].cpu())
    assert torch.equal(freq_scan_order(1, side), out["freq_scan_perm_colfirst"].cpu())


@pytest.mark.parametrize("case", CASES)
def test_scan_schedule_matches_official(case: str) -> None:
    from dimsum.models.scan_orders import attention_after, layer_scan

    cfg = json.loads((PARITY / case / "config.json").read_text())
    for layer in cfg["scan"]["layers"]:
        s = layer_scan(layer["layer"])
        assert s.spatial_transpose == layer["spatial_transpose"]
        assert s.spatial_reverse == layer["spatial_reverse"]
        assert s.freq_column_first == layer["freq_column_first"]
        assert attention_after(layer["layer"], 4) == layer["attn_block_after"]


def test_tracing_does_not_change_output() -> None:
    model = dimsum.load_checkpoint(PARITY / "cond_tiny" / "model.safetensors", device=DEVICE)
    inp, _ = load_case("cond_tiny")
    with torch.no_grad():
        plain = model(inp["x"], inp["t"], inp["y"])
        with trace_features(model, FeatureRecorder()) as rec:
            traced = model(inp["x"], inp["t"], inp["y"])
    assert torch.equal(plain, traced)
    assert sorted(rec.features) == list(range(8))
    assert all(b.tracer is None for b in model.blocks)


def test_nested_tracing_is_refused_and_leaves_the_first_tracer() -> None:
    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(depth=2, attn_every=0))
    first = FeatureRecorder(["block_out"])
    with trace_features(model, first, blocks=[1]):
        with pytest.raises(RuntimeError, match=r"blocks \[1\] are already being traced"):
            with trace_features(model, FeatureRecorder()):
                pass
        assert model.blocks[1].tracer is first  # the refused context did not detach it
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32), torch.rand(1), torch.tensor([2]))
    assert list(first.features) == [1] and list(first.features[1]) == ["block_out"]
    assert all(b.tracer is None for b in model.blocks)


def test_pipeline_traces_only_the_requested_steps_blocks_and_names() -> None:
    from dimsum.pipeline import DiMSUMPipeline

    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(depth=2, attn_every=0))
    pipe = DiMSUMPipeline(model)
    out = pipe(
        [1, 2],
        [0, 1],
        num_steps=3,
        method="euler",
        trace_steps=[1],
        trace_blocks=[0],
        trace_names=["freq_bands", "block_out"],
    )
    assert list(out.features) == [1] and list(out.features[1]) == [0]
    feats = out.features[1][0]
    assert sorted(feats) == ["block_out", "freq_bands"]
    assert feats["freq_bands"].shape == (2, 16, 32, 4, 4)  # conditional rows only
    assert feats["block_out"].dtype == torch.float16
    with pytest.raises(ValueError, match="unknown trace names"):
        pipe([1], [0], num_steps=2, method="euler", trace_steps=[0], trace_names=["nope"])


def test_pipeline_karras_schedule_records_traces_and_labels_its_grid() -> None:
    """A karras run steps, records and traces on the karras grid and says so in its settings;
    its images differ from the uniform run's (same seeds), and dopri5 refuses it clearly."""
    from dimsum.flow import time_grid
    from dimsum.pipeline import DiMSUMPipeline
    from dimsum.validation import InputError

    torch.manual_seed(0)
    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(depth=2, attn_every=0))
    for p in model.parameters():  # the zero-initialised output layer would give v = 0
        p.data.normal_(0, 0.05)
    pipe = DiMSUMPipeline(model)
    kw = dict(guidance_scale=3.0, num_steps=4, method="heun", trace_steps=[2], trace_blocks=[0])
    karras = pipe([1, 2], [0, 1], schedule="karras", **kw)
    uniform = pipe([1, 2], [0, 1], **kw)
    assert karras.settings["schedule"] == "karras" and uniform.settings["schedule"] == "uniform"
    assert karras.trajectory.t.tolist() == pytest.approx(time_grid(4, "karras"), abs=1e-6)
    assert uniform.trajectory.t.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert list(karras.features) == [2] and "block_out" in karras.features[2][0]
    assert not torch.equal(karras.trajectory.final, uniform.trajectory.final)
    with pytest.raises(InputError, match="schedule: 'karras' is for the fixed-step samplers"):
        pipe([1], [0], num_steps=3, method="dopri5", schedule="karras")
    with pytest.raises(InputError, match="schedule"):
        pipe([1], [0], num_steps=3, method="heun", schedule="cosine")


def test_pipeline_without_trajectory_skips_the_recording_evaluation() -> None:
    """The final images do not depend on recording; without a trajectory (or callback) the
    sampler makes only its own 2 x steps Heun evaluations, and says so in the settings."""
    from dimsum.pipeline import DiMSUMPipeline

    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(depth=2, attn_every=0))
    pipe = DiMSUMPipeline(model)
    calls = []
    guided = model.guided_velocity

    def counted(*args, **kwargs):
        calls.append(1)
        return guided(*args, **kwargs)

    model.guided_velocity = counted  # one call per guided evaluation
    kw = dict(guidance_scale=3.0, num_steps=3, method="heun")
    full = pipe([1, 2], [0, 1], return_trajectory=True, **kw)
    assert len(calls) == 2 * 3 + 1 and full.trajectory is not None
    calls.clear()
    bare = pipe([1, 2], [0, 1], return_trajectory=False, **kw)
    assert len(calls) == 2 * 3 and bare.trajectory is None
    assert bare.settings["nfe"] == full.settings["nfe"] == 6
    assert np.array_equal(bare.array, full.array)
    calls.clear()
    streamed = pipe([1, 2], [0, 1], return_trajectory=False, callback=lambda rec: None, **kw)
    assert len(calls) == 2 * 3 + 1 and streamed.trajectory is None  # the callback gets x1_hat
