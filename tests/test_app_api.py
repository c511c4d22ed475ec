"""The app through its HTTP API (gradio_client), against a local server with a tiny random model.

Every named endpoint is called; results are checked for content (images, shapes, PNG settings
metadata, rendered views) and errors for being clean one-line messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from dimsum.io import read_png_settings  # noqa: E402
from dimsum.validation import InputError  # noqa: E402

ENDPOINTS = {
    "/prefill",
    "/select_model",
    "/load_model",
    "/random_seed",
    "/generate",
    "/refresh_views",
    "/trajectory_view",
    "/export_gif",
    "/export_npz",
    "/wavelet_view",
    "/branches_view",
    "/scan_view",
    "/load_settings",
    "/load_png",
    "/compare_variants",
}


# gradio's queue uses pandas APIs that warn on every event; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def server():
    from app.testing import shared_server

    return shared_server()


@pytest.fixture
def client(server) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def run(server):
    """One generated run (2 images, 3 Heun steps) and the client/session that owns it."""
    c = Client(server.url, verbose=False)
    out = c.predict("Smileys & Emotion", "5", 3, "heun", 2.0, 2, api_name="/generate")
    views = c.predict(api_name="/refresh_views")
    return c, out, views


def _message(err: BaseException) -> str:
    return str(err)


def _v(x):
    """The value of an output (gradio_client returns component updates as dicts)."""
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def _assert_clean(err: BaseException, *needles: str) -> None:
    msg = _message(err)
    assert "Traceback" not in msg and 'File "' not in msg, msg
    assert "verbose error reporting" not in msg, f"generic error instead of a clean message: {msg}"
    for n in needles:
        assert n.lower() in msg.lower(), (n, msg)


def test_every_endpoint_is_named(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert ENDPOINTS <= set(api["named_endpoints"]), set(api["named_endpoints"])


def test_generate_outputs(run) -> None:
    _, (live, gallery, files, status, settings_text, query, *_), _ = run
    assert Path(live).is_file()
    assert len(gallery) == 2 and len(files) == 2
    for i, f in enumerate(files):
        img = Image.open(f)
        assert img.size == (32, 32) and img.mode == "RGB"
        meta = read_png_settings(f)
        assert meta["seeds"] == [5, 6] and meta["index"] == i
        assert meta["steps"] == 3 and meta["sampler"] == "heun" and meta["guidance_scale"] == 2.0
        assert meta["class_names"] == ["Smileys & Emotion"] * 2
        assert img.text.get("AI-generated") == "true"
    # The gallery serves the same files (metadata intact).
    assert read_png_settings(gallery[0]["image"])["seeds"] == [5, 6]
    assert "2 images" in status and "network evaluations" in status and " s" in status
    settings = json.loads(settings_text)
    assert settings["seeds"] == [5, 6] and settings["classes"] == ["Smileys & Emotion"]
    assert "seeds=5&seeds=6" in query and "steps=3" in query


def test_generate_streams_previews(server) -> None:
    c = Client(server.url, verbose=False)
    job = c.submit("Food & Drink", "1", 4, "euler", 1.0, 1, api_name="/generate")
    final = job.result(timeout=300)
    outputs = job.outputs()
    assert len(outputs) >= 2, "expected at least one streamed preview before the final result"
    assert Path(final[0]).is_file()
    # Previews clear the previous run's gallery and files (values, not gr.skip(), which makes
    # gradio rebuild each skipped component on every yield).
    assert all(not o[1] and o[2] is None for o in outputs[:-1])
    assert isinstance(final[1], list) and final[1]


def test_karras_schedule_end_to_end(server) -> None:
    """The step-schedule control reaches the sampler, the status, the settings and the exports."""
    from dimsum.flow import time_grid

    c = Client(server.url, verbose=False)
    out = c.predict("Smileys & Emotion", "5", 4, "heun", 2.0, 1, "karras", api_name="/generate")
    assert "karras" in out[3]
    assert json.loads(out[4])["schedule"] == "karras" and "schedule=karras" in out[5]
    c.predict(api_name="/refresh_views")
    npz = np.load(c.predict(api_name="/export_npz"))
    np.testing.assert_allclose(npz["t"], time_grid(4, "karras", "gvp"), atol=1e-6)
    assert not np.allclose(npz["t"], np.linspace(0, 1, 5), atol=1e-3)
    assert read_png_settings(out[2][0])["schedule"] == "karras"
    values = [_v(x) for x in c.predict(handle_file(out[2][0]), api_name="/load_png")]
    assert values[9:] == ["5", 4, "heun", 2.0, 1, "karras"]


def test_temperature_end_to_end(server) -> None:
    """The temperature slider reaches the initial noise, the status, the settings, the link and
    the PNG; the model's own value is the default and stays out of links."""
    c = Client(server.url, verbose=False)
    pipe = server.explorer.registry.get(server.explorer.default_key)
    # outputs: model, class, info, layer, strip, scan image, scan text, diagram, temperature
    default_t = _v(c.predict(api_name="/prefill")[8])
    assert default_t == pipe.config.sampling_temperature
    args = ("Smileys & Emotion", "5", 2, "euler", 2.0, 1, "uniform")
    out = c.predict(*args, 0.5, api_name="/generate")
    assert "temperature 0.5" in out[3]
    assert json.loads(out[4])["temperature"] == 0.5 and "temperature=0.5" in out[5]
    assert read_png_settings(out[2][0])["temperature"] == 0.5
    c.predict(api_name="/refresh_views")
    x0 = np.load(c.predict(api_name="/export_npz"))["x_t"][0]
    noise = pipe.noise([5]).numpy()
    np.testing.assert_allclose(x0, 0.5 * noise, rtol=1e-3, atol=1e-3)  # exported in float16
    for source in (handle_file(out[2][0]), out[4]):
        api = "/load_png" if not isinstance(source, str) else "/load_settings"
        values = [_v(x) for x in c.predict(source, api_name=api)]
        assert values[8] == 0.5
    plain = c.predict(*args, default_t, api_name="/generate")
    assert "temperature=" not in plain[5]
    link = [
        _v(x) for x in c.predict("http://localhost:7860/" + plain[5], api_name="/load_settings")
    ]
    assert link[8] == default_t


