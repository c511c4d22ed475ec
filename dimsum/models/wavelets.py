"""2-level Haar packet wavelet tokens of the frequency branch (SPEC section 3).

The official model stores its Haar filters as buffers (`dwt.w_ll|w_lh|w_hl|w_hh`, `idwt.filters`)
and applies them as stride-2 grouped convolutions; we keep those buffers (strict loading) and do
the same, which is exactly one Haar analysis/synthesis step. Subband values and signs equal
PyWavelets `dwt2(x, "haar")` (cA, cH, cV, cD) — the tests check this against PyWavelets and
pytorch-wavelets.

Token layout (official `_dwt_fast`): level 1 gives (LL, LH, HL, HH); level 2 splits all four
again; the 16 subbands (level-1-major, each side/4 x side/4, divided by 4) are stacked on the
channel axis as (subband, channel) and that 16*c axis is read back as (c, p1, p2) over 4x4 token
blocks. Feature f of the token at window position p = 4*p1 + p2 therefore holds subband
(16f + p) // c of channel (16f + p) % c.
"""

from __future__ import annotations

import pywt
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# Level-1 subband names, in the order the model stacks them, with what each one means.
# "LH" (pywt cH) = low-pass along rows (width), high-pass along columns (height): horizontal edges.
SUBBANDS_L1 = ("LL", "LH", "HL", "HH")
SUBBAND_MEANING = {
    "LL": "approximation (low-pass both ways)",
    "LH": "detail along columns (horizontal edges)",
    "HL": "detail along rows (vertical edges)",
    "HH": "detail along both (diagonal)",
}
# The 16 level-2 packet subbands in model order: (level-1 band, level-2 band), level-1-major.
SUBBANDS_L2 = tuple(f"{a}.{b}" for a in SUBBANDS_L1 for b in SUBBANDS_L1)


def _outer(a: list[float], b: list[float]) -> torch.Tensor:
    return (
        torch.tensor(a, dtype=torch.float32)[None, :]
        * torch.tensor(b, dtype=torch.float32)[:, None]
    )


