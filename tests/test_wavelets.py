"""Haar wavelet tokens against PyWavelets / pytorch-wavelets; exact inverses; token layout."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from dimsum.models.wavelets import (
    HaarDWT,
    HaarIDWT,
    bands_to_tokens,
    inverse_wavelet_tokens,
    packet_subbands,
    tokens_to_bands,
    wavelet_tokens,
)


def test_level1_matches_pywavelets() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = HaarDWT().double()(x)  # (N, 4C, 4, 4) as [LL | LH | HL | HH]
    bands = out.view(2, 4, 3, 4, 4)
    for n in range(2):
        for c in range(3):
            ca, (ch, cv, cd) = pywt.dwt2(x[n, c].numpy(), "haar")
            for k, ref in enumerate([ca, ch, cv, cd]):
                np.testing.assert_allclose(
                    bands[n, k, c].numpy(), ref, atol=1e-6
                )  # filters are float32, as in the official buffers


def test_level1_matches_pytorch_wavelets() -> None:
    from pytorch_wavelets import DWTForward

    x = torch.randn(2, 3, 8, 8)
    yl, yh = DWTForward(J=1, wave="haar", mode="zero")(x)
    bands = HaarDWT()(x).view(2, 4, 3, 4, 4)
    torch.testing.assert_close(bands[:, 0], yl)
    # pytorch-wavelets orders details (LH, HL, HH) with the same meaning as pywt (cH, cV, cD).
    for k in range(3):
        torch.testing.assert_close(bands[:, k + 1], yh[0][:, :, k], atol=1e-6, rtol=1e-5)


def test_packet_matches_pywavelets_wavelet_packet() -> None:
    """Level 2 splits all four level-1 bands; subband 4*k1 + k2, divided by 4."""
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    bands = packet_subbands(x, HaarDWT().double())  # (1, 16, 2, 4, 4)
    for c in range(2):
        ca, details = pywt.dwt2(x[0, c].numpy(), "haar")
        level1 = [ca, *details]
        for k1, b1 in enumerate(level1):
            a2, d2 = pywt.dwt2(b1, "haar")
            for k2, ref in enumerate([a2, *d2]):
                np.testing.assert_allclose(
                    bands[0, 4 * k1 + k2, c].numpy(), ref / 4, atol=1e-6
                )  # filters are float32, as in the official buffers


@pytest.mark.parametrize("side,c", [(8, 3), (16, 24), (8, 16), (16, 8)])
def test_exact_inverse(side: int, c: int) -> None:
    dwt, idwt = HaarDWT(), HaarIDWT()
    tokens = torch.randn(2, side * side, c)
    wt, bands = wavelet_tokens(tokens, dwt)
    assert wt.shape == tokens.shape and bands.shape == (2, 16, c, side // 4, side // 4)
    # Exact up to float32 rounding (the Haar filters are float32 1/sqrt(2), as the official buffers).
    torch.testing.assert_close(inverse_wavelet_tokens(wt, idwt), tokens, atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(tokens_to_bands(bands_to_tokens(bands), side), bands)


@pytest.mark.parametrize("c", [8, 16, 24])
def test_token_layout_formula(c: int) -> None:
    """Feature f of the token at window position p = 4*p1+p2 holds subband (16f+p)//c of channel (16f+p)%c."""
    side = 8
    bands = torch.randn(1, 16, c, side // 4, side // 4)
    tokens = bands_to_tokens(bands)  # (1, L, c)
    for h in range(side // 4):
        for w in range(side // 4):
            for p1 in range(4):
                for p2 in range(4):
                    tok = (h * 4 + p1) * side + (w * 4 + p2)
                    p = 4 * p1 + p2
                    for f in range(c):
                        k, ch = divmod(16 * f + p, c)
                        assert tokens[0, tok, f] == bands[0, k, ch, h, w]


def test_official_buffers_are_haar_filters() -> None:
    w = pywt.Wavelet("haar")
    lo, hi = np.array(w.dec_lo[::-1]), np.array(w.dec_hi[::-1])
    dwt = HaarDWT()
    np.testing.assert_allclose(dwt.w_lh[0, 0].numpy(), np.outer(hi, lo), atol=1e-7)
    assert HaarIDWT().filters.shape == (4, 1, 2, 2)


@pytest.mark.parametrize("side,c", [(16, 32), (8, 5)])
def test_window_matmul_path_equals_conv_path(side: int, c: int) -> None:
    """The fast path (one 16x16 matmul per 4x4 window) is the official conv path, both ways,
    values and gradients."""
    dwt, idwt = HaarDWT().double(), HaarIDWT().double()
    x = torch.randn(3, side * side, c, dtype=torch.float64, requires_grad=True)
    fast, fast_bands = wavelet_tokens(x, dwt, idwt)
    ref, ref_bands = wavelet_tokens(x, dwt)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast_bands, ref_bands, atol=1e-12, rtol=0)
    w = torch.randn_like(ref)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-12, rtol=0)
    tok = torch.randn(3, side * side, c, dtype=torch.float64)
    torch.testing.assert_close(
        inverse_wavelet_tokens(tok, idwt, dwt),
        inverse_wavelet_tokens(tok, idwt),
        atol=1e-12,
        rtol=0,
    )


def test_window_matrices_follow_loaded_buffers() -> None:
    """The cached matrices are rebuilt when a checkpoint's buffers replace the defaults."""
    dwt, idwt = HaarDWT(), HaarIDWT()
    x = torch.randn(2, 64, 4)
    before, _ = wavelet_tokens(x, dwt, idwt)
    state = {k: v * 2 for k, v in dwt.state_dict().items()}
    dwt.load_state_dict(state)
    after, _ = wavelet_tokens(x, dwt, idwt)
    torch.testing.assert_close(after, wavelet_tokens(x, dwt)[0])
    torch.testing.assert_close(after, before * 4)  # two levels, each scaled by 2
