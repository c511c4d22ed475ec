"""Text-free class-conditional generation: model (+ VAE) -> images, trajectory, traced features.

    pipe = DiMSUMPipeline.from_pretrained("checkpoints")
    out = pipe(classes=[6, 6], seeds=[0, 1], guidance_scale=4.0, num_steps=20, method="heun")
    out.images[0].save("emoji.png")

Each sample's noise comes from its own seed (a CPU generator), so an image depends only on
(seed, class, settings), never on batch size or position. Guidance is the official CFG
(`forward_with_cfg`, null class = last label row).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ._version import __version__
from .checkpoints import load_checkpoint
from .config import MAX_TEMPERATURE
from .flow import SCHEDULES, StepRecord, Trajectory, sample_ode, time_grid
from .flow.cuda_graph import graph_velocity
from .interventions import Intervention, apply_interventions, check_interventions
from .models import DiMSUM
from .settings import DEFAULTS, MAX_GUIDANCE, MAX_STEPS, SamplingSettings
from .tracing import FeatureRecorder, trace_features
from .vae import SD_LATENT_RGB, VAEUnavailableError, resolve_vae
from .validation import (
    MAX_SEED,
    PATHS,
    SAMPLERS,
    InputError,
    check_choice,
    check_float,
    check_int,
    resolve_classes,
)


def fast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype worth using on a device: bf16 on GPUs that have it, else None (fp32).
    CPUs stay fp32 by default: bf16 helps only where the CPU has bf16 matmul instructions."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class PipelineOutput:
    """What one generation produced (the app's run record is built from this)."""

    images: list[Image.Image]
    array: np.ndarray  # (N, H, W, 3) uint8
    settings: dict[str, Any]  # SamplingSettings.to_dict() + class_names, software, nfe
    trajectory: Trajectory | None = None
    previews_xt: np.ndarray | None = None  # (S, N, H, W, 3) uint8: x_t as RGB per recorded step
    previews_x1: np.ndarray | None = None  # (S, N, H, W, 3) uint8: clean-sample prediction
    features: dict[int, dict[int, dict[str, torch.Tensor]]] = field(default_factory=dict)
    seconds: float = 0.0


class DiMSUMPipeline:
    """Model (+ VAE for latent models) -> images. See the module docstring."""

    def __init__(
        self,
        model: DiMSUM,
        vae: torch.nn.Module | None = None,
        *,
        name: str | None = None,
        autocast: torch.dtype | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        """autocast: run the network under bf16/fp16 autocast (faster on GPUs and on CPUs with
        bf16 matmuls); None = float32 throughout, the official computation. The sampler's state,
        guidance arithmetic and the VAE stay float32.
        cuda_graphs: on CUDA, replay each evaluation from a CUDA graph (`dimsum.flow.cuda_graph`;
        the same computation without per-kernel launch cost). No effect on the CPU."""
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast={autocast}: must be None, torch.bfloat16 or torch.float16")
        self.autocast = autocast
        self.cuda_graphs = cuda_graphs
        self.model = model.eval()
        self.vae = vae
        self.name = name or model.config.name or "dimsum"

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str | None = None,
        vae: str | Path | torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> DiMSUMPipeline:
        """Load a checkpoint (any form `load_checkpoint` accepts) and, for a latent model, its VAE.

        vae: a VAE folder, hub id or module; it wins over the model's own `config.vae`. Given for
            a pixel-space model it is an error (it would never be used).
        """
        model = load_checkpoint(path_or_repo_id, device=device, dtype=dtype)
        vae_module = resolve_vae(model.config, vae, device)
        return cls(
            model, vae_module, name=model.config.name or Path(str(path_or_repo_id)).name, **kwargs
        )

    @property
    def device(self) -> torch.device:
        return self.model.pos_embed.device

    @property
    def config(self):
        return self.model.config

    # ---- helpers --------------------------------------------------------------------------
    @contextmanager
    def network_mode(self) -> Iterator[None]:
        """Grad mode and precision of one network evaluation.

        fp32: inference mode (no view or version tracking, ~3% faster on the CPU than no_grad).
        Autocast: no_grad, because autocast keeps its low-precision copies of the weights only
        for tensors outside inference mode; inside `weight_cast_cache` they are then made once
        per run instead of at every evaluation (0.6 s of a 1.75 s bf16 DiM-L/2 evaluation on a
        CPU, measured by benchmarks/bench_cpu_floor.py).
        """
        if self.autocast is None:
            with torch.inference_mode():
                yield
        else:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.autocast):
                yield

    def weight_cast_cache(self) -> AbstractContextManager:
        """Keep autocast's casts of the weights across the evaluations made inside: an outer,
        disabled autocast region (autocast clears its cache when the outermost region ends)."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device.type, enabled=False)

    def noise(self, seeds: Sequence[int], temperature: float = 1.0) -> torch.Tensor:
        """(N, C, H, W) float32: sample i's noise from its own CPU generator seeded seeds[i],
        times `temperature` (so one seed gives the same image direction at every temperature)."""
        c, s = self.config.in_channels, self.config.input_size
        out = [
            torch.randn(c, s, s, generator=torch.Generator().manual_seed(int(sd))) for sd in seeds
        ]
        x0 = torch.stack(out)
        if temperature != 1.0:
            x0 = x0 * temperature
        return x0.to(self.device)

    def preview_rgb(self, x: torch.Tensor) -> np.ndarray:
        """Cheap RGB of a state (N, C, H, W) -> (N, H, W, 3) uint8 (linear map for latents)."""
        if self.config.space == "latent":
            rgb = torch.einsum("nchw,cr->nrhw", x.float().cpu(), SD_LATENT_RGB)
            return to_uint8(rgb)
        return to_uint8(x)

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """Final samples -> (N, H, W, 3) uint8 (VAE decode for latent models)."""
        if self.config.space != "latent":
            return to_uint8(x)
        if self.vae is None:
            raise VAEUnavailableError(
                "latent model loaded without a VAE: pass vae= to the pipeline"
            )
        with torch.no_grad():
            dec = self.vae.decode(x.to(self.device) / self.config.latent_scale).sample
        return to_uint8(dec)

    def validate(
        self,
        classes: Any,
        seeds: Any,
        guidance_scale: Any,
        num_steps: Any,
        method: Any,
        path: Any,
    ) -> tuple[list[int], list[int], float, int, str, str]:
        """Checked (classes, seeds, guidance, steps, method, path): types and ranges only (a
        server's quota is its own: `dimsum.validation.Limits`)."""
        seeds_list = [seeds] if isinstance(seeds, (int, str, float)) else list(seeds)
        seeds_list = [check_int("seed", s, 0, MAX_SEED) for s in seeds_list]
        cls_list = resolve_classes(classes, self.config.num_classes, self.config.class_names)
        if len(cls_list) == 1 and len(seeds_list) > 1:
            cls_list = cls_list * len(seeds_list)
        if len(seeds_list) == 1 and len(cls_list) > 1:
            seeds_list = seeds_list * len(cls_list)
        if len(cls_list) != len(seeds_list):
            raise InputError(
                f"classes ({len(cls_list)}) and seeds ({len(seeds_list)}) must have the same length (or one of them length 1)"
            )
        method = check_choice("method", method, SAMPLERS)
        path = check_choice("path", path, PATHS)
        lo_steps = 2 if method == "dopri5" else 1
        num_steps = check_int("num_steps", num_steps, lo_steps, MAX_STEPS)
        guidance_scale = check_float("guidance_scale", guidance_scale, 0.0, MAX_GUIDANCE)
        return cls_list, seeds_list, guidance_scale, num_steps, method, path

    # ---- generation -----------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        classes: Any,
        seeds: Any,
        *,
        guidance_scale: float = DEFAULTS.guidance_scale,
        num_steps: int = DEFAULTS.steps,
        method: str = DEFAULTS.sampler,
        path: str = DEFAULTS.path,
        schedule: str = DEFAULTS.schedule,
        temperature: float | None = DEFAULTS.temperature,
        return_trajectory: bool = True,
        trace_steps: Sequence[int] | None = None,
        trace_blocks: Sequence[int] | None = None,
        trace_names: Sequence[str] | None = None,
        trace_dtype: torch.dtype = torch.float16,
        callback: Callable[[StepRecord], bool | None] | None = None,
        interventions: Sequence[Intervention] | None = None,
    ) -> PipelineOutput:
        """Generate one image per (class, seed); `pipe(s.classes, s.seeds, **s.pipeline_kwargs())`
        runs a `SamplingSettings` s.

        schedule: the step times of heun / euler: ``"uniform"`` (default) or ``"karras"``
            (short steps at both ends, closer to the exact ODE solution at few steps; see
            ``dimsum.flow.time_grid``); dopri5 takes ``"uniform"`` only.
        temperature: scale of the initial noise, x_0 ~ N(0, T^2 I), in [0, 2]; None = the model's
            recommended ``config.sampling_temperature`` (1 for the official models). Below 1
            trades variety (recall) for fidelity (precision).
        trace_steps: recorded step indices (0 = t=0 ... last = t=1) at which to record block
            features (`dimsum.tracing`); None = no tracing (zero cost).
        trace_blocks / trace_names: which blocks and which `TRACE_NAMES` to keep (default all).
        callback: called per recorded step (streaming previews); return True to stop early.
        interventions: parts of the network to change (`dimsum.interventions`; also their text
            form "freq-off:blocks=0-3:t=0-0.5"), each for its blocks at the evaluations whose t
            is in its t_range; recorded in settings["interventions"]. None = the official model.
        """
        classes_l, seeds_l, cfg, num_steps, method, path = self.validate(
            classes, seeds, guidance_scale, num_steps, method, path
        )
        schedule = self.resolve_schedule(method, schedule)
        temperature = self.resolve_temperature(temperature)
        model, n = self.model, len(seeds_l)
        edits = check_interventions(model, interventions) if interventions else []
        y = torch.tensor(classes_l, dtype=torch.long, device=self.device)
        guided = cfg != 1.0 and self.config.uses_guidance
        cfg = cfg if guided else 1.0  # an unconditional model (CelebA-HQ, Church) has no guidance

        # Tracing keys on the time of an evaluation: the last evaluation made at a recorded
        # time t_k is the one at the recorded state x_k (Heun's predictor at t_k comes first).
        grid = self.record_times(method, num_steps, schedule, path)
        want = (
            {}
            if trace_steps is None
            else {round(grid[k], 6): k for k in trace_steps if 0 <= k < len(grid)}
        )
        features: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
        recorder = FeatureRecorder(trace_names, rows=slice(0, n), dtype=trace_dtype)

        calls = 0

        def network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # Its outputs only enter ordinary ops of the sampler, which return ordinary tensors.
            # Interventions gate on the time of the evaluation (all rows share one t).
            edit = apply_interventions(model, edits, float(t[0])) if edits else nullcontext()
            with self.network_mode(), edit:
                v = model.guided_velocity(x, t, y, cfg) if guided else model(x, t, y)
            return v.float()

        x0 = self.noise(seeds_l, temperature)
        # On CUDA, one graph per call replays the evaluation without its kernel launches. A
        # traced run needs the eager hooks and interventions change the computation with t, so
        # both stay eager; capture falls back to eager wherever it is impossible.
        graphable = self.cuda_graphs and not want and not edits
        fast = graph_velocity(network, x0) if graphable else network

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            step = want.get(round(float(t[0]), 6)) if want else None
            if step is None:
                return fast(x, t)
            recorder.clear()
            with trace_features(model, recorder, trace_blocks):
                v = network(x, t)
            features[step] = recorder.features
            return v

        start = time.perf_counter()
        # Without a trajectory the sampler skips the extra evaluation at t = 1 that only
        # records the final velocity (40 instead of 41 evaluations for 20 Heun steps).
        with self.weight_cast_cache():
            result = sample_ode(
                velocity,
                x0,
                path=path,
                method=method,
                num_steps=num_steps,
                schedule=schedule,
                callback=callback,
                # a callback needs the recorder anyway; keeping the trajectory costs nothing
                return_trajectory=return_trajectory or callback is not None,
                store_on_cpu=True,
            )
        traj = result if isinstance(result, Trajectory) else None
        array = self.decode(traj.final if traj is not None else result)
        seconds = time.perf_counter() - start
        sampling = SamplingSettings(
            model=self.name,
            classes=classes_l,
            seeds=seeds_l,
            steps=num_steps,
            sampler=method,
            schedule=schedule,
            path=path,
            guidance_scale=cfg,
            temperature=temperature,
        )
        # The settings schema, plus provenance that `SamplingSettings.from_dict` does not need.
        settings = sampling.to_dict() | dict(
            class_names=[self.class_name(c) for c in classes_l],
            software=f"dimsum {__version__}",
            nfe=traj.nfe if traj is not None else calls,
        )
        if edits:  # only then: plain runs keep exactly their former settings
            settings["interventions"] = [iv.to_dict() for iv in edits]
        out = PipelineOutput(
            images=[Image.fromarray(a) for a in array],
            array=array,
            settings=settings,
            features=features,
            seconds=seconds,
        )
        if traj is not None and return_trajectory:
            out.trajectory = traj
            out.previews_xt = np.stack([self.preview_rgb(x) for x in traj.x_t])
            out.previews_x1 = np.stack([self.preview_rgb(x) for x in traj.x1_hat])
        return out

    def resolve_temperature(self, temperature: Any = None) -> float:
        """The checked initial-noise temperature (None: the model's `sampling_temperature`)."""
        if temperature is None:
            return float(self.config.sampling_temperature)
        return check_float("temperature", temperature, 0.0, MAX_TEMPERATURE)

    def class_name(self, c: int) -> str:
        names = self.config.class_names
        return names[c] if names and 0 <= c < len(names) else str(c)

    @staticmethod
    def resolve_schedule(method: str, schedule: str) -> str:
        """The checked step schedule of a run (InputError for a bad name or dopri5 + karras)."""
        schedule = check_choice("schedule", schedule, SCHEDULES)
        if method == "dopri5" and schedule != "uniform":
            raise InputError(
                f"schedule: {schedule!r} is for the fixed-step samplers (heun, euler); dopri5 "
                "chooses its own steps (use 'uniform')"
            )
        return schedule

    @staticmethod
    def record_times(
        method: str, num_steps: int, schedule: str = "uniform", path: str = "gvp"
    ) -> list[float]:
        """The times of the recorded steps (dopri5: linspace grid; fixed: the step grid)."""
        if method == "dopri5":
            return torch.linspace(0, 1, num_steps).tolist()
        return time_grid(num_steps, schedule, path)
