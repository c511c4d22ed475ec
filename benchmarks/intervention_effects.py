"""What each intervention does to the images, and what an intervention re-run costs.

    python benchmarks/intervention_effects.py                      # effects table, embedded model
    python benchmarks/intervention_effects.py --timing --repeats 3 # + plain vs intervened wall time
    python benchmarks/intervention_effects.py --json effects.json --out-dir effects/

Effects: 8 images (classes 0-7, seeds 0-7), Heun 20, guidance 4, the model's temperature; per
intervention, the relative change of the images' energy in three groups of 2-level Haar packet
subbands (`dimsum.interventions.BAND_GROUPS`: approximation LL.LL, coarse detail LL.{LH,HL,HH},
fine detail = the 12 level-1 detail subbands: edges and 1-2 px texture) and the mean absolute
pixel change (0-255). Timing: 4 images, Heun 20, guidance 4, plain and intervened runs
interleaved (the machine's speed drifts), median of --repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from dimsum.interventions import compare, difference_rgb  # noqa: E402
from dimsum.io import image_grid  # noqa: E402
from dimsum.pipeline import DiMSUMPipeline  # noqa: E402

DEFAULT_SPECS = (
    "freq-off:t=0-0.5",
    "freq-off:t=0.5-1",
    "freq-off",
    "freq-off:with=other",
    "spatial-off:t=0-0.5",
    "spatial-off:t=0.5-1",
    "fusion-add",
    "attn-skip",
    "freq-raster",
)


def effects(pipe: DiMSUMPipeline, specs: list[str], out_dir: Path | None) -> list[dict]:
    kw = dict(classes=list(range(8)), seeds=list(range(8)), guidance_scale=4.0, num_steps=20)
    kw["method"] = "heun"
    original = pipe(**kw, return_trajectory=False)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        pipe_grid = image_grid(original.array, cols=8)
        np.save(out_dir / "original.npy", original.array)
        from PIL import Image

        Image.fromarray(pipe_grid).save(out_dir / "original.png")
    rows = []
    for spec in specs:
        c = compare(pipe, spec, original=original, **kw)
        row = {
            "intervention": spec,
            "mean_abs_pixel_change": float(np.abs(c.diff).mean() * 255),
            **{k: round(v, 4) for k, v in c.energy.group_change().items()},
        }
        rows.append(row)
        print(
            f"{spec:24s} |pixel| {row['mean_abs_pixel_change']:6.2f}   "
            + "  ".join(f"{k} {v:+.1%}" for k, v in c.energy.group_change().items()),
            flush=True,
        )
        if out_dir is not None:
            from PIL import Image

            name = spec.replace(":", "_").replace("=", "")
            both = np.concatenate([c.changed.array, difference_rgb(c.diff)])
            Image.fromarray(image_grid(both, cols=8)).save(out_dir / f"{name}.png")
    return rows


def timing(pipe: DiMSUMPipeline, spec: str, repeats: int) -> dict:
    kw = dict(classes=[6] * 4, seeds=[0, 1, 2, 3], guidance_scale=4.0, num_steps=20)
    kw.update(method="heun", return_trajectory=False)
    pipe(**kw)  # warm-up
    plain, changed = [], []
    for _ in range(repeats):  # interleaved: both see the same drift of a shared machine
        t0 = time.perf_counter()
        pipe(**kw)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pipe(**kw, interventions=[spec])
        changed.append(time.perf_counter() - t0)
    out = {
        "intervention": spec,
        "plain_s": [round(v, 3) for v in plain],
        "intervened_s": [round(v, 3) for v in changed],
        "plain_median_s": round(statistics.median(plain), 3),
        "intervened_median_s": round(statistics.median(changed), 3),
    }
    print(
        f"timing, 4 images Heun 20 guidance 4: plain {out['plain_median_s']} s, "
        f"{spec} {out['intervened_median_s']} s (medians of {repeats}; all: {plain} / {changed})"
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interventions", nargs="+", default=list(DEFAULT_SPECS))
    ap.add_argument("--no-effects", action="store_true")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--timing-intervention", default="freq-off:t=0-0.5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--out-dir", default=None, help="write image grids (changed + difference)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = DiMSUMPipeline.from_pretrained(a.checkpoint)
    report: dict = {"model": pipe.name, "threads": a.threads}
    if not a.no_effects:
        out_dir = Path(a.out_dir) if a.out_dir else None
        report["effects"] = effects(pipe, a.interventions, out_dir)
    if a.timing:
        report["timing"] = timing(pipe, a.timing_intervention, a.repeats)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
