from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .ci import IN_CI, REQUIRED_IN_CI

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "official_parity"
MANIFESTS = FIXTURES / "official_manifests"

# Deterministic, and the same thread count CI will have.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _skip_reason(longrepr) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_required_skip(report) -> None:
    """Under CI=true, a skip because the browser or the compiler is missing is a failure."""
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report.longrepr)
        if REQUIRED_IN_CI.search(reason):
            report.outcome = "failed"
            report.longrepr = f"CI=true: a required tool is missing, not skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_required_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_required_skip(outcome.get_result())
