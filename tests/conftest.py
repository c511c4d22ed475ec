from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "official_parity"
MANIFESTS = FIXTURES / "official_manifests"

# Deterministic, and the same thread count CI will have.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
