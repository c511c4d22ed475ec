"""Running one generation with streamed previews.

`stream_generation` runs the pipeline in a worker thread and yields events as the sampler
records steps, so the UI can show previews while sampling continues. One model lock serialises
all sampling: blocks carry their feature tracer as an attribute, so two concurrent runs on the
same model would record each other's features.

On Hugging Face ZeroGPU the generator is wrapped by `spaces.GPU` (when `spaces` imports); it
yields only CPU arrays, which is what ZeroGPU needs to send results back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dimsum.flow import StepRecord
from dimsum.pipeline import DiMSUMPipeline, PipelineOutput

log = logging.getLogger(__name__)

MODEL_LOCK = threading.Lock()

try:  # ZeroGPU (Hugging Face Spaces): run the GPU part inside a GPU-lease context
    import spaces  # type: ignore[import-not-found]

    gpu: Callable[[Callable[..., Any]], Callable[..., Any]] = spaces.GPU(duration=120)
except Exception:  # noqa: BLE001 - not on Spaces, or spaces without a GPU: plain functions

    def gpu(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn


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
                out = pipe(
                    req.classes,
                    req.seeds,
                    guidance_scale=req.guidance_scale,
                    num_steps=req.num_steps,
                    method=req.method,
                    return_trajectory=True,
                    trace_steps=req.trace_steps,
                    trace_blocks=req.trace_blocks,
                    callback=callback,
                )
            events.put(Done(out))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            events.put(err)

    worker = threading.Thread(target=work, name="dimsum-sampling", daemon=True)
    worker.start()
    try:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if not worker.is_alive() and events.empty():
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
    with MODEL_LOCK:
        return pipe(
            req.classes,
            req.seeds,
            guidance_scale=req.guidance_scale,
            num_steps=req.num_steps,
            method=req.method,
            return_trajectory=False,
        )
