"""Unit tests of the app's pure parts: settings parsing, feature summaries, wavelet views,
scan drawings, run store, class names, errors, theme. No server needed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch

import dimsum
from app import share
from app.config import APP_LIMITS
from app.errors import user_message
from app.features import batched_pca, packet_energy, summarize_run
from app.models import class_labels, imagenet_class_names, resolve_class
from app.render import grid, labelled, pair_frame, upscale
from app.state import RunExpired, RunStore, plan_trace
from app.views import scans, wavelets
from dimsum.models.wavelets import HaarDWT, packet_subbands
from dimsum.settings import SamplingSettings
from dimsum.validation import InputError

ROOT = Path(__file__).resolve().parent.parent


# ---- settings -------------------------------------------------------------------------------
def test_parse_our_json_and_aliases() -> None:
    s = SamplingSettings(
        model="embedded", classes=["Smileys & Emotion"], seeds=[5, 6, 7, 8], temperature=1.0
    )
    parsed = share.parse_text(share.settings_json(s), APP_LIMITS)
    assert parsed.values == {
        "model": "embedded",
        "class": "Smileys & Emotion",
        "seed": 5,
        "steps": 20,
        "sampler": "heun",
        "guidance": 4.0,
        "images": 4,
        "schedule": "uniform",
        "temperature": 1.0,
    }
    parsed = share.parse_text(
        '{"cfg": "2.5", "n": 3, "method": "Euler", "num_steps": 7}', APP_LIMITS
    )
    # a number of images without a first seed: seeds from 0
    assert parsed.values == {
        "guidance": 2.5,
        "images": 3,
        "seed": 0,
        "sampler": "euler",
        "steps": 7,
    }


def test_parse_link_and_png_metadata() -> None:
    s = SamplingSettings(
        classes=["Food & Drink"], seeds=[9, 10], steps=12, sampler="euler", guidance_scale=1.5
    )
    q = share.query_string(s)
    assert "model=" not in q  # None: the default model is implied
    parsed = share.parse_text("https://example.org/app/" + q, APP_LIMITS)
    assert parsed.values["class"] == "Food & Drink" and parsed.values["seed"] == 9
    assert parsed.values["images"] == 2 and parsed.values["schedule"] == "uniform"
    q = share.query_string(replace(s, schedule="karras"))
    assert share.parse_text(q, APP_LIMITS).values["schedule"] == "karras"
    bad = share.parse_text("seed=3&schedule=cosine", APP_LIMITS)
    assert bad.values == {"seed": 3, "images": 1} and bad.problems == [
        "schedule='cosine' ignored (not a valid value)"
    ]
    assert "temperature" not in q  # None: the model's own value stays implicit
    q = share.query_string(replace(s, temperature=0.8))
    assert share.parse_text(q, APP_LIMITS).values["temperature"] == 0.8
    for value in ("2.5", "-1", "nan"):
        bad = share.parse_text(f"seed=3&noise_temperature={value}", APP_LIMITS)
        assert bad.values == {"seed": 3, "images": 1} and bad.problems[0].startswith("temperature=")
    png = {
        "classes": [3, 3],
        "class_names": ["Food & Drink"] * 2,
        "seeds": [40, 41],
        "steps": 20,
        "sampler": "heun",
        "guidance_scale": 4.0,
        "index": 1,
        "model": "emoji-S",
    }
    parsed = share.parse_mapping(png, APP_LIMITS)
    assert "temperature" not in parsed.values  # not the pipeline's metadata: the model's own
    made_before = share.parse_mapping({**png, "software": "dimsum 0.1.0"}, APP_LIMITS)
    assert made_before.values["temperature"] == 1.0  # pipeline PNGs without it were made at 1
    made_now = {**png, "software": "dimsum 0.1.0", "temperature": 0.95}
    assert share.parse_mapping(made_now, APP_LIMITS).values["temperature"] == 0.95
    assert (
        parsed.values["seed"] == 41
        and parsed.values["images"] == 1
        and parsed.values["class"] == "Food & Drink"
    )


@pytest.mark.parametrize(
    "bad",
    [
        '{"steps": 0}',
        '{"seed": -1}',
        '{"cfg": 1e9}',
        '{"images": 99}',
        '{"sampler": "rk4"}',
        '{"steps": NaN}',
    ],
)
def test_parse_reports_invalid_values(bad: str) -> None:
    with pytest.raises(InputError, match="nothing usable"):
        share.parse_text(bad, APP_LIMITS)


def test_parse_rejects_garbage() -> None:
    for text in ("", "[1, 2]", "{oops", "hello world", "x" * 30_000, None, 5):
        with pytest.raises(InputError):
            share.parse_text(text, APP_LIMITS)


# ---- features -------------------------------------------------------------------------------
def test_packet_energy_matches_the_model_transform() -> None:
    x = torch.randn(3, 6, 16, 16)
    ours, ours_l1 = packet_energy(x)
    bands = packet_subbands(x, HaarDWT())
    e = bands.double().pow(2).sum((2, 3, 4))
    ref = (e / e.sum(1, keepdim=True)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(ours_l1, ref.reshape(3, 4, 4).sum(-1), atol=1e-6)
    white = packet_energy(torch.randn(1, 64, 32, 32))[0]
    assert np.all(np.abs(white - 1 / 16) < 0.01)  # white noise spreads evenly


def test_batched_pca_orders_and_fixes_signs() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(8, 8, generator=g))[0]
    scales = torch.tensor([5.0, 3.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    x = (torch.randn(2, 500, 8, generator=g) * scales) @ basis.T
    proj, explained = batched_pca(x, 3)
    assert proj.shape == (2, 500, 3) and torch.all(explained > 0.95)
    var = proj.var(1)
    assert torch.all(var[:, 0] > var[:, 1]) and torch.all(var[:, 1] > var[:, 2])
    proj2, _ = batched_pca(-x, 3)  # flipping the data must not flip the colours' basis rule
    assert torch.allclose(proj2.abs(), proj.abs(), atol=1e-3)


def test_summarize_run_shapes() -> None:
    n, side, d = 2, 16, 32
    L = side * side
    feats = {
        s: {
            b: {
                "spatial_out": torch.randn(n, L, d // 2),
                "freq_out": torch.randn(n, L, d // 2),
                "fusion_out": torch.randn(n, L, d),
                "block_out": torch.randn(n, L, d),
                "freq_bands": torch.randn(n, 16, d // 2, side // 4, side // 4),
            }
            for b in (0, 3)
        }
        for s in (0, 5)
    }
    out = summarize_run(feats)
    assert set(out) == {(0, 0), (0, 3), (5, 0), (5, 3)}
    m = out[(5, 3)].outputs["spatial_out"]
    assert m.pca_rgb.shape == (n, side, side, 3) and m.pca_rgb.dtype == np.uint8
    assert m.norm.shape == (n, side, side) and np.allclose(m.spectrum.sum(1), 1, atol=1e-5)
    f = out[(0, 0)].freq_input
    assert (
        f.meanabs_l2.shape == (n, 16, 4, 4)
        and f.meanabs_l1.shape == (n, 4, 8, 8)
        and f.pc1.shape == (n, side, side)
    )
    assert np.allclose(f.spectrum.sum(1), 1, atol=1e-5)


# ---- wavelet views ---------------------------------------------------------------------------
@pytest.mark.parametrize("wave", wavelets.WAVELETS)
def test_image_wavelets_match_pywavelets(wave: str) -> None:
    x = np.random.default_rng(0).standard_normal((3, 16, 16))
    l1, l2 = wavelets.packet(x, wave)
    ca, (ch, cv, cd) = pywt.dwt2(x, wave, mode="zero", axes=(-2, -1))
    for ours, ref in zip(l1, (ca, ch, cv, cd), strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-6)  # pytorch-wavelets keeps float32 filters
    assert len(l2) == 16
    if wave == "haar":  # orthogonal: energy is preserved by both levels
        assert np.isclose(sum(np.square(b).sum() for b in l2), np.square(x).sum())


def test_level1_labels_name_the_operation() -> None:
    assert (
        wavelets.L1_LABELS[1].startswith("detail along columns") and "(LH)" in wavelets.L1_LABELS[1]
    )
    assert wavelets.L1_LABELS[2].startswith("detail along rows") and "(HL)" in wavelets.L1_LABELS[2]
    assert wavelets.L2_LABELS[6] == "cols / rows"  # LH.HL


# ---- scans, render, store, classes ----------------------------------------------------------
def test_scan_drawing_and_strip() -> None:
    model = dimsum.build_model("emoji-XS")  # tiny; the scan permutations are real data
    path, text = scans.render(model, 1)
    assert Path(path).is_file() and "row-major reversed" in text and "column-first" in text
    html = scans.strip_html(model, 2)
    assert (
        html.count("block ") >= model.config.depth
        and html.count(">A</text>") == model.config.depth // model.config.attn_every
    )
    choices = scans.layer_choices(model)
    assert [v for _, v in choices] == list(range(model.config.depth))


def test_render_helpers() -> None:
    img = np.zeros((4, 5, 3), np.uint8)
    assert upscale(img, 3).shape == (12, 15, 3)
    assert grid([img] * 5, cols=2, pad=1).shape == (3 * 4 + 2, 2 * 5 + 1, 3)
    assert labelled(img, "a very long caption that does not fit", size=10).shape[1] == 5
    frame = pair_frame(np.zeros((3, 8, 8, 3), np.uint8), np.ones((3, 8, 8, 3), np.uint8), 2)
    assert frame.shape[1] == 3 * 16 + 2 * 4


def test_plan_trace_respects_the_budget() -> None:
    steps, blocks = plan_trace(21, 4, 256, 96, 6)
    assert steps[0] == 0 and steps[-1] == 20 and len(steps) == 9 and blocks == list(range(6))
    steps, blocks = plan_trace(251, 16, 256, 1024, 16)
    per = 16 * 256 * (1024 * 7 + 1024 // 16 + 32) * 2  # 5 D-wide tensors, the scans' inputs
    assert steps[-1] == 250 and per * len(steps) * len(blocks) <= 192 * 2**20 * 1.01


def test_run_store_evicts_and_explains() -> None:
    store = RunStore(budget_bytes=10)

    class Fake:
        def __init__(self, rid: str, tmp: Path) -> None:
            self.run_id, self.nbytes, self.folder = rid, 8, tmp

    store.add(Fake("a", Path("/nonexistent-a")))  # type: ignore[arg-type]
    store.add(Fake("b", Path("/nonexistent-b")))  # type: ignore[arg-type]
    assert len(store) == 1 and store.get("b").run_id == "b"
    with pytest.raises(RunExpired, match="no longer in memory"):
        store.get("a")
    with pytest.raises(RunExpired, match="Generate"):
        store.get(None)


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert (
        len(names) == 1000
        and names[0].startswith("tench")
        and names[207].startswith("golden retriever")
    )

    class FakePipe:
        config = dimsum.get_preset("B2-imagenet256")

    pipe = FakePipe()
    labels = class_labels(pipe)  # type: ignore[arg-type]
    assert labels[207] == "207: golden retriever"
    for value in ("golden retriever", "207", 207, "207: golden retriever", "Golden Retriever"):
        assert resolve_class(pipe, value) == 207  # type: ignore[arg-type]
    for bad in ("unicorn", 1000, -1, 2.5, None, True, [1]):
        with pytest.raises(InputError):
            resolve_class(pipe, bad)  # type: ignore[arg-type]


# ---- errors, theme, entry point -------------------------------------------------------------
def test_user_messages_are_clean() -> None:
    assert (
        user_message(InputError("steps=0: must be in [1, 250]")) == "steps=0: must be in [1, 250]"
    )
    msg = user_message(KeyError("internal detail"))
    assert "reference" in msg and "internal detail" not in msg and "Traceback" not in msg
    assert len(user_message(InputError("x" * 5000))) <= 600


def test_theme_uses_system_fonts_only() -> None:
    from app.theme import CSS, make_theme

    theme = make_theme()
    css = theme._get_theme_css()
    assert "googleapis" not in css and "http" not in CSS
    assert "--font: system-ui" in css
    assert all(
        not getattr(f, "stylesheet", lambda: {"url": None})()["url"]
        for f in theme._font + theme._font_mono
    )


def test_app_script_runs_from_anywhere(tmp_path: Path) -> None:
    """`python app/app.py` makes dimsum and the app package importable itself (Spaces)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "app" / "app.py"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--checkpoint" in out.stdout


