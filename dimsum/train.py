"""Training our own (pixel-space) DiMSUM models with the official flow-matching recipe.

    dimsum train --preset emoji-S --out runs/emoji-S --steps 20000 --batch-size 256
    torchrun --nproc_per_node 8 -m dimsum.cli train ...     (DDP; gloo on CPU, NCCL on GPU)

Official recipe (SPEC section 6): AdamW lr 1e-4, weight decay 0, grad-norm clip 2.0, EMA every
step, label dropout 0.15 to the null class, GVP path, t ~ U[0, 1). Small-scale adaptations,
all flags: linear LR warm-up, an optional linear LR cool-down to 0 over the last `--cooldown`
steps (warm-up/stable/decay: a constant-LR run can be resumed into its cool-down once one knows
how many steps the budget allows), an EMA decay warm-up (min(decay, (1+s)/(10+s))), bf16 autocast.

Durability: every `--ckpt-every` steps the full training state is written to a temporary file,
fsynced and renamed over `state.pt` (the previous one is kept as `state.prev.pt`). A run
restarted with the same `--out` resumes from the last good state; all randomness of step s is
drawn from generators seeded by (seed, rank, s), so a resumed run reproduces the losses of an
uninterrupted one exactly (same device and thread count).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoints import CheckpointError, save_pretrained
from .config import MAX_TEMPERATURE, DiMSUMConfig, get_preset
from .data import class_weights, load_emoji_dataset
from .eval.evaluate import Evaluator
from .flow import PATHS, TIME_SAMPLINGS, flow_matching_loss, sample_time
from .io import atomic_write, image_grid, save_png
from .models import DiMSUM
from .pipeline import DiMSUMPipeline
from .validation import check_float

log = logging.getLogger("dimsum.train")
STATE_FORMAT = "dimsum-train-state/1"


def _option(default: Any, help: str, **metadata: Any) -> Any:
    """A TrainConfig field: its default and the help of its `dimsum train --flag` (the CLI
    parser is derived from these fields; metadata may add `choices` or `zero_flag`)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything a training run depends on; each field is also the `dimsum train` flag of the
    same name (`batch_size` -> `--batch-size`), with this default and help."""

    preset: str = _option("emoji-S", "model preset (dimsum.config.PRESETS)")
    out: str = _option("runs/emoji-S", "run folder: state.pt, ema/, log.jsonl (resumed if present)")
    data: str | None = _option(None, ".npz data set (default: build/load the emoji cache)")
    steps: int = _option(20000, "total optimizer steps")
    batch_size: int = _option(256, "global batch size (split across processes)")
    lr: float = _option(1e-4, "AdamW learning rate")
    warmup: int = _option(0, "linear LR warm-up steps")
    cooldown: int = _option(
        0, "decay the LR linearly to 0 over the last N of --steps (resume a run into it)"
    )
    weight_decay: float = _option(0.0, "AdamW weight decay")
    ema_decay: float = _option(0.9999, "EMA decay (warmed up as min(decay, (1+s)/(10+s)))")
    label_dropout: float = _option(0.15, "probability of replacing a label by the null class")
    grad_clip: float = _option(2.0, "gradient-norm clip")
    drop_path: float | None = _option(None, "stochastic depth rate (default: the preset's)")
    time_sampling: str = _option("uniform", "distribution of t", choices=TIME_SAMPLINGS)
    path: str = _option("gvp", "probability path of the flow-matching loss", choices=PATHS)
    bf16: bool = _option(False, "bf16 autocast (the scan stays float32)")
    balance: float = _option(
        1.0,
        "class balance of the sampling: each image weighs count(its class)**-BALANCE; "
        "1 = every class equally often (default), 0 = data proportions, 0.5 = in between",
        zero_flag="the same as --balance 0 (uniform over images)",
    )
    seed: int = _option(0, "seed of the initialisation and of every step's randomness")
    device: str | None = _option(None, "torch device (default: the process's GPU, else CPU)")
    ckpt_every: int = _option(1000, "write the training state every N steps")
    sample_every: int = _option(0, "write a sample grid every N steps (0 = never)")
    log_every: int = _option(50, "append a log.jsonl record every N steps")
    eval_every: int = _option(
        0, "evaluate the EMA model every N steps (eval.jsonl; FD-emoji etc.; 0 = never)"
    )
    eval_samples: int = _option(450, "samples per evaluation")
    eval_classifier: str | None = _option(None, "feature classifier of the evaluation")
    max_minutes: float | None = _option(None, "stop (and save) after this wall time")
    model_overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "JSON dict of config changes, e.g. '{\"depth\": 4}'"},
    )

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr={self.lr}: must be in (0, 1)")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}: must be >= 0")
        if not 0 <= self.cooldown <= self.steps:
            raise ValueError(f"cooldown={self.cooldown}: must be in [0, steps={self.steps}]")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay}: must be in [0, 1)")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout={self.label_dropout}: must be in [0, 1)")
        if not 0 <= self.balance <= 1:
            raise ValueError(f"balance={self.balance}: must be in [0, 1]")
        if self.ckpt_every < 1:
            raise ValueError(f"ckpt_every={self.ckpt_every}: must be >= 1")


# ---- data -------------------------------------------------------------------------------------
def load_training_data(path: str | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,), class names) of the training split."""
    data = load_emoji_dataset("train", path=path) if path else load_emoji_dataset("train")
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(data.labels), list(data.categories)


