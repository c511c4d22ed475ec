"""Replay a velocity function ``fn(x, t) -> v`` from a CUDA graph (no ``torch.compile``).

A guided DiM evaluation is hundreds of small kernels whose launch cost, not their math, bounds
a GPU step at small batch. Capturing one call into a CUDA graph for a fixed (batch, shape,
dtype) and replaying it per step removes the launches: the inputs are copied into static
buffers, the graph replays, the static output is cloned (Heun's predictor velocity must survive
the corrector's replay).

Where capture is impossible (CPU tensors, no CUDA, an op that syncs with the host or allocates
on the CPU during the call, a capture error, or a replay that disagrees with the eager call)
:func:`graph_velocity` logs why and returns ``fn`` itself, so callers never branch.

Wiring into the pipeline (``DimsumPipeline.__call__``; one call, after ``network`` is defined
and before ``sample_ode``, using the noise it will pass as ``x0``)::

    x0 = self.noise(seeds_l, temperature)
    fast = graph_velocity(network, x0) if not want else network  # tracing needs hooks: eager
    # ... and in ``velocity``: ``return fast(x, t)`` instead of ``return network(x, t)``

``network`` already closes over the labels ``y`` and ``cfg`` of this call, so one graph per call
is correct (capture costs about three evaluations: two warm-up, one captured; with 40 guided
evaluations per image that pays back when an evaluation is launch bound). The graph is freed
with the returned object at the end of the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["GraphUnavailable", "GraphedVelocity", "graph_velocity"]

log = logging.getLogger(__name__)

VelocityFn = Callable[[Tensor, Tensor], Tensor]


class GraphUnavailable(RuntimeError):
    """Capture is impossible here; the message says why."""


class GraphedVelocity:
    """``fn`` captured for x shaped like ``example_x`` and t of shape (N,) (float t allowed).

    Calls with another shape, dtype or device run ``fn`` eagerly (counted in ``eager_calls``).
    Raises :class:`GraphUnavailable` from the constructor when capture is impossible.
    """

    def __init__(
        self, fn: VelocityFn, example_x: Tensor, *, warmup: int = 2, verify: bool = True
    ) -> None:
        if example_x.device.type != "cuda" or not torch.cuda.is_available():
            raise GraphUnavailable(f"tensors on {example_x.device.type}, not CUDA")
        self.fn = fn
        self.eager_calls = 0
        try:
            self.static_x = example_x.detach().clone()
            self.static_t = torch.full(
                (example_x.shape[0],), 0.5, device=example_x.device, dtype=torch.float32
            )
            self.graph, self.static_out = self._capture(warmup)
        except Exception as e:  # sync during capture, unsupported op, out of memory, ...
            raise GraphUnavailable(f"capture failed: {type(e).__name__}: {e}") from e
        if verify:
            self._verify()

    def _capture(self, warmup: int) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        # Warm up on a side stream (lazy init, Triton compilation, cuBLAS workspaces), then
        # capture: the documented recipe of torch.cuda.graphs.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.fn(self.static_x, self.static_t)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.fn(self.static_x, self.static_t)
        return graph, out

    def _verify(self) -> None:
        """One replay against one eager call on the example: catches captures that silently
        froze host-side state (a Python-side branch on values, a CPU tensor made per call)."""
        self.graph.replay()
        got = self.static_out.clone()
        want = self.fn(self.static_x, self.static_t)
        if not torch.allclose(got.float(), want.float(), rtol=1e-3, atol=1e-4):
            err = (got.float() - want.float()).abs().max().item()
            raise GraphUnavailable(f"replay differs from the eager call (max |diff| {err:.3g})")

    def __call__(self, x: Tensor, t: Tensor | float) -> Tensor:
        sx = self.static_x
        if x.shape != sx.shape or x.dtype != sx.dtype or x.device != sx.device:
            self.eager_calls += 1
            return self.fn(x, t)
        sx.copy_(x)
        if isinstance(t, Tensor):
            self.static_t.copy_(t.expand(self.static_t.shape))
        else:
            self.static_t.fill_(float(t))
        self.graph.replay()
        return self.static_out.clone()


def graph_velocity(fn: VelocityFn, example_x: Tensor, **kw) -> VelocityFn:
    """A :class:`GraphedVelocity` for ``fn``, or ``fn`` itself (with one log line) when capture
    is impossible. Keyword arguments go to :class:`GraphedVelocity`."""
    try:
        return GraphedVelocity(fn, example_x, **kw)
    except GraphUnavailable as e:
        log.info("dimsum: CUDA graph not used for sampling (%s); running eagerly", e)
        return fn
