"""Compact summaries of traced block features: what the views draw, a few KB per block.

Raw traces are large (N x L x D per tensor); the app reduces them right after sampling to

* per branch output (spatial, frequency, fusion, block): a PCA->RGB map and a per-token norm map
  on the token grid, plus the 2-level Haar packet energy spectrum (16 bands);
* the frequency branch's input: per-subband mean |coefficient| over channels (both levels),
  its first principal component as a map, and its energy spectrum.

PCA is joint over all images of the run (one basis per (step, block, tensor)), so colours are
comparable between images; component signs are fixed (largest loading positive) so colours do
not flip from step to step for no reason. All traced steps of a block are reduced in one batch
(batched eigh, one Haar pass, one hidden-state scan per branch), which keeps the post-sampling
cost small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange

from dimsum.models.wavelets import HaarIDWT
from dimsum.ops import ScanStateInputs, scan_state_magnitudes

BRANCH_OUTPUTS = ("spatial_out", "freq_out", "fusion_out", "block_out")
STATE_NAMES = ("spatial_state", "freq_state")  # dimsum.tracing.OPTIONAL_TRACE_NAMES
_IDWT = HaarIDWT()


@dataclass
class MapSummary:
    """One traced (N, L, C) tensor reduced for display."""

    pca_rgb: np.ndarray  # (N, side, side, 3) uint8
    norm: np.ndarray  # (N, side, side) float32 (per-token L2 norm)
    spectrum: np.ndarray  # (N, 16) float32, energy fraction per packet subband
    spectrum_l1: np.ndarray  # (N, 4) float32, energy fraction per level-1 subband
    explained: float  # variance fraction of the 3 principal components


@dataclass
class FreqInputSummary:
    """The frequency branch's input (the 16 Haar packet subbands) reduced for display."""

    meanabs_l1: np.ndarray  # (N, 4, side/2, side/2) float32
    meanabs_l2: np.ndarray  # (N, 16, side/4, side/4) float32
    pc1: np.ndarray  # (N, side, side) float32: feature map projected on its first PC
    spectrum: np.ndarray  # (N, 16) float32
    spectrum_l1: np.ndarray  # (N, 4) float32


@dataclass
class BlockSummary:
    outputs: dict[str, MapSummary] = field(default_factory=dict)
    freq_input: FreqInputSummary | None = None
    # "spatial_state" / "freq_state": (N, L) float32 mean |h_t| of each branch's selective
    # scan, indexed by position in the branch's scan sequence (dimsum.tracing).
    states: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        total = sum(v.nbytes for v in self.states.values())
        for m in self.outputs.values():
            total += m.pca_rgb.nbytes + m.norm.nbytes + m.spectrum.nbytes + m.spectrum_l1.nbytes
        if self.freq_input is not None:
            f = self.freq_input
            total += f.meanabs_l1.nbytes + f.meanabs_l2.nbytes + f.pc1.nbytes + f.spectrum.nbytes
        return total


def haar_level(x: torch.Tensor) -> torch.Tensor:
    """One orthonormal 2-D Haar step on the last two dims: (..., H, W) -> (..., 4, H/2, W/2)
    as [LL, LH, HL, HH] (LH: detail along columns, HL: detail along rows; the magnitudes equal
    PyWavelets' cA, cH, cV, cD — signs are irrelevant to the energies computed here)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return torch.stack([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], dim=-3) / 2


def packet_energy(fmap: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps (B, C, H, W) -> energy fraction per packet band (B, 16), level-1-major as
    `SUBBANDS_L2`, and per level-1 band (B, 4). Orthonormal transform: band energies add up to
    the energy of the map."""
    level2 = haar_level(haar_level(fmap.float()))  # (B, C, 4, 4, H/4, W/4): (k1, k2)
    e = level2.pow(2).sum(dim=(1, 4, 5), dtype=torch.float64).reshape(fmap.shape[0], 16)
    frac = e / e.sum(1, keepdim=True).clamp(min=1e-30)
    return frac.float().numpy(), frac.view(-1, 4, 4).sum(-1).float().numpy()