def test_same_seed_same_image_whatever_the_batch(server, run) -> None:
    _, out, _ = run
    c = Client(server.url, verbose=False)
    single = c.predict("Smileys & Emotion", "6", 3, "heun", 2.0, 1, api_name="/generate")
    a = np.asarray(Image.open(out[2][1]))  # second image of the seed-5 run has seed 6
    b = np.asarray(Image.open(single[2][0]))
    assert np.array_equal(a, b)


def test_refresh_views(run) -> None:
    _, _, views = run
    assert len(views) == 23
    assert _v(views[22]) == "norm"  # the Branches maps are back to feature strength
    # trajectory frame, wavelet mosaics and branch panels are PNG files
    for idx in (1, 9, 10, 16, 17, 18, 19):
        assert Path(views[idx]).is_file() and Path(views[idx]).suffix == ".png", (idx, views[idx])


def test_trajectory_view_and_exports(run) -> None:
    c, _, _ = run
    path0, cap0 = c.predict(0, api_name="/trajectory_view")
    path3, cap3 = c.predict(3, api_name="/trajectory_view")
    assert "Step 0 / 3" in cap0 and "Step 3 / 3" in cap3 and "t = 1.000" in cap3
    a, b = np.asarray(Image.open(path0)), np.asarray(Image.open(path3))
    assert a.shape == b.shape and not np.array_equal(a, b)
    gif = c.predict(api_name="/export_gif")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4
    npz = np.load(c.predict(api_name="/export_npz"))
    assert npz["t"].shape == (4,) and npz["previews_xt"].shape == (4, 2, 32, 32, 3)
    assert npz["x_t"].shape[1:] == (2, 3, 32, 32) and npz["images"].shape == (2, 32, 32, 3)
    assert json.loads(str(npz["settings_json"]))["seeds"] == [5, 6]


