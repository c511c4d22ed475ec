"""Low-level ops: the selective scan (Mamba S6) with CPU/CUDA fast paths."""

from .selective_scan import (
    available_scan_impls,
    selective_scan_fn,
    selective_scan_ref,
    selective_scan_tokens,
)

__all__ = [
    "available_scan_impls",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_scan_tokens",
]
