"""The area above the tabs: model and sampling controls (left), live preview and results (right)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from dimsum.config import MAX_TEMPERATURE

from .. import text
from ..components import RawDropdown, RawRadio, RawSlider, RawTextbox
from ..explorer import (
    DEFAULTS,
    GUIDANCE_INFO,
    NO_GUIDANCE_INFO,
    SAMPLER_CHOICES,
    SCHEDULE_CHOICES,
    Explorer,
)
from ..results import ModelOutputs


@dataclass(frozen=True)
class ModelPicker:
    model: RawDropdown
    custom: RawTextbox | None  # None unless the config allows other checkpoints
    custom_btn: gr.Button | None
    info: gr.Markdown
    class_label: RawDropdown


@dataclass(frozen=True)
class SamplingControls:
    seed: RawTextbox
    dice: gr.Button
    steps: RawSlider
    sampler: RawRadio
    schedule: RawRadio
    guidance: RawSlider
    temperature: RawSlider
    images: RawSlider
    generate_btn: gr.Button
    stop_btn: gr.Button
    # hidden: the page's number for the run a click starts or stops (see Explorer.request_stop)
    run_number: gr.Textbox


@dataclass(frozen=True)
class SharePanel:
    settings_json: gr.Code
    share_link: gr.Textbox
    share_query: gr.Textbox  # hidden: the query string the page turns into share_link
    settings_in: RawTextbox
    load_btn: gr.Button
    png_in: gr.File


@dataclass(frozen=True)
class Results:
    live: gr.Image
    gallery: gr.Gallery
    status: gr.Markdown
    files: gr.File


@dataclass(frozen=True)
class GeneratePanel:
    picker: ModelPicker
    sampling: SamplingControls
    share: SharePanel
    results: Results


def build(explorer: Explorer, first: ModelOutputs) -> GeneratePanel:
    """Lay out the controls and results; `first` holds the default model's initial values."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            picker = _model_picker(explorer, first)
            sampling = _sampling_controls(explorer, first)
            with gr.Accordion("How sampling works", open=False):
                gr.Markdown(text.GENERATE_HELP, elem_classes="help")
            share = _share_panel()
        with gr.Column(scale=7, min_width=360):
            results = _results()
    return GeneratePanel(picker, sampling, share, results)


def _model_picker(explorer: Explorer, first: ModelOutputs) -> ModelPicker:
    custom = custom_btn = None
    with gr.Accordion("Model", open=False):
        model = RawDropdown(
            choices=explorer.registry.choices(),
            value=explorer.default_key,
            label="Model",
            interactive=True,
            elem_id="model-picker",
        )
        if explorer.config.allow_custom_models:
            with gr.Row():
                custom = RawTextbox(
                    label="Other checkpoint",
                    placeholder="folder, .safetensors/.pt file, or hub id owner/name",
                    scale=4,
                )
                custom_btn = gr.Button("Load", scale=1, min_width=80)
    info = gr.Markdown(first.info, elem_id="model-info")
    class_label = RawDropdown(
        choices=first.class_label["choices"],
        value=first.class_label["value"],
        label="Class",
        allow_custom_value=True,
        filterable=True,
    )
    return ModelPicker(model, custom, custom_btn, info, class_label)


def _sampling_controls(explorer: Explorer, first: ModelOutputs) -> SamplingControls:
    lim = explorer.config.limits
    with gr.Row(equal_height=True):
        seed = RawTextbox(
            value=DEFAULTS["seed"],
            label="Seed",
            info="image i uses seed + i",
            scale=4,
            max_length=40,
        )
        dice = gr.Button("Random seed", scale=1, min_width=90, size="sm")
    steps = RawSlider(
        1, lim.max_steps, value=DEFAULTS["steps"], step=1, label="Steps", elem_id="steps"
    )
    sampler = RawRadio(SAMPLER_CHOICES, value=DEFAULTS["sampler"], label="Sampler")
    schedule = RawRadio(
        SCHEDULE_CHOICES,
        value=DEFAULTS["schedule"],
        label="Step schedule",
        info="where Heun's and Euler's steps fall in t; dopri5 picks its own",
        elem_id="schedule",
    )
    guided = explorer.registry.get(explorer.default_key).config.uses_guidance
    guidance = RawSlider(
        0,
        min(lim.max_cfg, 10.0),
        value=DEFAULTS["guidance"],
        step=0.5,
        label="Guidance scale",
        info=GUIDANCE_INFO if guided else NO_GUIDANCE_INFO,
        interactive=guided,  # an unconditional model samples with guidance 1
        elem_id="guidance",
    )
    temperature = RawSlider(
        0,
        MAX_TEMPERATURE,
        value=first.temperature,
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
        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
        stop_btn = gr.Button("Stop", variant="stop", scale=1, min_width=70)
    run_number = gr.Textbox(
        value="", visible=False, label="Run number (set by the page for Stop; leave empty)"
    )
    return SamplingControls(
        seed,
        dice,
        steps,
        sampler,
        schedule,
        guidance,
        temperature,
        images,
        generate_btn,
        stop_btn,
        run_number,
    )


def _share_panel() -> SharePanel:
    with gr.Accordion("Share / load settings", open=False):
        gr.Markdown(text.SHARE_HELP, elem_classes="help")
        settings_json = gr.Code(
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
    return SharePanel(settings_json, share_link, share_query, settings_in, load_btn, png_in)


def _results() -> Results:
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
    return Results(live, gallery, status, files)