@pytest.mark.parametrize("source", ["final", "x_t", "x1", "freq"])
def test_wavelet_view(run, source: str) -> None:
    c, _, views = run
    block = _v(views[6])
    l1, l2, plot, caption = c.predict(
        source, 2, block, 1, "db2" if source != "freq" else "haar", "pc1", api_name="/wavelet_view"
    )
    assert Path(l1).is_file() and Path(l2).is_file()
    assert Image.open(l2).size[0] > Image.open(l1).size[0] // 2
    assert plot is not None and caption


def test_branches_and_scans(run) -> None:
    c, _, views = run
    step, block = _v(views[13]), _v(views[14])
    *images, plot, caption = c.predict(step, block, 1, api_name="/branches_view")
    assert len(images) == 4 and all(Path(p).is_file() for p in images)
    assert "strength of its features" in caption  # the default: norm maps, explained
    *images, plot, caption = c.predict(step, block, 1, "pca", api_name="/branches_view")
    assert len(images) == 4 and "principal components" in caption
    strip, img, text = c.predict(1, api_name="/scan_view")
    assert "block 1" in strip and Path(img).is_file() and "row-major reversed" in text


def test_view_errors_are_clean(run, client: Client) -> None:
    c, _, _ = run
    with pytest.raises(AppError) as e:
        c.predict(99, api_name="/trajectory_view")
    _assert_clean(e.value, "step")
    with pytest.raises(AppError) as e:
        c.predict("final", 0, 0, 0, "not-a-wavelet", "meanabs", api_name="/wavelet_view")
    _assert_clean(e.value, "wavelet")
    with pytest.raises(AppError) as e:
        c.predict(0, 12345, 0, api_name="/branches_view")
    _assert_clean(e.value, "block")
    with pytest.raises(AppError) as e:  # a fresh session has no run yet
        client.predict(0, api_name="/trajectory_view")
    _assert_clean(e.value, "generate")
    with pytest.raises(AppError) as e:
        client.predict(-1, api_name="/scan_view")
    _assert_clean(e.value, "layer")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("Smileys & Emotion", "0", 0, "heun", 4.0, 1), "steps"),
        (("Smileys & Emotion", "0", 10**9, "heun", 4.0, 1), "steps"),
        (("Smileys & Emotion", "0", 2, "heun", 4.0, 100), "number of images"),
        (("Smileys & Emotion", "0", 2, "heun", "nan", 1), "guidance"),  # JSON has no NaN: as text
        (("Smileys & Emotion", "0", 2, "heun", "-inf", 1), "guidance"),
        (("Smileys & Emotion", "0", 2.5, "heun", 4.0, 1), "steps"),
        (("Smileys & Emotion", "abc", 2, "heun", 4.0, 1), "seed"),
        (("Smileys & Emotion", "-3", 2, "heun", 4.0, 1), "seed"),
        (("Unicorns", "0", 2, "heun", 4.0, 1), "class"),
        (("Smileys & Emotion", "0", 2, "rk4", 4.0, 1), "sampler"),
        (("Smileys & Emotion", "0", 250, "heun", 20.0, 16), "too large"),
        (("Smileys & Emotion", "0", 2, "heun", 4.0, 1, "cosine"), "schedule"),
        (("Smileys & Emotion", "0", 2, "dopri5", 4.0, 1, "karras"), "schedule"),
        (("Smileys & Emotion", "0", 2, "heun", 4.0, 1, "uniform", 2.5), "temperature"),
        (("Smileys & Emotion", "0", 2, "heun", 4.0, 1, "uniform", -0.1), "temperature"),
        (("Smileys & Emotion", "0", 2, "heun", 4.0, 1, "uniform", "nan"), "temperature"),
    ],
)
def test_generate_rejects_bad_input_cleanly(client: Client, args: tuple, needle: str) -> None:
    with pytest.raises(AppError) as e:
        client.predict(*args, api_name="/generate")
    _assert_clean(e.value, needle)


