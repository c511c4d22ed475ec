"""Event handlers: validation, generation, and every view, reading one run record per session.

`Explorer` holds what all sessions share (the model registry, the run store); per-session
data arrives as the `SessionState` argument and leaves as a returned value. Every handler
validates its inputs first (cheap), so a bad request never reaches the model.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

from dimsum.io import read_png_settings, save_png
from dimsum.pipeline import DiMSUMPipeline, PipelineOutput
from dimsum.settings import DEFAULTS as SAMPLING_DEFAULTS
from dimsum.settings import SamplingSettings
from dimsum.validation import MAX_SEED, SAMPLERS, InputError, check_choice, check_float, check_int

from . import share, stopping
from .config import AppConfig, on_zerogpu
from .models import (
    DEMO_KEY,
    ModelRegistry,
    ModelUnavailable,
    class_labels,
    model_parameters,
    model_summary,
    resolve_class,
)
from .results import (
    BranchesReset,
    BranchPanels,
    ControlValues,
    GenerateOutputs,
    ModelChange,
    ModelOutputs,
    ScanPanels,
    SettingsChange,
    TrajectoryFrame,
    TrajectoryReset,
    VariantComparison,
    ViewsReset,
    WaveletPanels,
    WaveletsReset,
)
from .sampling import (
    Done,
    Request,
    batches_of_four,
    evaluations,
    gpu_decode,
    gpu_generate,
    gpu_stream,
    register_pipeline_source,
)
from .state import RunExpired, RunRecord, RunStore, SessionState, build_record, plan_trace
from .views import architecture, branches, evidence, scans, trajectory, wavelets

# The controls' initial values: the library's sampling defaults, and four images.
DEFAULTS = {
    "steps": SAMPLING_DEFAULTS.steps,
    "sampler": SAMPLING_DEFAULTS.sampler,
    "guidance": SAMPLING_DEFAULTS.guidance_scale,
    "images": 4,
    "seed": str(SAMPLING_DEFAULTS.seeds[0]),
    "schedule": SAMPLING_DEFAULTS.schedule,
}
GUIDANCE_INFO = "1 = off, higher = more typical of the class"
NO_GUIDANCE_INFO = (
    "guidance does not apply to an unconditional model (no null class to contrast with): "
    "it samples with guidance 1"
)
SAMPLER_CHOICES = [
    ("Heun (2 evaluations / step)", "heun"),
    ("Euler (1 / step)", "euler"),
    ("dopri5 (adaptive, official)", "dopri5"),
]
SCHEDULE_CHOICES = [
    ("Uniform in t", "uniform"),
    ("Karras (EDM): denser near both ends", "karras"),
]


@dataclass(frozen=True)
class Generation:
    """A validated generate request, with what the UI needs to label it."""

    request: Request
    class_index: int
    class_label: str
    seed: int
    num_images: int
    records: int  # number of recorded steps: steps + 1 (0 = noise ... steps = the image)
    steps: int  # the app's step count (what the Steps control and share links say)


def _slug(text_: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text_.lower()).strip("-")[:40] or "class"


def _seed(value: Any, num_images: int) -> int:
    hi = MAX_SEED - (num_images - 1)
    if isinstance(value, str) and value.strip() == "":
        raise InputError("seed: enter a whole number (or press the dice for a random one)")
    return check_int("seed", value, 0, hi)


def dopri5_points(steps: int) -> int:
    """The library's dopri5 `num_steps` (output grid points) for the app's `steps` intervals."""
    return steps + 1


def app_steps(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings read from a PNG (the library's units) in the app's units: a dopri5 run with
    `num_steps` output points is `num_steps - 1` steps here."""
    steps = settings.get("steps")
    if settings.get("sampler") == "dopri5" and isinstance(steps, int) and steps >= 2:
        return {**settings, "steps": steps - 1}
    return settings


