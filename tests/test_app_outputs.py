"""Named outputs (app/tabs/outputs.py): handler results reach the right components by name."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest

from app.results import BranchPanels, ScanPanels, TrajectoryFrame
from app.tabs.outputs import components, named, pair


@pytest.fixture(scope="module")
def shapes():
    with gr.Blocks():
        scan = ScanPanels(gr.HTML(), gr.Image(), gr.Markdown())
        branch = BranchPanels([gr.Image(), gr.Image()], gr.Plot(), gr.Markdown())
    return scan, branch


def test_components_flatten_in_field_order(shapes) -> None:
    scan, branch = shapes
    assert components(scan) == [scan.strip, scan.image, scan.text]
    assert components(branch) == [*branch.images, branch.plot, branch.caption]


def test_pair_by_field_name(shapes) -> None:
    scan, branch = shapes
    assert pair(scan, ScanPanels("html", None, "text")) == {
        scan.strip: "html",
        scan.image: None,
        scan.text: "text",
    }
    pairs = pair(branch, BranchPanels(["a.png", "b.png"], "fig", "cap"))
    assert [pairs[c] for c in components(branch)] == ["a.png", "b.png", "fig", "cap"]


def test_pair_rejects_a_result_of_another_shape(shapes) -> None:
    scan, branch = shapes
    with pytest.raises(TypeError, match="expected ScanPanels"):
        pair(scan, TrajectoryFrame("x", "y"))
    with pytest.raises(ValueError, match="expected 2 values"):
        pair(branch, BranchPanels(["only one"], "fig", "cap"))


def test_named_keeps_signature_and_streaming(shapes) -> None:
    scan, _ = shapes

    def handler(session: object, layer: int, request: gr.Request) -> ScanPanels:
        return ScanPanels(f"strip {layer}", None, "text")

    def streamer(session: object):
        yield ScanPanels("first", None, "")
        yield ScanPanels("second", None, "")

    call = named(handler, scan)
    # gradio reads the signature for API parameter names and gr.Request injection
    assert inspect.signature(call) == inspect.signature(handler)
    assert call(None, 3, None)[scan.strip] == "strip 3"
    stream = named(streamer, scan)
    assert inspect.isgeneratorfunction(stream)
    assert [out[scan.strip] for out in stream(None)] == ["first", "second"]
