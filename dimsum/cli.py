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
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import train as training  # module attributes: tests replace training.train
from .checkpoints import CheckpointError, load_checkpoint
from .data import build_emoji_dataset, load_emoji_dataset
from .eval.evaluate import evaluate_checkpoint, temperature_sweep, train_and_save_classifier
from .interventions import Intervention, check_interventions
from .io import atomic_write, image_grid, save_png
from .ops.selective_scan_cpu import prepare_cpu_kernels
from .pipeline import DiMSUMPipeline, VAEUnavailableError
from .runtime import keep_freed_memory
from .settings import DEFAULTS, SamplingSettings
from .validation import PATHS, SAMPLERS, SCHEDULES, InputError

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


# ---- `dimsum train`: flags derived from TrainConfig's fields ----------------------------------
def _flag(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per field of the dataclass `cls` (`batch_size` -> `--batch-size`): the
    field's default and `metadata["help"]`; its type annotation gives the parsing (bool: a
    switch, dict: JSON, `X | None`: X). metadata `choices` restricts the value; `zero_flag`
    adds `--no-<name>` (that help) meaning 0, exclusive with the flag."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = (
            options[0]
            if options and typing.get_origin(kind) in (types.UnionType, typing.Union)
            else kind
        )
        default = None if f.default is dataclasses.MISSING else f.default
        kw: dict[str, Any] = {"default": default, "help": f.metadata.get("help")}
        if kind is bool:
            kw["action"] = "store_true"
        elif typing.get_origin(kind) is dict or kind is dict:
            kw["type"] = _json_dict
        else:
            kw["type"] = kind
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "zero_flag" in f.metadata:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(_flag(f), **kw)
            group.add_argument(
                "--no-" + f.name.replace("_", "-"),
                action="store_true",
                help=f.metadata["zero_flag"],
            )
        else:
            parser.add_argument(_flag(f), **kw)


def dataclass_from_args(cls: type, a: argparse.Namespace) -> Any:
    """The dataclass `cls` from the flags `add_dataclass_arguments` added to the parser."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(a, f.name)
        if "zero_flag" in f.metadata and getattr(a, "no_" + f.name):
            value = 0.0
        if value is None and f.default is dataclasses.MISSING:  # default_factory (a dict)
            continue
        values[f.name] = value
    return cls(**values)


def train_config_from_args(a: argparse.Namespace) -> training.TrainConfig:
    return dataclass_from_args(training.TrainConfig, a)


def _json_dict(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a JSON object")
    return value


def cmd_train(a: argparse.Namespace) -> int:
    tc = train_config_from_args(a)
    summary = training.train(tc)
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "losses"}
            | {"final_loss": summary["losses"][-1] if summary["losses"] else None},
            default=str,
        )
    )
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.dtype]
    model = training.export_state(
        a.state, a.out, name=a.name, dtype=dtype, sampling_temperature=a.sampling_temperature
    )
    n_all, n_train = model.num_parameters(), model.num_parameters(trainable_only=True)
    print(
        f"wrote {a.out} ({model.config.name}, {n_all:,} parameters, {n_train:,} trainable, {a.dtype})"
    )
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
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
    text = json.dumps(report, indent=2)
    if path:
        atomic_write(path, lambda p: Path(p).write_text(text + "\n"))
    print(text)
    return 0


def cmd_build_data(a: argparse.Namespace) -> int:
    path = build_emoji_dataset(a.cache_dir, force=a.force)
    data = load_emoji_dataset("all", path=path)
    print(f"{path}: {len(data)} images; {data.class_counts()}")
    return 0


def cmd_train_classifier(a: argparse.Namespace) -> int:
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
    add_dataclass_arguments(t, training.TrainConfig)
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
    return (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    keep_freed_memory()  # fewer page faults per forward pass: ~8% faster on a 2-core CPU
    if a.fn in (cmd_sample, cmd_eval, cmd_train) and _runs_on_cpu(getattr(a, "device", None)):
        # A first run compiles the kernels: said before any progress bar starts, not hidden in it.
        prepare_cpu_kernels(lambda message: print(message, file=sys.stderr, flush=True))
    try:
        return a.fn(a)
    except (InputError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