def band_energy(bands: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Packet subbands (B, 16, C, h, w) -> energy fractions (B, 16) and per level-1 band (B, 4)."""
    e = bands.double().pow(2).sum(dim=(2, 3, 4))
    frac = e / e.sum(1, keepdim=True).clamp(min=1e-30)
    return frac.float().numpy(), frac.view(-1, 4, 4).sum(-1).float().numpy()


def batched_pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (S, M, C) -> (centred projections on the top-k components (S, M, k), explained
    variance fraction (S,)). One covariance eigen-decomposition per batch entry."""
    xc = x - x.mean(1, keepdim=True)
    cov = xc.transpose(1, 2) @ xc / max(x.shape[1] - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending; float32 is plenty for display
    comps = evecs[..., -k:].flip(-1).float()  # (S, C, k), largest first
    # Fix signs: each component's largest-magnitude loading positive.
    idx = comps.abs().argmax(1, keepdim=True)
    sign = torch.sign(torch.gather(comps, 1, idx))
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    ev = evals.clamp(min=0)
    explained = ev[..., -k:].sum(-1) / ev.sum(-1).clamp(min=1e-30)
    proj = xc @ comps
    if comps.shape[-1] < k:  # fewer channels than components
        proj = torch.cat([proj, proj.new_zeros(*proj.shape[:-1], k - comps.shape[-1])], -1)
    return proj, explained.float()


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Scale each (batch, component) to [0, 1] by mean ± 2.5 std (robust enough, and cheap)."""
    mean = x.mean(1, keepdim=True)
    std = x.std(1, keepdim=True).clamp(min=1e-8)
    return ((x - mean) / (5 * std) + 0.5).clamp(0, 1)


def summarize_maps(stacked: torch.Tensor) -> list[MapSummary]:
    """Traced token tensors of S steps (S, N, L, C) -> one `MapSummary` per step."""
    s, n, length, c = stacked.shape
    side = int(round(length**0.5))
    x = stacked.float()
    proj, explained = batched_pca(x.reshape(s, n * length, c), 3)
    rgb = (_unit(proj) * 255).round().to(torch.uint8).view(s, n, side, side, 3).numpy()
    norm = x.norm(dim=-1).view(s, n, side, side).numpy()
    fmap = rearrange(x, "s n (h w) c -> (s n) c h w", h=side)
    spec, spec1 = packet_energy(fmap)
    spec, spec1 = spec.reshape(s, n, 16), spec1.reshape(s, n, 4)
    return [MapSummary(rgb[i], norm[i], spec[i], spec1[i], float(explained[i])) for i in range(s)]


def summarize_freq_inputs(stacked: torch.Tensor) -> list[FreqInputSummary]:
    """Traced `freq_bands` of S steps (S, N, 16, C, q, q) -> one `FreqInputSummary` per step."""
    s, n, _, c, q, _ = stacked.shape
    b = stacked.float().reshape(s * n, 16, c, q, q)
    # Level-1 bands: one inverse Haar step on each group of 4 children (x4 undoes the official
    # 1/4 factor). Channel layout of the level-2 input: (k2, k1, c), see dimsum wavelets.py.
    level2 = rearrange(b * 4, "b (k1 k2) c h w -> b (k2 k1 c) h w", k1=4, k2=4)
    level1 = rearrange(_IDWT(level2), "b (k c) h w -> b k c h w", k=4)  # (B, 4, C, 2q, 2q)
    fmap = _IDWT(rearrange(level1, "b k c h w -> b (k c) h w"))  # (B, C, 4q, 4q)
    flat = rearrange(fmap, "(s n) c h w -> s (n h w) c", s=s)
    proj, _ = batched_pca(flat, 1)
    pc1 = proj.view(s, n, 4 * q, 4 * q).numpy()
    spec, spec1 = band_energy(b)
    spec, spec1 = spec.reshape(s, n, 16), spec1.reshape(s, n, 4)
    m1 = level1.abs().mean(2).view(s, n, 4, 2 * q, 2 * q).numpy()
    m2 = b.abs().mean(2).view(s, n, 16, q, q).numpy()
    return [FreqInputSummary(m1[i], m2[i], pc1[i], spec[i], spec1[i]) for i in range(s)]


def summarize_run(
    features: dict[int, dict[int, dict[str, torch.Tensor | ScanStateInputs]]],
) -> dict[tuple[int, int], BlockSummary]:
    """The pipeline's traces {step: {block: {name: tensor}}} -> {(step, block): BlockSummary}.
    Names a block did not record (ablation blocks record fewer) are skipped. The hidden-state
    magnitudes of the scan animation are computed here, from the recorded scan inputs (sampling
    only copied them)."""
    out: dict[tuple[int, int], BlockSummary] = {}
    blocks = sorted({b for per_step in features.values() for b in per_step})
    for block in blocks:
        steps = sorted(s for s, per_step in features.items() if block in per_step)
        for s in steps:
            out[(s, block)] = BlockSummary()
        for name in BRANCH_OUTPUTS:
            have = [s for s in steps if name in features[s][block]]
            if have:
                stacked = torch.stack([features[s][block][name] for s in have])
                for s, summary in zip(have, summarize_maps(stacked), strict=True):
                    out[(s, block)].outputs[name] = summary
        for name in STATE_NAMES:  # the scans' mean |h_t|, all steps of the block at once
            have = [s for s in steps if name in features[s][block]]
            mags = scan_state_magnitudes([features[s][block][name] for s in have])
            for s, mag in zip(have, mags, strict=True):
                out[(s, block)].states[name] = mag.float().numpy()
        have = [s for s in steps if "freq_bands" in features[s][block]]
        if have:
            stacked = torch.stack([features[s][block]["freq_bands"] for s in have])
            for s, summary in zip(have, summarize_freq_inputs(stacked), strict=True):
                out[(s, block)].freq_input = summary
    return out
