"""The repository runs unchanged as a Hugging Face Space, ZeroGPU included.

Static checks of the contract (front matter, requirements, import order), then the app imported
the way a ZeroGPU Space imports it, with a stand-in `spaces` package that records what was
decorated (tests/standins/spaces).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
ZEROGPU_PYTHONS = {"3.10.13", "3.12.12"}
ZEROGPU_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must start with the Spaces YAML front matter"
    block = text.split("---\n", 2)[1]
    return {
        k.strip(): v.strip().strip('"')
        for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)
    }


def test_front_matter_names_a_zerogpu_python_and_the_app_file() -> None:
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["python_version"] in ZEROGPU_PYTHONS
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["sdk_version"] in (ROOT / "requirements.txt").read_text()  # one gradio


def test_requirements_give_the_space_a_zerogpu_torch() -> None:
    major_minor = ".".join(front_matter()["python_version"].split(".")[:2])
    env = {"python_version": major_minor, "python_full_version": front_matter()["python_version"]}
    torch_pins = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if req.name == "torch" and (req.marker is None or req.marker.evaluate(env)):
            torch_pins.append(req)
    assert len(torch_pins) == 1, torch_pins
    versions = {str(s.version) for s in torch_pins[0].specifier if s.operator == "=="}
    assert versions and versions <= ZEROGPU_TORCH, torch_pins[0]


def test_app_file_imports_spaces_before_anything_that_imports_torch() -> None:
    tree = ast.parse((ROOT / "app" / "app.py").read_text())
    order = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            order += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            order.append((node.lineno, node.module))
    order.sort()
    names = [name.split(".")[0] for _, name in order]
    assert "spaces" in names
    first_heavy = min(names.index(n) for n in ("torch", "gradio", "dimsum", "app") if n in names)
    assert names.index("spaces") < first_heavy, names


PROBE = """
import json, sys
import app.app as space  # what Spaces runs: the app file, at import
import spaces
from app.sampling import Request
ex = space.demo.dimsum_explorer
gpu = [d for d in spaces.DECORATED]
req = Request([0] * 4, [0, 1, 2, 3], 4.0, 20, "heun", [], [])
print(json.dumps({
    "after_torch": spaces.IMPORTED_AFTER_TORCH,
    "decorated": sorted(d["name"] for d in gpu),
    "durations": {d["name"]: d["duration"] if isinstance(d["duration"], int)
                  else d["duration"](ex.source, ex.default_key, req) for d in gpu},
    "default": ex.default_key,
    "loaded": sorted(k for k in ex.registry.sources if ex.registry.loaded(k)),
    "sources": sorted(ex.registry.sources),
    "problems": ex.registry.problems,
}))
"""


@pytest.fixture(scope="module")
def zerogpu_import() -> dict:
    env = dict(os.environ)
    env.update(
        SPACE_ID="test/dimsum-explorer",
        HF_HUB_OFFLINE="1",  # the hub is unreachable here: the released model must fail calmly
        DIMSUM_DEVICE="cpu",  # the stand-in cannot attach a GPU; everything else is ZeroGPU
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "standins"), str(ROOT)]),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_zerogpu_import_decorates_the_gpu_work_with_a_request_sized_lease(
    zerogpu_import: dict,
) -> None:
    assert not zerogpu_import["after_torch"]
    decorated = ["gpu_compare", "gpu_decode", "gpu_generate", "gpu_stream"]
    assert zerogpu_import["decorated"] == decorated
    durations = zerogpu_import["durations"]
    assert durations["gpu_decode"] == 30  # one VAE decode
    for name in ("gpu_compare", "gpu_generate", "gpu_stream"):  # a callable of the request
        assert isinstance(durations[name], int) and 15 <= durations[name] <= 300


def test_zerogpu_import_loads_every_local_model_at_start(zerogpu_import: dict) -> None:
    local = [k for k in zerogpu_import["sources"] if not k.startswith("hub:")]
    assert set(local) <= set(zerogpu_import["loaded"])
    # Offline, the released model stays listed with one calm reason; the embedded one serves.
    assert zerogpu_import["default"] == "embedded"
    released = "hub:haopt/dimsum-L2-imagenet256"
    assert released in zerogpu_import["sources"]
    assert "hf download" in zerogpu_import["problems"][released]
