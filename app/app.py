"""DiMSUM explorer — generate images with DiMSUM and see how it works.

    python app/app.py                         # the embedded emoji model (checkpoints/)
    python app/app.py --checkpoint DIR        # any checkpoint (or DIMSUM_CHECKPOINT=DIR)
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860 python app/app.py

This file is the Hugging Face Spaces `app_file`. It makes `dimsum` (and the `app` package)
importable by itself, because Spaces runs it as a script and ignores pyproject.toml, and it
sets the offline/privacy environment before gradio is imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:  # ZeroGPU: `spaces` patches torch's CUDA start-up, so it must come before any torch import
    import spaces  # noqa: F401
except ImportError:  # not on Hugging Face Spaces (the package is optional everywhere else)
    pass

# Must come before any gradio / huggingface_hub import: no analytics pings, and no hub
# requests unless the app is explicitly online (Spaces, --online or DIMSUM_ONLINE=1).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path[:1]:
    # Run as a script, sys.path[0] is app/, where `import app` would find this file rather
    # than the package; the repository root must come first.
    sys.path.insert(0, str(_ROOT))
_online = (
    "--online" in sys.argv
    or os.environ.get("DIMSUM_ONLINE", "").lower() in ("1", "true", "yes")
    or bool(os.environ.get("SPACE_ID"))
)
if not _online:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

import logging  # noqa: E402

import gradio as gr  # noqa: E402

from app.config import AppConfig, parse_args  # noqa: E402
from app.explorer import Explorer  # noqa: E402
from app.sampling import configure_compute  # noqa: E402
from app.theme import CSS, make_theme  # noqa: E402
from app.ui import build_ui  # noqa: E402
from dimsum.ops.selective_scan_cpu import prepare_cpu_kernels  # noqa: E402
from dimsum.runtime import keep_freed_memory  # noqa: E402


def build_demo(config: AppConfig) -> gr.Blocks:
    """The queued Blocks app for a config (tests and benchmarks call this directly)."""
    configure_compute(config.threads)
    if config.device == "cpu":  # compile now (first start), before the page serves any click
        prepare_cpu_kernels(logging.getLogger("app").warning)
    explorer = Explorer(config)
    demo = build_ui(explorer)
    demo.dimsum_explorer = explorer  # type: ignore[attr-defined] - for tests and benchmarks
    # Bounded queue: when full, new visitors get gradio's "This application is currently busy"
    # message instead of waiting forever; views run with a default concurrency of 4.
    demo.queue(max_size=config.queue_size, default_concurrency_limit=4)
    calm_queue_polling(demo)
    return demo


def calm_queue_polling(
    demo: gr.Blocks, job_poll_s: float = 0.01, progress_poll_s: float = 0.05
) -> None:
    """Poll gradio's queue less often (it has no public setting for this).

    On Linux gradio's queue loop wakes every 1 ms (and its progress loop every 10 ms) to look
    for work, so the event-loop thread takes the GIL ~1,100 times a second, idle or not. On the
    2-core CPU that cost ~1 s of CPU per generation and slowed the compute thread, whose small
    model is mostly Python dispatch. 10 ms (gradio's Windows value is 50 ms) adds at most 10 ms
    before a job starts.
    """
    queue = getattr(demo, "_queue", None)
    for name, value in (
        ("sleep_when_free", job_poll_s),
        ("progress_update_sleep_when_free", progress_poll_s),
    ):
        if queue is None or not hasattr(queue, name):
            logging.getLogger(__name__).warning(
                "gradio's queue has no %r any more: its polling interval stays gradio's", name
            )
            continue
        setattr(queue, name, value)


def launch_kwargs(config: AppConfig) -> dict:
    """launch() arguments. Host/port stay None unless given, so gradio reads
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself."""
    return dict(
        server_name=config.server_name,
        server_port=config.server_port,
        share=False,
        theme=make_theme(),
        css=CSS,
        show_error=False,  # our handlers raise gr.Error with clean messages; never tracebacks
        footer_links=["api", "settings"],
        max_file_size="20mb",
        state_session_capacity=2000,
        ssr_mode=False,  # no Node server: the page is served by Python only
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = parse_args(argv)
    keep_freed_memory()  # ~8% faster CPU sampling: no page faults on every forward
    build_demo(config).launch(**launch_kwargs(config))


# On Hugging Face Spaces the models are loaded (and moved to "cuda") at import, at module
# level, as ZeroGPU requires: GPU leases then only run sampling (app/sampling.py, @spaces.GPU).
demo: gr.Blocks | None = None
if os.environ.get("SPACE_ID"):
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    keep_freed_memory()
    demo = build_demo(parse_args([]))


if __name__ == "__main__":
    if demo is not None:
        demo.launch(**launch_kwargs(parse_args([])))
    else:
        main()
