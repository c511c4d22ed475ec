"""Which models the app offers, loading them (once, shared by sessions), and their class lists.

A *source* is what a user picks: the embedded emoji model, a `--checkpoint`, the ablation
variants, the released ImageNet model on the hub, an architecture demo with random weights, or
a path / hub id typed in the UI. Loaded pipelines are cached (LRU, a few at most) and shared by
all sessions; each session only remembers the key of the model it uses.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

import dimsum
from dimsum.checkpoints import CheckpointError
from dimsum.config import DiMSUMConfig
from dimsum.pipeline import DiMSUMPipeline, fast_dtype
from dimsum.runtime import cpu_native_half_types
from dimsum.vae import VAEUnavailableError, resolve_vae
from dimsum.validation import InputError

from .config import (
    DEFAULT_CHECKPOINT,
    OFFICIAL_IMAGENET_HUB_ID,
    REPO_ROOT,
    AppConfig,
    on_zerogpu,
)

log = logging.getLogger(__name__)

IMAGENET_NAMES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"
DEMO_KEY = "demo:emoji-XS-random"
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


class ModelUnavailable(RuntimeError):
    """A model cannot be used now; the message says what is missing and how to provide it."""


@dataclass(frozen=True)
class ModelSource:
    key: str  # stable id used in session state, settings JSON and URLs
    label: str  # what the dropdown shows
    spec: str  # path or hub id ("" for the random demo model)
    note: str = ""


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (see app/data/README.md)."""
    names = []
    for line in IMAGENET_NAMES_FILE.read_text().splitlines():
        if line.strip():
            _, lemmas = line.split("\t", 1)
            names.append(lemmas.strip())
    assert len(names) == 1000, len(names)
    return names


def class_labels(pipe: DiMSUMPipeline) -> list[str]:
    """One display name per class: the model's own names, ImageNet names, or plain indices."""
    cfg = pipe.config
    if cfg.class_names:
        return list(cfg.class_names)
    if cfg.num_classes == 1000:
        return [f"{i}: {n.split(',')[0]}" for i, n in enumerate(imagenet_class_names())]
    if cfg.num_classes == 1:
        return ["(unconditional)"]
    return [f"class {i}" for i in range(cfg.num_classes)]


def resolve_class(pipe: DiMSUMPipeline, value: object) -> int:
    """A class index from an index, a numeric string, a class name or a dropdown label."""
    labels = class_labels(pipe)
    if isinstance(value, str):
        text = value.strip()
        lowered = {label.lower(): i for i, label in enumerate(labels)}
        if text.lower() in lowered:
            return lowered[text.lower()]
        if pipe.config.num_classes == 1000:  # any ImageNet synonym ("golden retriever")
            for i, lemmas in enumerate(imagenet_class_names()):
                if text.lower() in (s.strip().lower() for s in lemmas.split(",")):
                    return i
        m = re.fullmatch(r"(\d{1,4})(?::.*)?", text)
        if m:
            value = int(m.group(1))
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"class={_short(value)}: choose one of the {len(labels)} classes")
    if isinstance(value, float) and (value != value or value != int(value)):
        raise InputError(f"class={_short(value)}: choose one of the {len(labels)} classes")
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InputError(
            f"class={_short(value)}: unknown class; choose one of the {len(labels)} classes "
            f"(a name such as {labels[0]!r} or an index 0..{len(labels) - 1})"
        ) from None
    if not 0 <= index < len(labels):
        raise InputError(f"class={index}: must be an index in [0, {len(labels) - 1}]")
    return index


