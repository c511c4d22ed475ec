"""The released model's full-size path without the hub: DiM-L/2 with random weights in the
official bare-state-dict form (`pytorch_model.bin`, 1.8 GB) and the SD VAE architecture
(diffusers AutoencoderKL, sd-vae-ft-ema's config, random weights), one 256x256 image through
the library, the CLI and the app's HTTP API, on the CPU. Slow: ~3 minutes on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dimsum.pipeline import DiMSUMPipeline
from dimsum.standins import write_released_standin, write_vae_standin

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
ONE_STEP = dict(num_steps=1, method="euler", guidance_scale=4.0)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("released")
    return write_released_standin(root / "imagenet"), write_vae_standin(root / "sd-vae")


def test_library_samples_a_256px_image(released: tuple[Path, Path]) -> None:
    folder, vae = released
    pipe = DiMSUMPipeline.from_pretrained(folder, vae=vae)
    assert (pipe.config.name, pipe.config.space, pipe.config.num_classes) == (
        "L2-imagenet256",
        "latent",
        1000,
    )
    out = pipe([207], [0], **ONE_STEP)
    assert out.array.shape == (1, 256, 256, 3)


def test_cli_samples_a_256px_image(released: tuple[Path, Path], tmp_path: Path) -> None:
    folder, vae = released
    png = tmp_path / "one.png"
    cmd = [sys.executable, "-m", "dimsum.cli", "sample", "--checkpoint", str(folder)]
    cmd += ["--vae", str(vae), "--classes", "207", "--seeds", "0", "--steps", "1"]
    cmd += ["--method", "euler", "--out", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(png) as im:
        assert im.size == (256 + 4, 256 + 4) and im.mode == "RGB"


def test_app_api_samples_a_256px_image(released: tuple[Path, Path]) -> None:
    from gradio_client import Client

    from app.config import AppConfig
    from app.testing import start_server

    folder, vae = released
    server = start_server(AppConfig(checkpoint=str(folder), vae=str(vae), threads=2))
    try:
        client = Client(server.url, verbose=False)
        out = client.predict("207", "0", 1, "euler", 4.0, 1, api_name="/generate")
        gallery = out[1]
        with Image.open(gallery[0]["image"]) as im:
            assert im.size == (256, 256)
    finally:
        server.close()
