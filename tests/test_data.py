"""Tests for the Emoji-32 builder on a tiny synthetic npm package (no network)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dimsum.data.emoji as emoji_mod
from dimsum.data import (
    CATEGORIES,
    EmojiDatasetError,
    attribution_notice,
    build_emoji_dataset,
    class_balanced_sampler,
    class_weights,
    fetch_emoji_datasource,
    load_emoji_dataset,
)
from dimsum.data.emoji import CELL, _is_heldout, _sha512_integrity

GRID = 4  # synthetic sheets are 4x4 cells of 34 px


def _code(prefix: str, heldout: bool) -> str:
    """A fake `unified` code whose split side is known."""
    for i in range(10_000):
        code = f"{prefix}{i:04X}"
        if _is_heldout(code) == heldout:
            return code
    raise AssertionError("no code found")


def _cell_rgba(style: int, x: int, y: int) -> np.ndarray:
    """Deterministic 32x32 RGBA content of a cell: flat colour, alpha ramp across columns."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 20 + 50 * x
    rgba[..., 1] = 20 + 50 * y
    rgba[..., 2] = 30 + 100 * style
    rgba[..., 3] = np.linspace(0, 255, 32).round().astype(np.uint8)[None, :]
    return rgba


def _expected_rgb(style: int, x: int, y: int) -> np.ndarray:
    rgba = _cell_rgba(style, x, y).astype(np.float64)
    a = rgba[..., 3:] / 255.0
    return np.rint(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def _entry(unified, category, x, y, order, google=True, twitter=True, skins=None):
    e = {
        "name": f"EMOJI {unified}",
        "short_name": f"e_{unified.lower()}",
        "unified": unified,
        "category": category,
        "sheet_x": x,
        "sheet_y": y,
        "sort_order": order,
        "has_img_apple": True,
        "has_img_google": google,
        "has_img_twitter": twitter,
        "has_img_facebook": True,
    }
    if skins is not None:
        e["skin_variations"] = skins
    return e


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory) -> dict:
    """An unpacked fake ``emoji-datasource`` (``root/package/...``) plus its ``.tgz``."""
    root = tmp_path_factory.mktemp("fakepkg")
    pkg = root / "package"
    person = _code("1F9", heldout=True)  # a held-out emoji with skin tones
    skins = {
        "1F3FB": {
            "unified": f"{person}-1F3FB",
            "sheet_x": 1,
            "sheet_y": 0,
            "has_img_google": True,
            "has_img_twitter": True,
        },
        "1F3FF": {
            "unified": f"{person}-1F3FF",
            "sheet_x": 2,
            "sheet_y": 0,
            "has_img_google": True,
            "has_img_twitter": False,
        },
    }
    entries = [
        _entry(_code("1F6", heldout=False), "Flags", 1, 1, 5, google=False),
        _entry(_code("1F4", heldout=False), "Smileys & Emotion", 0, 0, 1),
        _entry(person, "People & Body", 0, 1, 2, skins=skins),
        _entry("1F3FB", "Component", 3, 0, 9),
        _entry(_code("2B", heldout=False), "Food & Drink", 2, 1, 3),
        _entry(_code("1F5", heldout=True), "Symbols", 3, 1, 4, twitter=False),
    ]
    (pkg / "img").mkdir(parents=True)
    (pkg / "emoji.json").write_text(json.dumps(entries))
    for style, name in enumerate(["google", "twitter", "apple"]):
        sheet = np.zeros((GRID * CELL, GRID * CELL, 4), np.uint8)
        sheet[..., 0] = 255  # opaque magenta everywhere, incl. the 1-px borders ...
        sheet[..., 2] = 255
        sheet[..., 3] = 255
        for y in range(GRID):
            for x in range(GRID):  # ... then the 32x32 interiors
                sheet[y * CELL + 1 : y * CELL + 33, x * CELL + 1 : x * CELL + 33] = _cell_rgba(
                    style, x, y
                )
        (pkg / "img" / name / "sheets").mkdir(parents=True)
        Image.fromarray(sheet, "RGBA").save(pkg / "img" / name / "sheets" / "32.png")
    tgz = root / "fake-emoji-datasource.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(pkg, arcname="package")
    return {"root": root, "pkg": pkg, "tgz": tgz, "entries": entries, "person": person}


@pytest.fixture(scope="module")
def built(fake_package, tmp_path_factory) -> Path:
    return build_emoji_dataset(tmp_path_factory.mktemp("cache"), package_dir=fake_package["pkg"])