def _short(value: object, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def random_demo_model(preset: str | DiMSUMConfig = "emoji-XS", seed: int = 0) -> dimsum.DiMSUM:
    """An untrained model with small random weights everywhere (the official init zeroes the
    output layer, which would make every image pure noise); for exploring the architecture."""
    torch.manual_seed(seed)
    model = dimsum.build_model(preset)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    model.config.name = f"{model.config.name or 'dimsum'} (random weights)"
    return model.eval()


class ModelRegistry:
    """The sources on offer and an LRU cache of loaded pipelines (thread-safe)."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._loaded: OrderedDict[str, DiMSUMPipeline] = OrderedDict()
        self._lock = threading.Lock()
        self.sources: dict[str, ModelSource] = {}
        self.problems: dict[str, str] = {}  # source key -> why it is unavailable (startup)
        self._discover()

    # ---- sources --------------------------------------------------------------------------
    def _discover(self) -> None:
        cfg = self.config
        if cfg.checkpoint:
            self._add(
                ModelSource(
                    f"checkpoint:{cfg.checkpoint}", _label_for(cfg.checkpoint), cfg.checkpoint
                )
            )
        if (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
            self._add(
                ModelSource(
                    "embedded", "Emoji model (embedded, checkpoints/)", str(DEFAULT_CHECKPOINT)
                )
            )
        else:
            self.problems["embedded"] = (
                f"the embedded emoji model is missing: {DEFAULT_CHECKPOINT / 'model.safetensors'} "
                "does not exist. Train one (`dimsum train ...`, see README) or start the app with "
                "--checkpoint PATH / DIMSUM_CHECKPOINT=PATH."
            )
        for folder in self.ablation_folders():
            self._add(
                ModelSource(
                    f"ablation:{folder.name}", f"Ablation variant: {folder.name}", str(folder)
                )
            )
        self._add(
            ModelSource(
                f"hub:{OFFICIAL_IMAGENET_HUB_ID}",
                "DiM-L/2 ImageNet 256 (released weights + SD VAE)",
                OFFICIAL_IMAGENET_HUB_ID,
                note="1.8 GB download and a VAE; slow on a CPU",
            )
        )
        self._add(ModelSource(DEMO_KEY, "Architecture demo: emoji-XS with random weights", ""))

    def _add(self, source: ModelSource) -> None:
        self.sources.setdefault(source.key, source)

    def ablation_folders(self) -> list[Path]:
        root = self.config.ablation_checkpoints
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.safetensors")))

    @property
    def default_key(self) -> str:
        released = f"hub:{OFFICIAL_IMAGENET_HUB_ID}"
        if self.config.prefer_released and released in self.sources:
            return released
        return self.local_default_key

    @property
    def local_default_key(self) -> str:
        """The first model that needs no download: --checkpoint, else the embedded one."""
        for key in self.sources:
            if not key.startswith("hub:") and key != DEMO_KEY:
                return key
        return DEMO_KEY

    def choices(self) -> list[tuple[str, str]]:
        return [(s.label, s.key) for s in self.sources.values()]

    def add_custom(self, spec: object) -> ModelSource:
        """A source for a path or hub id typed by a user (validated, not yet loaded)."""
        if not self.config.allow_custom_models:
            raise ModelUnavailable(
                "this server only serves its listed models (custom models are off)"
            )
        if not isinstance(spec, str) or not spec.strip():
            raise InputError("checkpoint: enter a local folder/file path or a hub id (owner/name)")
        spec = spec.strip()
        if len(spec) > 512 or any(ord(c) < 32 for c in spec):
            raise InputError("checkpoint: not a valid path or hub id")
        path = Path(spec).expanduser()
        if path.exists():
            resolved = str(path.resolve())
            key = f"path:{resolved}"
            source = ModelSource(key, _label_for(resolved), resolved)
        elif _HUB_ID.fullmatch(spec) and not spec.startswith((".", "/")):
            source = ModelSource(f"hub:{spec}", f"Hub: {spec}", spec)
        else:
            raise InputError(
                f"checkpoint {_short(spec, 80)}: no such file or folder here, and not a hub id (owner/name)"
            )
        self._add(source)
        return self.sources[source.key]

    # ---- loading --------------------------------------------------------------------------
    def get(self, key: object) -> DiMSUMPipeline:
        """The loaded pipeline for a source key (loads it on first use)."""
        if not isinstance(key, str) or key not in self.sources:
            raise InputError(f"model={_short(key)}: unknown model; pick one from the list")
        with self._lock:  # one load at a time; loads are rare and memory-heavy
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            pipe = self._load(self.sources[key])
            self._loaded[key] = pipe
            # Room for the default model and every ablation variant (small, compared together).
            capacity = max(self.config.max_loaded_models, 1 + len(self.ablation_folders()))
            if on_zerogpu():  # every model was moved to "cuda" at start; none may be reloaded
                capacity = len(self.sources)
            while len(self._loaded) > capacity:
                old, _ = self._loaded.popitem(last=False)
                log.info("unloaded model %s", old)
            return pipe

    def preload(self, keys: list[str]) -> None:
        """Load these models now (start-up), noting why any of them cannot be loaded."""
        for key in keys:
            try:
                self.get(key)
            except ModelUnavailable as err:
                self.problems[key] = str(err)
                log.warning("not available: %s", err)

    def loaded(self, key: str) -> bool:
        return key in self._loaded

    def _load(self, source: ModelSource) -> DiMSUMPipeline:
        cfg = self.config
        if source.key == DEMO_KEY:
            return DiMSUMPipeline(random_demo_model(), name="emoji-XS-random")
        if _is_hub_id(source.spec) and not cfg.online and not _in_hub_cache(source.spec):
            raise ModelUnavailable(offline_message(source))
        try:
            pipe = self._load_pipeline(source)
        except VAEUnavailableError as err:
            raise ModelUnavailable(f"{source.label}: the weights loaded but {err}") from None
        except CheckpointError as err:
            raise ModelUnavailable(f"{source.label}: {err}") from None
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelUnavailable(
                f"{source.label}: cannot load ({type(err).__name__}: {str(err)[:300]})"
            ) from None
        log.info("loaded model %s (%s)", source.key, pipe.name)
        return pipe

    def _load_pipeline(self, source: ModelSource) -> DiMSUMPipeline:
        """Weights, then the VAE for a latent model only (an app-wide --vae applies to latent
        models; pixel models never take one), on the app's device and precision."""
        cfg = self.config
        if source.note:
            log.info("loading %s (%s): %s", source.label, source.spec, source.note)
        model = dimsum.load_checkpoint(source.spec, device=cfg.device)
        vae = resolve_vae(
            model.config, cfg.vae if model.config.space == "latent" else None, cfg.device
        )
        pipe = DiMSUMPipeline(
            model,
            vae,
            name=model.config.name or Path(source.spec).name,
            autocast=autocast_dtype(cfg.precision, cfg.device),
        )
        # ZeroGPU attaches a GPU only inside @spaces.GPU calls: nothing can run at load there.
        timed = not (cfg.device == "cuda" and on_zerogpu())
        pipe.seconds_per_evaluation = time_one_evaluation(pipe) if timed else None  # type: ignore[attr-defined]
        return pipe


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The pipeline's autocast for the app's --precision on a device."""
    if precision == "auto":
        return fast_dtype(device)
    cpu = torch.device(device).type == "cpu"
    if precision != "fp32" and cpu and precision not in cpu_native_half_types():
        log.warning(
            "dimsum: --precision %s on a CPU without %s matrix instructions: its matmuls are "
            "emulated, slower than fp32 (about 3x for bf16 on AVX2); fp32 is faster here",
            precision,
            precision,
        )
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def time_one_evaluation(pipe: DiMSUMPipeline) -> float:
    """Seconds of one guided evaluation of 4 images (batch 8), estimated once at load from one
    image's (batch 2, x4: the cost is linear in the batch on a CPU, 9.99 vs 2.54 s for DiM-L/2
    in fp32), so the app can say how long a run will take before it starts without spending a
    batch-8 forward of the 460M model (~10 s on 2 cores) at every load."""
    cfg = pipe.config
    x = torch.zeros(2, cfg.in_channels, cfg.input_size, cfg.input_size, device=pipe.device)
    t = torch.full((2,), 0.5, device=pipe.device)
    y = torch.full((2,), cfg.null_class, dtype=torch.long, device=pipe.device)
    with pipe.weight_cast_cache(), pipe.network_mode():
        pipe.model(x[:1], t[:1], y[:1])  # warm-up: first-call work (kernel builds, allocator)
        start = time.perf_counter()
        pipe.model(x, t, y)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
    return 4 * (time.perf_counter() - start)


def _is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.fullmatch(spec)) and not Path(spec).exists()


def _in_hub_cache(repo_id: str) -> bool:
    """Whether a hub model is already in the local Hugging Face cache (usable offline)."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or a broken cache): not usable offline
        return False
    return True


