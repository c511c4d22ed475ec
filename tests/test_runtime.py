"""dimsum.runtime: glibc malloc keeps freed memory, so forward passes stop page-faulting."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Page faults during 10 guided forward passes of emoji-XS (after 3 warm-up passes).
PROBE = """
import resource, sys
if sys.argv[1] == "1":
    from dimsum.runtime import keep_freed_memory
    assert keep_freed_memory()
import torch
import dimsum
torch.manual_seed(0)
model = dimsum.build_model("emoji-XS").eval()
x, t, y = torch.randn(4, 3, 32, 32), torch.rand(4), torch.randint(0, 9, (4,))
with torch.inference_mode():
    for _ in range(3):
        model.guided_velocity(x, t, y, 4.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        model.guided_velocity(x, t, y, 4.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if tuned else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DIMSUM_KEEP_FREED_MEMORY": "1"},
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_forward_passes_stop_page_faulting() -> None:
    # Measured here: ~1,700-5,000 faults per forward by default, a few hundred in all when tuned
    # (the kernel may still reclaim some retained pages, hence a ratio, not an absolute bound).
    default, tuned = _faults(False), _faults(True)
    assert tuned * 5 < default, f"page faults: default {default}, tuned {tuned}"


def test_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from dimsum.runtime import keep_freed_memory

    monkeypatch.setenv("DIMSUM_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
