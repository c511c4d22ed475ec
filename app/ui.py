"""The page: layout and event wiring. Handlers live in explorer.py, views in views/.

Every event that the API exposes has an explicit `api_name`; every handler is wrapped by
`clean_errors`. Sampling has its own concurrency group of size 1 (one model, CPU-bound); views
are light and run concurrently.
"""

from __future__ import annotations

import json

import gradio as gr

from dimsum.config import MAX_TEMPERATURE

from . import text
from .components import RawDropdown, RawRadio, RawSlider, RawTextbox
from .config import AppConfig
from .errors import clean_errors
from .explorer import DEFAULTS, SAMPLER_CHOICES, SCHEDULE_CHOICES, Explorer
from .views import branches, wavelets

SAMPLING = dict(concurrency_limit=1, concurrency_id="sampling")
VIEW = dict(
    show_progress="hidden", trigger_mode="always_last", queue=False
)  # instant, no queue round trip
TABS = ("trajectory", "wavelets", "scans", "branches", "architecture", "evidence")


def build_ui(explorer: Explorer) -> gr.Blocks:
    ex = explorer
    cfg: AppConfig = ex.config
    lim = cfg.limits
    first = ex.model_updates(ex.default_key)  # initial values of the model-dependent outputs

    def val(update: object) -> object:
        return update.get("value") if isinstance(update, dict) else update

    with gr.Blocks(title="DiMSUM explorer", delete_cache=(1800, 3600)) as demo:
        session = gr.State(ex.new_session())
        gr.Markdown(text.INTRO, elem_id="header")
        if ex.notes:
            gr.Markdown("\n\n".join(ex.notes), elem_id="startup-notes")

        with gr.Row(equal_height=False):
            # ---------------- controls ----------------
            with gr.Column(scale=4, min_width=320):
                with gr.Accordion("Model", open=False):
                    model_dd = RawDropdown(
                        choices=ex.registry.choices(),
                        value=ex.default_key,
                        label="Model",
                        interactive=True,
                    )
                    if cfg.allow_custom_models:
                        with gr.Row():
                            custom = RawTextbox(
                                label="Other checkpoint",
                                placeholder="folder, .safetensors/.pt file, or hub id owner/name",
                                scale=4,
                            )
                            custom_btn = gr.Button("Load", scale=1, min_width=80)
                model_info = gr.Markdown(val(first[2]), elem_id="model-info")
                class_dd = RawDropdown(
                    choices=first[1]["choices"],
                    value=first[1]["value"],
                    label="Class",
                    allow_custom_value=True,
                    filterable=True,
                )
                with gr.Row(equal_height=True):
                    seed = RawTextbox(
                        value=DEFAULTS["seed"],
                        label="Seed",
                        info="image i uses seed + i",
                        scale=4,
                        max_length=40,
                    )
                    dice = gr.Button("Random seed", scale=1, min_width=90, size="sm")
                steps = RawSlider(1, lim.max_steps, value=DEFAULTS["steps"], step=1, label="Steps")
                sampler = RawRadio(SAMPLER_CHOICES, value=DEFAULTS["sampler"], label="Sampler")
                schedule = RawRadio(
                    SCHEDULE_CHOICES,
                    value=DEFAULTS["schedule"],
                    label="Step schedule",
                    info="where Heun's and Euler's steps fall in t; dopri5 picks its own",
                    elem_id="schedule",
                )
                guidance = RawSlider(
                    0,
                    min(lim.max_cfg, 10.0),
                    value=DEFAULTS["guidance"],
                    step=0.5,
                    label="Guidance scale",
                    info="1 = off, higher = more typical of the class",
                )
                temperature = RawSlider(
                    0,
                    MAX_TEMPERATURE,
                    value=first[-1],
                    step=0.01,
                    label="Noise temperature",
                    info="scale of the starting noise: below 1 = cleaner, less varied; "
                    "each model starts at its recommended value",
                    elem_id="temperature",
                )
                images = RawSlider(
                    1, lim.max_images, value=DEFAULTS["images"], step=1, label="Number of images"
                )
                with gr.Row():
                    generate_btn = gr.Button(
                        "Generate", variant="primary", elem_id="generate-btn", scale=3
                    )
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, min_width=70)
                with gr.Accordion("How sampling works", open=False):
                    gr.Markdown(text.GENERATE_HELP, elem_classes="help")
                with gr.Accordion("Share / load settings", open=False):
                    gr.Markdown(text.SHARE_HELP, elem_classes="help")
                    settings_code = gr.Code(
                        value="",
                        language="json",
                        label="Settings of the last run (copy to reproduce)",
                        interactive=False,
                        lines=9,
                        buttons=["copy"],
                    )
                    share_link = gr.Textbox(
                        label="Share link",
                        interactive=False,
                        buttons=["copy"],
                        elem_id="share-link",
                    )
                    share_query = gr.Textbox(visible=False)
                    settings_in = RawTextbox(
                        label="Load settings",
                        placeholder='{"class": "Smileys & Emotion", "seed": 0, ...} or a share link',
                        lines=3,
                        max_length=20000,
                    )
                    load_btn = gr.Button("Load settings")
                    png_in = gr.File(
                        label="…or drop a PNG made by this app",
                        file_types=[".png"],
                        type="filepath",
                    )

            # ---------------- results ----------------
            with gr.Column(scale=7, min_width=360):
                live = gr.Image(
                    label="Live: x_t (top) and predicted clean image x̂₁ (bottom)",
                    format="png",
                    interactive=False,
                    elem_classes="pixelated",
                    elem_id="live-image",
                    height=300,
                    buttons=["download", "fullscreen"],
                )
                gallery = gr.Gallery(
                    label="Final images (download keeps the settings in the PNG)",
                    format="png",
                    columns=4,
                    height=320,
                    object_fit="contain",
                    elem_classes="pixelated",
                    elem_id="gallery",
                    buttons=["download", "fullscreen"],
                )
                status = gr.Markdown("Press **Generate** to sample images.", elem_id="status")
                files = gr.File(
                    label="PNG files with settings metadata",
                    file_count="multiple",
                    interactive=False,
                    height=120,
                )

        # ---------------- views ----------------
        with gr.Tabs(selected="trajectory", elem_id="views") as tabs:
            with gr.Tab("Trajectory", id="trajectory"):
                gr.Markdown(text.TRAJECTORY_HELP, elem_classes="help")
                traj_step = RawSlider(
                    0,
                    20,
                    value=20,
                    step=1,
                    label="Step (drag to scrub through the run)",
                    elem_id="traj-step",
                )
                traj_img = gr.Image(
                    label="x_t (top) and x̂₁ (bottom) at this step",
                    format="png",
                    interactive=False,
                    elem_classes="pixelated",
                    height=300,
                    elem_id="traj-frame",
                    buttons=["download", "fullscreen"],
                )
                traj_caption = gr.Markdown(elem_classes="view-caption")
                traj_plot = gr.Plot(show_label=False, label="Curves over t")
                with gr.Row():
                    gif_btn = gr.Button("Export animated GIF")
                    npz_btn = gr.Button("Export .npz (arrays)")
                export_file = gr.File(label="Export", interactive=False, visible=False)

            with gr.Tab("Wavelets", id="wavelets"):
                gr.Markdown(text.WAVELETS_HELP, elem_classes="help")
                with gr.Row():
                    wl_source = RawRadio(
                        [(v, k) for k, v in wavelets.SOURCES.items()],
                        value="final",
                        label="Source",
                        scale=3,
                    )
                    wl_image = RawDropdown([], label="Image", scale=1)
                with gr.Row():
                    wl_wave = RawDropdown(
                        list(wavelets.WAVELETS),
                        value="haar",
                        label="Wavelet family",
                        info="Haar is the model's own transform",
                        scale=1,
                    )
                    wl_step = RawSlider(
                        0, 20, value=20, step=1, label="Step", scale=2, visible=False
                    )
                    wl_block = RawDropdown([], label="Block", scale=1, visible=False)
                    wl_mode = RawRadio(
                        [(v, k) for k, v in wavelets.FREQ_MODES.items()],
                        value="meanabs",
                        label="Show",
                        scale=2,
                        visible=False,
                    )
                with gr.Row():
                    wl_l1 = gr.Image(
                        label="Level 1: 4 subbands",
                        show_label=False,
                        format="png",
                        interactive=False,
                        height=460,
                        buttons=["download", "fullscreen"],
                    )
                    wl_l2 = gr.Image(
                        label="Level 2: 16 packet subbands",
                        show_label=False,
                        format="png",
                        interactive=False,
                        height=460,
                        buttons=["download", "fullscreen"],
                    )
                wl_caption = gr.Markdown(elem_classes="view-caption")
                wl_plot = gr.Plot(show_label=False, label="Energy per subband")

            with gr.Tab("Scan orders", id="scans"):
                gr.Markdown(text.SCANS_HELP, elem_classes="help")
                layer_dd = RawDropdown(
                    first[3]["choices"], value=0, label="Layer", elem_id="scan-layer"
                )
                strip = gr.HTML(val(first[4]), elem_classes="diagram")
                scan_img = gr.Image(
                    value=val(first[5]),
                    label="Scan orders of this layer",
                    format="png",
                    interactive=False,
                    height=620,
                    show_label=False,
                    buttons=["download", "fullscreen"],
                )
                scan_text = gr.Markdown(val(first[6]), elem_id="scan-text")

            with gr.Tab("Branches", id="branches"):
                gr.Markdown(text.BRANCHES_HELP, elem_classes="help")
                with gr.Row():
                    br_step = RawDropdown([], label="Step (traced steps)")
                    br_block = RawDropdown([], label="Block")
                    br_image = RawDropdown([], label="Image")
                with gr.Row():
                    br_imgs = [
                        gr.Image(
                            label=branches.TITLES[name],
                            show_label=False,
                            format="png",
                            interactive=False,
                            height=380,
                            min_width=150,
                            buttons=["download", "fullscreen"],
                        )
                        for name in branches.BRANCH_OUTPUTS
                    ]
                br_caption = gr.Markdown(elem_classes="view-caption")
                br_plot = gr.Plot(show_label=False, label="Subband energy of each output")

            with gr.Tab("Architecture", id="architecture"):
                gr.Markdown(text.ARCHITECTURE_HELP, elem_classes="help")
                diagram = gr.HTML(val(first[7]), elem_classes="diagram")
                with gr.Row():
                    jump = {
                        name: gr.Button(f"Open {label} →", size="sm")
                        for name, label in (
                            ("trajectory", "Trajectory"),
                            ("wavelets", "Wavelets"),
                            ("scans", "Scan orders"),
                            ("branches", "Branches"),
                        )
                    }
                gr.Markdown(text.EMOJI_NOTE, elem_classes="help")

            with gr.Tab("Evidence", id="evidence"):
                gr.Markdown(text.EVIDENCE_HELP, elem_classes="help")
                if ex.curves is not None:
                    from .views import evidence

                    gr.Plot(
                        evidence.curves_figure(ex.curves),
                        show_label=False,
                        label="Training and evaluation curves",
                    )
                    gr.Markdown(evidence.curves_markdown(ex.curves))
                elif ex.curves_error:
                    gr.Markdown(f"⚠️ Ablation curves unavailable: {ex.curves_error}")
                variants = [k for k in ex.registry.sources if k.startswith("ablation:")]
                if variants:
                    gr.Markdown(
                        f"**Same seed and class with each variant** ({len(variants)} variants; uses the class, seed, steps, sampler, step schedule and guidance set above)."
                    )
                    compare_btn = gr.Button("Generate with every variant")
                    compare_gallery = gr.Gallery(
                        label="Variants",
                        format="png",
                        columns=min(len(variants), 6),
                        height=240,
                        object_fit="contain",
                        elem_classes="pixelated",
                        elem_id="compare-gallery",
                    )
                    compare_table = gr.Markdown(elem_id="compare-table")
                    compare_plot = gr.Plot(show_label=False, label="Subband energy per variant")
                if ex.curves is None and not variants:
                    gr.Markdown(text.EVIDENCE_MISSING, elem_id="evidence-missing")

        # ---------------- wiring ----------------
        model_outputs = [
            model_dd,
            class_dd,
            model_info,
            layer_dd,
            strip,
            scan_img,
            scan_text,
            diagram,
            temperature,
        ]
        controls = [seed, steps, sampler, guidance, images, schedule]
        demo.load(
            clean_errors(ex.on_load),
            inputs=[session],
            outputs=[session, *model_outputs, *controls],
            api_name="prefill",
        )
        model_dd.input(
            clean_errors(ex.select_model),
            inputs=[model_dd, session, class_dd],
            outputs=[session, *model_outputs],
            api_name="select_model",
            concurrency_id="sampling",
            concurrency_limit=1,
        )
        if cfg.allow_custom_models:
            custom_btn.click(
                clean_errors(ex.load_custom),
                inputs=[custom, session, class_dd],
                outputs=[session, *model_outputs],
                api_name="load_model",
                concurrency_id="sampling",
                concurrency_limit=1,
            )
        dice.click(ex.random_seed, outputs=[seed], api_name="random_seed", queue=False)
        sampler.change(
            lambda m: (
                gr.update(value="uniform", interactive=False)
                if m == "dopri5"
                else gr.update(interactive=True)
            ),
            inputs=[sampler],
            outputs=[schedule],
            api_visibility="private",
            queue=False,
        )

        gen_event = generate_btn.click(
            clean_errors(ex.generate),
            inputs=[
                session,
                class_dd,
                seed,
                steps,
                sampler,
                guidance,
                images,
                schedule,
                temperature,
            ],
            outputs=[live, gallery, files, status, settings_code, share_query, session],
            api_name="generate",
            scroll_to_output=False,
            show_progress_on=[live],
            # A click while the last run is still finishing (its views refresh for ~0.2 s after
            # the images appear) starts a run once that ends; gradio's default drops it silently.
            trigger_mode="always_last",
            **SAMPLING,
        )
        view_outputs = [
            traj_step, traj_img, traj_caption, traj_plot, export_file,
            wl_step, wl_block, wl_image, wl_source, wl_l1, wl_l2, wl_plot, wl_caption,
            br_step, br_block, br_image, *br_imgs, br_plot, br_caption,
        ]  # fmt: skip
        gen_event.success(
            clean_errors(ex.refresh_views),
            inputs=[session],
            outputs=view_outputs,
            api_name="refresh_views",
            show_progress="hidden",
        )
        gen_event.success(
            None,
            inputs=[share_query],
            outputs=[share_link],
            js="(q) => q ? window.location.origin + window.location.pathname + q : ''",
            api_visibility="private",
        )
        # Says what a stop leaves behind: the streamed previews had cleared the gallery, while the
        # tabs keep the last finished run (the session only moves to a run once it completes).
        stop_btn.click(
            None,
            outputs=[status],
            js=f"() => {json.dumps(text.STOPPED_STATUS)}",
            cancels=[gen_event],
            api_visibility="private",
        )

        traj_step.input(
            clean_errors(ex.trajectory_view),
            inputs=[session, traj_step],
            outputs=[traj_img, traj_caption],
            api_name="trajectory_view",
            **VIEW,
        )
        for button, handler, name in (
            (gif_btn, ex.export_gif, "export_gif"),
            (npz_btn, ex.export_npz, "export_npz"),
        ):
            button.click(
                clean_errors(handler), inputs=[session], outputs=[export_file], api_name=name
            ).success(
                lambda: gr.update(visible=True),
                outputs=[export_file],
                api_visibility="private",
                queue=False,
            )

        wl_inputs = [session, wl_source, wl_step, wl_block, wl_image, wl_wave, wl_mode]
        gr.on(
            [
                wl_source.input,
                wl_step.input,
                wl_block.input,
                wl_image.input,
                wl_wave.input,
                wl_mode.input,
            ],
            clean_errors(ex.wavelet_view),
            inputs=wl_inputs,
            outputs=[wl_l1, wl_l2, wl_plot, wl_caption],
            api_name="wavelet_view",
            **VIEW,
        )
        wl_source.change(
            lambda src: [
                gr.update(visible=src != "final"),
                gr.update(visible=src == "freq"),
                gr.update(visible=src == "freq"),
                gr.update(visible=src != "freq"),
            ],
            inputs=[wl_source],
            outputs=[wl_step, wl_block, wl_mode, wl_wave],
            api_visibility="private",
            queue=False,
        )
        gr.on(
            [br_step.input, br_block.input, br_image.input],
            clean_errors(ex.branches_view),
            inputs=[session, br_step, br_block, br_image],
            outputs=[*br_imgs, br_plot, br_caption],
            api_name="branches_view",
            **VIEW,
        )
        layer_dd.input(
            clean_errors(ex.scan_view),
            inputs=[session, layer_dd],
            outputs=[strip, scan_img, scan_text],
            api_name="scan_view",
            **VIEW,
        )

        load_btn.click(
            clean_errors(ex.load_settings),
            inputs=[session, settings_in],
            outputs=[session, *model_outputs, *controls],
            api_name="load_settings",
        )
        png_in.upload(
            clean_errors(ex.load_png),
            inputs=[session, png_in],
            outputs=[session, *model_outputs, *controls],
            api_name="load_png",
        )
        for name, button in jump.items():
            button.click(
                lambda n=name: gr.Tabs(selected=n),
                outputs=[tabs],
                api_visibility="private",
                queue=False,
            )
        if variants:
            compare_btn.click(
                clean_errors(ex.compare_variants),
                inputs=[class_dd, seed, steps, sampler, guidance, schedule],
                outputs=[compare_gallery, compare_plot, compare_table],
                api_name="compare_variants",
                **SAMPLING,
            )
    return demo
