"""Low-level ops: the selective scan (Mamba S6), Mamba's causal conv and the gated MLP's
activation, each a plain reference with fast paths."""

from .causal_conv import causal_conv1d_tokens, causal_conv1d_tokens_ref
from .gated_mlp import gelu_gate, gelu_gate_ref
from .selective_scan import (
    ScanStateInputs,
    available_scan_impls,
    scan_state_magnitudes,
    selective_scan_fn,
    selective_scan_ref,
    selective_scan_state_magnitude,
    selective_scan_tokens,
)

__all__ = [
    "ScanStateInputs",
    "scan_state_magnitudes",
    "causal_conv1d_tokens",
    "causal_conv1d_tokens_ref",
    "gelu_gate",
    "gelu_gate_ref",
    "available_scan_impls",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_scan_state_magnitude",
    "selective_scan_tokens",
]
