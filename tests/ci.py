"""What CI must provide: under ``CI=true`` a missing browser or C++ compiler fails the run.

Locally such tests skip with their reason (a laptop without Chromium still runs the rest);
in CI a skip would let the run go green while proving nothing, so `unavailable` fails instead,
and `conftest.py` turns any remaining skip whose reason names one of these requirements into a
failure as well (a ``skipif`` mark, an ``importorskip``).
"""

from __future__ import annotations

import os
import re
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}

# Skip reasons that mean "CI is missing something it must install" (.ci/run installs them).
REQUIRED_IN_CI = re.compile(r"chromium|playwright|C\+\+ extension|compiler", re.IGNORECASE)


def unavailable(reason: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip locally; fail under CI=true (a requirement CI must provide is missing)."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason} (CI must provide it; see .ci/run)", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)
