"""Checkpoint loading: forms, inference, safety, clear errors."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import dimsum
from dimsum.checkpoints import CheckpointError, load_checkpoint

from .conftest import PARITY


def test_bare_state_dict_without_config(tmp_path: Path) -> None:
    """Like the hub's pytorch_model.bin: a bare state dict, no config -> inferred architecture."""
    from safetensors.torch import load_file

    sd = load_file(PARITY / "cond_tiny" / "model.safetensors")
    torch.save(sd, tmp_path / "pytorch_model.bin")
    model = load_checkpoint(tmp_path)
    assert model.config.hidden_size == 16 and model.config.depth == 8
    assert model.config.num_classes == 10 and model.config.null_class == 10
    assert model.checkpoint_info["format"] == "state-dict"
    assert not model.training


def test_save_pretrained_round_trip_bf16(tmp_path: Path) -> None:
    model = dimsum.build_model("emoji-XS")
    x, t, y = torch.randn(2, 3, 32, 32), torch.rand(2), torch.tensor([1, 2])
    for p in model.parameters():  # non-zero outputs (the official init zeroes the final layer)
        p.data.normal_(0, 0.05)
    dimsum.save_pretrained(model, tmp_path / "m")
    again = dimsum.load_checkpoint(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, y), model(x, t, y))
    dimsum.save_pretrained(model, tmp_path / "h", dtype=torch.bfloat16)
    half = load_checkpoint(tmp_path / "h")
    assert (tmp_path / "h" / "model.safetensors").stat().st_size < (
        tmp_path / "m" / "model.safetensors"
    ).stat().st_size * 0.6
    assert half.pos_embed.dtype == torch.float32  # loaded as float32 by default
    assert load_checkpoint(tmp_path / "h", dtype="bf16").pos_embed.dtype == torch.bfloat16


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_refuses_pickle_that_runs_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"ema": {"w": torch.zeros(1)}, "payload": _RunsCode()}, f)
    torch.save({"pos_embed": torch.zeros(1), "x": _RunsCode()}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError, match="refusing to load"):
            load_checkpoint(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_mismatch_names_keys(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    sd = load_file(PARITY / "cond_tiny" / "model.safetensors")
    cfg = dimsum.get_preset("emoji-XS")
    with pytest.raises(CheckpointError, match="missing keys|shape mismatches|unexpected keys") as e:
        dimsum.checkpoints.model_from_state_dict(sd, cfg)
    assert "pos_embed" in str(e.value)
    del sd["blocks.0.mlp.w3.bias"]
    torch.save(sd, tmp_path / "m.bin")
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.w3\.bias"):
        load_checkpoint(tmp_path / "m.bin", config=dimsum.checkpoints.infer_config(sd))


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    good = PARITY / "uncond_tiny" / "model.safetensors"
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.safetensors")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    shutil.copy(PARITY / "uncond_tiny" / "checkpoint.pt", tmp_path / "c.pt")
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(raw[: len(raw) - 300])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "c.pt")


def test_offline_hub_id_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="`hf download nobody-here"):
        load_checkpoint("nobody-here/no-such-dimsum-model")


def test_build_model_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        dimsum.build_model("L3-nothing")
    with pytest.raises(ValueError, match="block_type"):
        dimsum.build_model(dimsum.get_preset("emoji-XS").replace(block_type="conv"))
