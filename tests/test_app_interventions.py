"""The Interventions tab through the HTTP API (`/intervene`), on the test server's pixel model and
on a tiny latent model (official DiM weights + a tiny AutoencoderKL).

The re-run repeats the session's last run with part of the network changed and compares it with
that run's own images: an intervention whose t range holds no network evaluation must give the
original images exactly; freq-off must change them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from dimsum.io import read_png_settings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

ALL = [0, 1, 2, 3]  # the emoji-XS blocks


@pytest.fixture(scope="module")
def server():
    from app.testing import shared_server

    return shared_server()


@pytest.fixture(scope="module")
def run(server):
    """A session with one run: 2 images, Heun 4 steps (evaluations at t = 0, .25, .5, .75, 1)."""
    c = Client(server.url, verbose=False)
    c.predict("Smileys & Emotion", "11", 4, "heun", 2.0, 2, api_name="/generate")
    return c


def _pixels(gallery) -> list[np.ndarray]:
    return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery]


def _intervene(c: Client, kind: str, rep, blocks, t0: float, t1: float):
    return c.predict(kind, rep, blocks, t0, t1, api_name="/intervene")


def _clean(err: BaseException, *needles: str) -> None:
    msg = str(err)
    assert "Traceback" not in msg and "verbose error reporting" not in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), (n, msg)


def test_freq_off_changes_the_images(run) -> None:
    original, changed, diff, legend, _plot, summary, details = _intervene(
        run, "freq-off", "zeros", ALL, 0.0, 1.0
    )
    before, after = _pixels(original), _pixels(changed)
    assert len(before) == len(after) == 2
    assert all(a.shape == (32, 32, 3) for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # The changed PNGs carry their settings, the intervention recorded.
    meta = read_png_settings(changed[0]["image"])
    assert meta["seeds"] == [11, 12] and meta["interventions"][0]["kind"] == "freq-off"
    assert len(diff) == 2 and "red" in legend and "blue" in legend
    energy = details["energy"]
    assert len(energy["names"]) == 16 and energy["names"][0] == "LL.LL"
    for key in ("original", "changed", "difference", "of_difference"):
        assert np.asarray(energy[key]).shape == (2, 16), key
    assert set(energy["group_change"]) == {"approximation", "coarse detail", "fine detail"}
    assert details["mean_pixel_change"] > 0 and details["evaluations_in_range"] == 5
    assert "freq-off" in summary and "%" in summary


def test_a_t_range_without_evaluations_changes_nothing(run) -> None:
    """Heun 4 evaluates at t = 0, .25, .5, .75, 1: [0.3, 0.45] holds none of them."""
    original, changed, *_, summary, details = _intervene(run, "freq-off", "zeros", ALL, 0.3, 0.45)
    for a, b in zip(_pixels(original), _pixels(changed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert details["evaluations_in_range"] == 0 and details["mean_pixel_change"] == 0
    assert "No network evaluation" in summary
    assert np.allclose(details["energy"]["difference"], 0)


def test_the_original_is_the_run_itself(run) -> None:
    """No second plain run: the originals are the run's own files."""
    original, *_ = _intervene(run, "freq-raster", None, [1, 2], 0.5, 1.0)
    assert all(Path(item["image"]).is_file() for item in original)
    assert read_png_settings(original[0]["image"]).get("interventions") is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("freq-off", "zeros", [], 0.0, 1.0), "at least one block"),
        (("freq-off", "zeros", ALL, 0.8, 0.2), "from"),
        (("attn-skip", None, [0], 0.0, 1.0), "attention"),
        (("bogus", None, ALL, 0.0, 1.0), "intervention"),
        (("freq-off", "nope", ALL, 0.0, 1.0), "replacement"),
        (("freq-off", "zeros", [9], 0.0, 1.0), "block"),
        (("freq-off", "zeros", ALL, -0.5, 1.0), "t from"),
    ],
)
def test_bad_input_is_one_clean_message(run, args, needle) -> None:
    with pytest.raises(AppError) as err:
        _intervene(run, *args)
    _clean(err.value, needle)


def test_no_run_yet_is_a_clean_message(server) -> None:
    with pytest.raises(AppError) as err:
        _intervene(Client(server.url, verbose=False), "freq-off", "zeros", ALL, 0.0, 1.0)
    _clean(err.value, "Generate")


def test_latent_model(tmp_path: Path) -> None:
    """A latent model (official DiM form) decoded by a tiny AutoencoderKL: the re-run goes
    through the VAE and compares decoded RGB images."""
    pytest.importorskip("diffusers")
    from app.config import AppConfig
    from app.testing import start_server

    from .test_official_latent import bare_folder, official_kwargs, tiny_vae

    folder = bare_folder(tmp_path, official_kwargs(True))
    vae = tiny_vae(tmp_path / "vae")
    server = start_server(AppConfig(checkpoint=str(folder), vae=str(vae), threads=1))
    try:
        c = Client(server.url, verbose=False)
        c.predict("0", "3", 3, "euler", 1.0, 2, api_name="/generate")
        pipe = server.explorer.registry.get(server.explorer.default_key)
        assert pipe.config.space == "latent"
        blocks = list(range(pipe.config.depth))
        original, changed, *_, details = _intervene(c, "freq-off", "zeros", blocks, 0.0, 1.0)
        before, after = _pixels(original), _pixels(changed)
        assert before[0].shape == after[0].shape and before[0].shape[-1] == 3
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        assert np.asarray(details["energy"]["changed"]).shape == (2, 16)
        # Euler 3 evaluates at t = 0, 1/3, 2/3: (0.7, 1] holds none, so nothing changes.
        original, changed, *_ = _intervene(c, "freq-off", "zeros", blocks, 0.7, 1.0)
        for a, b in zip(_pixels(original), _pixels(changed), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        server.close()


def test_attn_skip_on_a_model_without_attention_is_refused() -> None:
    """Checked before any run: one clean message, and the kind's controls offer no blocks."""
    from types import SimpleNamespace

    import dimsum
    from app.intervene import Interventions
    from app.models import random_demo_model
    from app.state import SessionState
    from app.views import interventions as view
    from dimsum.validation import InputError

    model = random_demo_model(dimsum.get_preset("emoji-XS").replace(attn_every=0), 0)
    assert not hasattr(model, "attn_block") and view.attention_blocks(model) == []
    explorer = SimpleNamespace(
        run_for=lambda session: SimpleNamespace(model_key="m"),
        registry=SimpleNamespace(get=lambda key: SimpleNamespace(model=model)),
    )
    handlers = Interventions(explorer)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no shared attention block"):
        handlers.parse(SessionState("m", "run"), "attn-skip", None, ALL, 0.0, 1.0)
    rec, iv = handlers.parse(SessionState("m", "run"), "freq-off", "other", [1], 0.2, 0.6)
    assert str(iv) == "freq-off:blocks=1:t=0.2-0.6:with=other"
    assert "(+ attention after)" not in str(view.block_choices(model))
