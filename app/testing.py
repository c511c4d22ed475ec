"""Helpers for the app's tests and benchmark: a small random checkpoint and a local server.

    ckpt = make_checkpoint(tmp_dir, "emoji-XS")
    server = start_server(AppConfig(checkpoint=str(ckpt)))   # 127.0.0.1, a free port
    Client(server.url) ...
    server.close()

`shared_server()` starts one server per process and reuses it across test modules (pytest has
no session fixture across modules without a conftest, which belongs to another owner).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import dimsum  # noqa: E402
from dimsum.config import DiMSUMConfig  # noqa: E402

from .config import (  # noqa: E402
    DEFAULT_ABLATION_CHECKPOINTS,
    DEFAULT_ABLATION_CURVES,
    AppConfig,
)
from .models import random_demo_model  # noqa: E402


def make_checkpoint(
    folder: str | Path, preset: str | DiMSUMConfig = "emoji-XS", seed: int = 0
) -> Path:
    """Save `random_demo_model(preset, seed)` as a checkpoint folder."""
    folder = Path(folder)
    dimsum.save_pretrained(random_demo_model(preset, seed), folder)
    return folder


# Debian's Chromium (never a downloaded browser), as the browser tests and benchmarks drive it
CHROMIUM = os.environ.get("DIMSUM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    demo: object
    explorer: object
    folders: list[Path] = field(default_factory=list)

    def close(self) -> None:
        try:
            self.demo.close()  # type: ignore[attr-defined]
        finally:
            for f in self.folders:
                shutil.rmtree(f, ignore_errors=True)


def start_server(config: AppConfig, folders: list[Path] | None = None) -> Server:
    """Launch the app in this process (background threads) on 127.0.0.1 and a free port."""
    from .app import build_demo, launch_kwargs

    config.server_name = "127.0.0.1"
    config.server_port = free_port()
    demo = build_demo(config)
    kwargs = launch_kwargs(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    explorer = getattr(demo, "dimsum_explorer", None)
    return Server(url=url, demo=demo, explorer=explorer, folders=list(folders or []))


_SHARED: Server | None = None


def shared_server() -> Server:
    """One server per test process: emoji-XS random checkpoint + two ablation variants and a
    curves file, so every tab has content."""
    global _SHARED
    if _SHARED is None:
        root = Path(tempfile.mkdtemp(prefix="dimsum-app-test-"))
        # DIMSUM_APP_TEST_CHECKPOINT: use a real model instead (e.g. for screenshots).
        real = os.environ.get("DIMSUM_APP_TEST_CHECKPOINT")
        # A recommended temperature other than 1, so tests can tell "the model's" from "1".
        main = dimsum.get_preset("emoji-XS").replace(sampling_temperature=0.9)
        ckpt = real or make_checkpoint(root / "model", main)
        if real and DEFAULT_ABLATION_CURVES.is_file() and DEFAULT_ABLATION_CHECKPOINTS.is_dir():
            # Screenshots of a real model show the measured ablation, never the example curves.
            ablation, curves = DEFAULT_ABLATION_CHECKPOINTS, DEFAULT_ABLATION_CURVES
        else:
            ablation, curves = _example_ablation(root)
        config = AppConfig(
            checkpoint=str(ckpt),
            ablation_checkpoints=ablation,
            ablation_curves=curves,
            threads=int(os.environ.get("DIMSUM_TEST_THREADS", "1")),
            queue_size=64,
        )
        _SHARED = start_server(config, folders=[root])
        atexit.register(_SHARED.close)
    return _SHARED


def _example_ablation(root: Path) -> tuple[Path, Path]:
    """Two random-weight ablation variants and example curves (tests without a real model)."""
    ablation = root / "ablation"
    make_checkpoint(ablation / "dimsum", "emoji-XS", seed=1)
    make_checkpoint(
        ablation / "spatial-only",
        DiMSUMConfig.from_dict(
            {
                **dimsum.get_preset("emoji-XS").to_dict(),
                "block_type": "spatial",
                "name": "spatial-only",
            }
        ),
        seed=2,
    )
    curves = root / "curves.json"
    curves.write_text(example_curves())
    return ablation, curves


def example_curves() -> str:
    """A small curves.json in the documented format (for tests and screenshots)."""
    import json
    import math

    steps = [0, 1000, 2000, 3000, 4000]
    variants = {}
    for k, (name, params) in enumerate(
        (("dimsum", 3977484), ("spatial-only", 3950000), ("attention", 3990000))
    ):
        variants[name] = {
            "params": params,
            "eval_steps": steps,
            "fd_emoji": [60 / (1 + s / 900) + 4 * k for s in steps],
            "precision": [0.2 + 0.5 * (1 - math.exp(-s / 1500)) - 0.03 * k for s in steps],
            "recall": [0.1 + 0.4 * (1 - math.exp(-s / 2000)) - 0.02 * k for s in steps],
            "accuracy": [0.11 + 0.7 * (1 - math.exp(-s / 1200)) - 0.05 * k for s in steps],
            "loss_steps": list(range(0, 4001, 250)),
            "loss": [0.5 * math.exp(-i / 6) + 0.2 + 0.01 * k for i in range(17)],
        }
    return json.dumps(
        {
            "variants": variants,
            "hardware": "example numbers for tests (not measured)",
            "note": "synthetic",
        }
    )
