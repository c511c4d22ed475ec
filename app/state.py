"""The run record: everything one generation produced, kept compact so views never rerun the model.

A session's `gr.State` holds a `SessionState` (model key + id of its current run); the runs live
in one `RunStore` with a global memory budget (LRU), so memory stays bounded however many
sessions there are. A session keeps one run: generating again replaces it.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimsum.ops import ScanStateInputs
from dimsum.pipeline import PipelineOutput
from dimsum.vae import SD_LATENT_RGB

from .features import BlockSummary, summarize_run

log = logging.getLogger(__name__)

# {step: {block: {name: tensor, or the scan inputs of "spatial_state" / "freq_state"}}}
Traces = dict[int, dict[int, dict[str, torch.Tensor | ScanStateInputs]]]

RAW_BUDGET_BYTES = 24 * 2**20  # float16 x_t / x1_hat / velocity kept per run
TRACE_BUDGET_BYTES = 192 * 2**20  # peak raw trace memory during one generation
TRACE_STEPS = 9  # ~8 evenly spaced recorded steps + the last
MAX_RUNS = 256  # runs kept in memory (and their PNG folders on disk), all sessions together


class RunExpired(LookupError):
    """The session's run is gone (memory pressure, server restart) or there is none yet."""


class ViewError(LookupError):
    """A view cannot show what was asked for this run (the message says why)."""


@dataclass
class SessionState:
    """Per-session state (what `gr.State` holds): small, copyable."""

    model_key: str
    run_id: str | None = None


@dataclass
class RunRecord:
    """One generation: settings, images, trajectory summaries and traced-feature summaries."""

    run_id: str
    model_key: str
    settings: dict[str, Any]
    space: str  # "pixel" or "latent"
    class_label: str
    images: np.ndarray  # (N, H, W, 3) uint8, final decoded images
    t: np.ndarray  # (S,) recorded times
    nfe: int
    previews_xt: np.ndarray  # (S, N, h, w, 3) uint8
    previews_x1: np.ndarray  # (S, N, h, w, 3) uint8
    raw_steps: list[int]  # recorded steps whose float states are kept
    x_t: np.ndarray  # (R, N, C, h, w) float16 (model space)
    x1_hat: np.ndarray  # (R, N, C, h, w) float16
    velocity: np.ndarray  # (R, N, C, h, w) float16
    vel_rms: np.ndarray  # (S, N) float32
    dist_final: np.ndarray  # (S, N) float32, RMS(x1_hat(t) - final sample)
    traced_steps: list[int]
    traced_blocks: list[int]
    traces: Traces | None  # the pipeline's raw traces, until `blocks` reduces them
    seconds: float
    folder: Path
    png_paths: list[str] = field(default_factory=list)
    share: tuple[str, str] | None = None  # (settings JSON, share query) shown for this run
    cache: dict[Any, Any] = field(default_factory=dict)  # rendered views (paths, figures)
    _summaries: dict[tuple[int, int], BlockSummary] | None = field(default=None, repr=False)
    _summary_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_steps(self) -> int:
        """Number of recorded steps S (slider range 0..S-1)."""
        return int(self.t.shape[0])

    @property
    def blocks(self) -> dict[tuple[int, int], BlockSummary]:
        """(step, block) -> summary of the traced features.

        Reduced from the raw traces on first use, then the traces are dropped: the app shows a
        run's images first and reduces right after (~0.2 s for the emoji model on 2 cores), so
        the reduction is not part of the wait for the images.
        """
        with self._summary_lock:
            if self._summaries is None:
                self._summaries = summarize_run(self.traces or {})
                self.traces = None
            return self._summaries

    @property
    def nbytes(self) -> int:
        arrays = [self.images, self.t, self.previews_xt, self.previews_x1, self.x_t, self.x1_hat]
        arrays += [self.velocity, self.vel_rms, self.dist_final]
        total = sum(a.nbytes for a in arrays)
        summaries, traces = self._summaries, self.traces  # read without forcing the reduction
        if summaries is not None:
            return total + sum(b.nbytes for b in summaries.values())
        values = [
            v for per_step in (traces or {}).values() for d in per_step.values() for v in d.values()
        ]
        return total + sum(
            v.nbytes if isinstance(v, ScanStateInputs) else v.numel() * v.element_size()
            for v in values
        )

    def cached(self, key: Any, make: Any) -> Any:
        """Memoise a rendered view (bounded: the oldest renders are forgotten first)."""
        if key in self.cache:
            return self.cache[key]
        value = make()
        self.cache[key] = value
        while len(self.cache) > 512:
            self.cache.pop(next(iter(self.cache)))
        return value

    def nearest_raw(self, step: int) -> int:
        """Index into x_t / x1_hat of the stored step nearest to `step`."""
        return int(np.argmin(np.abs(np.asarray(self.raw_steps) - step)))

    def nearest_traced(self, step: int) -> int:
        return min(self.traced_steps, key=lambda s: (abs(s - step), -s))

    def display_rgb(self, which: str, step: int) -> tuple[np.ndarray, int]:
        """Float (N, 3, h, w) state in [-1, 1]-ish RGB at the stored step nearest `step`
        (latent states through the linear latent->RGB map, not clamped)."""
        i = self.nearest_raw(step)
        x = torch.from_numpy((self.x_t if which == "x_t" else self.x1_hat)[i].astype(np.float32))
        if self.space == "latent":
            x = torch.einsum("nchw,cr->nrhw", x, SD_LATENT_RGB)
        return x.numpy(), self.raw_steps[i]