def test_curves_file_parsing(tmp_path: Path) -> None:
    from app.testing import example_curves
    from app.views import evidence

    assert evidence.load_curves(tmp_path / "missing.json") is None
    good = tmp_path / "curves.json"
    good.write_text(example_curves())
    data = evidence.load_curves(good)
    table = evidence.curves_markdown(data)
    assert evidence.curves_figure(data).data
    row = next(r for r in table.splitlines() if r.startswith("| dimsum |"))
    fd = data["variants"]["dimsum"]["fd_emoji"][-1]
    assert f"| {fd:.3g} |" in row and "| 3.98 M trainable parameters |" in row
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"variants": []}))
    with pytest.raises(evidence.CurvesError):
        evidence.load_curves(bad)


def test_run_record_reduces_traces_on_first_use() -> None:
    """The images are shown before the traced features are reduced: build_record keeps the raw
    traces, `blocks` reduces them once (same result as summarize_run) and frees them, and the
    memory estimate counts whichever is held without forcing the reduction."""
    from app.state import build_record
    from dimsum.pipeline import DiMSUMPipeline

    torch.manual_seed(0)
    pipe = DiMSUMPipeline(dimsum.build_model("emoji-XS"))
    out = pipe(
        [1, 2],
        [0, 1],
        num_steps=3,
        method="euler",
        return_trajectory=True,
        trace_steps=[0, 3],
        trace_blocks=[0, 2],
    )
    record = build_record(
        out,
        model_key="m",
        class_label="c",
        space="pixel",
        traced_steps=[0, 3],
        traced_blocks=[0, 2],
    )
    assert record.traced_steps == [0, 3] and record.traced_blocks == [0, 2]
    raw = sum(
        v.numel() * v.element_size()
        for per_step in out.features.values()
        for per_block in per_step.values()
        for v in per_block.values()
    )
    before = record.nbytes
    assert record.traces is not None and before >= raw  # nbytes did not reduce them
    expected = summarize_run(out.features)
    blocks = record.blocks
    assert record.traces is None and set(blocks) == set(expected) == {
        (0, 0),
        (0, 2),
        (3, 0),
        (3, 2),
    }
    got, want = blocks[(3, 2)].outputs["freq_out"], expected[(3, 2)].outputs["freq_out"]
    assert np.array_equal(got.pca_rgb, want.pca_rgb) and np.allclose(got.spectrum, want.spectrum)
    assert record.blocks is blocks  # reduced once
    assert record.nbytes < before


