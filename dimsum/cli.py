"""`dimsum` command line: sample, train, eval, build-data, train-classifier, info.

dimsum sample --classes "Smileys & Emotion" 0 3 --seeds 0 1 2 --steps 20 --out grid.png
dimsum sample --classes 6 --seeds 0 1 2 3 --intervention freq-off:t=0-0.5 --out freq-off.png
dimsum train --preset emoji-S --out runs/emoji-S --steps 20000
dimsum eval --checkpoint checkpoints --num-samples 900 --json eval.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from .settings import DEFAULTS
from .validation import PATHS, SAMPLERS, SCHEDULES

DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parent.parent / "checkpoints")


def default_checkpoint() -> str:
    """DIMSUM_CHECKPOINT, else the embedded model shipped in the repository's checkpoints/."""
    return os.environ.get("DIMSUM_CHECKPOINT", DEFAULT_CHECKPOINT)


def _parse_classes(values: list[str]) -> list[str | int]:
    out: list[str | int] = []
    for v in values:
        out.append(int(v) if v.lstrip("-").isdigit() else v)
    return out


def cmd_sample(a: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from .interventions import Intervention, check_interventions
    from .io import image_grid, save_png
    from .pipeline import DiMSUMPipeline, VAEUnavailableError
    from .settings import SamplingSettings

    interventions = [Intervention.parse(spec) for spec in a.intervention or []]
    try:
        pipe = DiMSUMPipeline.from_pretrained(a.checkpoint, device=a.device, vae=a.vae)
    except VAEUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    s = SamplingSettings(
        model=pipe.name,
        classes=_parse_classes(a.classes),
        seeds=a.seeds,
        steps=a.steps,
        sampler=a.method,
        schedule=a.schedule,
        path=a.path,
        guidance_scale=a.cfg,
        temperature=a.temperature,
    )
    # Validate before the progress bar starts, so a bad value gives one clean error line.
    pipe.validate(s.classes, s.seeds, s.guidance_scale, s.steps, s.sampler, s.path)
    pipe.resolve_schedule(s.sampler, s.schedule)
    pipe.resolve_temperature(s.temperature)
    if interventions:
        check_interventions(pipe.model, interventions)
    bar = tqdm(total=None, desc="sampling", unit="step")

    def progress(rec) -> None:
        bar.total = rec.total
        bar.update(1)

    out = pipe(
        s.classes,
        s.seeds,
        **s.pipeline_kwargs(),
        callback=progress,
        return_trajectory=a.trajectory is not None,
        interventions=interventions or None,
    )
    bar.close()
    save_png(image_grid(out.array, cols=a.cols), a.out, out.settings)
    print(
        f"wrote {a.out} ({len(out.images)} images, {out.seconds:.2f} s, {out.settings['nfe']} evaluations)"
    )
    if a.trajectory:
        tr = out.trajectory
        assert tr is not None
        np.savez_compressed(
            a.trajectory,
            t=tr.t.numpy(),
            x_t=tr.x_t.float().numpy(),
            velocity=tr.velocity.float().numpy(),
            x1_hat=tr.x1_hat.float().numpy(),
            images=out.array,
            settings=json.dumps(out.settings),
        )
        print(f"wrote {a.trajectory} ({len(tr)} steps)")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    overrides = json.loads(a.model_overrides) if a.model_overrides else {}
    tc = TrainConfig(
        preset=a.preset,
        out=a.out,
        data=a.data,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        warmup=a.warmup,
        cooldown=a.cooldown,
        ema_decay=a.ema_decay,
        label_dropout=a.label_dropout,
        grad_clip=a.grad_clip,
        drop_path=a.drop_path,
        bf16=a.bf16,
        balance=0.0 if a.no_balance else a.balance,
        seed=a.seed,
        device=a.device,
        ckpt_every=a.ckpt_every,
        sample_every=a.sample_every,
        log_every=a.log_every,
        max_minutes=a.max_minutes,
        model_overrides=overrides,
        time_sampling=a.time_sampling,
        eval_every=a.eval_every,
        eval_samples=a.eval_samples,
        eval_classifier=a.eval_classifier,
    )
    summary = train(tc)
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "losses"}
            | {"final_loss": summary["losses"][-1] if summary["losses"] else None},
            default=str,
        )
    )
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    import torch

    from .train import export_state

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.dtype]
    model = export_state(
        a.state, a.out, name=a.name, dtype=dtype, sampling_temperature=a.sampling_temperature
    )
    n_all, n_train = model.num_parameters(), model.num_parameters(trainable_only=True)
    print(
        f"wrote {a.out} ({model.config.name}, {n_all:,} parameters, {n_train:,} trainable, {a.dtype})"
    )
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from .eval.evaluate import evaluate_checkpoint, temperature_sweep
    from .settings import SamplingSettings
    from .validation import InputError

    temps = a.temperature or [None]
    if a.plot and len(temps) < 2:
        raise InputError("--plot: give two or more --temperature values to plot against")
    sampling = SamplingSettings(
        guidance_scale=a.cfg, steps=a.steps, sampler=a.method, schedule=a.schedule
    )
    common = dict(
        num_samples=a.num_samples,
        classifier=a.classifier,
        data=a.data,
        device=a.device,
        seed=a.seed,
        batch_size=a.batch_size,
    )
    if len(temps) > 1:
        if a.gallery or a.inception_weights:
            raise InputError(
                "--gallery / --inception-weights: evaluate one --temperature at a time"
            )
        report = temperature_sweep(a.checkpoint, temps, sampling, **common, plot=a.plot)
    else:
        report = evaluate_checkpoint(
            a.checkpoint,
            dataclasses.replace(sampling, temperature=temps[0]),
            **common,
            inception_weights=a.inception_weights,
            gallery=a.gallery,
        )
    return _write_report(report, a.json)