def plan_trace(
    num_records: int, num_images: int, tokens: int, width: int, depth: int
) -> tuple[list[int], list[int]]:
    """Which recorded steps and blocks to trace so the raw trace stays within budget.

    Per (step, block) the pipeline keeps ~5 D-wide float16 tensors per token and image, and
    the two scans' inputs u (D wide each) and dt, B (narrow; the scan animation's |h|).
    """
    per = num_images * tokens * (width * 7 + width // 16 + 32) * 2
    pairs = max(1, TRACE_BUDGET_BYTES // max(per, 1))
    n_steps, n_blocks = min(TRACE_STEPS, num_records), depth
    # Give up blocks first (down to 4), then steps (down to 3), then blocks again.
    while n_steps * n_blocks > pairs and n_blocks > 4:
        n_blocks -= 1
    while n_steps * n_blocks > pairs and n_steps > min(3, num_records):
        n_steps -= 1
    while n_steps * n_blocks > pairs and n_blocks > 1:
        n_blocks -= 1
    steps = sorted({int(round(x)) for x in np.linspace(0, num_records - 1, n_steps)})
    blocks = sorted({int(round(x)) for x in np.linspace(0, depth - 1, n_blocks)})
    return steps, blocks


def _raw_subset(num_records: int, per_step_bytes: int) -> list[int]:
    """Recorded steps whose float states fit in the raw budget (all if possible; always the
    first and the last)."""
    keep = max(2, RAW_BUDGET_BYTES // max(per_step_bytes, 1))
    if keep >= num_records:
        return list(range(num_records))
    return sorted({int(round(x)) for x in np.linspace(0, num_records - 1, keep)})


def build_record(
    out: PipelineOutput,
    *,
    model_key: str,
    class_label: str,
    space: str,
    traced_steps: list[int],
    traced_blocks: list[int],
) -> RunRecord:
    """PipelineOutput (with trajectory and traces) -> `RunRecord` (traces reduced on first use)."""
    traj = out.trajectory
    assert traj is not None and out.previews_xt is not None and out.previews_x1 is not None
    s = len(traj)
    final = traj.x_t[-1].float()
    flat = lambda a: a.float().flatten(2)  # noqa: E731 - (S, N, C, H, W) -> (S, N, D)
    vel_rms = flat(traj.velocity).pow(2).mean(-1).sqrt().numpy()
    dist = (flat(traj.x1_hat) - final.flatten(1)[None]).pow(2).mean(-1).sqrt().numpy()
    per_step = int(np.prod(traj.x_t.shape[1:])) * 2 * 3
    raw = _raw_subset(s, per_step)
    idx = torch.tensor(raw)
    traces = out.features or {}
    steps_seen = sorted(traces)
    blocks_seen = sorted({b for per_step in traces.values() for b in per_step})
    folder = Path(tempfile.mkdtemp(prefix="dimsum-run-"))
    return RunRecord(
        run_id=secrets.token_urlsafe(12),
        model_key=model_key,
        settings=dict(out.settings),
        space=space,
        class_label=class_label,
        images=out.array,
        t=traj.t.numpy().astype(np.float32),
        nfe=int(traj.nfe),
        previews_xt=out.previews_xt,
        previews_x1=out.previews_x1,
        raw_steps=raw,
        x_t=traj.x_t[idx].half().numpy(),
        x1_hat=traj.x1_hat[idx].half().numpy(),
        velocity=traj.velocity[idx].half().numpy(),
        vel_rms=vel_rms.astype(np.float32),
        dist_final=dist.astype(np.float32),
        traced_steps=steps_seen or sorted(traced_steps),
        traced_blocks=blocks_seen or sorted(traced_blocks),
        traces=traces,
        seconds=float(out.seconds),
        folder=folder,
    )


class RunStore:
    """All sessions' runs, LRU-evicted beyond a memory budget (thread-safe)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, record: RunRecord, replaces: str | None = None) -> None:
        with self._lock:
            if replaces:
                self._drop(replaces)
            self._runs[record.run_id] = record
            while len(self._runs) > 1 and (
                self.total_bytes() > self.budget or len(self._runs) > MAX_RUNS
            ):
                old = next(iter(self._runs))
                log.info("evicting run %s (memory budget)", old)
                self._drop(old)

    def get(self, run_id: str | None) -> RunRecord:
        with self._lock:
            if not run_id:
                raise RunExpired("no run yet: press Generate first")
            record = self._runs.get(run_id)
            if record is None:
                raise RunExpired(
                    "this run is no longer in memory (the server keeps a limited number of "
                    "runs, or it restarted): press Generate again"
                )
            self._runs.move_to_end(run_id)
            return record

    def total_bytes(self) -> int:
        return sum(r.nbytes for r in self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def _drop(self, run_id: str) -> None:
        record = self._runs.pop(run_id, None)
        if record is not None:
            shutil.rmtree(record.folder, ignore_errors=True)
