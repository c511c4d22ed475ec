"""Precision gallery: selection, frames, nearest neighbours, and `dimsum eval --gallery`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dimsum
from dimsum.cli import main
from dimsum.eval.gallery import (
    INSIDE,
    OUTSIDE,
    class_strip,
    nearest_indices,
    pick,
    precision_gallery,
)

from .emoji_fake import make_fake_emoji_npz


def test_pick_balances_inside_and_outside_and_tops_up() -> None:
    inside = np.array([True, False, True, True, False, True, True])
    assert pick(inside, 4) == [0, 2, 1, 4]  # two of each, in evaluation order
    assert pick(inside, 6) == [0, 2, 3, 5, 1, 4]  # only two outside: topped up from inside
    assert pick(np.zeros(3, bool), 4) == [0, 1, 2]  # fewer samples than slots
    assert pick(np.ones(5, bool), 2) == [0, 1]


def test_nearest_indices_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    ref, query = rng.normal(size=(50, 6)), rng.normal(size=(9, 6))
    brute = ((query[:, None] - ref[None]) ** 2).sum(-1).argmin(1)
    assert nearest_indices(query, ref).tolist() == brute.tolist()
    assert nearest_indices(ref[[7, 3]], ref).tolist() == [7, 3]


def test_class_strip_frames_by_membership_and_puts_the_neighbour_below() -> None:
    fake = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30)])
    real = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (110, 120, 130)])
    strip = class_strip(fake, real, np.array([True, False, True]), per_class=4, border=2)
    cell, step = 8, 10  # 4 + 2 * border; cell + border
    assert strip.shape == (2 * cell + 2, 4 * step, 3)
    for i, (colour, value) in enumerate([(INSIDE, 10), (OUTSIDE, 20), (INSIDE, 30)]):
        x = i * step
        assert tuple(strip[0, x]) == colour and tuple(strip[cell - 1, x + cell - 1]) == colour
        assert (strip[2:6, x + 2 : x + 6] == value).all()  # the sample inside its frame
        assert (strip[cell + 4 : cell + 8, x + 2 : x + 6] == value + 100).all()  # its neighbour
        assert tuple(strip[cell + 2, x]) == (255, 255, 255)  # neighbours are not framed
    assert (strip[:, 3 * step :] == 255).all()  # the empty fourth slot stays white


def test_precision_gallery_writes_a_png_and_checks_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fake = rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    classes = [0] * 5 + [2] * 7
    inside = rng.random(12) < 0.5
    out = precision_gallery(
        tmp_path / "g.png", fake, classes, inside, fake[::-1], ["a", "b", "c"], per_class=4
    )
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200
    with pytest.raises(ValueError, match="same length"):
        precision_gallery(tmp_path / "bad.png", fake, classes[:-1], inside, fake, ["a", "b", "c"])
    assert not (tmp_path / "bad.png").exists()


def test_eval_cli_writes_the_gallery(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = dimsum.build_model(dimsum.get_preset("emoji-XS").replace(hidden_size=32, depth=2))
    ckpt = dimsum.save_pretrained(model, tmp_path / "tiny")
    data = make_fake_emoji_npz(tmp_path / "emoji.npz")
    report_path, gallery = tmp_path / "r.json", tmp_path / "gallery.png"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--num-samples", "18"]
    args += ["--steps", "2", "--method", "euler", "--json", str(report_path)]
    assert main([*args, "--gallery", str(gallery)]) == 0
    report = json.loads(report_path.read_text())
    assert report["gallery"] == str(gallery)
    assert report["settings"]["temperature"] == 1.0  # the tiny model's config default
    with Image.open(gallery) as im:
        assert im.format == "PNG"
        # one row pair per class that was sampled: taller with more classes
        assert im.height > 100 * len(report["per_class_precision"])


def test_eval_cli_temperature_sweep_and_plot(tmp_path: Path, capsys) -> None:
    """Several --temperature values: one report per value on the same seeds, and the plot."""
    torch.manual_seed(0)
    model = dimsum.build_model(
        dimsum.get_preset("emoji-XS").replace(hidden_size=32, depth=2, sampling_temperature=0.8)
    )
    ckpt = dimsum.save_pretrained(model, tmp_path / "tiny")
    data = make_fake_emoji_npz(tmp_path / "emoji.npz")
    report_path, plot = tmp_path / "sweep.json", tmp_path / "tradeoff.png"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--num-samples", "18"]
    args += ["--steps", "2", "--method", "euler", "--json", str(report_path)]
    assert main([*args, "--temperature", "1", "0.5", "--plot", str(plot)]) == 0
    sweep = json.loads(report_path.read_text())
    assert [r["settings"]["temperature"] for r in sweep["runs"]] == [1.0, 0.5]
    assert sweep["sampling_temperature"] == 0.8 and sweep["plot"] == str(plot)
    a, b = sweep["runs"]
    assert a["fd_emoji"] != b["fd_emoji"]  # different samples: the temperature reached them
    assert a["settings"]["num_samples"] == b["settings"]["num_samples"] == 18
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.width > 500
    # One value: the single report at that temperature; none: the model's own.
    assert main([*args, "--temperature", "0.5"]) == 0
    single = json.loads(report_path.read_text())
    assert single["settings"]["temperature"] == 0.5 and single["fd_emoji"] == b["fd_emoji"]
    # Checked before any sampling, with the argument's name.
    assert main([*args, "--temperature", "1", "5"]) == 2
    assert "temperature=5.0" in capsys.readouterr().err
    assert main([*args, "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


def test_tradeoff_plot_needs_two_runs(tmp_path: Path) -> None:
    from dimsum.eval.tradeoff import tradeoff_plot

    run = {"settings": {"temperature": 1.0}, "precision": 0.5, "recall": 0.5, "fd_emoji": 2.0}
    ref = {"precision": 0.7, "recall": 0.6, "fd_emoji": 1.0}
    with pytest.raises(ValueError, match="two or more"):
        tradeoff_plot(tmp_path / "t.png", [run], ref)
    assert not (tmp_path / "t.png").exists()