def _write_report(report: dict, path: str | None) -> int:
    """Print the report as JSON and write it to `path` (atomically) when given."""
    from .io import atomic_write

    text = json.dumps(report, indent=2)
    if path:
        atomic_write(path, lambda p: Path(p).write_text(text + "\n"))
    print(text)
    return 0


def cmd_build_data(a: argparse.Namespace) -> int:
    from .data import build_emoji_dataset, load_emoji_dataset

    path = build_emoji_dataset(a.cache_dir, force=a.force)
    data = load_emoji_dataset("all", path=path)
    print(f"{path}: {len(data)} images; {data.class_counts()}")
    return 0


def cmd_train_classifier(a: argparse.Namespace) -> int:
    from .eval.evaluate import train_and_save_classifier

    print(
        json.dumps(
            train_and_save_classifier(
                a.out,
                steps=a.steps,
                batch_size=a.batch_size,
                lr=a.lr,
                data=a.data,
                seed=a.seed,
                device=a.device,
            ),
            indent=2,
        )
    )
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint

    m = load_checkpoint(a.checkpoint)
    print(
        json.dumps(
            {
                "config": m.config.to_dict(),
                "parameters": m.num_parameters(),
                "source": m.checkpoint_info,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def _add_schedule_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schedule",
        default=DEFAULTS.schedule,
        choices=SCHEDULES,
        help="heun/euler step times: uniform, or karras (EDM spacing: short steps at both ends)",
    )


def _add_temperature_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="initial-noise scale T, x0 ~ N(0, T^2), in [0, 2] (default: the model's "
        "sampling_temperature; below 1 trades variety for fidelity)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dimsum", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="generate an image grid (and a trajectory file)")
    s.add_argument(
        "--checkpoint",
        default=default_checkpoint(),
        help="file, folder or hub id (default: the embedded model)",
    )
    s.add_argument(
        "--classes", nargs="+", default=["0"], help="class ids or names (one, or one per seed)"
    )
    s.add_argument("--seeds", nargs="+", type=int, default=[0])
    s.add_argument("--steps", type=int, default=DEFAULTS.steps)
    s.add_argument("--method", default=DEFAULTS.sampler, choices=SAMPLERS)
    s.add_argument("--path", default=DEFAULTS.path, choices=PATHS)
    _add_schedule_arg(s)
    _add_temperature_arg(s)
    s.add_argument(
        "--cfg", type=float, default=DEFAULTS.guidance_scale, help="guidance scale (1 = none)"
    )
    s.add_argument("--out", default="grid.png")
    s.add_argument("--cols", type=int, default=None)
    s.add_argument("--trajectory", default=None, help="write the per-step trajectory to this .npz")
    s.add_argument(
        "--vae", default=os.environ.get("DIMSUM_VAE"), help="VAE folder or hub id (latent models)"
    )
    s.add_argument("--device", default="cpu")
    s.add_argument(
        "--intervention",
        action="append",
        metavar="KIND[:blocks=B][:t=T0-T1][:with=R]",
        help="change part of the network (repeatable): KIND freq-off | spatial-off (with=zeros "
        "or other: the other branch's output) | fusion-add | attn-skip | freq-raster (with="
        "raster or spatial); blocks 'all', '0-3' or '0,2'; t range inclusive, 0 = noise. "
        "E.g. freq-off:blocks=0-3:t=0-0.5. See docs/interventions.md",
    )
    s.set_defaults(fn=cmd_sample)

    t = sub.add_parser("train", help="train a pixel-space model (torchrun for DDP)")
    t.add_argument("--preset", default="emoji-S")
    t.add_argument("--out", default="runs/emoji-S")
    t.add_argument(
        "--data", default=None, help=".npz data set (default: build/load the emoji cache)"
    )
    t.add_argument("--steps", type=int, default=20000)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--warmup", type=int, default=0, help="linear LR warm-up steps")
    t.add_argument(
        "--cooldown",
        type=int,
        default=0,
        help="decay the LR linearly to 0 over the last N of --steps (resume a run into it)",
    )
    t.add_argument("--ema-decay", type=float, default=0.9999)
    t.add_argument("--label-dropout", type=float, default=0.15)
    t.add_argument("--grad-clip", type=float, default=2.0)
    t.add_argument("--drop-path", type=float, default=None)
    t.add_argument("--time-sampling", default="uniform", choices=["uniform", "logit_normal"])
    t.add_argument("--bf16", action="store_true", help="bf16 autocast (the scan stays float32)")
    balance = t.add_mutually_exclusive_group()
    balance.add_argument(
        "--balance",
        type=float,
        default=1.0,
        help="class balance of the sampling: each image weighs count(its class)**-BALANCE; "
        "1 = every class equally often (default), 0 = data proportions, 0.5 = in between",
    )
    balance.add_argument(
        "--no-balance", action="store_true", help="the same as --balance 0 (uniform over images)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None)
    t.add_argument("--ckpt-every", type=int, default=1000)
    t.add_argument("--sample-every", type=int, default=0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="evaluate the EMA model every N steps (eval.jsonl)",
    )
    t.add_argument("--eval-samples", type=int, default=450)
    t.add_argument("--eval-classifier", default=None)
    t.add_argument(
        "--max-minutes", type=float, default=None, help="stop (and save) after this wall time"
    )
    t.add_argument(
        "--model-overrides", default=None, help="JSON dict of config changes, e.g. '{\"depth\": 4}'"
    )
    t.set_defaults(fn=cmd_train)

    x = sub.add_parser("export", help="a training state's EMA weights -> a checkpoint folder")
    x.add_argument("state", help="state.pt written by `dimsum train`")
    x.add_argument("out", help="folder for model.safetensors + config.json")
    x.add_argument("--name", default=None, help="model name stored in config.json")
    x.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    x.add_argument(
        "--sampling-temperature",
        type=float,
        default=None,
        help="recommended initial-noise scale stored in config.json (default: keep the state's)",
    )
    x.set_defaults(fn=cmd_export)

    e = sub.add_parser("eval", help="FD-emoji, precision/recall, class accuracy (JSON report)")
    e.add_argument("--checkpoint", default=default_checkpoint())
    e.add_argument("--num-samples", type=int, default=900)
    e.add_argument("--cfg", type=float, default=DEFAULTS.guidance_scale)
    e.add_argument("--steps", type=int, default=DEFAULTS.steps)
    e.add_argument("--method", default=DEFAULTS.sampler, choices=SAMPLERS)
    _add_schedule_arg(e)
    e.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=None,
        help="initial-noise scale T in [0, 2] (default: the model's sampling_temperature); "
        "several values: the same samples at each (the precision / recall trade-off)",
    )
    e.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="with several --temperature values: draw precision, recall and FD against them",
    )
    e.add_argument(
        "--classifier",
        default=None,
        help="feature classifier (default: checkpoints/feature_classifier)",
    )
    e.add_argument("--data", default=None)
    e.add_argument(
        "--inception-weights", default=None, help="pt_inception weights file for the standard FID"
    )
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default=None)
    e.add_argument("--json", default=None)
    e.add_argument(
        "--gallery",
        default=None,
        metavar="PNG",
        help="also write a picture of samples inside / outside the real manifold, per class, "
        "each above its nearest training image",
    )
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("build-data", help="build the emoji data set from emoji-datasource (npm)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--force", action="store_true")
    b.set_defaults(fn=cmd_build_data)

    c = sub.add_parser("train-classifier", help="train the FD-emoji feature classifier")
    c.add_argument("--out", default=str(Path(DEFAULT_CHECKPOINT) / "feature_classifier"))
    c.add_argument("--steps", type=int, default=1500)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=2e-3)
    c.add_argument("--device", default="cpu")
    c.add_argument("--data", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cmd_train_classifier)

    i = sub.add_parser("info", help="print a checkpoint's architecture")
    i.add_argument("checkpoint")
    i.set_defaults(fn=cmd_info)
    return p


def _runs_on_cpu(device: str | None) -> bool:
    import torch

    return (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from .checkpoints import CheckpointError
    from .runtime import keep_freed_memory
    from .validation import InputError

    keep_freed_memory()  # fewer page faults per forward pass: ~8% faster on a 2-core CPU
    if a.fn in (cmd_sample, cmd_eval, cmd_train) and _runs_on_cpu(getattr(a, "device", None)):
        from .ops.selective_scan_cpu import prepare_cpu_kernels

        # A first run compiles the kernels: said before any progress bar starts, not hidden in it.
        prepare_cpu_kernels(lambda message: print(message, file=sys.stderr, flush=True))
    try:
        return a.fn(a)
    except (InputError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
