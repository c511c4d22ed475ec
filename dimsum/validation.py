"""Argument checks with messages that name the argument, the value and the allowed range.

Used by the Python API, the CLI and the app, so a bad input gives the same clear error everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SAMPLERS = ("dopri5", "heun", "euler")
PATHS = ("gvp", "linear")
SCHEDULES = ("uniform", "karras")  # step times of the fixed-step samplers
MAX_SEED = 2**63 - 1


class InputError(ValueError):
    """A user-supplied value is out of range or of the wrong type."""


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer in [lo, hi] (bools and non-integral floats are rejected)."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]") from None
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]") from None
    if not lo <= value <= hi:
        raise InputError(f"{name}={value}: must be in [{lo}, {hi}]")
    return value


def check_float(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite float in [lo, hi]."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name}={value!r}: must be a number in [{lo}, {hi}]")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: must be a number in [{lo}, {hi}]") from None
    if not math.isfinite(f):
        raise InputError(f"{name}={value!r}: must be a finite number in [{lo}, {hi}]")
    if not lo <= f <= hi:
        raise InputError(f"{name}={f}: must be in [{lo}, {hi}]")
    return f


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise InputError(f"{name}={value!r}: must be one of {list(choices)}")
    return value.lower()


def network_evaluations(num_steps: int, method: str, guidance_scale: float) -> int:
    """Network evaluations of a fixed-step run (Heun: 2 a step; guidance: 2 rows a sample)."""
    return num_steps * (2 if method == "heun" else 1) * (2 if guidance_scale != 1 else 1)


@dataclass(frozen=True)
class Limits:
    """A server's per-request quota (the app's); the library checks only types and ranges."""

    max_images: int = 64
    max_steps: int = 1000
    max_cfg: float = 20.0
    # images x network evaluations x tokens: bounds the work of one request
    max_work: float = 64 * 1000 * 2 * 1024

    def check_work(
        self, num_images: int, num_steps: int, method: str, guidance_scale: float, tokens: int
    ) -> None:
        """InputError when a fixed-step request exceeds `max_work` (dopri5 chooses its steps)."""
        nfe = network_evaluations(num_steps, method, guidance_scale)
        if method != "dopri5" and num_images * nfe * tokens > self.max_work:
            raise InputError(
                f"request too large: {num_images} images x {nfe} evaluations x {tokens} tokens "
                f"exceeds the limit {self.max_work:.0f}; use fewer images or steps"
            )


def resolve_classes(
    classes: Iterable[Any] | Any, num_classes: int, class_names: Sequence[str] | None = None
) -> list[int]:
    """Class ids (ints, numeric strings or class names) -> validated ints in [0, num_classes)."""
    if isinstance(classes, (int, str)) or not isinstance(classes, Iterable):
        classes = [classes]
    out = []
    lowered = {n.lower(): i for i, n in enumerate(class_names or [])}
    for c in classes:
        if isinstance(c, str) and c.strip().lower() in lowered:
            out.append(lowered[c.strip().lower()])
            continue
        try:
            out.append(check_int("class", c, 0, num_classes - 1))
        except InputError:
            names = f" or a name in {list(class_names)}" if class_names else ""
            raise InputError(
                f"class={c!r}: must be an integer in [0, {num_classes - 1}]{names}"
            ) from None
    if not out:
        raise InputError("classes: at least one class is required")
    return out
