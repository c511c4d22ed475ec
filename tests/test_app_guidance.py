"""Guidance on an unconditional model (CelebA-HQ / Church style: one class, no null class).

The pipeline samples such a model with guidance 1 whatever scale is asked for and records 1
(dimsum/pipeline.py); the app's Guidance slider is then switched off with a line saying why,
and on again for a class-conditional model, on every event that changes the model (a model
switch, a link, loaded settings), each setting the slider once. A run says what it used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dimsum
from app.config import AppConfig
from app.explorer import GUIDANCE_INFO, NO_GUIDANCE_INFO, Explorer
from app.models import DEMO_KEY
from app.testing import make_checkpoint
from dimsum.io import read_png_settings

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio")

# Settings change events: each sets the guidance slider (and the model's outputs).
MODEL_EVENTS = ("prefill", "select_model", "load_model", "load_settings", "load_png")


def unconditional_config() -> dimsum.DiMSUMConfig:
    return dimsum.get_preset("emoji-XS").replace(
        num_classes=1, learn_null_class=False, class_names=None, name="uncond-XS"
    )


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> Explorer:
    ckpt = make_checkpoint(tmp_path_factory.mktemp("uncond") / "m", unconditional_config())
    return Explorer(AppConfig(checkpoint=str(ckpt), threads=1))


def test_which_models_use_guidance() -> None:
    for name in ("L2-celebahq256", "L2-church256", "XL2-church256"):
        assert not dimsum.get_preset(name).uses_guidance, name
    for name in ("L2-imagenet256", "emoji-XS"):
        assert dimsum.get_preset(name).uses_guidance, name
    assert not unconditional_config().uses_guidance
    # one class with a learned null class: guidance still contrasts the label with it
    assert dimsum.get_preset("emoji-XS").replace(num_classes=1, class_names=None).uses_guidance


def test_guidance_slider_follows_the_model(explorer: Explorer) -> None:
    session = explorer.new_session()
    assert not explorer.registry.get(session.model_key).config.uses_guidance
    off = explorer.select_model(session.model_key, session, None).guidance
    assert off["interactive"] is False and off["info"] == NO_GUIDANCE_INFO
    assert "value" not in off  # the value stays as it is
    on = explorer.select_model(DEMO_KEY, session, None)
    assert on.session.model_key == DEMO_KEY
    assert on.guidance["interactive"] is True and on.guidance["info"] == GUIDANCE_INFO
    back = explorer.select_model(explorer.default_key, on.session, None).guidance
    assert back["interactive"] is False


def test_settings_set_the_guidance_value_and_its_state(explorer: Explorer) -> None:
    session = explorer.new_session()
    change = explorer.load_settings(session, json.dumps({"guidance": 3, "seed": 2}))
    g = change.controls.guidance
    assert g["value"] == 3 and g["interactive"] is False and g["info"] == NO_GUIDANCE_INFO
    change = explorer.load_settings(session, json.dumps({"model": DEMO_KEY, "seed": 2}))
    assert change.session.model_key == DEMO_KEY
    g = change.controls.guidance
    assert g["interactive"] is True and "value" not in g  # not in the settings: left as it is


def test_a_run_of_an_unconditional_model_says_guidance_1(explorer: Explorer) -> None:
    session = explorer.new_session()
    outs = list(
        explorer.generate(
            session, "(unconditional)", 3, 2, "euler", 4.0, 2, progress=lambda *a, **k: None
        )
    )
    final = outs[-1]
    assert "guidance 1 ·" in final.status, final.status
    assert json.loads(final.settings_json)["guidance_scale"] == 1
    assert "guidance=4" not in (final.share_query or "")
    assert read_png_settings(final.files[0])["guidance_scale"] == 1
    assert explorer.run_for(final.session).settings["guidance_scale"] == 1


def test_the_page_sets_the_slider_once_per_event(explorer: Explorer) -> None:
    from app.ui import build_ui

    demo = build_ui(explorer)
    sliders = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "guidance"]
    assert len(sliders) == 1
    slider = sliders[0]
    # the page opens on the unconditional model: switched off, saying why
    assert slider.interactive is False and slider.info == NO_GUIDANCE_INFO
    seen = set()
    for fn in demo.fns.values():
        ids = [c._id for c in fn.outputs]
        assert len(ids) == len(set(ids)), f"{fn.api_name}: a component is set twice"
        if fn.api_name in MODEL_EVENTS:
            assert ids.count(slider._id) == 1, fn.api_name
            seen.add(fn.api_name)
    assert seen == set(MODEL_EVENTS)


def test_the_http_api_keeps_its_output_order(explorer: Explorer, tmp_path: Path) -> None:
    """select_model / load_model gain the slider as their last output; the settings events
    keep their outputs (the slider was already among the controls)."""
    from app.ui import build_ui

    demo = build_ui(explorer)
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "guidance")
    for name in ("select_model", "load_model"):
        assert by_name[name].outputs[-1] is slider, name
    for name in ("prefill", "load_settings", "load_png"):
        assert len(by_name[name].outputs) == 1 + 9 + 6, name  # session, model outputs, controls
        assert by_name[name].outputs[1 + 9 + 3] is slider, name