def learning_rate(tc: TrainConfig, step: int) -> float:
    """LR of (0-based) `step`: linear warm-up, constant, then linear cool-down to 0 at `steps`."""
    lr = tc.lr
    if tc.warmup > 0:
        lr *= min(1.0, (step + 1) / tc.warmup)
    if tc.cooldown > 0:
        lr *= min(1.0, (tc.steps - step) / tc.cooldown)
    return lr


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """All randomness of one step comes from here: resumed runs repeat it exactly."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + rank) * 1_000_003 + step) % (2**63))


# ---- state ------------------------------------------------------------------------------------
@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach().to(e.dtype), 1.0 - decay)


def _to_cpu(obj: Any) -> Any:
    """Tensors in nested dicts/lists -> CPU copies (a state saved on a GPU must load anywhere)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomic save (tensors on the CPU); the previous good state is kept as `<name>.prev.pt`."""
    tmp = path.with_name(path.stem + ".new.pt")
    state = _to_cpu(state)
    atomic_write(tmp, lambda p: torch.save(state, p))
    if path.exists():
        os.replace(path, path.with_name(path.stem + ".prev.pt"))
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """Load a training state (weights_only); CheckpointError if truncated/corrupt/foreign."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(
            f"training state {str(path)!r} is unreadable (truncated or corrupt?): {str(err)[:200]}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a dimsum training state ({STATE_FORMAT})")
    return state


def export_state(
    state_path: str | Path,
    folder: str | Path,
    *,
    name: str | None = None,
    dtype: torch.dtype | None = torch.bfloat16,
    sampling_temperature: float | None = None,
) -> DiMSUM:
    """A training state's EMA weights -> a `from_pretrained` folder (model.safetensors + config).

    The architecture comes from the state's own config (head counts are not visible in weight
    shapes, so it is never inferred here). sampling_temperature: the recommended initial-noise
    scale written to config.json (None: keep the state's).
    """
    state = load_state(Path(state_path))
    config = DiMSUMConfig.from_dict(state["config"])
    if name is not None:
        config = config.replace(name=name)
    if sampling_temperature is not None:
        t = check_float("sampling_temperature", sampling_temperature, 0.0, MAX_TEMPERATURE)
        config = config.replace(sampling_temperature=t)
    model = DiMSUM(config)
    model.load_state_dict(state["ema"], strict=True)
    save_pretrained(model, folder, dtype=dtype)
    log.info("exported the EMA of %s (step %s) to %s", state_path, state.get("step"), folder)
    return model


