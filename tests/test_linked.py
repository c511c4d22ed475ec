"""The data behind the linked views and the scan animation (app/views/linked.py, scans.py).

Every mapping the browser uses must equal the library's: scan positions the inverse of the
blocks' permutations, the token's patch and packet weights what `wavelet_tokens` does to a
one-hot input, and the traced arrays what the run record holds. On a pixel and a latent model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dimsum
from app.config import AppConfig
from app.explorer import Explorer
from app.linking import LinkedHandlers
from app.state import SessionState
from app.testing import make_checkpoint
from app.views import linked, scans
from dimsum.models.scan_orders import freq_scan_order, spatial_scan_order
from dimsum.models.wavelets import HaarDWT, HaarIDWT, packet_subbands, wavelet_tokens

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio")


def test_scan_positions_invert_the_models_orders() -> None:
    for layer in range(8):
        for perm in (spatial_scan_order(layer, 16), freq_scan_order(layer, 16)):
            pos = linked.scan_positions(perm)
            assert [int(perm[p]) for p in pos] == list(range(256))  # perm[pos[t]] == t


def test_token_patch_and_packet_weights_follow_the_wavelet_transform() -> None:
    side = 16
    geo = linked.token_geometry(side)
    weights = linked.packet_weights()
    dwt = HaarDWT()
    for t in (0, 5, 17, 100, 255):
        fmap = torch.zeros(1, 1, side, side)
        fmap[0, 0, t // side, t % side] = 1.0
        bands = packet_subbands(fmap, dwt)[0, :, 0]  # (16 subbands, 4, 4)
        nz = torch.nonzero(bands.abs().sum(0))
        assert nz.tolist() == [[geo["patch"][t] // 4, geo["patch"][t] % 4]]  # its one patch
        r, c = nz[0].tolist()
        np.testing.assert_allclose(bands[:, r, c].numpy(), weights[geo["patch_pos"][t]], atol=1e-7)
    assert np.allclose(np.abs(weights), 1 / 16)


@pytest.mark.parametrize("channels", [16, 24, 32])
def test_subband_feature_share_is_where_wavelet_tokens_put_each_subband(channels: int) -> None:
    """Feed a map whose subband k holds the value k everywhere: read each token's features."""
    dwt, idwt = HaarDWT(), HaarIDWT()
    # Build the feature map from bands labelled by subband (inverse transform), then forward.
    labels = torch.arange(16.0).view(1, 16, 1, 1, 1).expand(1, 16, channels, 1, 1) + 1
    from dimsum.models.wavelets import bands_to_tokens, inverse_wavelet_tokens

    tokens = inverse_wavelet_tokens(bands_to_tokens(labels.contiguous()), idwt)
    wt, _ = wavelet_tokens(tokens, dwt)  # (1, 16 tokens of one patch, channels)
    got = torch.stack([(wt[0].round() == k + 1).float().mean(-1) for k in range(16)])
    np.testing.assert_allclose(linked.subband_feature_share(channels), got.numpy(), atol=1e-6)


def _close(got, want) -> None:
    """Equal up to the payload's rounding (4 digits relative to the array's largest value)."""
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def _generate(ex: Explorer, steps: int = 3, images: int = 2) -> SessionState:
    session = ex.new_session()
    outs = list(
        ex.generate(session, 0, 0, steps, "euler", 2.0, images, progress=lambda *a, **k: None)
    )
    return outs[-1].session


def _check_run(ex: Explorer, session: SessionState) -> None:
    lh = LinkedHandlers(ex)
    rec = ex.run_for(session)
    model = ex.registry.get(rec.model_key).model
    side = model.config.grid_size
    reset = lh.reset(session)
    view = json.loads(reset.view)
    step, block = reset.step["value"], reset.block["value"]
    assert view["kind"] == "linked" and (view["step"], view["block"]) == (step, block)
    orders = model.scan_orders()[block]
    assert view["spatial_pos"] == linked.scan_positions(orders["spatial"])
    assert view["freq_pos"] == linked.scan_positions(orders["freq"])
    summary = rec.blocks[(step, block)]
    for name, vals in view["norms"].items():
        _close(vals, summary.outputs[name].norm[0].reshape(-1))
    for k in ("spatial", "freq"):  # the traced hidden-state magnitude, by scan position
        want = summary.states[f"{k}_state"][0]
        assert want.shape == (side * side,) and np.all(want > 0)
        _close(view["state"][k], want)
    for k in range(16):
        _close(view["bands"]["meanabs"][k], summary.freq_input.meanabs_l2[0, k].reshape(-1))
    assert view["image"]["px"] == rec.images.shape[1]
    assert view["image"]["token_px"] * side == rec.images.shape[1]
    anim = json.loads(reset.animation)
    assert anim["kind"] == "scan" and len(anim["layers"]) == model.config.depth
    for entry, o in zip(anim["layers"], model.scan_orders(), strict=True):
        assert entry["spatial"] == o["spatial"].tolist() and entry["freq"] == o["freq"].tolist()
        if entry["layer"] in rec.traced_blocks:
            st = rec.blocks[(step, entry["layer"])].states["spatial_state"][0]
            _close(entry["state"]["spatial"], st)
    # Another image: another view, from the same record (no network run).
    other = json.loads(lh.linked_view(session, step, block, 1))
    assert other["norms"] != view["norms"]


def test_linked_data_of_a_pixel_run(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "m", "emoji-XS")
    ex = Explorer(AppConfig(checkpoint=str(ckpt), threads=1))
    lh = LinkedHandlers(ex)
    before = ex.new_session()
    assert json.loads(lh.reset(before).view)["kind"] == "empty"
    anim = json.loads(lh.scan_animation(before, 2, None, None))
    assert anim["layer"] == 2 and all(e["state"] is None for e in anim["layers"])
    _check_run(ex, _generate(ex))


@pytest.mark.slow
def test_linked_data_of_a_latent_run(tmp_path: Path) -> None:
    from dimsum.standins import write_vae_standin
    from dimsum.vae import SD_VAE_CONFIG

    cfg = dimsum.get_preset("emoji-XS").replace(
        in_channels=4, space="latent", class_names=None, name="latent-XS"
    )
    ckpt = make_checkpoint(tmp_path / "m", cfg)
    small = {**SD_VAE_CONFIG, "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1}
    vae = write_vae_standin(tmp_path / "vae", small)
    ex = Explorer(AppConfig(checkpoint=str(ckpt), vae=str(vae), threads=1))
    assert ex.registry.get(ex.default_key).config.space == "latent"
    session = _generate(ex, steps=2, images=2)
    assert ex.run_for(session).images.shape[1:] == (256, 256, 3)
    _check_run(ex, session)  # tokens are 16x16-pixel patches of the 256 image


def test_animation_payload_without_a_run_has_every_layer() -> None:
    model = dimsum.build_model("emoji-XS")
    p = scans.animation_payload(model, 1)
    assert [e["cycle"] for e in p["layers"]] == [0, 1, 2, 3]
    assert p["layers"][3]["attn_after"] and not p["layers"][0]["attn_after"]
    assert "<" not in linked.to_json({"x": "</script>"})
