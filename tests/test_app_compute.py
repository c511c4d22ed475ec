"""The app's compute thread keeps its torch threads; other threads stay single-threaded;
scan figures are pre-drawn by a background process; gradio's queue polls less often."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import dimsum
from app.sampling import configure_compute, run_on_compute_thread
from app.views import scans
from dimsum.pipeline import DiMSUMPipeline


def _fresh_thread_count() -> int:
    out: list[int] = []

    def probe() -> None:
        torch.zeros(1 << 20).add_(1)  # a parallel op: the thread adopts the process-wide count
        out.append(torch.get_num_threads())

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out[0]


def test_compute_thread_keeps_its_threads_through_a_forward_pass() -> None:
    before = torch.get_num_threads()
    try:
        pipe = DiMSUMPipeline(dimsum.build_model("emoji-XS"))
        configure_compute(2)

        def job() -> int:
            pipe([0, 1], [0, 1], num_steps=2, method="euler")  # libtorch ops and the C++ scan
            return torch.get_num_threads()

        # Each shared library copies the process-wide count into a thread on its first
        # parallel op there; without set_thread_count this came back as 1.
        assert run_on_compute_thread(job).result() == 2
        assert _fresh_thread_count() == 1  # gradio's workers never start OpenMP teams
        assert torch.get_num_threads() == 1
        configure_compute(1)
        assert run_on_compute_thread(torch.get_num_threads).result() == 1
    finally:
        configure_compute(None)
        torch.set_num_threads(before)


def test_compute_thread_reports_errors_to_the_caller() -> None:
    def boom() -> None:
        raise ValueError("from the compute thread")

    with pytest.raises(ValueError, match="from the compute thread"):
        run_on_compute_thread(boom).result()
    assert run_on_compute_thread(lambda: 41 + 1).result() == 42  # still serving


def test_scan_figures_are_predrawn_by_a_background_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scans, "_scan_folder", lambda: tmp_path)
    scans._render.cache_clear()
    model = dimsum.build_model("emoji-XS")  # tiny; the scan permutations are real data
    scans.prerender(model, range(2), niceness=0).join(timeout=180)
    drawn = sorted(tmp_path.glob("scan_*.png"))
    assert len(drawn) == 2 and not list(tmp_path.glob("*.part.png"))
    args = scans._layer_args(model, 1)
    assert args is not None
    # render() now returns the process's file instead of drawing it again.
    mtime = {p: p.stat().st_mtime_ns for p in drawn}
    assert scans._render(*args, folder=tmp_path) in map(str, drawn)
    assert {p: p.stat().st_mtime_ns for p in drawn} == mtime
    scans._render.cache_clear()


def test_queue_polls_every_10_ms(tmp_path: Path) -> None:
    from app.app import build_demo
    from app.config import parse_args
    from app.testing import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "ckpt", "emoji-XS")
    demo = build_demo(parse_args(["--checkpoint", str(ckpt), "--threads", "1"]))
    # A private gradio attribute (no public setting): this fails loudly if gradio renames it.
    assert demo._queue.sleep_when_free == 0.01
    assert demo._queue.progress_update_sleep_when_free == 0.05


def test_a_forked_child_gets_its_own_compute_thread() -> None:
    """ZeroGPU runs GPU functions in a forked process: the parent's executor has no thread there."""
    import multiprocessing

    run_on_compute_thread(lambda: None).result()  # the parent's thread exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_in_child, ()) == 42


def _in_child() -> int:
    return run_on_compute_thread(lambda: 42).result(timeout=60)