class HaarDWT(nn.Module):
    """One 2-D Haar analysis step. (N, C, H, W) -> (N, 4C, H/2, W/2) as [LL | LH | HL | HH]."""

    def __init__(self) -> None:
        super().__init__()
        w = pywt.Wavelet("haar")
        lo, hi = list(w.dec_lo[::-1]), list(w.dec_hi[::-1])
        # Same construction as the official buffers: w_xy = outer(row filter y, column filter x).
        self.register_buffer("w_ll", _outer(lo, lo)[None, None])
        self.register_buffer("w_lh", _outer(lo, hi)[None, None])
        self.register_buffer("w_hl", _outer(hi, lo)[None, None])
        self.register_buffer("w_hh", _outer(hi, hi)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        filt = torch.cat([self.w_ll, self.w_lh, self.w_hl, self.w_hh], dim=0).to(x.dtype)
        # One grouped conv computes the 4 subbands of every channel: output (N, C*4, ...)
        out = F.conv2d(x, filt.repeat(c, 1, 1, 1), stride=2, groups=c)
        # (c, band) -> (band, c): the official layout stacks whole subbands.
        return rearrange(out, "n (c k) h w -> n (k c) h w", k=4)


class HaarIDWT(nn.Module):
    """Inverse of `HaarDWT`. (N, 4C, H, W) as [LL | LH | HL | HH] -> (N, C, 2H, 2W)."""

    def __init__(self) -> None:
        super().__init__()
        w = pywt.Wavelet("haar")
        lo, hi = list(w.rec_lo), list(w.rec_hi)
        filters = torch.stack([_outer(lo, lo), _outer(lo, hi), _outer(hi, lo), _outer(hi, hi)])
        self.register_buffer("filters", filters[:, None])  # (4, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "n (k c) h w -> n (c k) h w", k=4)
        c = x.shape[1] // 4
        return F.conv_transpose2d(
            x, self.filters.to(x.dtype).repeat(c, 1, 1, 1), stride=2, groups=c
        )


def packet_subbands(x: torch.Tensor, dwt: HaarDWT) -> torch.Tensor:
    """2-level Haar packet of a feature map. (N, C, H, W) -> (N, 16, C, H/4, W/4).

    Subband k = 4*k1 + k2 (level-1 band k1, level-2 band k2, `SUBBANDS_L2[k]`), divided by 4
    as in the official model.
    """
    c = x.shape[1]
    level2 = dwt(dwt(x)) / 4  # channel index = k2 * 4c + k1 * c + ch
    return rearrange(level2, "n (k2 k1 c) h w -> n (k1 k2) c h w", k1=4, k2=4, c=c)


def packet_reconstruct(bands: torch.Tensor, idwt: HaarIDWT) -> torch.Tensor:
    """Inverse of `packet_subbands`. (N, 16, C, h, w) -> (N, C, 4h, 4w)."""
    x = rearrange(bands * 4, "n (k1 k2) c h w -> n (k2 k1 c) h w", k1=4, k2=4)
    return idwt(idwt(x))


def bands_to_tokens(bands: torch.Tensor) -> torch.Tensor:
    """Official token layout. (N, 16, C, h, w) -> (N, L, C) with L = 16 h w (raster grid 4h x 4w)."""
    flat = rearrange(bands, "n k c h w -> n (k c) h w")
    return rearrange(flat, "n (c p1 p2) h w -> n (h p1 w p2) c", p1=4, p2=4)


def tokens_to_bands(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """Inverse of `bands_to_tokens`. (N, L, C) -> (N, 16, C, side/4, side/4)."""
    c = tokens.shape[-1]
    flat = rearrange(tokens, "n (h p1 w p2) c -> n (c p1 p2) h w", p1=4, p2=4, h=side // 4)
    return rearrange(flat, "n (k c) h w -> n k c h w", k=16, c=c)


def _window_matrices(dwt: HaarDWT, idwt: HaarIDWT) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-level packet as a 16x16 linear map on each 4x4 window, read off the buffers.

    analysis[k, p]: subband k of a window from its pixel p = 4*row + col (`packet_subbands`);
    synthesis[k, p]: pixel p from subband k (`packet_reconstruct`). Built by pushing one-hot
    windows through the official conv path, so they follow whatever filters the checkpoint holds.
    """
    eye = torch.eye(16, dtype=torch.float32, device=dwt.w_ll.device)
    analysis = packet_subbands(eye.reshape(16, 1, 4, 4), dwt).reshape(16, 16).t()
    synthesis = packet_reconstruct(eye.reshape(1, 16, 16, 1, 1).transpose(0, 2), idwt)
    return analysis.contiguous(), synthesis.reshape(16, 16)


def _cached_matrices(dwt: HaarDWT, idwt: HaarIDWT, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """`_window_matrices`, cached on the DWT module until its or the IDWT's buffers change."""
    bufs = (dwt.w_ll, dwt.w_lh, dwt.w_hl, dwt.w_hh, idwt.filters)
    key = (dtype, *((b.data_ptr(), b._version, b.device) for b in bufs))
    cache = getattr(dwt, "_window_cache", None)
    if cache is None or cache[0] != key:
        with torch.no_grad():
            analysis, synthesis = _window_matrices(dwt, idwt)
        cache = (key, analysis.to(dtype), synthesis.to(dtype))
        dwt._window_cache = cache  # type: ignore[assignment]
    return cache[1], cache[2]


def wavelet_tokens(
    tokens: torch.Tensor, dwt: HaarDWT, idwt: HaarIDWT | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raster tokens (N, L, C) -> (wavelet tokens (N, L, C), subbands (N, 16, C, side/4, side/4)).

    The 2-level Haar packet only mixes pixels inside each 4x4 window, so with `idwt` given it is
    one 16x16 matmul per window (same numbers as the conv path to float rounding, far fewer
    kernel launches); without it, the official conv path.
    """
    side = int(round(tokens.shape[1] ** 0.5))
    if idwt is None:
        fmap = rearrange(tokens, "n (h w) c -> n c h w", h=side)
        bands = packet_subbands(fmap, dwt)
        return bands_to_tokens(bands), bands
    analysis, _ = _cached_matrices(dwt, idwt, tokens.dtype)
    win = rearrange(tokens, "n (h p1 w p2) c -> n h w (p1 p2) c", p1=4, p2=4, h=side // 4)
    coeffs = torch.matmul(analysis, win)  # (n, h, w, 16 subbands, c)
    out = rearrange(coeffs, "n h w k c -> n h w (k c)")
    out = rearrange(out, "n h w (c p1 p2) -> n (h p1 w p2) c", p1=4, p2=4)
    return out, coeffs.permute(0, 3, 4, 1, 2)


def inverse_wavelet_tokens(
    tokens: torch.Tensor, idwt: HaarIDWT, dwt: HaarDWT | None = None
) -> torch.Tensor:
    """Wavelet tokens (N, L, C) -> raster tokens (N, L, C); exact inverse of `wavelet_tokens`
    (one matmul per window when `dwt` is given, else the official conv path)."""
    side = int(round(tokens.shape[1] ** 0.5))
    if dwt is None:
        fmap = packet_reconstruct(tokens_to_bands(tokens, side), idwt)
        return rearrange(fmap, "n c h w -> n (h w) c")
    _, synthesis = _cached_matrices(dwt, idwt, tokens.dtype)
    c = tokens.shape[-1]
    coeffs = rearrange(tokens, "n (h p1 w p2) c -> n h w (c p1 p2)", p1=4, p2=4, h=side // 4)
    coeffs = coeffs.reshape(*coeffs.shape[:3], 16, c)  # (k c) -> k, c
    win = torch.matmul(synthesis.t(), coeffs)  # (n, h, w, 16 pixels, c)
    return rearrange(win, "n h w (p1 p2) c -> n (h p1 w p2) c", p1=4, p2=4)
