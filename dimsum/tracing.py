"""Recording intermediate features of a DiMSUM forward pass, for the app and for research.

Each block calls its `tracer` (when one is set) with the tensors the views need:

    normed       (N, L, D)     RMSNorm(residual stream): the block's normalized input
    spatial_out  (N, L, D/2)   spatial-branch output (raster order)
    freq_bands   (N, 16, D/2, side/4, side/4)  2-level Haar packet coefficients of the frequency input
    freq_tokens  (N, L, D/2)   the same coefficients in the official token layout
    freq_out     (N, L, D/2)   frequency-branch output after the inverse wavelet transform
    fusion_out   (N, L, D)     cross-attention fusion output
    block_out    (N, L, D)     the hidden state the block returns

Optional names (`OPTIONAL_TRACE_NAMES`), recorded only when a recorder asks for them by name:

    spatial_state  the spatial branch's selective scan: a `dimsum.ops.ScanStateInputs`
    freq_state     the same for the frequency branch (over its wavelet tokens)

    What is recorded is what the scan's hidden state depends on (its inputs u, dt, B of the
    recorder's rows, in the recorder's dtype, and the layer's A, dt_proj, bias in float32):
    a copy, no arithmetic, so asking for them does not slow sampling down. The quantity shown,
    mean |h_t| (N, L) over channels and state, is computed afterwards for all recorded entries
    at once (`dimsum.ops.scan_state_magnitudes`, float32 arithmetic as `selective_scan_ref`).
    h_t (d_inner x d_state) is the Mamba state after reading the t-th token of the branch's
    scan sequence: index t is the position in the scan order (`dimsum.models.scan_orders`),
    not the token's place on the grid.

With no tracer set, a block does one `is None` check: tracing off costs nothing measurable, and
an optional name that is not asked for costs one set lookup per block.
Recording never changes the computation (tensors are detached copies taken after the fact).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .ops import ScanStateInputs

TRACE_NAMES = (
    "normed",
    "spatial_out",
    "freq_bands",
    "freq_tokens",
    "freq_out",
    "fusion_out",
    "block_out",
)
OPTIONAL_TRACE_NAMES = ("spatial_state", "freq_state")


class FeatureRecorder:
    """Collects {block: {name: tensor}} for the forward passes run while it is attached.

    names: what to keep (default: every name of `TRACE_NAMES`; `OPTIONAL_TRACE_NAMES` only
        when named).
    rows: keep only these batch rows (e.g. the conditional half of a CFG batch).
    dtype/device: where and how stored tensors are kept (default: float32 on the CPU).
    """

    def __init__(
        self,
        names: Iterable[str] | None = None,
        rows: slice | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.names = set(names) if names is not None else set(TRACE_NAMES)
        known = TRACE_NAMES + OPTIONAL_TRACE_NAMES
        unknown = self.names - set(known)
        if unknown:
            raise ValueError(f"unknown trace names {sorted(unknown)}; known: {known}")
        self.rows = rows
        self.dtype = dtype
        self.device = device
        self.features: dict[int, dict[str, torch.Tensor | ScanStateInputs]] = {}

    def wants(self, name: str) -> bool:
        """Whether `name` is kept (blocks record optional traces only when it is)."""
        return name in self.names

    def __call__(
        self,
        block: int,
        name: str,
        value: torch.Tensor | ScanStateInputs,
        rows_selected: bool = False,
    ) -> None:
        """rows_selected: `value` holds only `rows` already (optional traces)."""
        if name not in self.names:
            return
        if isinstance(value, ScanStateInputs):
            assert rows_selected, "scan inputs are taken on the recorder's rows"
            self.features.setdefault(block, {})[name] = value.to(self.device, self.dtype)
            return
        v = value.detach()
        if self.rows is not None and not rows_selected:
            v = v[self.rows]
        self.features.setdefault(block, {})[name] = v.to(
            device=self.device, dtype=self.dtype
        ).clone()

    def clear(self) -> None:
        self.features = {}


@contextmanager
def trace_features(
    model: nn.Module, recorder: FeatureRecorder, blocks: Iterable[int] | None = None
) -> Iterator[FeatureRecorder]:
    """Attach `recorder` to the chosen blocks (default: all) for the duration of the context."""
    all_blocks = list(model.blocks)  # type: ignore[attr-defined]
    chosen = set(range(len(all_blocks))) if blocks is None else set(blocks)
    bad = sorted(b for b in chosen if not 0 <= b < len(all_blocks))
    if bad:
        raise ValueError(
            f"blocks {bad} out of range: the model has blocks 0..{len(all_blocks) - 1}"
        )
    busy = sorted(i for i in chosen if all_blocks[i].tracer is not None)
    if busy:
        # Tracers live on the blocks, so two traced forwards of one model in parallel would
        # record into each other's recorders: serialise them (the app holds a model lock).
        raise RuntimeError(
            f"blocks {busy} are already being traced: one model can be traced by one "
            "forward pass at a time (run traced generations one after another)"
        )
    try:
        for i in chosen:
            all_blocks[i].tracer = recorder
        yield recorder
    finally:
        for i in chosen:
            all_blocks[i].tracer = None
