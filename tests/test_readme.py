"""The README's snippet runs as pasted and its CLI lines are valid commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dimsum.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_library_snippet_runs_as_pasted(tmp_path: Path) -> None:
    snippet = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints")  # run from a clone's root
    snippet = snippet.replace("num_steps=20", "num_steps=2")  # the same calls, quicker
    proc = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "emoji.png").is_file()


CLI_LINES = [
    line.strip() for line in README.splitlines() if line.strip().startswith("dimsum ")
] + re.findall(r"`(dimsum [^`]+)`", README)


@pytest.mark.parametrize("line", sorted(set(CLI_LINES)))
def test_cli_lines_parse(line: str) -> None:
    args = shlex.split(line.split("#")[0])[1:]
    build_parser().parse_args(args)  # argparse exits (SystemExit) on an unknown flag


def test_readme_shows_cli_lines() -> None:
    assert len(set(CLI_LINES)) >= 5