# ---- readability (issue 21, item 4) ----------------------------------------------------------
def _decade_axis_ok(axis) -> None:
    """A log energy axis labels decades as percentages, never plotly's minor-tick digits."""
    assert axis.type == "log" and axis.tickmode == "array"
    vals = list(axis.tickvals)
    assert all(np.isclose(np.log10(v), round(np.log10(v))) for v in vals) and vals[-1] == 1
    assert list(axis.ticktext)[-1] == "100%" and all(t.endswith("%") for t in axis.ticktext)
    assert "%" in axis.title.text


def test_energy_charts_have_real_tick_labels() -> None:
    l1 = np.array([0.97, 0.02, 0.009, 0.001])
    l2 = np.concatenate([l1 * 0.9, np.full(12, 0.1 / 12 * 0.001)])
    fig = wavelets.energy_figure(l1, l2 / l2.sum(), "t")
    _decade_axis_ok(fig.layout.yaxis)
    assert fig.layout.yaxis.ticktext[0] == "0.0001%"  # down to the smallest bar's decade
    assert fig.layout.xaxis.title.text and fig.layout.xaxis2.title.text
    from app.views import evidence

    rng = np.random.default_rng(0)
    imgs = {k: rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8) for k in ("a", "b")}
    _decade_axis_ok(evidence.spectra_figure(imgs).layout.yaxis)
    assert wavelets.percent_label(0.001) == "0.1%" and wavelets.percent_label(1.0) == "100%"