def test_settings_round_trip(run, client: Client) -> None:
    _, out, _ = run
    settings_text, query = out[4], out[5]
    values = [_v(x) for x in client.predict(settings_text, api_name="/load_settings")]
    # outputs: model, class, info, layer, strip, scan image, scan text, diagram, then the controls
    assert values[1] == "Smileys & Emotion"
    assert values[9:] == ["5", 3, "heun", 2.0, 2, "uniform"]
    link = [
        _v(x) for x in client.predict("http://localhost:7860/" + query, api_name="/load_settings")
    ]
    assert link[9 : 9 + 5] == ["5", 3, "heun", 2.0, 2]  # the default schedule is not in links
    png = [_v(x) for x in client.predict(handle_file(out[2][1]), api_name="/load_png")]
    assert png[9] == "6" and png[13] == 1  # the second image: seed 6, one image
    with pytest.raises(AppError) as e:
        client.predict('{"seed": NaN, "steps": "x"}', api_name="/load_settings")
    _assert_clean(e.value, "settings")
    with pytest.raises(AppError) as e:
        client.predict("{not json", api_name="/load_settings")
    _assert_clean(e.value, "invalid json")


def test_random_seed(client: Client) -> None:
    seed = client.predict(api_name="/random_seed")
    assert seed.isdigit() and 0 <= int(seed) < 2**31


def test_models(server, client: Client, tmp_path) -> None:
    from app.models import DEMO_KEY
    from app.testing import make_checkpoint

    out = [_v(x) for x in client.predict(DEMO_KEY, "Objects", api_name="/select_model")]
    assert out[1] == "Objects" and "Untrained weights" in out[2]
    with pytest.raises(AppError) as e:
        client.predict("no-such-model", "Objects", api_name="/select_model")
    _assert_clean(e.value, "unknown model")
    with pytest.raises(AppError) as e:
        client.predict(str(tmp_path / "missing"), "Objects", api_name="/load_model")
    _assert_clean(e.value, "no such file")
    # Offline, a hub id cannot be reached: a warning (tests/test_app_released.py), no error, and
    # the session stays on its model.
    out = [_v(x) for x in client.predict("someone/some-model", "Objects", api_name="/load_model")]
    assert out[0] == DEMO_KEY
    ckpt = make_checkpoint(tmp_path / "custom", "emoji-XS", seed=3)
    out = [_v(x) for x in client.predict(str(ckpt), "Flags", api_name="/load_model")]
    assert out[1] == "Flags" and "emoji-XS" in out[2]
    gen = client.predict("Flags", "0", 1, "euler", 1.0, 1, api_name="/generate")
    assert read_png_settings(gen[2][0])["class_names"] == ["Flags"]


def test_compare_variants(client: Client) -> None:
    gallery, plot, table = client.predict(
        "Objects", "3", 2, "euler", 1.0, api_name="/compare_variants"
    )
    assert len(gallery) == 2 and "spatial-only" in table and plot is not None


def test_public_server_limits(server) -> None:
    """The app applies the tight public quota (the library pipeline has none of its own)."""
    from app.config import APP_LIMITS

    explorer = server.explorer
    assert explorer.config.limits == APP_LIMITS
    assert APP_LIMITS.max_images == 16 and APP_LIMITS.max_steps == 250
    pipe = explorer.registry.get(explorer.default_key)
    with pytest.raises(InputError, match="number of images"):
        explorer.validate_generation(pipe, 0, "0", 2, "euler", 1.0, 17)
    with pytest.raises(InputError, match="steps"):
        explorer.validate_generation(pipe, 0, "0", 251, "euler", 1.0, 1)


@pytest.mark.skipif(
    not (Path(__file__).resolve().parent.parent / "checkpoints" / "model.safetensors").is_file(),
    reason="no embedded checkpoint (checkpoints/model.safetensors)",
)
def test_embedded_checkpoint() -> None:
    """The shipped emoji model loads as the default and generates a valid image."""
    from app.config import AppConfig
    from app.explorer import Explorer

    ex = Explorer(AppConfig())
    assert ex.default_key == "embedded" and not ex.notes
    pipe = ex.registry.get("embedded")
    assert pipe.config.class_names and pipe.config.space == "pixel"
    gen = ex.validate_generation(pipe, "Smileys & Emotion", 0, 2, "heun", 4.0, 1)
    out = pipe(gen.request.classes, gen.request.seeds, num_steps=2, method="heun")
    assert out.array.shape == (1, 32, 32, 3)
