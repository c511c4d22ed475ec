"""SamplingSettings: one schema for the settings JSON, share links and PNG metadata, and every
older schema still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dimsum.io import read_png_settings, save_png
from dimsum.settings import DEFAULTS, SamplingSettings
from dimsum.validation import InputError

FULL = SamplingSettings(
    model="emoji-S",
    classes=(3, "Food & Drink"),
    seeds=(40, 41),
    steps=12,
    sampler="euler",
    schedule="karras",
    path="linear",
    guidance_scale=2.5,
    temperature=0.8,
)


@pytest.mark.parametrize("s", [FULL, DEFAULTS, SamplingSettings(classes=["Flags"], seeds=[7])])
def test_json_round_trip(s: SamplingSettings) -> None:
    assert SamplingSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("s", [FULL, DEFAULTS])
def test_link_round_trip(s: SamplingSettings) -> None:
    assert SamplingSettings.from_query("https://example.org/app/" + s.to_query()) == s


def test_png_round_trip(tmp_path: Path) -> None:
    path = save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png", FULL.to_dict())
    assert SamplingSettings.from_dict(read_png_settings(path)) == FULL


def test_png_of_one_image_of_a_run(tmp_path: Path) -> None:
    """A saved image's metadata (index i) reproduces that image: its class and seed."""
    meta = FULL.to_dict() | {"class_names": ["Food & Drink"] * 2, "software": "dimsum 0.1.0"}
    path = save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "b.png", meta, index=1)
    s = SamplingSettings.from_dict(read_png_settings(path))
    assert s.seeds == (41,) and s.classes == ("Food & Drink",) and s.temperature == 0.8


def test_old_png_metadata_without_temperature_reads_at_1() -> None:
    """The pipeline's PNGs made before the temperature option were sampled at 1."""
    old = {
        "model": "emoji-S",
        "classes": [3, 3],
        "class_names": ["Food & Drink"] * 2,
        "seeds": [40, 41],
        "steps": 20,
        "sampler": "heun",
        "path": "gvp",
        "guidance_scale": 4.0,
        "software": "dimsum 0.1.0",
        "nfe": 80,
    }
    s = SamplingSettings.from_dict(old)
    assert s.temperature == 1.0 and s.seeds == (40, 41) and s.schedule == "uniform"
    # Not written by the pipeline (hand-written, a link): no temperature = the model's own.
    assert (
        SamplingSettings.from_dict({k: v for k, v in old.items() if k != "software"}).temperature
        is None
    )


def test_old_app_settings_json() -> None:
    """The app's settings JSON before the one schema: one class, the first seed, a count."""
    old = {
        "model": "embedded",
        "model_name": "emoji-S",
        "class": "Smileys & Emotion",
        "seed": 5,
        "steps": 20,
        "sampler": "heun",
        "schedule": "karras",
        "guidance_scale": 4.0,
        "temperature": 0.95,
        "num_images": 3,
    }
    s = SamplingSettings.from_dict(old)
    assert s == SamplingSettings(
        model="embedded",
        classes=("Smileys & Emotion",),
        seeds=(5, 6, 7),
        schedule="karras",
        temperature=0.95,
    )


def test_old_link_params_and_aliases() -> None:
    old = "?model=x&class=Food%20%26%20Drink&seed=9&steps=12&sampler=euler&guidance=1.5&images=2"
    s = SamplingSettings.from_query(old)
    assert s == SamplingSettings(
        model="x",
        classes=("Food & Drink",),
        seeds=(9, 10),
        steps=12,
        sampler="euler",
        guidance_scale=1.5,
    )
    aliased = {"cfg": "2.5", "n": 3, "method": "Euler", "num_steps": 7, "noise_temperature": 0.5}
    s = SamplingSettings.from_dict(aliased)
    assert (s.guidance_scale, s.seeds, s.sampler, s.steps, s.temperature) == (
        2.5,
        (0, 1, 2),
        "euler",
        7,
        0.5,
    )
    assert SamplingSettings.from_dict({"step_schedule": "karras"}).schedule == "karras"


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"seeds": [-1]},
        {"seed": "x"},
        {"n": 10**12},
        {"cfg": 1e9},
        {"sampler": "rk4"},
        {"temperature": float("nan")},
        {"classes": [True]},
        {"classes": []},
    ],
)
def test_from_dict_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(InputError):
        SamplingSettings.from_dict(bad)


def test_defaults_spelled_once() -> None:
    """The CLI and the pipeline take their sampling defaults from `SamplingSettings`."""
    import inspect

    from dimsum.cli import build_parser
    from dimsum.pipeline import DiMSUMPipeline

    a = build_parser().parse_args(["sample"])
    assert (a.steps, a.method, a.cfg, a.schedule, a.path) == (
        DEFAULTS.steps,
        DEFAULTS.sampler,
        DEFAULTS.guidance_scale,
        DEFAULTS.schedule,
        DEFAULTS.path,
    )
    params = inspect.signature(DiMSUMPipeline.__call__).parameters
    kwargs = DEFAULTS.pipeline_kwargs()
    assert {k: params[k].default for k in kwargs} == kwargs