def latest_good_state(out: Path) -> dict[str, Any] | None:
    """The newest readable state in `out` (state.pt, else state.prev.pt), or None."""
    candidates = [out / "state.pt", out / "state.prev.pt"]
    errors = []
    for c in candidates:
        if not c.exists():
            continue
        try:
            return load_state(c)
        except CheckpointError as err:
            log.error("%s; trying the previous checkpoint", err)
            errors.append(str(err))
    if errors:
        raise CheckpointError("no readable training state: " + " | ".join(errors))
    return None


def _call(net: nn.Module, x: torch.Tensor, t: torch.Tensor, *, y: torch.Tensor) -> torch.Tensor:
    return net(x, t, y)


# ---- training ---------------------------------------------------------------------------------
def build_config(tc: TrainConfig, class_names: list[str]) -> DiMSUMConfig:
    cfg = get_preset(tc.preset)
    overrides = dict(tc.model_overrides)
    if tc.drop_path is not None:
        overrides["drop_path"] = tc.drop_path
    cfg = cfg.replace(**overrides) if overrides else cfg
    if cfg.num_classes != len(class_names):
        raise ValueError(
            f"preset {tc.preset!r} has {cfg.num_classes} classes, the data {len(class_names)}"
        )
    return cfg.replace(class_names=class_names)