def test_wavelet_detail_tiles_share_one_scale_with_a_colour_bar(monkeypatch) -> None:
    calls = []
    real = wavelets.colorize

    def spy(values, vmin=None, vmax=None, cmap="magma"):
        calls.append((vmin, vmax))
        return real(values, vmin, vmax, cmap)

    monkeypatch.setattr(wavelets, "colorize", spy)
    x = np.random.default_rng(1).normal(size=(3, 32, 32))
    l1, l2 = wavelets.packet(x, "haar")
    m1, m2 = wavelets.image_tiles(l1, l2)
    level2 = calls[3:]  # 3 level-1 details, then the 15 level-2 details
    assert len(level2) == 15 and len(set(level2)) == 1 and None not in level2[0]
    calls.clear()
    wavelets.scalar_tiles([b[0] for b in l1], [b[0] for b in l2], signed=True, label="u")
    assert len(set(calls[-15:])) == 1  # signed maps too: one symmetric scale per level
    # the colour bar (with its unit) is drawn under the mosaic: taller than the tiles alone
    from app.render import colorbar

    bar = colorbar(0, 1, wavelets.IMAGE_UNIT, m2.shape[1])
    assert bar.shape[1] == m2.shape[1] and m2.shape[0] > 4 * (8 * 14) + bar.shape[0]


def test_parameter_counts_have_one_wording(tmp_path: Path) -> None:
    from app.models import model_parameters, parameter_count
    from app.testing import example_curves
    from app.views import evidence

    model = dimsum.DiMSUM(dimsum.get_preset("emoji-XS"))
    trainable = model.num_parameters(trainable_only=True)
    assert model_parameters(model) == parameter_count(trainable)
    assert parameter_count(435_340) == "0.435 M trainable parameters"
    data = json.loads(example_curves())
    want = parameter_count(data["variants"]["dimsum"]["params"])
    assert want in evidence.curves_markdown(data)
    assert any(want in (t.name or "") for t in evidence.curves_figure(data).data)
    source = (ROOT / "app" / "explorer.py").read_text() + (ROOT / "app" / "models.py").read_text()
    assert "/ 1e6" not in source.replace("count / 1e6", "")  # no second wording anywhere
