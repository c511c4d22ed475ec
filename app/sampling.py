"""Running one generation with streamed previews.

`stream_generation` runs the pipeline on the compute thread and yields events as the sampler
records steps, so the UI can show previews while sampling continues. All sampling is
serialised (one compute thread, and a lock for safety): blocks carry their feature tracer as an
attribute, so two concurrent runs on the same model would record each other's features.

Why one long-lived compute thread with the cores, and one torch thread everywhere else:
PyTorch's CPU backend is OpenMP, which gives every OS thread that runs a parallel op its own team
of worker threads; once a process has more such threads than CPUs, libgomp stops spin-waiting
and each of this small model's many short ops pays a futex wake-up. Measured on the 2-core CPU,
4 images x 20 Heun steps x guidance 4, the app through its HTTP API: 6-9 s end to end with a
fresh sampling thread per request (gradio's workers also ran torch ops with two threads), 3.6-4.0
s with `configure_compute` (bare pipeline: ~2.9 s).

On Hugging Face ZeroGPU the generator is wrapped by `spaces.GPU` (when `spaces` imports); it
yields only CPU arrays, which is what ZeroGPU needs to send results back.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dimsum.flow import StepRecord
from dimsum.interventions import Comparison, Intervention, compare
from dimsum.ops.selective_scan_cpu import set_thread_count
from dimsum.pipeline import DiMSUMPipeline, PipelineOutput
from dimsum.tracing import OPTIONAL_TRACE_NAMES, TRACE_NAMES

log = logging.getLogger(__name__)

MODEL_LOCK = threading.Lock()

_compute: ThreadPoolExecutor | None = None
_compute_pid = 0  # a forked child (ZeroGPU's GPU worker) has the executor but not its thread
_compute_threads: int | None = None
_compute_guard = threading.Lock()


def configure_compute(threads: int | None) -> None:
    """Give the compute thread `threads` torch threads (None: every CPU this process may use)
    and every other thread one.

    torch.set_num_threads sets the calling thread's OpenMP team size *and* a process-wide value
    that each other thread adopts on its first parallel op. So the compute thread sets its own
    size and fixes it (`set_thread_count`), then this thread sets the process-wide value back
    to 1, so gradio's workers never start OpenMP teams of their own (before this, their view
    rendering did, and sampling ran in throttled mode).
    """
    global _compute_threads
    with _compute_guard:
        _compute_threads = threads
        if _compute is not None and _compute_pid == os.getpid():
            _apply_threads(_compute)
    run_on_compute_thread(lambda: None).result()  # start it now, not on the first click


def _apply_threads(executor: ThreadPoolExecutor) -> None:
    def on_compute_thread() -> None:
        set_thread_count(_compute_threads or len(os.sched_getaffinity(0)))

    executor.submit(on_compute_thread).result()
    torch.set_num_threads(1)


def run_on_compute_thread(fn: Callable[[], Any]) -> Future:
    """Run `fn` on the one long-lived thread that does all model computation."""
    global _compute, _compute_pid
    with _compute_guard:
        if _compute is None or _compute_pid != os.getpid():
            _compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dimsum-compute")
            _compute_pid = os.getpid()
            _apply_threads(_compute)
    return _compute.submit(fn)


def evaluations(req: Request) -> int:
    """Network evaluations a request needs (dopri5 adapts: a generous bound)."""
    if req.method == "dopri5":
        return 6 * req.num_steps  # a few hundred evaluations at most in practice
    return req.num_steps * (2 if req.method == "heun" else 1) + 1


def batches_of_four(req: Request) -> int:
    """Evaluations of 4 images (guided: batch 8) per step: the unit costs are measured in."""
    return -(-len(req.seeds) // 4)


def gpu_seconds(source: str, key: str, req: Request, *_: Any, **__: Any) -> int:
    """How long a ZeroGPU lease to ask for one request: the evaluations it needs times a
    generous per-evaluation cost for the model's size (shorter leases queue sooner)."""
    evals = evaluations(req)
    params = sum(p.numel() for p in _pipeline(source, key).model.parameters())
    per_eval = 0.15 * max(params / 460e6, 0.05) * batches_of_four(req)  # L/2, H100: ~0.1 s
    return int(min(300, 15 + evals * per_eval))


def gpu_lease(duration: Callable[..., int] | int) -> Callable[[Callable], Callable]:
    """ZeroGPU (Hugging Face Spaces): run the function inside a GPU lease of `duration` seconds
    (a number, or a callable of the function's arguments); elsewhere the function itself."""
    try:
        import spaces  # type: ignore[import-not-found]

        return spaces.GPU(duration=duration)
    except Exception:  # noqa: BLE001 - not on Spaces, or spaces without a GPU
        return lambda fn: fn


gpu = gpu_lease(gpu_seconds)  # sampling: a lease sized from the request


# Every feature the views read, with the scans' hidden-state magnitude (the scan animation).
APP_TRACE_NAMES = TRACE_NAMES + OPTIONAL_TRACE_NAMES