class Explorer:
    """Shared state of the app and all its handlers."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config)
        self.store = RunStore(config.run_memory_mb * 2**20)
        self.source = register_pipeline_source(self.registry.get)
        self.notes: list[str] = []
        self.stops = stopping.StopRequests()
        self.default_key = self.registry.default_key
        if on_zerogpu():  # ZeroGPU: every model on "cuda" at start-up, none loaded later
            self.registry.preload([k for k in self.registry.sources if k != self.default_key])
        for key in (self.default_key, self.registry.local_default_key, DEMO_KEY):
            try:
                self.registry.get(key)
                self.default_key = key
                break
            except ModelUnavailable as err:
                self.notes.append(f"⚠️ {err}")
        if self.default_key == DEMO_KEY and "embedded" in self.registry.problems:
            self.notes.append(
                "⚠️ "
                + self.registry.problems["embedded"]
                + " Showing an untrained architecture demo meanwhile."
            )
        # Draw the scan orders of the 4-layer cycle in the background (matplotlib takes ~2.5 s
        # per figure; afterwards switching layers is instant).
        model = self.registry.get(self.default_key).model
        scans.prerender(model, range(min(4, model.config.depth)))
        self.curves_error: str | None = None
        try:
            self.curves = evidence.load_curves(config.ablation_curves)
        except evidence.CurvesError as err:
            self.curves, self.curves_error = None, str(err)

    # ---- helpers ---------------------------------------------------------------------------
    def new_session(self) -> SessionState:
        return SessionState(model_key=self.default_key)

    def pipe_for(self, session: SessionState) -> DiMSUMPipeline:
        return self.registry.get(session.model_key)

    def run_for(self, session: SessionState | None) -> RunRecord:
        if not isinstance(session, SessionState):
            raise RunExpired("no run yet: press Generate first")
        return self.store.get(session.run_id)

    def validate_generation(
        self,
        pipe: DiMSUMPipeline,
        class_value: Any,
        seed: Any,
        steps: Any,
        sampler: Any,
        guidance: Any,
        images: Any,
        schedule: Any = "uniform",
        temperature: Any = None,
    ) -> Generation:
        """temperature: initial-noise scale; None = the model's recommended one."""
        lim = self.config.limits  # the server's quota; the pipeline checks types and ranges
        n = check_int("number of images", images, 1, lim.max_images)
        method = check_choice("sampler", sampler, SAMPLERS)
        schedule_ = pipe.resolve_schedule(method, schedule)
        temperature_ = pipe.resolve_temperature(temperature)
        # One step numbering for every sampler: N steps = N intervals of t, recorded at
        # steps 0..N. dopri5's `num_steps` counts output grid points, so the app asks it for
        # N + 1 (linspace(0, 1, N + 1)); its adaptive integration is the official one either way.
        app_steps = check_int(
            "steps", steps, 1, lim.max_steps - 1 if method == "dopri5" else lim.max_steps
        )
        num_steps = dopri5_points(app_steps) if method == "dopri5" else app_steps
        cfg = check_float("guidance scale", guidance, 0.0, lim.max_cfg)
        if not pipe.config.uses_guidance:  # what the pipeline runs and records (status, links)
            cfg = 1.0
        seed_ = _seed(seed, n)
        cls = resolve_class(pipe, class_value)
        seeds = [seed_ + i for i in range(n)]
        lim.check_work(n, num_steps, method, cfg, pipe.config.num_tokens)
        pipe.validate([cls], seeds, cfg, num_steps, method, "gvp")
        records = app_steps + 1
        cfg_m = pipe.config
        steps_, blocks_ = plan_trace(records, n, cfg_m.num_tokens, cfg_m.hidden_size, cfg_m.depth)
        req = Request(
            [cls] * n, seeds, cfg, num_steps, method, steps_, blocks_, schedule_, temperature_
        )
        return Generation(req, cls, class_labels(pipe)[cls], seed_, n, records, app_steps)

    def model_updates(
        self, key: str, class_value: Any = None, temperature: float | None = None
    ) -> ModelOutputs:
        """Values for everything that depends on the session's model.

        temperature: the value for the temperature slider; None = the model's recommended one
        (so switching models resets it: each trained model has its own).
        """
        pipe = self.registry.get(key)
        labels = class_labels(pipe)
        try:
            label = labels[resolve_class(pipe, class_value)] if class_value is not None else None
        except InputError:
            label = None
        if label is None:
            label = "Smileys & Emotion" if "Smileys & Emotion" in labels else labels[0]
        layers = scans.layer_choices(pipe.model)
        scan_img, scan_text = scans.render(pipe.model, 0)
        info = model_summary(pipe)
        if key == DEMO_KEY:
            info += "  \n⚠️ *Untrained weights: images will look like coloured noise; every view still shows the real architecture at work.*"
        return ModelOutputs(
            model=gr.update(choices=self.registry.choices(), value=key),
            class_label=gr.update(
                choices=labels, value=label, interactive=pipe.config.num_classes > 1
            ),
            info=info,
            scan_layer=gr.update(choices=layers, value=0),
            scan=ScanPanels(scans.strip_html(pipe.model, 0), scan_img or None, scan_text),
            diagram=architecture.diagram_svg(pipe.config),
            temperature=pipe.config.sampling_temperature if temperature is None else temperature,
        )

    def guidance_control(self, key: str, value: Any = None) -> dict[str, Any]:
        """The guidance slider for model `key`: switched off, with a line saying why, for an
        unconditional model (the pipeline samples it with guidance 1); `value` (None = left as
        it is) is the value a link or loaded settings give."""
        applies = self.registry.get(key).config.uses_guidance
        info = GUIDANCE_INFO if applies else NO_GUIDANCE_INFO
        if value is None:
            return gr.update(interactive=applies, info=info)
        return gr.update(value=value, interactive=applies, info=info)

    # ---- model and settings handlers -------------------------------------------------------
    def on_load(self, session: SessionState, request: gr.Request) -> SettingsChange:
        """Page load: prefill controls from URL query parameters (invalid ones are reported)."""
        session = session if isinstance(session, SessionState) else self.new_session()
        params = dict(request.query_params) if request is not None else {}
        parsed = (
            share.parse_mapping(params, self.config.limits) if params else share.ParsedSettings()
        )
        problems = list(parsed.problems)
        key = session.model_key
        wanted = parsed.values.get("model")
        if wanted:
            if wanted in self.registry.sources:
                try:
                    self.registry.get(wanted)
                    key = wanted
                except ModelUnavailable as err:
                    problems.append(str(err))
            else:
                problems.append(f"model={wanted[:60]!r} is not offered here")
        if problems:
            gr.Warning("Some link settings were not used: " + "; ".join(problems)[:500])
        return self._settings_change(session, key, parsed.values)

    def _settings_change(
        self, session: SessionState, key: str, values: dict[str, Any]
    ) -> SettingsChange:
        """The session on model `key`, with the model's outputs and the controls set to `values`."""
        return SettingsChange(
            session=replace(session, model_key=key),
            model=self.model_updates(key, values.get("class"), values.get("temperature")),
            controls=self._control_values(key, values),
        )

    def _control_values(self, key: str, v: dict[str, Any]) -> ControlValues:
        """Each control: the parsed value, or unchanged (gr.skip()) when absent; the guidance
        slider also follows model `key` (this event's only output for it)."""
        return ControlValues(
            seed=str(v["seed"]) if "seed" in v else gr.skip(),
            steps=v.get("steps", gr.skip()),
            sampler=v.get("sampler", gr.skip()),
            guidance=self.guidance_control(key, v.get("guidance")),
            images=v.get("images", gr.skip()),
            schedule=v.get("schedule", gr.skip()),
        )

    def select_model(
        self,
        key: Any,
        session: SessionState,
        class_value: Any,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 - download bars
    ) -> ModelChange:
        """Switch the session's model. A model that cannot be loaded (offline, missing files)
        leaves the session on its current model: one warning, every control usable."""
        if not isinstance(key, str) or key not in self.registry.sources:
            raise InputError(f"model={str(key)[:60]!r}: unknown model; pick one from the list")
        source = self.registry.sources[key]
        if not self.registry.loaded(key):
            progress(
                0, desc=f"Loading {source.label}" + (f" ({source.note})" if source.note else "")
            )
        try:
            updates = self.model_updates(key, class_value)  # loads it (downloads once if online)
        except ModelUnavailable as err:
            gr.Warning(str(err))
            return ModelChange(
                session=session,
                model=self.model_updates(session.model_key),
                guidance=self.guidance_control(session.model_key),
            )
        return ModelChange(
            session=replace(session, model_key=key),
            model=updates,
            guidance=self.guidance_control(key),
        )

    @staticmethod
    def expected_wait(pipe: DiMSUMPipeline, req: Request) -> str | None:
        """'About N s on the CPU' before a run that will take long (the 460M model on a CPU),
        from the evaluation timed at load; None for quick runs."""
        per_eval = getattr(pipe, "seconds_per_evaluation", None)
        if not per_eval:
            return None
        evals = evaluations(req)
        seconds = evals * batches_of_four(req) * per_eval * (1 if req.guidance_scale != 1 else 0.5)
        if seconds < 10:
            return None
        where = "GPU" if pipe.device.type == "cuda" else "CPU"
        text = (
            f"This run takes about {seconds:.0f} s on the {where} ({evals} network evaluations "
            f"of {per_eval:.1f} s); Stop ends it at the next step."
        )
        gr.Info(text)
        return text

    def load_custom(self, spec: Any, session: SessionState, class_value: Any) -> ModelChange:
        source = self.registry.add_custom(spec)
        return self.select_model(source.key, session, class_value)

    def load_settings(self, session: SessionState, text_: Any) -> SettingsChange:
        parsed = share.parse_text(text_, self.config.limits)
        return self._apply_settings(session, parsed)

    def load_png(self, session: SessionState, file: Any) -> SettingsChange:
        path = file if isinstance(file, str) else getattr(file, "name", None)
        if not path or not Path(path).is_file():
            raise InputError("settings: upload a PNG saved by this app")
        if Path(path).stat().st_size > 20 * 2**20:
            raise InputError("settings: file too large for a PNG made by this app")
        try:
            data = read_png_settings(path)
        except (OSError, ValueError) as err:
            raise InputError(
                f"settings: cannot read settings from this file ({str(err)[:120]})"
            ) from None
        if not isinstance(data, dict):
            raise InputError("settings: the PNG's settings are not a JSON object")
        parsed = share.parse_mapping(app_steps(data), self.config.limits)
        if not parsed.values:
            raise InputError("settings: nothing usable in this PNG's settings")
        return self._apply_settings(session, parsed)

    def _apply_settings(
        self, session: SessionState, parsed: share.ParsedSettings
    ) -> SettingsChange:
        problems = list(parsed.problems)
        key = session.model_key
        wanted = parsed.values.get("model")
        if wanted and wanted != key:
            if wanted in self.registry.sources:
                try:
                    self.registry.get(wanted)
                    key = wanted
                except ModelUnavailable as err:
                    problems.append(str(err))
            elif wanted != self.registry.get(key).name:
                problems.append(
                    f"made with model {wanted[:60]!r}, which is not loaded here: using the current model"
                )
        if problems:
            gr.Warning("; ".join(problems)[:500])
        else:
            gr.Info("Settings loaded: press Generate to reproduce the run.")
        return self._settings_change(session, key, parsed.values)

    @staticmethod
    def random_seed() -> str:
        return str(secrets.randbelow(2**31))

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        session: SessionState,
        class_value: Any,
        seed: Any,
        steps: Any,
        sampler: Any,
        guidance: Any,
        images: Any,
        schedule: Any = "uniform",
        temperature: Any = None,
        run: Any = "",
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's injection idiom
    ) -> Iterator[GenerateOutputs]:
        """Stream previews while sampling, then the final images, files and settings.

        `run` is the page's number for this run; a Stop for it ends sampling at the next step
        and the last item streamed says so (app/stopping.py).
        """
        page, number = getattr(request, "session_hash", None) or "", stopping.run_number(run)
        if not isinstance(session, SessionState):
            session = self.new_session()
        key = session.model_key
        pipe = self.registry.get(key)
        gen = self.validate_generation(
            pipe, class_value, seed, steps, sampler, guidance, images, schedule, temperature
        )
        if self.stops.should_stop(page, number):  # Stop was pressed while it waited its turn
            yield stopping.stopped(self, session, "the start")
            return
        started = time.perf_counter()
        with self.stops.running(page, number):
            out, at = yield from self._previews(pipe, key, gen, page, number, progress)
        if out is None:  # stopped: the run is discarded
            yield stopping.stopped(self, session, at)
            return
        yield from self._finished(session, pipe, key, gen, out, started, progress)

    def _previews(
        self,
        pipe: DiMSUMPipeline,
        key: str,
        gen: Generation,
        page: str,
        number: int,
        progress: gr.Progress,
    ) -> Generator[GenerateOutputs, None, tuple[PipelineOutput | None, str]]:
        """Stream a preview per step; return the output (None when stopped) and the last step."""
        at = "the start"
        progress(0, desc=self.expected_wait(pipe, gen.request) or "Waiting for the model…")
        with closing(gpu_stream(self.source, key, gen.request)) as events:
            for event in events:
                if self.stops.should_stop(page, number):
                    return None, at  # closing the stream stops the sampler at its next step
                if isinstance(event, Done):
                    return event.output, at
                # One numbering for the progress bar and the status line: step k of N, where
                # step 0 is the noise and step N the image (as on the Trajectory slider).
                at = f"step {event.step} of {event.total - 1}"
                progress((event.step, event.total - 1), desc=f"Sampling: {at}")
                # The previous run's results are cleared (None) rather than kept with
                # gr.skip(): gradio builds a new component and its API schema for every skipped
                # output of every yield, which took ~0.25 s of the 2 cores per generation.
                yield GenerateOutputs(
                    live=trajectory.live_frame(event.xt_rgb, event.x1_rgb),
                    gallery=None,
                    files=None,
                    status=f"Sampling… {at}, t = {event.t:.2f}",
                    settings_json=None,
                    share_query=None,
                    session=gr.skip(),  # gr.State: cheap
                )
        return None, at  # the sampler ended without an output: stopped from outside

    def _finished(
        self,
        session: SessionState,
        pipe: DiMSUMPipeline,
        key: str,
        gen: Generation,
        out: PipelineOutput,
        started: float,
        progress: gr.Progress,
    ) -> Iterator[GenerateOutputs]:
        """The run's record, PNG files, status and settings: what a finished run shows."""
        progress(1.0, desc="Preparing the views…")
        record = build_record(
            out,
            model_key=key,
            class_label=gen.class_label,
            space=pipe.config.space,
            traced_steps=gen.request.trace_steps,
            traced_blocks=gen.request.trace_blocks,
        )
        record.settings.update(class_label=gen.class_label, model_key=key)
        paths = []
        for i, img in enumerate(out.images):
            name = f"dimsum_{_slug(gen.class_label)}_seed{gen.seed + i}.png"
            paths.append(str(save_png(img, record.folder / name, out.settings, index=i)))
        record.png_paths = paths
        self.store.add(record, replaces=session.run_id)
        elapsed = time.perf_counter() - started
        method_name = dict((v, k.split(" (")[0]) for k, v in SAMPLER_CHOICES)[gen.request.method]
        if gen.request.schedule != "uniform":
            method_name += f" ({gen.request.schedule} steps)"
        temp = gen.request.temperature
        temp_text = f", temperature {temp:g}" if temp != 1.0 else ""
        status = (
            f"**{gen.num_images} image{'s' if gen.num_images > 1 else ''}** of *{gen.class_label}* · "
            f"{method_name}, {gen.steps} steps, guidance {gen.request.guidance_scale:g}"
            f"{temp_text} · "
            f"{record.nfe} network evaluations · sampling {out.seconds:.2f} s, total {elapsed:.2f} s "
            f"({'GPU' if torch.cuda.is_available() else 'CPU'})"
        )
        captions = [(p, f"seed {s}") for p, s in zip(paths, gen.request.seeds, strict=True)]
        last = record.num_steps - 1
        final = trajectory.live_frame(record.previews_xt[last], record.previews_x1[last])
        sampling = SamplingSettings(
            model=key,
            classes=[gen.class_label],
            seeds=gen.request.seeds,
            steps=gen.steps,  # the app's count: steps 0..N for every sampler
            sampler=gen.request.method,
            schedule=gen.request.schedule,
            guidance_scale=gen.request.guidance_scale,
            temperature=temp,
        )
        settings_text = share.settings_json(sampling)
        # A link leaves out the server's default model and the model's own temperature.
        query = share.query_string(
            replace(
                sampling,
                model=None if key == self.default_key else key,
                temperature=None if temp == pipe.config.sampling_temperature else temp,
            )
        )
        record.share = (settings_text, query)  # Stop shows them again with this run's images
        yield GenerateOutputs(
            live=final,
            gallery=captions,
            files=paths,
            status=status,
            settings_json=settings_text,
            share_query=query,
            session=replace(session, run_id=record.run_id),
        )
        # The images are on the page now; reduce the traced features for the views (the
        # `refresh_views` event that follows this one reads them).
        _ = record.blocks

    # ---- views -------------------------------------------------------------------------------
    def refresh_views(self, session: SessionState) -> ViewsReset:
        """After a run: reset every view's controls to the new run and draw the defaults."""
        rec = self.run_for(session)
        last = rec.num_steps - 1
        images = [(f"image {i + 1} (seed {s})", i) for i, s in enumerate(rec.settings["seeds"])]
        blocks = [(f"block {b}", b) for b in rec.traced_blocks]
        steps = [(f"step {s} (t = {rec.t[s]:.2f})", s) for s in rec.traced_steps]
        mid_block = rec.traced_blocks[len(rec.traced_blocks) // 2]
        branch_step = rec.traced_steps[len(rec.traced_steps) // 2]
        return ViewsReset(
            trajectory=TrajectoryReset(
                step=gr.update(maximum=last, value=last),
                frame=self.trajectory_view(session, last),
                plot=trajectory.curves_figure(rec),
                export_file=gr.update(value=None, visible=False),
            ),
            wavelets=WaveletsReset(
                step=gr.update(maximum=last, value=last),
                block=gr.update(choices=blocks, value=mid_block),
                image=gr.update(choices=images, value=0),
                source=gr.update(value="final"),
                panels=self.wavelet_view(session, "final", last, mid_block, 0, "haar", "meanabs"),
            ),
            branches=BranchesReset(
                step=gr.update(choices=steps, value=branch_step),
                block=gr.update(choices=blocks, value=mid_block),
                image=gr.update(choices=images, value=0),
                panels=self.branches_view(session, branch_step, mid_block, 0),
                show=gr.update(value="norm"),
            ),
        )

    def _step(self, rec: RunRecord, step: Any) -> int:
        return check_int("step", step, 0, rec.num_steps - 1)

    def _image(self, rec: RunRecord, image: Any) -> int:
        return check_int("image", image, 0, rec.num_images - 1)

    def _block(self, rec: RunRecord, block: Any) -> int:
        b = check_int("block", block, 0, 10_000)
        if b not in rec.traced_blocks:
            raise InputError(
                f"block={b}: not traced in this run; traced blocks: {rec.traced_blocks}"
            )
        return b

    def trajectory_view(self, session: SessionState, step: Any) -> TrajectoryFrame:
        rec = self.run_for(session)
        s = self._step(rec, step)
        if self.decodes_previews(rec):
            decode = partial(gpu_decode, self.source, rec.model_key)
            path = trajectory.decoded_frame(rec, s, decode)
            note = " (x̂₁ decoded by the VAE, at the nearest stored step)"
            return TrajectoryFrame(path, trajectory.caption(rec, s) + note)
        return TrajectoryFrame(trajectory.frame_path(rec, s), trajectory.caption(rec, s))

    def decodes_previews(self, rec: RunRecord) -> bool:
        """Scrubbed steps of a latent run show x̂₁ through the VAE where a decode is quick (a
        GPU, or --vae-previews always); elsewhere the cheap linear latent->RGB map."""
        if rec.space != "latent" or self.config.vae_previews == "never":
            return False
        if not self.registry.loaded(rec.model_key):
            return False
        pipe = self.registry.get(rec.model_key)
        return pipe.vae is not None and (
            self.config.vae_previews == "always" or pipe.device.type == "cuda"
        )

    def trajectory_plot(self, session: SessionState) -> Any:
        return trajectory.curves_figure(self.run_for(session))

    def export_gif(self, session: SessionState) -> str:
        return trajectory.export_gif(self.run_for(session))

    def export_npz(self, session: SessionState) -> str:
        return trajectory.export_npz(self.run_for(session))

    def wavelet_view(
        self,
        session: SessionState,
        source: Any,
        step: Any,
        block: Any,
        image: Any,
        wave: Any,
        mode: Any,
    ) -> WaveletPanels:
        rec = self.run_for(session)
        src = check_choice("source", source, tuple(wavelets.SOURCES))
        s = self._step(rec, step)
        b = self._block(rec, block)
        i = self._image(rec, image)
        w = wavelets.check_wave(wave)
        m = check_choice("display", mode, tuple(wavelets.FREQ_MODES))
        return WaveletPanels(*wavelets.render(rec, src, s, b, i, w, m))

    def branches_view(
        self, session: SessionState, step: Any, block: Any, image: Any, show: Any = "norm"
    ) -> BranchPanels:
        """show: "norm" (feature strength per token, the default) or "pca"."""
        rec = self.run_for(session)
        s = self._step(rec, step)
        b = self._block(rec, block)
        i = self._image(rec, image)
        m = check_choice("show", show, tuple(branches.MAPS))
        paths, fig, caption = branches.render(rec, s, b, i, m)
        return BranchPanels(list(paths), fig, caption)

    def scan_view(self, session: SessionState, layer: Any) -> ScanPanels:
        pipe = self.pipe_for(session)
        lay = check_int("layer", layer, 0, pipe.config.depth - 1)
        img, desc = scans.render(pipe.model, lay)
        return ScanPanels(scans.strip_html(pipe.model, lay), img or None, desc)

    # ---- evidence ----------------------------------------------------------------------------
    def compare_variants(
        self,
        class_value: Any,
        seed: Any,
        steps: Any,
        sampler: Any,
        guidance: Any,
        schedule: Any = "uniform",
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> VariantComparison:
        """The same seed and class from every ablation variant, one image each."""
        keys = [k for k in self.registry.sources if k.startswith("ablation:")]
        if not keys:
            raise InputError("no ablation variants are installed (checkpoints/ablation/<variant>/)")
        results: dict[str, np.ndarray] = {}
        lines = []
        for j, key in enumerate(keys):
            progress((j, len(keys)), desc=f"Variant {key.split(':', 1)[1]}")
            pipe = self.registry.get(key)
            gen = self.validate_generation(
                pipe, class_value, seed, steps, sampler, guidance, 1, schedule
            )
            start = time.perf_counter()
            out = gpu_generate(self.source, key, gen.request)
            name = key.split(":", 1)[1]
            results[name] = out.array
            lines.append(
                f"| {name} | {model_parameters(pipe.model)} | {time.perf_counter() - start:.2f} s |"
            )
        gallery = [(arr[0], name) for name, arr in results.items()]
        table = "| variant | parameters | time |\n| --- | --- | --- |\n" + "\n".join(lines)
        return VariantComparison(gallery, evidence.spectra_figure(results), table)
