"""The C++ kernels are compiled at an announced moment, never silently inside a first step."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimsum.ops import selective_scan_cpu as cpu


def test_a_first_build_is_announced_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setenv("DIMSUM_EXT_DIR", str(tmp_path))  # a machine that never built them
    monkeypatch.setitem(cpu._ext_state, "ok", None)
    monkeypatch.setattr(cpu, "load_cpp_extension", lambda: events.append("build") or True)
    assert cpu.prepare_cpu_kernels(events.append)
    assert events[0].startswith("dimsum: compiling the C++ CPU kernels")
    assert events[1] == "build" and "ready after" in events[2]


def test_a_built_extension_loads_without_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setenv("DIMSUM_EXT_DIR", str(tmp_path))
    cpu.cpp_build_dir().mkdir(parents=True)
    (cpu.cpp_build_dir() / "dimsum_selective_scan.so").touch()
    monkeypatch.setitem(cpu._ext_state, "ok", None)
    monkeypatch.setattr(cpu, "load_cpp_extension", lambda: events.append("load") or True)
    assert cpu.prepare_cpu_kernels(events.append)
    assert events == ["load"]


def test_a_stale_build_lock_is_removed(tmp_path: Path) -> None:
    """A killed compile leaves torch's lock file; left alone, every later start waits forever."""
    import os
    import time

    lock = tmp_path / "lock"
    lock.touch()
    cpu._remove_stale_lock(tmp_path)
    assert lock.exists()  # a build in progress (fresh lock) is left alone
    old = time.time() - 3600
    os.utime(lock, (old, old))
    cpu._remove_stale_lock(tmp_path)
    assert not lock.exists()
