"""Collect the architecture ablation into data, a plot and small checkpoints.

Three configurations of the same code base (presets `emoji-XS`, `emoji-XS-spatial`,
`emoji-XS-attention`), trained with one recipe, seed, batch size and step count by `dimsum train
--eval-every K` (which writes `log.jsonl` and `eval.jsonl` into each run folder). This reads those
files up to a common step, exports each variant's EMA weights at that step, and writes

    assets/ablation/curves.json     {"variants": {name: {params, steps, wall_seconds, eval_steps,
                                     fd_emoji, precision, recall, accuracy, loss_steps, loss}},
                                     "hardware", "note", "eval_settings"}
    assets/ablation/curves.png      the same curves (matplotlib)
    assets/ablation/table.md        final metrics per variant
    checkpoints/ablation/<name>/    model.safetensors (bf16) + config.json per variant

    python -m dimsum.ablation --steps 1500 \\
        --variant dimsum=runs/xs-main/state_1500.pt \\
        --variant spatial-only=runs/abl-spatial/state.pt \\
        --variant attention=runs/abl-attention/state.pt
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .config import DiMSUMConfig
from .io import atomic_write
from .models import DiMSUM
from .train import export_state, load_state

log = logging.getLogger("dimsum.ablation")
METRICS = ("fd_emoji", "precision", "recall", "accuracy")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run(folder: Path, steps: int) -> dict[str, Any]:
    """Loss and evaluation curves of one run folder, up to `steps`."""
    logs = [r for r in _jsonl(folder / "log.jsonl") if "loss" in r and r["step"] <= steps]
    evals = [r for r in _jsonl(folder / "eval.jsonl") if r["step"] <= steps]
    if not logs:
        raise ValueError(f"{folder}: no loss records in log.jsonl up to step {steps}")
    at_end = [r for r in logs if r["step"] == steps]
    out: dict[str, Any] = {
        "loss_steps": [r["step"] for r in logs],
        "loss": [r["loss"] for r in logs],
        "eval_steps": [r["step"] for r in evals],
        "wall_seconds": at_end[0]["seconds"] if at_end else None,
    }
    for key in METRICS:
        out[key] = [r[key] for r in evals]
    if evals:
        out["eval_settings"] = evals[-1].get("settings")
    return out


def table_markdown(variants: dict[str, dict[str, Any]]) -> str:
    """Final metrics per variant: its `final_eval` (a larger `dimsum eval` of the exported
    checkpoint) when present, else the last curve point."""
    rows = [
        "| variant | trainable params | steps | wall time | FD-emoji | precision | recall | "
        "class accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, v in variants.items():
        last = {k: (v[k][-1] if v[k] else float("nan")) for k in METRICS}
        last.update({k: v["final_eval"][k] for k in METRICS if k in v.get("final_eval", {})})
        wall = f"{v['wall_seconds'] / 60:.0f} min" if v.get("wall_seconds") else "?"
        rows.append(
            f"| {name} | {v['params']:,} | {v['steps']:,} | {wall} | {last['fd_emoji']:.2f} | "
            f"{last['precision']:.3f} | {last['recall']:.3f} | {last['accuracy']:.1%} |"
        )
    return "\n".join(rows)


def plot_curves(variants: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """The 4 evaluation metrics and the training loss over steps, one line per variant."""
    import matplotlib  # deliberately lazy: an optional dependency (the `app` extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    panels = [(k, k.replace("_", " ")) for k in METRICS] + [("loss", "training loss (smoothed)")]
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        for name, v in variants.items():
            if key == "loss":
                y = np.asarray(v["loss"], dtype=float)
                k = min(10, len(y))  # moving average over k log records
                y = np.convolve(y, np.ones(k) / k, mode="valid")
                x = v["loss_steps"][k - 1 :]
                ax.plot(x, y, label=name)
            elif v[key]:
                ax.plot(v["eval_steps"], v[key], marker="o", label=name)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    axes.flat[-1].axis("off")
    axes.flat[-1].text(0, 0.5, title, wrap=True, fontsize=9, va="center")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def collect(
    variants: dict[str, Path],
    steps: int,
    *,
    out_dir: Path,
    checkpoints_dir: Path | None,
    hardware: str,
    note: str,
    final_evals: Path | None = None,
) -> dict[str, Any]:
    """Read every variant's run (state file's folder), export weights, write curves/plot/table.

    final_evals: a folder of `dimsum eval --json` reports named `<variant>.json` (optional).
    """
    data: dict[str, dict[str, Any]] = {}
    settings = None
    for name, state_path in variants.items():
        state = load_state(state_path)
        if state["step"] != steps:
            raise ValueError(f"{state_path}: holds step {state['step']}, expected {steps}")
        curves = read_run(state_path.parent, steps)
        settings = curves.pop("eval_settings", None) or settings
        if checkpoints_dir is not None:
            model = export_state(state_path, checkpoints_dir / name, name=f"ablation-{name}")
        else:
            model = DiMSUM(DiMSUMConfig.from_dict(state["config"]))
        data[name] = {
            "preset": state["config"].get("name"),
            "params": model.num_parameters(trainable_only=True),
            "steps": steps,
            **curves,
        }
        report = final_evals / f"{name}.json" if final_evals else None
        if report is not None and report.is_file():
            r = json.loads(report.read_text())
            data[name]["final_eval"] = {
                **{k: r[k] for k in METRICS},
                "mean_accuracy": r.get("mean_accuracy"),
                "settings": r.get("settings"),
            }
    result = {
        "variants": data,
        "hardware": hardware,
        "note": note,
        "eval_settings": settings,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1) + "\n"
    atomic_write(out_dir / "curves.json", lambda p: Path(p).write_text(text))
    table = table_markdown(data)
    atomic_write(out_dir / "table.md", lambda p: Path(p).write_text(table + "\n\n" + note + "\n"))
    plot_curves(data, out_dir / "curves.png", f"{note}\n\nHardware: {hardware}")
    print(table)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", action="append", required=True, help="name=path/to/state.pt")
    p.add_argument("--steps", type=int, required=True, help="the common step count")
    p.add_argument("--out", default="assets/ablation")
    p.add_argument("--checkpoints", default="checkpoints/ablation", help="'' to skip export")
    p.add_argument("--hardware", default="")
    p.add_argument("--note", default="")
    p.add_argument("--final-evals", default=None, help="folder of <variant>.json eval reports")
    a = p.parse_args(argv)
    variants = {}
    for item in a.variant:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--variant {item!r}: expected name=path/to/state.pt")
        variants[name] = Path(path)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    collect(
        variants,
        a.steps,
        out_dir=Path(a.out),
        checkpoints_dir=Path(a.checkpoints) if a.checkpoints else None,
        hardware=a.hardware,
        note=a.note,
        final_evals=Path(a.final_evals) if a.final_evals else None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
