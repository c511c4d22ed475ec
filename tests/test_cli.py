"""`dimsum sample`: a grid PNG with settings metadata and a trajectory file; clean errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dimsum
from dimsum.cli import main
from dimsum.pipeline import read_png_settings


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(hidden_size=32, depth=2))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_sample_writes_grid_and_trajectory(tiny_ckpt: Path, tmp_path: Path) -> None:
    grid, traj = tmp_path / "grid.png", tmp_path / "run.npz"
    rc = main(
        [
            "sample",
            "--checkpoint",
            str(tiny_ckpt),
            "--classes",
            "Flags",
            "3",
            "--seeds",
            "0",
            "1",
            "--steps",
            "3",
            "--method",
            "euler",
            "--cfg",
            "2",
            "--out",
            str(grid),
            "--trajectory",
            str(traj),
        ]
    )
    assert rc == 0
    settings = read_png_settings(grid)
    assert settings["classes"] == [2, 3] and settings["seeds"] == [0, 1] and settings["steps"] == 3
    z = np.load(traj)
    assert z["x_t"].shape == (4, 2, 3, 32, 32) and z["t"].tolist() == pytest.approx(
        [0, 1 / 3, 2 / 3, 1]
    )
    assert z["images"].shape == (2, 32, 32, 3)


def test_sample_rejects_bad_input_cleanly(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "sample",
            "--checkpoint",
            str(tiny_ckpt),
            "--classes",
            "99",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    assert rc == 2 and "class=" in capsys.readouterr().err
    rc = main(
        ["sample", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]
    )
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(
        ["sample", "--checkpoint", str(tiny_ckpt), "--steps", "0", "--out", str(tmp_path / "x.png")]
    )
    assert rc == 2 and "num_steps" in capsys.readouterr().err