def test_build_counts_labels_and_component_dropped(built, fake_package):
    d = load_emoji_dataset("all", path=built)
    # flags: twitter only (1); smiley: 2; person: base 2 + light 2 + dark google 1 = 5;
    # food: 2; symbols: google only (1); component: dropped.
    assert len(d) == 11
    assert d.images.shape == (11, 32, 32, 3) and d.images.dtype == np.uint8
    assert d.labels.dtype == np.int64
    assert d.class_counts() == {
        c: {
            "Flags": 1,
            "Smileys & Emotion": 2,
            "People & Body": 5,
            "Food & Drink": 2,
            "Symbols": 1,
        }.get(c, 0)
        for c in CATEGORIES
    }
    assert not any(u.startswith("1F3FB") for u in d.unified)
    assert d.categories == CATEGORIES
    assert len(d.names) == 5  # base emoji, ordered by sort_order
    assert d.names[0] == f"e_{fake_package['entries'][1]['unified'].lower()}"
    assert set(np.unique(d.style)) == {0, 1}


def test_crops_are_composited_on_white(built, fake_package):
    d = load_emoji_dataset("all", path=built)
    person = fake_package["person"]
    checks = [
        (person, 0, 0, 1),
        (person, 1, 0, 1),
        (f"{person}-1F3FB", 1, 1, 0),
        (f"{person}-1F3FF", 0, 2, 0),
    ]
    for unified, style, x, y in checks:
        (rows,) = np.nonzero((d.unified == unified) & (d.style == style))
        assert len(rows) == 1
        img = d.images[rows[0]]
        np.testing.assert_array_equal(img, _expected_rgb(style, x, y))
        # column 0 has alpha 0 -> pure white; no magenta border leaked in
        assert (img[:, 0] == 255).all()
    # the dark-skin variant has no twitter image
    assert ((d.unified == f"{person}-1F3FF") & (d.style == 1)).sum() == 0


def test_split_keeps_variants_together(built, fake_package):
    d = load_emoji_dataset("all", path=built)
    for e in np.unique(d.emoji_id):
        assert len(np.unique(d.split[d.emoji_id == e])) == 1
    person_rows = np.char.startswith(d.unified.astype(str), fake_package["person"])
    assert person_rows.sum() == 5 and (d.split[person_rows] == 1).all()
    train, held = load_emoji_dataset("train", path=built), load_emoji_dataset("heldout", path=built)
    assert len(train) + len(held) == len(d)
    assert (train.split == 0).all() and (held.split == 1).all()
    assert set(train.emoji_id).isdisjoint(set(held.emoji_id))


def test_split_fraction_and_determinism():
    codes = [f"{i:05X}" for i in range(0x1F000, 0x1F000 + 4000)]
    flags = np.array([_is_heldout(c) for c in codes])
    assert 0.08 < flags.mean() < 0.12
    assert (flags == np.array([_is_heldout(c) for c in codes])).all()
    assert _is_heldout("1f600") == _is_heldout("1F600")


def test_build_is_deterministic_and_order_independent(fake_package, tmp_path, built):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(fake_package["pkg"], shuffled / "package")
    (shuffled / "package" / "emoji.json").write_text(json.dumps(fake_package["entries"][::-1]))
    other = build_emoji_dataset(tmp_path / "c2", package_dir=shuffled)
    with np.load(built) as a, np.load(other) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_tarball_source_and_integrity(fake_package, tmp_path, built):
    out = build_emoji_dataset(
        tmp_path / "c",
        tarball=fake_package["tgz"],
        integrity=_sha512_integrity(fake_package["tgz"]),
    )
    with np.load(built) as a, np.load(out) as b:
        np.testing.assert_array_equal(a["images"], b["images"])
    with pytest.raises(EmojiDatasetError, match="Integrity check failed"):
        build_emoji_dataset(tmp_path / "c3", tarball=fake_package["tgz"], integrity="sha512-AAAA")
    assert not (tmp_path / "c3").exists() or not list((tmp_path / "c3").glob("*.npz"))


def test_reuse_force_and_atomic_write(fake_package, tmp_path):
    out = build_emoji_dataset(tmp_path, package_dir=fake_package["root"])
    os.utime(out, (1, 1))
    assert build_emoji_dataset(tmp_path, package_dir=fake_package["root"]) == out
    assert out.stat().st_mtime == 1  # reused
    build_emoji_dataset(tmp_path, package_dir=fake_package["root"], force=True)
    assert out.stat().st_mtime > 1
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left


