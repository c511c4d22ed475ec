"""The explorer on a latent model in Chromium: a tiny unconditional latent DiMSUM (CelebA-HQ /
Church style: one class, no null class, 4 latent channels) with a tiny stand-in SD VAE (random
weights, the VAE's architecture with narrow blocks), so every latent path of the app runs in a
real page: VAE decoding of the images, the views on latent tokens (16x16-pixel patches of the
256-pixel image), the Interventions re-run, the linked view's hover, the scan animation, a tour
stop, and the Guidance slider switched off for an unconditional model.

One test function on one server (start-up is the cost). Same browser, launch flags and CI
strictness as tests/test_browser.py.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from dimsum.models.scan_orders import freq_scan_order, spatial_scan_order

from .ci import unavailable
from .test_browser import _tab, _wait_text, browser  # noqa: F401
from .test_browser_interventions import _gallery_count, _pixels

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio")]

try:
    from playwright import sync_api
except ImportError:
    unavailable("playwright is not installed", allow_module_level=True)

SEED = 11
STEPS = 4
IMAGES = 2

# What the selected tab shows: its visible images' src.
VISIBLE_IMGS = """() => [...document.querySelectorAll('#views img')]
  .filter((e) => e.getClientRects().length > 0).map((e) => e.getAttribute('src') || '')"""


@pytest.fixture(scope="module")
def latent_server(tmp_path_factory):
    import dimsum
    from app.config import AppConfig
    from app.testing import make_checkpoint, start_server
    from dimsum.standins import write_vae_standin
    from dimsum.vae import SD_VAE_CONFIG

    root = tmp_path_factory.mktemp("latent-app")
    cfg = dimsum.get_preset("emoji-XS").replace(
        in_channels=4,
        space="latent",
        num_classes=1,
        learn_null_class=False,
        class_names=None,
        name="latent-uncond-XS",
    )
    ckpt = make_checkpoint(root / "model", cfg)
    small = {**SD_VAE_CONFIG, "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1}
    vae = write_vae_standin(root / "vae", small)
    server = start_server(
        AppConfig(checkpoint=str(ckpt), vae=str(vae), threads=1, queue_size=16), folders=[root]
    )
    yield server
    server.close()


def _xy(page, sel: str) -> tuple[float, ...]:
    return tuple(
        float(v)
        for v in page.eval_on_selector(sel, "e => [e.getAttribute('x'), e.getAttribute('y')]")
    )


def _changed_imgs(page, before: list[str]) -> None:
    page.wait_for_function(
        "([f, b]) => { const now = (eval(f))(); return now.length === b.length && now.length > 0"
        " && now.every((s, i) => s && s !== b[i]); }",
        arg=[VISIBLE_IMGS, before],
        timeout=30_000,
    )


def test_latent_model_in_the_browser(latent_server, browser) -> None:  # noqa: F811 - fixture
    from app.explorer import GUIDANCE_INFO, NO_GUIDANCE_INFO
    from app.tour import STOPS

    server = latent_server
    origin = server.url.rstrip("/")
    pipe = server.explorer.registry.get(server.explorer.default_key)
    assert pipe.config.space == "latent" and not pipe.config.uses_guidance
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(
        f"{origin}/?seed={SEED}&steps={STEPS}&images={IMAGES}&guidance=4",
        wait_until="domcontentloaded",
    )
    page.wait_for_selector("#generate-btn", timeout=120_000)
    page.wait_for_function(
        "(s) => [...document.querySelectorAll('input, textarea')].some(i => i.value === s)",
        arg=str(SEED),
        timeout=60_000,
    )

    # Guidance does not apply to an unconditional model: the slider is off and says so.
    guidance = page.locator("#guidance input[type=number]")
    sync_api.expect(guidance).to_be_disabled()
    sync_api.expect(page.locator("#guidance input[type=range]")).to_be_disabled()
    sync_api.expect(page.locator("#guidance")).to_contain_text(NO_GUIDANCE_INFO)
    sync_api.expect(guidance).to_have_value("4")  # the link's value, shown but not used

    page.click("#generate-btn")
    _wait_text(page, "#status", "network evaluations")
    _wait_text(page, "#views", f"Step {STEPS} / {STEPS}")
    status = page.inner_text("#status")
    assert "guidance 1 ·" in status and "(unconditional)" in status, status
    gallery = _pixels(page, origin, "#gallery")
    assert len(gallery) == IMAGES and all(g.shape == (256, 256, 3) for g in gallery)  # decoded

    # Interventions: the re-run's changed images appear and differ from the originals.
    _tab(page, "Interventions")
    _gallery_count(page, "#iv-original", IMAGES, timeout=60)
    page.get_by_role("button", name="Frequency off, late (t 0.5-1)").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#iv-blocks input[type=checkbox]')].every(b => b.checked)",
        timeout=30_000,
    )
    page.click("#iv-run")
    _gallery_count(page, "#iv-changed", IMAGES)
    _gallery_count(page, "#iv-difference", IMAGES, timeout=30)
    _wait_text(page, "#iv-summary", "freq-off")
    original = _pixels(page, origin, "#iv-original")
    changed = _pixels(page, origin, "#iv-changed")
    assert [a.shape for a in changed] == [a.shape for a in original] == [(256, 256, 3)] * IMAGES
    assert any(not np.array_equal(a, b) for a, b in zip(original, changed, strict=True))

    # Linked views: pointing at a token highlights its cell, its place in both scan orders,
    # and its wavelet patch (latent tokens: a 16x16 grid, as for the pixel model).
    _tab(page, "Linked views")
    root = "#linked-view .dl-root"
    page.wait_for_selector(f"{root}[data-block] #dl-image [data-tok]", timeout=60_000)
    block, side = (
        int(page.get_attribute(root, "data-block")),
        int(page.get_attribute(root, "data-side")),
    )
    assert side == pipe.config.grid_size
    spos = {t: p for p, t in enumerate(spatial_scan_order(block, side).tolist())}
    fpos = {t: p for p, t in enumerate(freq_scan_order(block, side).tolist())}
    cs, sq = 288 / side, 14
    for t in (37, 200):
        page.locator(f'#dl-image [data-tok="{t}"]').hover()
        assert page.get_attribute(root, "data-token") == str(t)
        assert _xy(page, "#dl-image .dl-cur") == ((t % side) * cs, (t // side) * cs)
        s, f = spos[t], fpos[t]
        assert page.get_attribute(root, "data-spos") == str(s)
        assert _xy(page, "#dl-seq-spatial .dl-cur") == ((s % side) * sq, (s // side) * sq)
        assert _xy(page, "#dl-seq-freq .dl-cur") == ((f % side) * sq, (f // side) * sq)
        assert f"position {s} of" in page.inner_text("#dl-readout")

    # Scan animation: play advances the frame, pause holds it, a scrub moves the cursor to the
    # token the layer's order reads there.
    _tab(page, "Scan orders")
    anim = "#scan-animation .sa-root"
    page.wait_for_selector(f"{anim}[data-frame] #sa-grid-spatial", timeout=60_000)
    assert page.get_attribute(anim, "data-frame") == "0"
    layer = int(page.get_attribute(anim, "data-layer"))
    page.click("#sa-play")
    page.wait_for_function(
        f"() => +document.querySelector('{anim}').dataset.frame > 8", timeout=10_000
    )
    page.click("#sa-play")
    paused = page.get_attribute(anim, "data-frame")
    time.sleep(0.4)
    assert page.get_attribute(anim, "data-frame") == paused
    page.evaluate(
        "(v) => { const e = document.querySelector('#sa-scrub'); e.value = String(v);"
        " e.dispatchEvent(new Event('input', {bubbles: true})); }",
        100,
    )
    assert page.get_attribute(anim, "data-frame") == "100"
    gs = 320 / side
    for kind, order in (("spatial", spatial_scan_order), ("freq", freq_scan_order)):
        t = int(order(layer, side)[100])
        assert _xy(page, f"#sa-grid-{kind} .sa-cursor") == ((t % side) * gs, (t // side) * gs)

    # The tour: stop 1 on the trajectory, then stop 3's wavelets of the latent run's x̂₁ (the
    # VAE-decoded guess), each with the server's text and a redrawn view.
    _tab(page, "Wavelets")
    wavelets_before = page.evaluate(VISIBLE_IMGS)
    _tab(page, "Trajectory")
    trajectory_before = page.evaluate(VISIBLE_IMGS)
    page.click("#tour-start")
    _wait_text(page, "#tour-text", f"Stop 1 of {len(STOPS)}: {STOPS[0].title}", timeout=30)
    sync_api.expect(page.locator("#views button[role=tab][aria-selected=true]")).to_have_text(
        "Trajectory"
    )
    _changed_imgs(page, trajectory_before)
    _wait_text(page, "#views", f"Step 0 / {STEPS}", timeout=30)
    for k in (2, 3):
        page.click("#tour-next")
        _wait_text(page, "#tour-text", f"Stop {k} of {len(STOPS)}", timeout=30)
    sync_api.expect(page.locator("#views button[role=tab][aria-selected=true]")).to_have_text(
        "Wavelets"
    )
    text = page.inner_text("#tour-text [data-testid=markdown]")
    assert STOPS[2].title in text and re.search(r"Fine detail carries \d+\.\d% of its energy", text)
    _changed_imgs(page, wavelets_before)

    # A class-conditional model switches the slider back on.
    page.locator(".label-wrap", has_text="Model").first.click()  # open the Model accordion
    page.locator("#model-picker input").click()
    page.get_by_role("option", name="Architecture demo: emoji-XS with random weights").click()
    sync_api.expect(guidance).to_be_enabled(timeout=60_000)
    sync_api.expect(page.locator("#guidance")).to_contain_text(GUIDANCE_INFO)

    assert page.locator("#views .error").count() == 0
    assert not errors, errors
    page.close()
