"""Our model built from the official configs has exactly the official state-dict keys/shapes."""

from __future__ import annotations

import json

import pytest

import dimsum
from dimsum.checkpoints import infer_config

from .conftest import MANIFESTS

CASES = {
    "dimsum_L2_imagenet256.json": "L2-imagenet256",
    "dimsum_L2_celebahq256.json": "L2-celebahq256",
    "dimsum_L2_church256.json": "L2-church256",
    "dimsum_XL2_church256_trainsh.json": "XL2-church256",
}


@pytest.mark.parametrize("manifest,preset", sorted(CASES.items()))
def test_manifest_keys_and_shapes(manifest: str, preset: str) -> None:
    data = json.loads((MANIFESTS / manifest).read_text())
    expected = {k: tuple(v["shape"]) for k, v in data["state_dict"].items()}
    model = dimsum.build_model(preset, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected
    assert model.num_parameters() == data["counts"]["parameter_elements"]
    # Every tensor, non-persistent scan permutations included, lives on the requested device
    # (the permutations once stayed on the CPU, which broke build_model(device="cuda")).
    off = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if not t.is_meta]
    assert off == []


@pytest.mark.parametrize("manifest,preset", sorted(CASES.items()))
def test_config_inferred_from_weights(manifest: str, preset: str) -> None:
    """With no config, the architecture inferred from (meta) weights equals the preset's."""
    data = json.loads((MANIFESTS / manifest).read_text())
    sd = dimsum.build_model(preset, device="meta").state_dict()
    assert set(sd) == set(data["state_dict"])
    cfg = infer_config(sd)
    want = dimsum.get_preset(preset)
    for field in (
        "input_size",
        "in_channels",
        "patch_size",
        "hidden_size",
        "depth",
        "num_label_rows",
        "d_state",
        "expand",
        "mamba_dt_rank",
        "attn_every",
        "mlp_ratio",
        "block_type",
        "space",
    ):
        assert getattr(cfg, field) == getattr(want, field), field
