"""Named outputs: a handler's result and the components it updates, paired by field name.

Handlers in explorer.py return small dataclasses (app/results.py: `ModelOutputs`,
`GenerateOutputs`, ...). The UI builds an instance of the same dataclass holding a component in
each field: its *shape*. `components(shape)` gives an event's outputs (in field order, which is
the HTTP API's output order) and `named(handler, shape)` turns each result into gradio's
`{component: value}`, so no wiring depends on list positions. Nested dataclasses and lists of
components are flattened.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from typing import Any

import gradio as gr


def components(shape: Any) -> list[gr.components.Component]:
    """The components of a shape in field order: the event's `outputs`."""
    if is_dataclass(shape):
        return [c for f in fields(shape) for c in components(getattr(shape, f.name))]
    if isinstance(shape, list):
        return [c for item in shape for c in components(item)]
    return [shape]


def pair(shape: Any, result: Any) -> dict[Any, Any]:
    """{component: value} for a result of the shape's type (checked: a mismatch is a bug)."""
    if is_dataclass(shape):
        if type(result) is not type(shape):
            raise TypeError(f"expected {type(shape).__name__}, got {type(result).__name__}")
        pairs: dict[Any, Any] = {}
        for f in fields(shape):
            pairs.update(pair(getattr(shape, f.name), getattr(result, f.name)))
        return pairs
    if isinstance(shape, list):
        if len(result) != len(shape):
            raise ValueError(f"expected {len(shape)} values, got {len(result)}")
        pairs = {}
        for item, value in zip(shape, result, strict=True):
            pairs.update(pair(item, value))
        return pairs
    return {shape: result}


def named(handler: Callable[..., Any], shape: Any) -> Callable[..., Any]:
    """`handler` with each result (or each yielded result) turned into {component: value}.

    functools.wraps keeps the handler's signature visible to gradio, which reads it for the
    API's parameter names and to inject gr.Request / gr.Progress.
    """
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Iterator[dict[Any, Any]]:
            for result in handler(*args, **kwargs):
                yield pair(shape, result)

        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> dict[Any, Any]:
        return pair(shape, handler(*args, **kwargs))

    return call


def only(handler: Callable[..., Any], keep: list[gr.components.Component]) -> Callable[..., Any]:
    """A `named` handler restricted to the components `keep` (an event listing fewer outputs:
    the page then leaves the others alone instead of marking each one pending and done)."""
    wanted = set(keep)

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> dict[Any, Any]:
        return {c: v for c, v in handler(*args, **kwargs).items() if c in wanted}

    return call
