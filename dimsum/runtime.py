"""Process-level settings for fast CPU inference (opt-in: the CLI and the app call them).

glibc's malloc serves blocks above a (dynamic, 128 KB to 32 MB) threshold with fresh `mmap`s and
hands freed memory at the top of the heap back to the OS. A forward pass of a small model
allocates and frees the same few-MB activations hundreds of times, so every one of them is
page-faulted in again: measured on the 2-core CPU, 5 guided forwards of emoji-XS make 8,000-13,000
minor page faults, 115-390 with the thresholds below; 4 images x 20 Heun steps in alternating
fresh processes, 9 pairs: 5 faster by 0.24-0.65 s, 4 slower by 0.02-0.14 s, mean -0.22 s (system
time 1.4-1.9 s -> 0.6-0.7 s). jemalloc or tcmalloc (LD_PRELOAD) do the same job where installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's documented maximum on 64-bit systems
TRIM_THRESHOLD_BYTES = 512 * 2**20  # free memory kept at the top of a heap before trimming


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed blocks instead of returning them to the OS.

    Blocks up to 32 MB come from the heap, and up to 512 MB of freed memory stays mapped per
    heap, so a process's memory stays near its peak rather than shrinking between requests.
    Returns whether the settings were applied: False on other C libraries (macOS, Windows,
    musl) or when ``DIMSUM_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get("DIMSUM_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (AttributeError elsewhere): other C libraries number mallopt's parameters differently
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    log.debug("dimsum: glibc malloc keeps freed memory: %s", ok)
    return ok


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_native_half_types() -> set[str]:
    """The half-precision types ("bf16", "fp16") this CPU multiplies in hardware (AVX-512 BF16 /
    FP16 or AMX). For the others oneDNN emulates the matmuls: measured on this project's EPYC
    with the matmuls limited to AVX2 (`MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
    python benchmarks/bench_cpu_floor.py`), a bf16 DiM-L/2 evaluation took 9.1 s, fp32 2.7 s."""
    flags = cpu_flags()
    native = {"bf16": {"avx512_bf16", "amx_bf16"}, "fp16": {"avx512_fp16", "amx_fp16"}}
    return {name for name, isa in native.items() if flags & isa}
