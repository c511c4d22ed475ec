"""Official checkpoint forms load as latent models and sample to RGB through the VAE.

Tiny stand-ins for the released files: the `cond_tiny` parity fixture's weights (official DiM,
4 latent channels, 10 classes + null) saved in each official form, and a tiny diffusers
`AutoencoderKL` with random weights standing in for the SD VAE.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dimsum.checkpoints import load_checkpoint
from dimsum.io import read_png_settings
from dimsum.pipeline import DiMSUMPipeline
from dimsum.validation import InputError

from .conftest import PARITY

ROOT = Path(__file__).resolve().parent.parent
COND = PARITY / "cond_tiny"
LATENT_SIDE = 16  # cond_tiny's latent grid


def tiny_vae(folder: Path) -> Path:
    """A 2-level AutoencoderKL (x2 upsampling) with random weights, saved like the SD VAE."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=32,
    )
    vae.save_pretrained(folder)
    return folder


def official_kwargs(sample_sh_form: bool) -> dict:
    """The fixture's `DiM(**kwargs)`; sample.sh describes the table as classes + 1, dropout -1."""
    kw = dict(json.loads((COND / "config.json").read_text())["dim_kwargs"])
    if sample_sh_form:
        kw.update(num_classes=kw["num_classes"] + 1, label_dropout=-1.0)
    return kw


def bare_folder(tmp_path: Path, config: dict | None) -> Path:
    """The hub form: a bare float32 state dict `pytorch_model.bin` (+ the mixin's config.json)."""
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(load_file(str(COND / "model.safetensors")), folder / "pytorch_model.bin")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vae(tmp_path_factory.mktemp("vae"))


@pytest.mark.parametrize(
    "form", ["bare", "bare+config", "bare+config(sample.sh)", "training-checkpoint"]
)
def test_every_official_form_is_a_conditional_latent_model(tmp_path: Path, form: str) -> None:
    if form == "training-checkpoint":
        path = COND / "checkpoint.pt"
    else:
        config = {"bare": None, "bare+config": official_kwargs(False)}.get(
            form, official_kwargs(True)
        )
        path = bare_folder(tmp_path, config)
    model = load_checkpoint(path)
    cfg = model.config
    assert (cfg.space, cfg.vae, cfg.in_channels) == ("latent", "stabilityai/sd-vae-ft-ema", 4)
    # 10 real classes and the null class in the last of the 11 rows, whichever way it is spelled.
    assert (cfg.num_classes, cfg.num_label_rows, cfg.null_class) == (10, 11, 10)
    assert cfg.is_class_conditional


@pytest.mark.parametrize("with_config", [False, True])
def test_official_folder_samples_rgb_through_an_explicit_vae(
    tmp_path: Path, vae_dir: Path, with_config: bool
) -> None:
    folder = bare_folder(tmp_path, official_kwargs(True) if with_config else None)
    pipe = DiMSUMPipeline.from_pretrained(folder, vae=vae_dir)
    assert pipe.vae is not None
    out = pipe([3, 4], [0, 1], guidance_scale=4.0, num_steps=2, method="euler")
    # x2 VAE: 16x16x4 latents decode to 32x32 RGB (not 4-channel 16x16 arrays).
    assert out.array.shape == (2, 2 * LATENT_SIDE, 2 * LATENT_SIDE, 3)
    assert out.array.dtype == np.uint8
    assert all(im.mode == "RGB" for im in out.images)
    # Guided: the class-conditional model's null class takes part, so guidance changes images.
    plain = pipe([3, 4], [0, 1], guidance_scale=1.0, num_steps=2, method="euler")
    assert not np.array_equal(out.array, plain.array)


def test_explicit_vae_wins_over_the_config(tmp_path: Path, vae_dir: Path) -> None:
    folder = bare_folder(tmp_path, None)
    model = load_checkpoint(folder)
    model.config.vae = str(tmp_path / "no-such-vae")  # what the config names is never read
    pipe = DiMSUMPipeline(model, vae=None)
    from dimsum.vae import resolve_vae

    vae = resolve_vae(model.config, vae_dir)
    assert vae is not None and vae.config.block_out_channels == [8, 16]
    pipe.vae = vae
    assert pipe([0], [0], num_steps=1, method="euler").array.shape[1] == 2 * LATENT_SIDE


def test_vae_for_a_pixel_model_is_a_clear_error(vae_dir: Path) -> None:
    with pytest.raises(InputError, match="pixel-space model"):
        DiMSUMPipeline.from_pretrained(ROOT / "checkpoints", vae=vae_dir)


def test_cli_samples_an_official_folder_with_vae(tmp_path: Path, vae_dir: Path) -> None:
    folder = bare_folder(tmp_path, official_kwargs(True))
    out = tmp_path / "grid.png"
    cmd = [sys.executable, "-m", "dimsum.cli", "sample", "--checkpoint", str(folder)]
    cmd += ["--vae", str(vae_dir), "--classes", "3", "--seeds", "0", "1", "--steps", "2"]
    cmd += ["--method", "euler", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.height == 2 * LATENT_SIDE + 4  # one row, 2 px padding
    assert read_png_settings(out)["classes"] == [3, 3]


def test_bf16_autocast_is_opt_in_and_close(tmp_path: Path, vae_dir: Path) -> None:
    pipe = DiMSUMPipeline.from_pretrained(bare_folder(tmp_path, None), vae=vae_dir)
    assert pipe.autocast is None  # the official float32 computation unless asked
    exact = pipe([3], [0], num_steps=2, method="euler").array
    pipe.autocast = torch.bfloat16
    fast = pipe([3], [0], num_steps=2, method="euler").array
    diff = np.abs(exact.astype(int) - fast.astype(int))
    assert 0 < diff.max() and diff.mean() < 8  # bf16 matmuls: different bits, the same image


def test_bf16_weights_are_cast_once_per_run(tmp_path: Path, vae_dir: Path) -> None:
    """Autocast's copies of the weights are made once per sampling run, not per evaluation
    (0.6 s of every 1.75 s evaluation of DiM-L/2 on a CPU): counted as casts of one weight."""
    from torch.profiler import profile

    pipe = DiMSUMPipeline.from_pretrained(bare_folder(tmp_path, None), vae=vae_dir)
    pipe.autocast = torch.bfloat16
    shape = list(pipe.model.blocks[0].mlp.w12.weight.shape)
    weights = sum(list(p.shape) == shape for p in pipe.model.parameters())
    with profile(record_shapes=True) as prof:
        out = pipe([3], [0], num_steps=4, method="euler", return_trajectory=False)
    assert out.settings["nfe"] == 4
    casts = [
        e
        for e in prof.events()
        if e.name == "aten::_to_copy" and e.input_shapes and e.input_shapes[0] == shape
    ]
    assert len(casts) == weights, f"{len(casts)} casts of {weights} weights in 4 evaluations"


def test_unconditional_official_model_samples_without_guidance(vae_dir: Path) -> None:
    """CelebA-HQ / Church style (one class, no null row): guidance does not apply, and the
    recorded settings say what ran."""
    pipe = DiMSUMPipeline.from_pretrained(PARITY / "uncond_tiny" / "checkpoint.pt", vae=vae_dir)
    assert (pipe.config.space, pipe.config.is_class_conditional) == ("latent", False)
    out = pipe([0], [0], guidance_scale=4.0, num_steps=2, method="euler")
    assert out.settings["guidance_scale"] == 1.0 and out.array.shape[-1] == 3
    plain = pipe([0], [0], guidance_scale=1.0, num_steps=2, method="euler")
    assert (out.array == plain.array).all()
