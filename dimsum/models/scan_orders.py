"""Scan orders of the two Mamba branches, as data.

Every order is a permutation `perm` of the L = side*side token indices (raster layout):
the scanned sequence is `tokens[:, perm]` and `scanned[:, inverse(perm)]` restores the layout.
The model and the app both read the orders from here, so what the app draws is what runs.

Per layer i (official schedule, 4-layer cycle):

    i % 4   spatial branch            frequency branch (wavelet tokens)
    0       raster, row-major         window scan, row-first
    1       raster reversed           window scan, column-first
    2       column-major              window scan, row-first
    3       column-major reversed     window scan, column-first
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

WINDOWS_PER_SIDE = 4  # the 2-level Haar packet gives 4x4 = 16 subbands per 4x4 token block


@dataclass(frozen=True)
class LayerScan:
    """The scan configuration of one layer."""

    layer: int
    spatial_transpose: bool  # column-major instead of row-major
    spatial_reverse: bool  # scan the sequence backwards
    freq_column_first: bool  # window scan visits windows (and tokens) column-major

    @property
    def spatial_name(self) -> str:
        base = "column-major" if self.spatial_transpose else "row-major"
        return base + (" reversed" if self.spatial_reverse else "")

    @property
    def freq_name(self) -> str:
        return "window scan, " + ("column-first" if self.freq_column_first else "row-first")


def layer_scan(layer: int) -> LayerScan:
    """Scan configuration of layer `layer` (official: reverse on odd, transpose on i%4 >= 2)."""
    reverse = layer % 2 == 1
    return LayerScan(
        layer=layer,
        spatial_transpose=layer % 4 >= 2,
        spatial_reverse=reverse,
        # Official quirk: the frequency branch is built with transpose=reverse, i.e. the
        # window scan goes column-first on odd layers and is never reversed.
        freq_column_first=reverse,
    )


@lru_cache(maxsize=64)
def _spatial_perm(side: int, transpose: bool, reverse: bool) -> torch.Tensor:
    idx = torch.arange(side * side, device="cpu").view(side, side)
    if transpose:
        idx = idx.t()
    perm = idx.reshape(-1)
    if reverse:
        perm = perm.flip(0)
    return perm.contiguous()


@lru_cache(maxsize=64)
def _window_perm(side: int, column_first: bool, windows: int = WINDOWS_PER_SIDE) -> torch.Tensor:
    if side % windows:
        raise ValueError(f"token grid side {side} is not a multiple of {windows}")
    w = side // windows
    # idx[wy, iy, wx, ix] = (wy*w + iy) * side + (wx*w + ix)
    idx = torch.arange(side * side, device="cpu").view(windows, w, windows, w)
    if column_first:
        order = idx.permute(2, 0, 3, 1)  # windows column-major, tokens column-major inside
    else:
        order = idx.permute(0, 2, 1, 3)  # windows row-major, tokens row-major inside
    return order.reshape(-1).contiguous()


def spatial_scan_order(layer: int, side: int) -> torch.Tensor:
    """(L,) int64 permutation of the spatial branch of `layer` on a side x side token grid."""
    s = layer_scan(layer)
    return _spatial_perm(side, s.spatial_transpose, s.spatial_reverse)


def freq_scan_order(layer: int, side: int) -> torch.Tensor:
    """(L,) int64 window-scan permutation of the frequency branch of `layer`."""
    return _window_perm(side, layer_scan(layer).freq_column_first)


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """inv such that x[perm][inv] == x."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def attention_after(layer: int, attn_every: int) -> bool:
    """Whether the shared attention block runs after block `layer`."""
    return attn_every > 0 and (layer + 1) % attn_every == 0