def offline_message(source: ModelSource) -> str:
    """One calm message for a hub model that an offline app cannot reach."""
    return (
        f"{source.label} needs a download from the Hugging Face hub, and this app runs "
        f"offline. Start it with --online (automatic on Spaces), or download the files on a "
        f"connected machine (`hf download {source.spec} --local-dir DIR`, and the VAE: "
        f"`hf download stabilityai/sd-vae-ft-ema --local-dir VAE`) and start the app with "
        f"--checkpoint DIR --vae VAE."
    )


def _label_for(spec: str) -> str:
    path = Path(spec)
    try:
        shown = str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        shown = spec
    return f"Checkpoint: {shown}"


def parameter_count(count: int | float) -> str:
    """THE wording of a parameter count everywhere in the app (header, Evidence table and
    curves, variant comparison): trainable parameters, 3 significant digits, in millions."""
    return f"{count / 1e6:.3g} M trainable parameters"


def model_parameters(model: Any) -> str:
    """`parameter_count` of a model's trainable parameters (the count curves.json records)."""
    return parameter_count(model.num_parameters(trainable_only=True))


def model_summary(pipe: DiMSUMPipeline) -> str:
    """One line about a loaded model, for the header."""
    cfg = pipe.config
    space = "pixel space" if cfg.space == "pixel" else "SD-VAE latent space"
    return (
        f"**{pipe.name}** · {model_parameters(pipe.model)} · {cfg.depth} blocks of width "
        f"{cfg.hidden_size} · {cfg.input_size}×{cfg.input_size} {space} · "
        f"{cfg.grid_size}×{cfg.grid_size} tokens · {cfg.num_classes} classes"
    )
