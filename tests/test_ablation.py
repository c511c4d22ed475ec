"""The ablation collector: run folders -> curves.json, plot, table, per-variant checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dimsum
from dimsum.ablation import collect
from dimsum.train import TrainConfig, train

from .emoji_fake import make_fake_emoji_npz


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("abl")
    data = make_fake_emoji_npz(root / "emoji.npz")
    out = {}
    for name, preset in (("dimsum", "emoji-XS"), ("spatial-only", "emoji-XS-spatial")):
        train(
            TrainConfig(
                preset=preset,
                out=str(root / name),
                data=str(data),
                steps=4,
                batch_size=4,
                lr=1e-3,
                ckpt_every=2,
                log_every=1,
                eval_every=2,
                eval_samples=10,
                model_overrides={"hidden_size": 32, "depth": 2},
                device="cpu",
            )
        )
        out[name] = root / name / "state.pt"
    return out


def test_collect_writes_curves_plot_table_and_checkpoints(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    result = collect(
        runs,
        4,
        out_dir=tmp_path / "assets",
        checkpoints_dir=tmp_path / "ckpt",
        hardware="test CPU",
        note="tiny",
    )
    saved = json.loads((tmp_path / "assets" / "curves.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for name in ("dimsum", "spatial-only"):
        v = saved["variants"][name]
        assert v["eval_steps"] == [2, 4] and len(v["fd_emoji"]) == 2
        assert v["loss_steps"] == [1, 2, 3, 4] and all(x > 0 for x in v["loss"])
        model = dimsum.load_checkpoint(tmp_path / "ckpt" / name)
        assert model.num_parameters(trainable_only=True) == v["params"]
    spatial = dimsum.load_checkpoint(tmp_path / "ckpt" / "spatial-only")
    assert spatial.config.block_type == "spatial"
    assert (tmp_path / "assets" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| spatial-only |" in (tmp_path / "assets" / "table.md").read_text()


def test_collect_prefers_the_final_evaluation(runs: dict[str, Path], tmp_path: Path) -> None:
    finals = tmp_path / "finals"
    finals.mkdir()
    report = {"fd_emoji": 12.5, "precision": 0.61, "recall": 0.42, "accuracy": 0.875}
    (finals / "dimsum.json").write_text(json.dumps(report))
    result = collect(
        runs, 4, out_dir=tmp_path, checkpoints_dir=None, hardware="", note="", final_evals=finals
    )
    assert result["variants"]["dimsum"]["final_eval"]["fd_emoji"] == 12.5
    assert "final_eval" not in result["variants"]["spatial-only"]
    row = next(r for r in (tmp_path / "table.md").read_text().splitlines() if "| dimsum |" in r)
    assert "| 12.50 | 0.610 | 0.420 | 87.5% |" in row


def test_collect_refuses_a_state_at_another_step(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds step 4, expected 3"):
        collect(runs, 3, out_dir=tmp_path, checkpoints_dir=None, hardware="", note="")