def test_offline_rebuild_from_cached_tarball(fake_package, tmp_path, monkeypatch):
    """A cached tarball is verified against the pinned integrity; npm is not needed."""
    cached = tmp_path / emoji_mod.EMOJI_DATASOURCE_TARBALL
    cached.write_bytes(fake_package["tgz"].read_bytes())
    monkeypatch.setattr(emoji_mod.shutil, "which", lambda name: None)
    with pytest.raises(EmojiDatasetError, match="Integrity check failed"):
        build_emoji_dataset(tmp_path)
    monkeypatch.setattr(emoji_mod, "EMOJI_DATASOURCE_INTEGRITY", _sha512_integrity(cached))
    out = build_emoji_dataset(tmp_path)
    assert len(load_emoji_dataset("all", path=out)) == 11


def test_npm_missing_error(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji_mod.shutil, "which", lambda name: None)
    with pytest.raises(EmojiDatasetError) as info:
        build_emoji_dataset(tmp_path / "cache")
    msg = str(info.value)
    assert "npm" in msg and "not found" in msg
    assert emoji_mod.EMOJI_DATASOURCE_URL in msg
    assert "How to fix" in msg and "tarball=" in msg


def _fake_npm(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)


def test_npm_download_failure_error(tmp_path, monkeypatch):
    _fake_npm(tmp_path / "bin", 'echo "npm ERR! network unreachable" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(EmojiDatasetError, match="network unreachable") as info:
        fetch_emoji_datasource(tmp_path / "cache")
    assert "How to fix" in str(info.value)
    assert not (tmp_path / "cache" / emoji_mod.EMOJI_DATASOURCE_TARBALL).exists()


def test_npm_corrupt_download_is_rejected(tmp_path, monkeypatch):
    name = emoji_mod.EMOJI_DATASOURCE_TARBALL
    script = f'if [ "$1" = view ]; then exit 1; fi\necho garbage > {name}\necho {name}\n'
    _fake_npm(tmp_path / "bin", script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(EmojiDatasetError, match="Integrity check failed"):
        fetch_emoji_datasource(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_registry_integrity_mismatch_is_rejected(tmp_path, monkeypatch):
    _fake_npm(tmp_path / "bin", 'if [ "$1" = view ]; then echo sha512-XXXX; exit 0; fi\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(EmojiDatasetError, match="differs from the pinned"):
        fetch_emoji_datasource(tmp_path / "cache")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DIMSUM_CACHE", str(tmp_path))
    assert emoji_mod.default_cache_dir() == tmp_path / "emoji"
    monkeypatch.delenv("DIMSUM_CACHE")
    assert emoji_mod.default_cache_dir() == Path.home() / ".cache" / "dimsum" / "emoji"


def test_class_balanced_sampler():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sampler = class_balanced_sampler(labels, 3000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        sampler.weights[[0, 90, 99]], torch.tensor([1 / 90, 1 / 9, 1.0], dtype=torch.double)
    )
    drawn = labels[list(sampler)]
    assert len(drawn) == 3000
    frac = np.bincount(drawn, minlength=3) / 3000
    assert np.allclose(frac, 1 / 3, atol=0.05)
    again = class_balanced_sampler(labels, 3000, torch.Generator().manual_seed(0))
    assert list(again) == list(
        class_balanced_sampler(labels, 3000, torch.Generator().manual_seed(0))
    )


@pytest.mark.parametrize(
    ("power", "shares"),
    [
        (1.0, [1 / 3] * 3),
        (0.5, np.sqrt([90, 9, 1]) / np.sqrt([90, 9, 1]).sum()),
        (0.0, [0.9, 0.09, 0.01]),
    ],
)
def test_class_weights_balance_power(power: float, shares) -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = class_weights(labels, power)
    got = [float(w[labels == c].sum() / w.sum()) for c in range(3)]
    np.testing.assert_allclose(got, shares, rtol=1e-12)
    drawn = labels[
        list(class_balanced_sampler(labels, 4000, torch.Generator().manual_seed(1), power))
    ]
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / 4000, shares, atol=0.03)
    with pytest.raises(ValueError, match="must be in"):
        class_weights(labels, 1.5)


def test_attribution_notice():
    text = attribution_notice()
    for needle in [
        "Noto Emoji",
        "Apache License 2.0",
        "Twemoji",
        "Twitter, Inc and other contributors",
        "CC-BY 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
        "Changes: rasterized 32x32, composited on white",
        "emoji-datasource",
        "MIT",
        "iamcal",
    ]:
        assert needle in text, needle


def test_pinned_constants():
    assert emoji_mod.EMOJI_DATASOURCE_SPEC == "emoji-datasource@16.0.0"
    assert emoji_mod.EMOJI_DATASOURCE_INTEGRITY.startswith("sha512-")
    assert CATEGORIES == sorted(CATEGORIES) and len(CATEGORIES) == 9
    assert emoji_mod.STYLES == ["google", "twitter"]


def test_bad_split_name(built):
    with pytest.raises(ValueError):
        load_emoji_dataset("test", path=built)
