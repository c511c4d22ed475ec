"""`dimsum sample`: a grid PNG with settings metadata and a trajectory file; clean errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dimsum
from dimsum.cli import main
from dimsum.io import read_png_settings


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(hidden_size=32, depth=2))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return dimsum.save_pretrained(model, tmp_path_factory.mktemp("ckpt") / "tiny")


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


def test_sample_karras_schedule(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    from dimsum.flow import time_grid

    grid, traj = tmp_path / "grid.png", tmp_path / "run.npz"
    args = ["sample", "--checkpoint", str(tiny_ckpt), "--steps", "3", "--out", str(grid)]
    assert main([*args, "--schedule", "karras", "--trajectory", str(traj)]) == 0
    assert read_png_settings(grid)["schedule"] == "karras"
    assert np.load(traj)["t"].tolist() == pytest.approx(time_grid(3, "karras"), abs=1e-6)
    assert main([*args, "--method", "dopri5", "--schedule", "karras"]) == 2
    assert "schedule: 'karras' is for the fixed-step samplers" in capsys.readouterr().err


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


HOSTILE = st.sampled_from(
    [
        "nan",
        "-nan",
        "inf",
        "-inf",
        "1e309",
        "-1",
        "0",
        "99999999999999999999",
        "",
        " ",
        "3.5",
        "0x10",
        "１",
        "None",
        "'; rm -rf /",
        "\x00",
        "Flags",
        "-0",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.one_of(HOSTILE, st.integers(1, 3).map(str)),
    cfg=st.one_of(HOSTILE, st.floats(allow_nan=True, allow_infinity=True).map(repr)),
    seeds=st.lists(
        st.one_of(HOSTILE, st.integers(-(2**70), 2**70).map(str)), min_size=1, max_size=3
    ),
    classes=st.lists(
        st.one_of(HOSTILE, st.integers(-5, 12).map(str), st.text(max_size=6)),
        min_size=1,
        max_size=3,
    ),
)
def test_sample_cli_hostile_inputs_fail_cleanly(
    tiny_ckpt: Path,
    tmp_path: Path,
    capsys,
    steps: str,
    cfg: str,
    seeds: list[str],
    classes: list[str],
) -> None:
    """Any argument values: success with a PNG, or exit code 2 with one `error:` line naming the
    argument (argparse's own type errors also exit 2). Never a traceback."""
    out = tmp_path / "grid.png"
    out.unlink(missing_ok=True)
    argv = [
        "sample",
        "--checkpoint",
        str(tiny_ckpt),
        "--method",
        "euler",
        "--out",
        str(out),
        "--steps",
        steps,
        "--cfg",
        cfg,
        "--seeds",
        *seeds,
        "--classes",
        *classes,
    ]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejected a value (bad int, "-nan" read as an option)
        assert exc.code == 2
        err = capsys.readouterr().err
        assert "dimsum" in err and "error: " in err and "Traceback" not in err
        return
    err = capsys.readouterr().err
    if rc == 0:
        assert out.is_file() and read_png_settings(out)["steps"] == int(steps)
    else:
        assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
        assert any(name in err for name in ("num_steps", "guidance", "seed", "class")), err
        assert not out.exists()


@pytest.mark.parametrize(
    ("args", "want"), [([], 1.0), (["--balance", "0.5"], 0.5), (["--no-balance"], 0.0)]
)
def test_train_balance_flag(monkeypatch, tmp_path: Path, args: list[str], want: float) -> None:
    import dimsum.train

    seen = []
    monkeypatch.setattr(
        dimsum.train, "train", lambda tc: seen.append(tc) or {"losses": [], "step": 0}
    )
    assert main(["train", "--out", str(tmp_path), *args]) == 0
    assert seen[0].balance == want


def test_train_balance_flags_exclude_each_other(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--balance", "0.5", "--no-balance"])
    assert "not allowed with" in capsys.readouterr().err


def test_sample_temperature_scales_the_initial_noise(
    tiny_ckpt: Path, tmp_path: Path, capsys
) -> None:
    from dimsum.pipeline import DiMSUMPipeline

    pipe = DiMSUMPipeline.from_pretrained(tiny_ckpt)
    noise = pipe.noise([0, 1]).numpy()
    grid, traj = tmp_path / "grid.png", tmp_path / "run.npz"
    args = ["sample", "--checkpoint", str(tiny_ckpt), "--seeds", "0", "1", "--steps", "2"]
    assert main([*args, "--out", str(grid), "--trajectory", str(traj)]) == 0
    z = np.load(traj)
    np.testing.assert_allclose(z["x_t"][0], noise, rtol=0, atol=0)  # default: config's 1.0
    assert read_png_settings(grid)["temperature"] == 1.0
    full = z["images"]
    args += ["--temperature", "0.5", "--out", str(grid), "--trajectory", str(traj)]
    assert main(args) == 0
    z = np.load(traj)
    np.testing.assert_allclose(z["x_t"][0], 0.5 * noise, rtol=1e-6, atol=0)
    assert read_png_settings(grid)["temperature"] == 0.5
    assert np.abs(z["images"].astype(int) - full.astype(int)).mean() > 1  # it reached the images
    for bad in ["-0.1", "2.5", "nan", "inf"]:
        assert main([*args[:-6], "--temperature", bad, "--out", str(tmp_path / "x.png")]) == 2
        assert "temperature=" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_model_sampling_temperature_is_the_default_and_round_trips(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    import json

    from dimsum.config import DiMSUMConfig
    from dimsum.pipeline import DiMSUMPipeline

    folder = tmp_path / "warm"
    folder.mkdir()
    for f in tiny_ckpt.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["sampling_temperature"] = 0.8
    (folder / "config.json").write_text(json.dumps(cfg))
    pipe = DiMSUMPipeline.from_pretrained(folder)
    assert pipe.resolve_temperature(None) == 0.8 and pipe.resolve_temperature(1) == 1.0
    out = pipe(0, [3], num_steps=1, method="euler")
    np.testing.assert_allclose(out.trajectory.x_t[0], 0.8 * pipe.noise([3]), rtol=1e-6)
    assert out.settings["temperature"] == 0.8
    # A config.json from before the field loads as the trained prior (1.0).
    del cfg["sampling_temperature"]
    assert DiMSUMConfig.from_dict(cfg).sampling_temperature == 1.0
    with pytest.raises(ValueError, match="sampling_temperature=3"):
        DiMSUMConfig.from_dict({**cfg, "sampling_temperature": 3})
