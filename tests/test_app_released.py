"""The app with the released models: offline selection stays calm, latent models sample to RGB,
and a long CPU run says how long it will take before it starts."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from app.config import AppConfig
from app.explorer import Explorer
from app.sampling import Request

from .test_official_latent import bare_folder, official_kwargs, tiny_vae

RELEASED = "hub:haopt/dimsum-L2-imagenet256"
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer(AppConfig(online=False, threads=1))


def test_offline_released_model_leaves_the_session_on_its_model(
    explorer: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warnings.append(message))
    session = explorer.new_session()
    change = explorer.select_model(RELEASED, session, None)
    # No exception (gradio would paint every output as an error); one calm, specific message.
    assert len(warnings) == 1
    assert "offline" in warnings[0] and "`hf download haopt/dimsum-L2-imagenet256" in warnings[0]
    assert warnings[0].count("hf download") == 2  # the weights and the VAE, each said once
    assert change.session.model_key == session.model_key != RELEASED
    assert change.model.model["value"] == session.model_key  # the dropdown goes back
    assert RELEASED in dict((k, v) for v, k in explorer.registry.choices())  # still listed


def test_expected_wait_is_announced_for_long_runs_only(
    explorer: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    infos: list[str] = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: infos.append(message))
    pipe = explorer.registry.get(explorer.default_key)
    req = Request([0] * 4, [0, 1, 2, 3], 4.0, 20, "heun", [], [])
    assert pipe.seconds_per_evaluation > 0  # timed at load
    monkeypatch.setattr(pipe, "seconds_per_evaluation", 0.05)  # the emoji model on 2 cores
    assert explorer.expected_wait(pipe, req) is None and not infos  # quick: nothing said
    monkeypatch.setattr(pipe, "seconds_per_evaluation", 2.5)  # what DiM-L/2 takes on 2 cores
    text = explorer.expected_wait(pipe, req)
    assert text is not None and "about 102 s on the CPU (41 network evaluations" in text
    assert infos == [text]


def test_app_serves_an_official_latent_folder_with_its_vae(tmp_path: Path) -> None:
    from gradio_client import Client
    from PIL import Image

    from app.testing import start_server

    folder = bare_folder(tmp_path, official_kwargs(True))
    vae = tiny_vae(tmp_path / "vae")
    config = AppConfig(checkpoint=str(folder), vae=str(vae), threads=1, vae_previews="always")
    server = start_server(config)
    try:
        client = Client(server.url, verbose=False)
        out = client.predict("3", "0", 2, "euler", 4.0, 2, api_name="/generate")
        with Image.open(out[1][0]["image"]) as im:
            assert im.size == (32, 32) and im.mode == "RGB"  # decoded by the VAE, not 4-channel
        client.predict(api_name="/refresh_views")
        frame, caption = client.predict(0, api_name="/trajectory_view")
        assert "decoded by the VAE" in caption  # x̂ at a scrubbed step, not the linear map
    finally:
        server.close()


def test_half_precision_on_a_cpu_without_its_instructions_warns(monkeypatch, caplog) -> None:
    """--precision bf16 on a CPU that emulates bf16 matmuls (AVX2: ~3x slower than fp32) says
    so; with the instructions (AVX-512 BF16 / AMX), or in fp32, it does not."""
    import torch

    from app import models

    for native, precision, warned in (
        (set(), "bf16", True),
        ({"bf16"}, "bf16", False),
        ({"bf16"}, "fp16", True),
        (set(), "fp32", False),
    ):
        monkeypatch.setattr(models, "cpu_native_half_types", lambda n=native: n)
        caplog.clear()
        with caplog.at_level("WARNING", logger="app.models"):
            dtype = models.autocast_dtype(precision, "cpu")
        assert dtype == {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
        assert any("emulated" in r.message for r in caplog.records) == warned, (native, precision)
