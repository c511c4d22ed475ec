"""Loading and saving checkpoints: official files and our own folders, without running code.

Accepted by `load_checkpoint`:
- the official training checkpoint `{"epoch", "model", "ema", "opt", "args"}` (weights: "ema");
  `args` is a pickled `argparse.Namespace`, the only class we allow the unpickler to build;
- a bare official state dict (`pytorch_model.bin` on the hub), no config: the architecture is
  inferred from the weights;
- our folder `model.safetensors` + `config.json` (what `save_pretrained` writes), local or a hub id.

Pickle files are only read through `torch.load(weights_only=True)`; a file whose pickle would
build anything else (e.g. call `os.system`) is refused before anything runs. Large files are
memory-mapped and loaded into a model built on the meta device, so no second copy is held.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import OFFICIAL_HUB_IDS, PRESETS, SD_VAE, DiMSUMConfig, get_preset
from .io import atomic_write
from .models import DiMSUM

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
DTYPES = {
    None: None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class CheckpointError(ValueError):
    """A checkpoint could not be found, read, trusted or matched to the architecture."""


# ---- reading files ----------------------------------------------------------------------------
def _torch_load_safe(path: Path) -> Any:
    """torch.load with weights_only=True; argparse.Namespace is the one extra allowed class."""
    kwargs: dict[str, Any] = dict(map_location="cpu", weights_only=True)
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, mmap=True, **kwargs)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err).lower():
                raise
            return torch.load(path, **kwargs)  # legacy (non-zip) format cannot be memory-mapped


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights from a file. Returns (state_dict, info) where info says what was found."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {str(path)!r} is empty")
    info: dict[str, Any] = {"file": str(path)}
    if path.suffix == ".safetensors":
        try:
            sd = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(
                f"{str(path)!r} is not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
        info["format"] = "safetensors"
        return sd, info
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"unsupported checkpoint file {path.name!r}: expected .safetensors or one of {PICKLE_SUFFIXES}"
        )
    try:
        obj = _torch_load_safe(path)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text or "unpickl" in text.lower():
            raise CheckpointError(
                f"refusing to load {str(path)!r}: its pickle wants to build objects outside the "
                f"allow-list (tensors, dicts, argparse.Namespace), so it could run code. "
                f"Convert trusted files to safetensors. Details: {text.splitlines()[0][:300]}"
            ) from err
        raise CheckpointError(
            f"cannot read {str(path)!r} (truncated or corrupt?): {text[:300]}"
        ) from err
    if isinstance(obj, Mapping) and "ema" in obj and isinstance(obj["ema"], Mapping):
        info["format"] = "official-training-checkpoint"
        info["epoch"] = obj.get("epoch")
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            info["args"] = vars(args)
        obj = obj["ema"]  # the EMA weights are what the official sampler uses
    else:
        info["format"] = "state-dict"
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(path)!r} holds no state dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in obj.items()}
    return sd, info


# ---- inferring the architecture ---------------------------------------------------------------
def infer_config(sd: Mapping[str, torch.Tensor], preset: str | None = None) -> DiMSUMConfig:
    """Architecture from the weights alone; facts weights cannot tell come from a preset.

    width from pos_embed, depth from blocks.*, patch/channels from x_embedder, label rows from
    the table, d_state/expand/dt_rank from the mixer weights.
    """
    need = ["pos_embed", "x_embedder.proj.weight", "y_embedder.embedding_table.weight"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f"not a DiMSUM state dict: missing {missing}")
    _, num_tokens, hidden = sd["pos_embed"].shape
    _, in_ch, patch, _ = sd["x_embedder.proj.weight"].shape
    rows = sd["y_embedder.embedding_table.weight"].shape[0]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    side = int(round(num_tokens**0.5))
    if "blocks.0.attn.qkv.weight" in sd:
        block_type = "attention"
    elif "blocks.0.freq_mamba.dwt.w_ll" in sd:
        block_type = "combined"
    else:
        block_type = "spatial"
    base = get_preset(preset) if preset else None
    kw: dict[str, Any] = dict(
        input_size=side * patch,
        in_channels=in_ch,
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_classes=max(rows - 1, 1),
        learn_null_class=rows > 1,
        block_type=block_type,
        attn_every=(base.attn_every if base else 4)
        if "attn_block.adaLN_modulation.1.weight" in sd
        else 0,
        mlp_ratio=sd["blocks.0.mlp.w12.weight"].shape[0] / 2 / hidden,
    )
    if block_type != "attention":
        a_log = sd["blocks.0.spatial_mamba.mixer.A_log"]
        kw.update(
            d_state=a_log.shape[1],
            expand=a_log.shape[0] // (hidden // 2),
            dt_rank=sd["blocks.0.spatial_mamba.mixer.dt_proj.weight"].shape[1],
            d_conv=sd["blocks.0.spatial_mamba.mixer.conv1d.weight"].shape[-1],
        )
    if base is not None:
        # Facts the weights cannot tell: heads, input space, the VAE.
        kw.update(
            attn_heads=base.attn_heads,
            fusion_heads=base.fusion_heads,
            space=base.space,
            vae=base.vae,
            latent_scale=base.latent_scale,
            class_names=base.class_names if base.num_classes == kw["num_classes"] else None,
            name=base.name,
        )
    elif in_ch == 4:
        # Official released models are latent models of the SD VAE (SPEC section 5).
        kw.update(space="latent", vae=SD_VAE)
    return DiMSUMConfig(**kw)


def guess_preset(sd: Mapping[str, torch.Tensor]) -> str | None:
    """The official preset whose architecture matches these weights, if any."""
    try:
        cfg = infer_config(sd)
    except CheckpointError:
        return None
    for name, p in PRESETS.items():
        if (p.hidden_size, p.depth, p.num_label_rows, p.in_channels, p.input_size) == (
            cfg.hidden_size,
            cfg.depth,
            cfg.num_label_rows,
            cfg.in_channels,
            cfg.input_size,
        ) and p.space == "latent":
            return name
    return None


# ---- matching and loading ---------------------------------------------------------------------
def check_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Raise a CheckpointError naming every missing, unexpected or mis-shaped key."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:12]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:12]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:12]}")
        raise CheckpointError("checkpoint does not match the architecture: " + "; ".join(parts))


def model_from_state_dict(
    sd: dict[str, torch.Tensor],
    config: DiMSUMConfig,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> DiMSUM:
    """Build on the meta device and adopt the tensors (assign=True): no second copy in memory."""
    with torch.device("meta"):
        model = DiMSUM(config)
    check_state_dict(model, sd)
    model.load_state_dict(sd, strict=True, assign=True)
    model = model.to(device=device, dtype=dtype or torch.float32)
    return model.eval()


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if isinstance(dtype, torch.dtype) or dtype is None:
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: must be one of {[k for k in DTYPES if k]}")
    return DTYPES[dtype]


def _looks_like_repo_id(s: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", s)) and not s.startswith((".", "/"))


def resolve_local(path_or_repo_id: str | Path) -> Path:
    """A local path for a checkpoint: as given, or downloaded from the hub (cache first)."""
    p = Path(path_or_repo_id).expanduser()
    if p.exists():
        return p
    s = str(path_or_repo_id)
    if not _looks_like_repo_id(s):
        raise CheckpointError(f"checkpoint {s!r} not found (no such file or folder)")
    try:
        # Deliberately lazy: only hub ids need it, and it costs ~0.3 s (app and CLI start).
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            s, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.pt", "*.md"]
        )
    except Exception as err:  # noqa: BLE001 - offline, missing repo, auth...
        raise CheckpointError(
            f"checkpoint {s!r} is neither a local path nor reachable on the Hugging Face hub "
            f"({type(err).__name__}). Offline? Download it on a connected machine "
            f"(`hf download {s} --local-dir DIR`) and pass DIR instead."
        ) from err
    return Path(folder)


def _pick_file(folder: Path) -> Path:
    for name in (WEIGHTS_NAME, "pytorch_model.bin", "checkpoint.pt", "model.pt"):
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(folder.glob("*.safetensors")) + sorted(
        f for s in PICKLE_SUFFIXES for f in folder.glob(f"*{s}")
    )
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(
        f"folder {str(folder)!r} holds no single checkpoint file "
        f"(expected {WEIGHTS_NAME} + {CONFIG_NAME}, or pytorch_model.bin); found "
        f"{[c.name for c in candidates] or 'nothing'}"
    )


def load_checkpoint(
    path_or_repo_id: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    config: DiMSUMConfig | None = None,
    preset: str | None = None,
) -> DiMSUM:
    """Load a DiMSUM model in eval mode from any supported checkpoint form (see module doc).

    config: use this architecture instead of config.json / inference.
    preset: name of a preset that supplies what weights cannot tell (heads, VAE, class names).
    dtype: float32 (default), bfloat16 or float16.
    """
    torch_dtype = _resolve_dtype(dtype)
    local = resolve_local(path_or_repo_id)
    file = _pick_file(local) if local.is_dir() else local
    sd, info = read_state_dict(file)
    if config is None:
        config = _config_beside(file)
    if config is None:
        preset = preset or OFFICIAL_PRESET_BY_REPO.get(str(path_or_repo_id)) or guess_preset(sd)
        config = infer_config(sd, preset)
    model = model_from_state_dict(sd, config, device=device, dtype=torch_dtype)
    model.checkpoint_info = info  # type: ignore[attr-defined]
    log.info("loaded %s (%s) as %s", file, info["format"], config.name or "custom config")
    return model


OFFICIAL_PRESET_BY_REPO = {v: k for k, v in OFFICIAL_HUB_IDS.items()}


def config_from_official_kwargs(kw: Mapping[str, Any]) -> DiMSUMConfig:
    """Our config from the official `DiM(**kwargs)` constructor arguments (hub config.json).

    Two facts the kwargs spell the official way: a conditional model sampled by
    `scripts/sample.sh` is described as `num_classes = classes + 1, label_dropout = -1` (the
    last row is the null class), and a 4-channel model is a latent model of the SD VAE. The
    released architecture's preset (by shape) supplies its name.
    """
    if kw.get("block_type", "combined") != "combined":
        raise CheckpointError(
            f"official block_type={kw.get('block_type')!r} is not supported (only 'combined')"
        )
    rows_arg = int(kw.get("num_classes", 1000))
    with_null = float(kw.get("label_dropout", 0.1)) > 0
    if not with_null and rows_arg > 1:
        # sample.sh form: the table's last row is the null class, not a real class.
        num_classes, with_null = rows_arg - 1, True
    else:
        num_classes = rows_arg
    config = DiMSUMConfig(
        input_size=int(kw.get("img_resolution", 32)),
        in_channels=int(kw.get("in_channels", 4)),
        patch_size=int(kw.get("patch_size", 2)),
        hidden_size=int(kw["hidden_size"]),
        depth=int(kw["depth"]),
        num_classes=num_classes,
        learn_null_class=with_null,
        attn_every=max(int(kw.get("use_attn_every_k_layers", 4)), 0),
        learn_sigma=bool(kw.get("learn_sigma", False)),
    )
    return with_official_facts(config)


def with_official_facts(config: DiMSUMConfig) -> DiMSUMConfig:
    """A 4-channel official model is a latent model of the SD VAE (SPEC section 5); the released
    preset with the same shape names it. Other models are returned unchanged."""
    if config.in_channels != 4 or config.space == "latent":
        return config
    name = config.name
    for preset_name, p in PRESETS.items():
        same = (p.hidden_size, p.depth, p.num_label_rows, p.input_size) == (
            config.hidden_size,
            config.depth,
            config.num_label_rows,
            config.input_size,
        )
        if same and p.space == "latent":
            name = name or preset_name
            break
    return config.replace(space="latent", vae=config.vae or SD_VAE, name=name)


def _config_beside(file: Path) -> DiMSUMConfig | None:
    """The config.json next to a weights file: ours, or the official constructor kwargs.

    Anything else (e.g. a description file that happens to be called config.json) is ignored
    and the architecture is inferred from the weights instead.
    """
    cfg_file = file.parent / CONFIG_NAME
    if not cfg_file.is_file():
        return None
    try:
        data = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"invalid {cfg_file}: {err}") from err
    if not isinstance(data, dict):
        return None
    try:
        if "input_size" in data and "hidden_size" in data:
            return DiMSUMConfig.from_dict(data)
        official = data.get("dim_kwargs", data)
        if "img_resolution" in official and "hidden_size" in official:
            return config_from_official_kwargs(official)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"invalid {cfg_file}: {err}") from err
    log.info("ignoring %s: not a DiMSUM config; inferring the architecture", cfg_file)
    return None


# ---- saving -----------------------------------------------------------------------------------
def save_pretrained(model: DiMSUM, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write `model.safetensors` (optionally cast, e.g. to bfloat16) and `config.json`."""
    folder = Path(folder)
    sd = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        .detach()
        .cpu()
        .contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"format": "pt", "library": "dimsum"}
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(sd, p, metadata=meta))
    cfg_text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(cfg_text))
    return folder
