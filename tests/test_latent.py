"""The latent path end to end: a tiny latent DiMSUM whose config names a tiny diffusers
AutoencoderKL (random weights, saved to a temporary folder), loaded by
`DiMSUMPipeline.from_pretrained`, samples RGB images of the VAE's output size, decoded by that VAE
(x / latent_scale), with the linear latent-to-RGB previews along the way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dimsum
from dimsum.pipeline import DiMSUMPipeline, VAEUnavailableError, to_uint8

from .ci import unavailable

try:
    import diffusers
except ImportError:
    unavailable("diffusers is not installed (the latent path needs it)", allow_module_level=True)

LATENT = 8  # latent side; the VAE below upsamples x2, so images are 16 x 16


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("latent")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=2 * LATENT,
    )
    vae.save_pretrained(root / "vae")
    config = dimsum.get_preset("emoji-XS").replace(
        space="latent",
        in_channels=4,
        input_size=LATENT,
        hidden_size=32,
        depth=2,
        num_classes=3,
        class_names=None,
        vae=str(root / "vae"),
        name="tiny-latent",
    )
    model = dimsum.build_model(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # small random weights everywhere (the official init zeroes the output)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    dimsum.save_pretrained(model, root / "model")
    return root / "model", root / "vae"


def test_latent_pipeline_samples_rgb_through_the_vae(folders) -> None:
    model_dir, vae_dir = folders
    pipe = DiMSUMPipeline.from_pretrained(model_dir)
    assert pipe.config.space == "latent" and pipe.vae is not None
    decoded: list[torch.Tensor] = []
    real_decode = pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: decoded.append(z) or real_decode(z, *a, **k)

    out = pipe([0, 2], [5, 6], num_steps=3, method="heun", guidance_scale=2.0)
    assert out.array.shape == (2, 2 * LATENT, 2 * LATENT, 3) and out.array.dtype == np.uint8
    assert [im.size for im in out.images] == [(2 * LATENT, 2 * LATENT)] * 2
    assert all(im.mode == "RGB" for im in out.images)
    # The final latents, divided by latent_scale, went through the VAE once, and the images are
    # exactly what it decoded.
    assert len(decoded) == 1
    final = out.trajectory.final
    assert final.shape == (2, 4, LATENT, LATENT)
    assert torch.allclose(decoded[0], final / pipe.config.latent_scale)
    with torch.no_grad():
        want = to_uint8(real_decode(final / pipe.config.latent_scale).sample)
    assert np.array_equal(out.array, want)
    assert out.array.std() > 0
    # Previews are the cheap linear map of the latents, at the latent size.
    assert out.previews_xt.shape == (4, 2, LATENT, LATENT, 3)


def test_latent_model_without_a_vae_says_so(folders) -> None:
    model_dir, _ = folders
    pipe = DiMSUMPipeline(dimsum.load_checkpoint(model_dir))
    with pytest.raises(VAEUnavailableError, match="VAE"):
        pipe([0], [0], num_steps=2, method="euler", guidance_scale=1.0)
