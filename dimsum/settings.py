"""The settings of one sampling run: one type, one dictionary schema, every old schema read.

`SamplingSettings` is what the pipeline call, `dimsum sample` / `dimsum eval`, the app's
settings JSON, its share links and the PNG metadata carry. Its `to_dict` is the one schema
(the keys the PNG metadata has always used); `from_dict` also reads the older app JSON
(``class``, ``seed``, ``num_images``), the older links (``guidance``, ``images``, ...), and the
aliases people type (``cfg``, ``method``, ``num_steps``, ``n``).

    s = SamplingSettings(classes=(3,), seeds=(0, 1), steps=12)
    SamplingSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s   # True
    SamplingSettings.from_query(s.to_query()) == s                          # True

The sampling defaults are spelled here once: the dataclass defaults below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .config import MAX_TEMPERATURE
from .validation import MAX_SEED, PATHS, SAMPLERS, SCHEDULES, InputError

MAX_STEPS = 10_000  # the sampler's own bound (`dimsum.flow.sample_ode`)
MAX_GUIDANCE = 20.0
# A bound on the number of images a settings text may ask for (before any app quota): reading
# {"n": 1e9} must not build a list of a billion seeds.
MAX_IMAGES = 100_000
MAX_CLASS_TEXT = 200  # characters of a class name or id


@dataclass(frozen=True)
class SamplingSettings:
    """What reproduces a sampling run (one image per (class, seed) pair)."""

    model: str | None = None  # a checkpoint name, path or app model key; None: the default
    classes: tuple[int | str, ...] = (0,)  # ids or names; one class is used for every seed
    seeds: tuple[int, ...] = (0,)
    steps: int = 20
    sampler: str = "heun"  # "heun", "euler" or "dopri5"
    schedule: str = "uniform"  # step times of heun / euler: "uniform" or "karras"
    path: str = "gvp"  # the probability path the model was trained on: "gvp" or "linear"
    guidance_scale: float = 4.0  # classifier-free guidance (1: none)
    temperature: float | None = None  # initial-noise scale; None: the model's own

    def __post_init__(self) -> None:
        # Lists in, tuples stored: the settings are hashable and compare by value.
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "seeds", tuple(self.seeds))

    @property
    def num_images(self) -> int:
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """The one schema (JSON-ready); None values (the defaults they stand for) are left out."""
        d = dataclasses.asdict(self)
        d["classes"], d["seeds"] = list(self.classes), list(self.seeds)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingSettings:
        """Settings from any schema this project has written (raises InputError on a bad value)."""
        problems: list[str] = []
        values = read_fields(data, problems)
        if problems:
            raise InputError("settings: " + "; ".join(problems))
        return cls(**values)

    def to_query(self) -> str:
        """A share link's query string: `to_dict` flattened (a list: its key repeated)."""
        return "?" + urlencode(self.to_dict(), doseq=True)

    @classmethod
    def from_query(cls, query: str) -> SamplingSettings:
        """Settings from a link or its query string (old link parameters too)."""
        return cls.from_dict(query_mapping(query))

    def pipeline_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `DiMSUMPipeline.__call__` (after classes and seeds)."""
        return dict(
            guidance_scale=self.guidance_scale,
            num_steps=self.steps,
            method=self.sampler,
            path=self.path,
            schedule=self.schedule,
            temperature=self.temperature,
        )


DEFAULTS = SamplingSettings()


def query_mapping(query: str) -> dict[str, Any]:
    """A link or query string -> {key: value}; a repeated key -> the list of its values."""
    query = urlsplit(query).query if "?" in query else query
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query.lstrip("?")):
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


# ---- reading old schemas ---------------------------------------------------------------------
# Every name a setting has had, newest first (the app JSON, links and PNG metadata before
# `SamplingSettings`, and common aliases). The first name present wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "classes": ("class", "class_name", "label", "class_names", "classes"),
    "steps": ("steps", "num_steps"),
    "sampler": ("sampler", "method"),
    "schedule": ("schedule", "step_schedule"),
    "path": ("path",),
    "guidance_scale": ("guidance_scale", "guidance", "cfg"),
    "temperature": ("temperature", "noise_temperature"),
}
COUNT_KEYS = ("num_images", "images", "n")  # old schemas: first seed + a number of images


def _int(value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def _float(value: Any, lo: float, hi: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) and lo <= f <= hi else None


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        v = value.strip().lower() if isinstance(value, str) else None
        return v if v in choices else None

    return check


def _class(value: Any) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if len(str(value)) > MAX_CLASS_TEXT:
        return None
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _listed(check: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...] | None]:
    """A checker of one value -> a checker of a non-empty list (a single value: a list of one)."""

    def check_all(value: Any) -> tuple[Any, ...] | None:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or len(items) > MAX_IMAGES:
            return None
        out = tuple(check(v) for v in items)
        return None if any(v is None for v in out) else out

    return check_all


# Types and ranges of the library (an app applies its own, tighter quota on top).
CHECKS: dict[str, Callable[[Any], Any]] = {
    "model": lambda v: v if isinstance(v, str) and 0 < len(v) <= 600 else None,
    "classes": _listed(_class),
    "seeds": _listed(lambda v: _int(v, 0, MAX_SEED)),
    "steps": lambda v: _int(v, 1, MAX_STEPS),
    "sampler": _choice(SAMPLERS),
    "schedule": _choice(SCHEDULES),
    "path": _choice(PATHS),
    "guidance_scale": lambda v: _float(v, 0.0, MAX_GUIDANCE),
    "temperature": lambda v: _float(v, 0.0, MAX_TEMPERATURE),
}


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _raw_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """{field: raw value} under the first name present of each field (keys matched loosely)."""
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    raw = {}
    for name, keys in ALIASES.items():
        key = next((k for k in keys if k in lowered), None)
        if key is not None:
            raw[name] = lowered[key]
    # Seeds: the list (PNG metadata), else the old first seed + number of images.
    count_key = next((k for k in COUNT_KEYS if k in lowered), None)
    if "seeds" in lowered:
        raw["seeds"] = lowered["seeds"]
    elif "seed" in lowered or count_key:
        count = _int(lowered[count_key], 1, MAX_IMAGES) if count_key else 1
        first = _int(lowered.get("seed", 0), 0, MAX_SEED)
        if count is None or first is None:
            bad = (
                ("seed", lowered.get("seed")) if first is None else (count_key, lowered[count_key])
            )
            raw["seeds"] = _Invalid(*bad)
        else:
            raw["seeds"] = [first + i for i in range(min(count, MAX_SEED - first + 1))]
    # PNG metadata of one image of a run: that image's class and seed.
    index = _int(lowered.get("index"), 0, MAX_IMAGES)
    if index is not None:
        for f in ("classes", "seeds"):
            if isinstance(raw.get(f), list) and raw[f]:
                raw[f] = [raw[f][min(index, len(raw[f]) - 1)]]
    # The pipeline's metadata records the temperature since it became an option; files made
    # before were all sampled at 1, so they reproduce at 1, not at the model's current
    # recommendation. (Links and hand-written settings without one mean "the model's own".)
    if "temperature" not in raw and str(lowered.get("software", "")).startswith("dimsum"):
        raw["temperature"] = 1.0
    return raw


@dataclass(frozen=True)
class _Invalid:
    """An old-schema value that could not be read (reported under its own name)."""

    name: str
    value: Any


def read_fields(data: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """{field: checked value} of the fields `data` gives, in any schema; each bad value is left
    out and described in `problems` (so a caller may use the rest, as the app does)."""
    out: dict[str, Any] = {}
    for name, value in _raw_fields(data).items():
        if isinstance(value, _Invalid):
            problems.append(f"{value.name}={_short(value.value)} ignored (not a valid value)")
            continue
        ok = CHECKS[name](value)
        if ok is None:
            problems.append(f"{name}={_short(value)} ignored (not a valid value)")
        else:
            out[name] = ok
    return out