@dataclass(frozen=True)
class Request:
    """A validated generation request."""

    classes: list[int]
    seeds: list[int]
    guidance_scale: float
    num_steps: int
    method: str
    trace_steps: list[int]
    trace_blocks: list[int]
    schedule: str = "uniform"  # step times of heun / euler (dimsum.flow.SCHEDULES)
    temperature: float = 1.0  # initial-noise scale, x0 ~ N(0, T^2)

    def sampler_kwargs(self) -> dict[str, Any]:
        """The pipeline's keyword arguments for this request's sampler settings."""
        return dict(
            guidance_scale=self.guidance_scale,
            num_steps=self.num_steps,
            method=self.method,
            schedule=self.schedule,
            temperature=self.temperature,
        )


@dataclass
class Preview:
    step: int
    total: int
    t: float
    xt_rgb: np.ndarray  # (N, h, w, 3) uint8
    x1_rgb: np.ndarray


@dataclass
class Done:
    output: PipelineOutput


def stream_generation(
    pipe: DiMSUMPipeline, req: Request, stop: threading.Event
) -> Iterator[Preview | Done]:
    """Yield a `Preview` per recorded step (the consumer may skip some) and finally `Done`.

    Setting `stop` ends sampling at the next recorded step (nothing more is yielded).
    """
    events: queue.Queue[Preview | Done | BaseException] = queue.Queue()

    def callback(rec: StepRecord) -> bool:
        if stop.is_set():
            return True
        events.put(
            Preview(
                step=rec.step,
                total=rec.total,
                t=float(rec.t),
                xt_rgb=pipe.preview_rgb(rec.x_t),
                x1_rgb=pipe.preview_rgb(rec.x1_hat),
            )
        )
        return False

    def work() -> None:
        try:
            with MODEL_LOCK:
                if stop.is_set():
                    return
                out = _call_pipeline(
                    pipe,
                    req,
                    return_trajectory=True,
                    trace_steps=req.trace_steps,
                    trace_blocks=req.trace_blocks,
                    trace_names=APP_TRACE_NAMES,
                    callback=callback,
                )
            events.put(Done(out))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            events.put(err)

    worker = run_on_compute_thread(work)
    try:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if worker.done() and events.empty():
                    return  # stopped before producing anything
                continue
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Done):
                return
    finally:
        stop.set()  # consumer gone (finished, error or cancelled): stop the worker early


# How GPU functions find a model: by (source id, model key). Each app instance registers its
# model registry once; module state rather than an argument because ZeroGPU may pickle the
# arguments of GPU functions, and keyed by source so several app instances (tests) coexist.
_SOURCES: dict[str, Callable[[str], DiMSUMPipeline]] = {}


def register_pipeline_source(get: Callable[[str], DiMSUMPipeline]) -> str:
    source_id = f"source{len(_SOURCES)}"
    _SOURCES[source_id] = get
    return source_id


def _pipeline(source: str, key: str) -> DiMSUMPipeline:
    return _SOURCES[source](key)


@gpu
def gpu_stream(
    source: str, key: str, req: Request, min_interval: float = 0.3
) -> Iterator[Preview | Done]:
    """`stream_generation` with preview throttling: at most one preview per `min_interval`
    seconds (the first and the last always), so slow networks do not fall behind and, on a
    2-core CPU, encoding frames takes less of the cores the sampler needs."""
    stop = threading.Event()
    last = 0.0
    pending: Preview | None = None
    for event in stream_generation(_pipeline(source, key), req, stop):
        if isinstance(event, Preview):
            now = time.perf_counter()
            if event.step == 0 or now - last >= min_interval:
                last, pending = now, None
                yield event
            else:
                pending = event
        else:
            if pending is not None:
                yield pending
            yield event


@gpu
def gpu_generate(source: str, key: str, req: Request) -> PipelineOutput:
    """One generation without previews or traces (the ablation comparison)."""
    pipe = _pipeline(source, key)

    def work() -> PipelineOutput:
        with MODEL_LOCK:
            return _call_pipeline(pipe, req, return_trajectory=False)

    return run_on_compute_thread(work).result()


@gpu
def gpu_compare(
    source: str,
    key: str,
    req: Request,
    interventions: list[Intervention],
    original: PipelineOutput,
) -> Comparison:
    """The request re-run with `interventions`, compared with its `original` run (made with the
    same settings: `dimsum.interventions.compare` checks). Serialised like every generation:
    interventions are set on the model for the run, so no other run may share it meanwhile."""
    pipe = _pipeline(source, key)

    def work() -> Comparison:
        with MODEL_LOCK:
            return compare(
                pipe,
                interventions,
                original=original,
                classes=req.classes,
                seeds=req.seeds,
                **req.sampler_kwargs(),
            )

    return run_on_compute_thread(work).result()


@gpu_lease(30)  # one VAE decode of a few latents
def gpu_decode(source: str, key: str, latents: np.ndarray) -> np.ndarray:
    """VAE decode of stored latents (N, C, h, w) -> (N, H, W, 3) uint8 (x̂ at a scrubbed step)."""
    pipe = _pipeline(source, key)

    def work() -> np.ndarray:
        with MODEL_LOCK:
            return pipe.decode(torch.from_numpy(latents.astype(np.float32)))

    return run_on_compute_thread(work).result()


def _call_pipeline(pipe: DiMSUMPipeline, req: Request, **extra: Any) -> PipelineOutput:
    """`pipe` on a request's classes, seeds and sampler settings (call on the compute thread)."""
    return pipe(req.classes, req.seeds, **req.sampler_kwargs(), **extra)
