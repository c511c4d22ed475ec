"""Input components that hand the raw value to the handler, which validates it itself.

Gradio's own input checks either give good messages (out of range) or crash with a generic
"error" on a wrong type (a string sent to a slider through the API). Passing values through
unchanged lets `dimsum.validation` give the same clear message for every bad input. The
frontend renders them exactly like the standard components (`is_template`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import gradio.component_meta as _component_meta

# Gradio writes a .pyi stub next to the source of every component class it sees; for these
# thin subclasses that would be a stray generated file (and fails on read-only deployments).
_write_stub = _component_meta.create_or_modify_pyi
_component_meta.create_or_modify_pyi = lambda *args, **kwargs: None


class RawSlider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class RawRadio(gr.Radio):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class RawDropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class RawCheckboxGroup(gr.CheckboxGroup):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


class RawTextbox(gr.Textbox):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


_component_meta.create_or_modify_pyi = _write_stub