class GracefulStop:
    """Ctrl-C / SIGTERM (a scheduler's preemption) during training: finish the step, save, stop.

    The first signal only sets `requested`; the loop saves the state and leaves, so nothing since
    the last periodic checkpoint is lost. A second signal aborts at once (default behaviour).
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second signal: stop now, without saving
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.requested = True
        log.warning(
            "%s received: saving after this step and stopping (send it again to abort at once)",
            signal.Signals(signum).name,
        )


@dataclass
class TrainingRun:
    """What a training run holds between steps (built by `start_run`)."""

    tc: TrainConfig
    info: D.DistInfo
    out: Path
    config: DiMSUMConfig
    model: DiMSUM
    ema: DiMSUM
    net: nn.Module  # the model, or its DDP wrapper
    trainable: list[nn.Parameter]
    opt: torch.optim.Optimizer
    images: torch.Tensor  # uint8 (N, 3, 32, 32) on the device
    labels: torch.Tensor
    weights: torch.Tensor  # sampling weight of each image
    per_rank: int  # batch size of this process
    start: int  # the step this run (re)started from
    history: list[float]  # mean loss of every step since step 0
    wall: float  # seconds spent before this (re)start
    t0: float = field(default_factory=time.perf_counter)
    bar: Any = None  # tqdm progress bar (main process)
    evaluator: Evaluator | None = None

    def seconds(self) -> float:
        """Training wall time since step 0 (across restarts)."""
        return self.wall + time.perf_counter() - self.t0


@dataclass
class Batch:
    x1: torch.Tensor  # images in [-1, 1]
    y: torch.Tensor  # labels, some dropped to the null class
    t: torch.Tensor
    noise: torch.Tensor


# ---- setup and resume -------------------------------------------------------------------------
def start_run(tc: TrainConfig) -> TrainingRun:
    """Process group, data, model, EMA and optimizer; resumed from `tc.out` when it holds a state."""
    tc.validate()
    info = D.setup(tc.device)
    out = Path(tc.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    D.barrier(info)
    images, labels, class_names = load_training_data(tc.data)
    config = build_config(tc, class_names)
    dev = info.device
    torch.manual_seed(tc.seed)
    model = DiMSUM(config).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]  # cond_proj is frozen
    opt = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    start, history, wall = resume_from_state(out, config, model, ema, opt, info)
    per_rank = tc.batch_size // info.world_size
    if per_rank < 1:
        raise ValueError(
            f"batch_size={tc.batch_size} is smaller than the {info.world_size} processes"
        )
    run = TrainingRun(
        tc=tc,
        info=info,
        out=out,
        config=config,
        model=model,
        ema=ema,
        net=distributed_model(model, info),
        trainable=trainable,
        opt=opt,
        images=images.to(dev),  # the whole data set fits on any device (7k x 3 KB)
        labels=labels,
        weights=class_weights(labels, tc.balance),
        per_rank=per_rank,
        start=start,
        history=history,
        wall=wall,
    )
    if info.is_main:
        run.bar = tqdm(
            total=tc.steps, initial=start, desc=f"train {config.name}", dynamic_ncols=True
        )
        if tc.eval_every:
            run.evaluator = Evaluator(
                num_samples=tc.eval_samples, classifier=tc.eval_classifier, data=tc.data, device=dev
            )
    run.t0 = time.perf_counter()
    return run


def resume_from_state(
    out: Path,
    config: DiMSUMConfig,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    info: D.DistInfo,
) -> tuple[int, list[float], float]:
    """Load the last good state of `out` into model, EMA and optimizer: (step, history, wall);
    (0, [], 0.0) when there is none."""
    state = latest_good_state(out)
    if state is None:
        return 0, [], 0.0
    if state["config"] != config.to_dict():
        raise CheckpointError(
            f"{out}/state.pt was trained with a different model config; use a new --out"
        )
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    if info.is_main:
        log.info("resuming from step %d (%s)", state["step"], out)
    return state["step"], state.get("history", []), state.get("wall", 0.0)


def distributed_model(model: nn.Module, info: D.DistInfo) -> nn.Module:
    """The model wrapped for DDP when several processes train, else the model itself."""
    if not info.enabled:
        return model
    dev = info.device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None
    )


# ---- one step ---------------------------------------------------------------------------------
def draw_batch(run: TrainingRun, step: int) -> Batch:
    """The batch of `step`: every random draw from `step_generator`, in a fixed order (a
    resumed run draws exactly what an uninterrupted one did)."""
    tc, n, dev = run.tc, run.per_rank, run.info.device
    g = step_generator(tc.seed, run.info.rank, step)
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))  # drop-path etc.
    idx = torch.multinomial(run.weights, n, replacement=True, generator=g)
    y = run.labels[idx].clone()
    y[torch.rand(n, generator=g) < tc.label_dropout] = run.config.null_class
    # uniform draws exactly torch.rand(per_rank, generator=g), so old runs resume bit-exactly
    t = sample_time(n, time_sampling=tc.time_sampling, generator=g)
    noise = torch.randn((n, *run.images.shape[1:]), generator=g)
    x1 = run.images[idx.to(dev)].float().div_(127.5).sub_(1.0)
    return Batch(x1=x1, y=y.to(dev), t=t.to(dev), noise=noise.to(dev))


def optimizer_step(
    run: TrainingRun, batch: Batch, step: int
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Loss, backward, clip, AdamW and EMA update of `step`: (loss, lr, grad norm)."""
    tc = run.tc
    lr = learning_rate(tc, step)
    for group in run.opt.param_groups:
        group["lr"] = lr
    with torch.autocast(device_type=run.info.device.type, dtype=torch.bfloat16, enabled=tc.bf16):
        loss, _ = flow_matching_loss(
            partial(_call, run.net, y=batch.y), batch.x1, path=tc.path, t=batch.t, noise=batch.noise
        )
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, tc.grad_clip)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()} at step {step}; last good state is in {run.out}"
        )
    run.opt.step()
    ema_update(run.ema, run.model, min(tc.ema_decay, (1 + step) / (10 + step)))
    return loss, lr, grad_norm


