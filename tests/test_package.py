"""The package is what the README's first command installs: importable anywhere, a CLI."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_dimsum_is_the_cli(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dimsum", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "sample" in proc.stdout and "train" in proc.stdout
