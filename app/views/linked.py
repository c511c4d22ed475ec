"""Linked views: one token pointed at, highlighted everywhere; the data the page needs for it.

The browser does every hover itself (app/js/linked.js): the server sends, once per (step,
block, image), the run's small arrays as JSON, and pointing at a token moves a few highlights
without a round trip. Every mapping is computed here from the library, never re-derived:

* scan positions: the permutations the model's blocks hold (`DiMSUM.scan_orders()`);
* the token's wavelet patch and the 16 packet coefficients it contributes to, with the weight
  of its contribution: `packet_subbands` applied to one-hot feature maps;
* which features of each wavelet token hold a subband: `bands_to_tokens` of subband labels.

Arrays: token-indexed ones are in raster order (index = row * side + col), scan-indexed ones
(`state`) in scan order (index = position in the branch's sequence).
"""

from __future__ import annotations

import base64
import io
import json
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from dimsum.models import DiMSUM
from dimsum.models.scan_orders import WINDOWS_PER_SIDE, layer_scan
from dimsum.models.wavelets import SUBBANDS_L2, HaarDWT, bands_to_tokens, packet_subbands

from ..features import BRANCH_OUTPUTS
from ..state import RunRecord

NO_RUN = "Press Generate: the linked views show the last finished run."
PATCH = 4  # the 2-level Haar packet mixes the tokens of each 4x4 patch
NORM_TITLES = {
    "spatial_out": "spatial branch",
    "freq_out": "frequency branch",
    "fusion_out": "cross-attention fusion",
    "block_out": "block output",
}


@lru_cache(maxsize=1)
def packet_weights() -> np.ndarray:
    """(16 positions p = 4*row + col in a patch, 16 subbands) weight of the token at p in
    each packet coefficient of its patch (the model's own transform, /4 included)."""
    onehot = torch.eye(16).reshape(16, 1, PATCH, PATCH)
    with torch.no_grad():
        bands = packet_subbands(onehot, HaarDWT())  # (16 inputs, 16 subbands, 1, 1, 1)
    return bands.reshape(16, 16).numpy()


@lru_cache(maxsize=8)
def subband_feature_share(channels: int) -> np.ndarray:
    """(16 subbands, 16 positions p in a patch): fraction of the wavelet token's `channels`
    features that hold subband k, in the official token layout (`bands_to_tokens`)."""
    labels = (
        torch.arange(16, dtype=torch.float32).view(1, 16, 1, 1, 1).expand(1, 16, channels, 1, 1)
    )
    tokens = bands_to_tokens(labels.contiguous())[0]  # (16 positions, channels) -> subband
    share = (tokens[None] == torch.arange(16.0).view(16, 1, 1)).float().mean(-1)
    return share.numpy()


def token_geometry(side: int) -> dict[str, list[int]]:
    """Per token (raster order): its wavelet patch, its place p in the patch, its scan window."""
    rows, cols = np.divmod(np.arange(side * side), side)
    win = side // WINDOWS_PER_SIDE
    return {
        "patch": ((rows // PATCH) * (side // PATCH) + cols // PATCH).tolist(),
        "patch_pos": ((rows % PATCH) * PATCH + cols % PATCH).tolist(),
        "window": ((rows // win) * WINDOWS_PER_SIDE + cols // win).tolist(),
    }


def scan_positions(perm: torch.Tensor | np.ndarray) -> list[int]:
    """position[token] = where the token comes in the scanned sequence (inverse of perm)."""
    p = np.asarray(perm, dtype=np.int64)
    pos = np.empty_like(p)
    pos[p] = np.arange(p.size)
    return pos.tolist()


def png_data_uri(rgb: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a data: URI (no request to any server)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _r(a: np.ndarray, digits: int = 4) -> list:
    """Floats for JSON, rounded to `digits` significant-ish digits (small payloads)."""
    a = np.asarray(a, dtype=np.float64)
    scale = np.max(np.abs(a)) if a.size else 0.0
    dec = max(0, digits - int(np.floor(np.log10(scale))) - 1) if scale > 0 else 0
    return np.round(a, dec).tolist()


def to_json(payload: dict[str, Any]) -> str:
    """JSON for a gr.HTML value: no `<` (never read as a tag)."""
    return json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")


def empty(message: str) -> str:
    return to_json({"kind": "empty", "message": message})


def linked_payload(rec: RunRecord, model: DiMSUM, step: int, block: int, image: int) -> dict:
    """Everything the linked view of (step, block, image) shows, for the browser."""
    cfg = model.config
    side = cfg.grid_size
    orders = model.scan_orders()[block]
    summary = rec.blocks.get((step, block))
    if summary is None:
        raise LookupError(f"step {step}, block {block} was not traced in this run")
    norms = {
        name: _r(summary.outputs[name].norm[image].reshape(-1))
        for name in BRANCH_OUTPUTS
        if name in summary.outputs
    }
    state = {
        key: _r(summary.states[f"{key}_state"][image])
        for key in ("spatial", "freq")
        if f"{key}_state" in summary.states
    }
    fi = summary.freq_input
    has_freq = "spatial" in orders and orders["freq_name"].startswith("window")
    img = rec.images[image]
    s = layer_scan(block)
    return {
        "kind": "linked",
        "side": side,
        "windows": WINDOWS_PER_SIDE,
        "patch_size": PATCH,
        "image": {
            "src": png_data_uri(img),
            "px": int(img.shape[0]),
            "token_px": int(img.shape[0]) // side,
            "space": rec.space,
            "seed": int(rec.settings["seeds"][image]),
        },
        "step": int(step),
        "t": round(float(rec.t[step]), 4),
        "block": int(block),
        "cycle": block % 4,
        "spatial_name": s.spatial_name,
        "freq_name": s.freq_name if has_freq else None,
        "spatial_pos": scan_positions(orders["spatial"]) if "spatial" in orders else None,
        "freq_pos": scan_positions(orders["freq"]) if has_freq else None,
        **token_geometry(side),
        "norms": norms,
        "norm_titles": {k: NORM_TITLES[k] for k in norms},
        "state": state,
        "bands": {
            "names": list(SUBBANDS_L2),
            "meanabs": [_r(b.reshape(-1)) for b in fi.meanabs_l2[image]] if fi else None,
            "weights": _r(packet_weights(), 3),
            "feature_share": _r(subband_feature_share(cfg.branch_width), 3),
            "channels": cfg.branch_width,
        }
        if has_freq
        else None,
    }