# ---- periodic hooks ---------------------------------------------------------------------------
def log_progress(
    run: TrainingRun, step: int, loss: float, lr: float, grad_norm: torch.Tensor
) -> None:
    """Progress bar every step; a log.jsonl record every `log_every` steps and at the end."""
    tc = run.tc
    run.bar.update(1)
    if step % tc.log_every == 0 or step == tc.steps:
        rec = dict(
            step=step,
            loss=loss,
            lr=lr,
            grad_norm=float(grad_norm),
            seconds=round(run.seconds(), 2),
        )
        run.bar.set_postfix(loss=f"{np.mean(run.history[-tc.log_every :]):.4f}")
        with open(run.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")


def save_checkpoint(run: TrainingRun, step: int) -> None:
    """The full training state (state.pt, atomically) and the EMA as a model folder (ema/)."""
    if not run.info.is_main:
        return
    state = {
        "format": STATE_FORMAT,
        "step": step,
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict(),
        "opt": run.opt.state_dict(),
        "config": run.config.to_dict(),
        "train_config": asdict(run.tc),
        "history": run.history,
        "wall": run.seconds(),
    }
    save_state(run.out / "state.pt", state)
    save_pretrained(run.ema, run.out / "ema")


def evaluate_ema(run: TrainingRun, step: int) -> None:
    """FD-emoji, precision, recall and accuracy of the EMA model, appended to eval.jsonl."""
    assert run.evaluator is not None
    dev, tc = run.info.device, run.tc
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=tc.bf16):
        pipe = DiMSUMPipeline(run.ema)
        res = run.evaluator(pipe, batch_size=512 if dev.type == "cuda" else 64)
    res.update(step=step, seconds=round(run.seconds(), 1))
    with open(run.out / "eval.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    log.info(
        "step %d: FD-emoji %.3f precision %.3f recall %.3f accuracy %.3f",
        step,
        res["fd_emoji"],
        res["precision"],
        res["recall"],
        res["accuracy"],
    )


def after_step(run: TrainingRun, step: int, stopping: bool, signalled: bool) -> None:
    """Checkpoint, sample grid and evaluation when their period (or the end) comes."""
    tc, info = run.tc, run.info
    if step % tc.ckpt_every == 0 or step == tc.steps or stopping:
        save_checkpoint(run, step)
        D.barrier(info)
    if info.is_main and tc.sample_every and step % tc.sample_every == 0:
        sample_grid(run.ema, run.out / "samples" / f"step_{step:07d}.png")
    final = step == tc.steps or (stopping and not signalled)  # stopped by a signal: no eval
    if run.evaluator is not None and (step % tc.eval_every == 0 or final):
        evaluate_ema(run, step)


def out_of_time(run: TrainingRun) -> bool:
    limit = run.tc.max_minutes
    return limit is not None and (time.perf_counter() - run.t0) / 60 >= limit


# ---- the loop ---------------------------------------------------------------------------------
def train(tc: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training. Returns a summary dict (steps, losses, wall time)."""
    run = start_run(tc)
    step = run.start
    with GracefulStop() as graceful:
        while step < tc.steps:
            batch = draw_batch(run, step)
            loss, lr, grad_norm = optimizer_step(run, batch, step)
            step += 1
            loss_mean = D.mean_across(run.info, loss.detach().float()).item()
            run.history.append(loss_mean)
            if run.info.is_main:
                log_progress(run, step, loss_mean, lr, grad_norm)
            # every rank leaves at the same step (time and signals can differ between processes)
            stopping = D.any_across(run.info, out_of_time(run) or graceful.requested)
            after_step(run, step, stopping, graceful.requested)
            if stopping:
                if run.info.is_main:
                    why = "a signal" if graceful.requested else f"--max-minutes {tc.max_minutes}"
                    log.info("stopped at step %d on %s; state saved in %s", step, why, run.out)
                break
    if run.bar is not None:
        run.bar.close()
    D.cleanup(run.info)
    return {
        "step": step,
        "losses": run.history[run.start :],
        "wall": run.seconds(),
        "config": run.config.to_dict(),
    }


@torch.no_grad()
def sample_grid(model: DiMSUM, path: Path, per_class: int = 2, steps: int = 20) -> Path:
    """One row of `per_class` samples per class, Heun, guidance 4 (progress check)."""
    was_training = model.training
    pipe = DiMSUMPipeline(model.eval())
    n = model.config.num_classes
    classes = [c for c in range(n) for _ in range(per_class)]
    out = pipe(
        classes,
        list(range(len(classes))),
        num_steps=steps,
        method="heun",
        guidance_scale=4.0,
        return_trajectory=False,
    )
    model.train(was_training)
    return save_png(image_grid(out.array, cols=per_class * 3), path, out.settings)
