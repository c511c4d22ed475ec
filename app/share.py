"""Shareable settings: the JSON that reproduces a run, URL query parameters, PNG metadata.

All three map onto the same control values. Parsing is lenient about names (aliases such as
`cfg` or `num_images`) and strict about values: anything that is not a valid value for its
control is reported and ignored, never passed on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from dimsum.config import MAX_TEMPERATURE
from dimsum.flow import SCHEDULES
from dimsum.validation import MAX_SEED, SAMPLERS, InputError, Limits

ALIASES = {
    "model": "model",
    "class": "class",
    "class_name": "class",
    "label": "class",
    "seed": "seed",
    "steps": "steps",
    "num_steps": "steps",
    "sampler": "sampler",
    "method": "sampler",
    "schedule": "schedule",
    "step_schedule": "schedule",
    "temperature": "temperature",
    "noise_temperature": "temperature",
    "guidance": "guidance",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "images": "images",
    "num_images": "images",
    "n": "images",
}
MAX_TEXT = 20_000  # characters accepted in the "load settings" box


@dataclass
class ParsedSettings:
    values: dict[str, Any] = field(default_factory=dict)  # control name -> value
    problems: list[str] = field(default_factory=list)


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


def parse_mapping(data: Mapping[str, Any], limits: Limits) -> ParsedSettings:
    """Control values from a settings mapping (our JSON, query parameters or PNG metadata)."""
    out = ParsedSettings()
    raw: dict[str, Any] = {}
    for key, value in data.items():
        name = ALIASES.get(str(key).strip().lower())
        if name and name not in raw:
            raw[name] = value
    # PNG metadata / pipeline settings: lists of classes and seeds, plus the image index.
    index = _int(data.get("index", 0), 0, 10_000) or 0
    if "class" not in raw:
        for key in ("class_names", "classes"):
            if isinstance(data.get(key), list) and data[key]:
                raw["class"] = data[key][min(index, len(data[key]) - 1)]
                break
    # The pipeline's settings (PNG metadata) record the temperature since it became an option;
    # older files were all sampled at 1, so they reproduce at 1, not at the model's current
    # recommendation. (Links and hand-written settings without one mean "the model's own".)
    if "temperature" not in raw and str(data.get("software", "")).startswith("dimsum"):
        raw["temperature"] = 1.0
    if "seed" not in raw and isinstance(data.get("seeds"), list) and data["seeds"]:
        seeds = data["seeds"]
        if "index" in data:
            raw["seed"] = seeds[min(index, len(seeds) - 1)]
            raw.setdefault("images", 1)
        else:
            raw["seed"] = seeds[0]
            raw.setdefault("images", len(seeds))

    checks = {
        "seed": lambda v: _int(v, 0, MAX_SEED),
        "steps": lambda v: _int(v, 1, limits.max_steps),
        "images": lambda v: _int(v, 1, limits.max_images),
        "guidance": lambda v: _float(v, 0.0, limits.max_cfg),
        "temperature": lambda v: _float(v, 0.0, MAX_TEMPERATURE),
        "sampler": lambda v: (
            v.strip().lower() if isinstance(v, str) and v.strip().lower() in SAMPLERS else None
        ),
        "schedule": lambda v: (
            v.strip().lower() if isinstance(v, str) and v.strip().lower() in SCHEDULES else None
        ),
        "class": lambda v: (
            v
            if isinstance(v, (str, int)) and not isinstance(v, bool) and len(str(v)) <= 200
            else None
        ),
        "model": lambda v: v if isinstance(v, str) and len(v) <= 600 else None,
    }
    for name, value in raw.items():
        ok = checks[name](value)
        if ok is None:
            out.problems.append(f"{name}={_short(value)} ignored (not a valid value)")
        else:
            out.values[name] = ok
    return out


def parse_text(text: Any, limits: Limits) -> ParsedSettings:
    """The 'load settings' box: our JSON, PNG-metadata JSON, or a query string / share link."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("settings: paste the JSON of a run (or a share link)")
    if len(text) > MAX_TEXT:
        raise InputError(f"settings: text too long ({len(text)} characters; at most {MAX_TEXT})")
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text, parse_constant=lambda c: None)  # NaN/Infinity -> invalid
        except json.JSONDecodeError as err:
            raise InputError(
                f"settings: invalid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
            ) from None
        if not isinstance(data, dict):
            raise InputError('settings: the JSON must be an object such as {"seed": 0, ...}')
    else:
        from urllib.parse import parse_qsl, urlsplit

        query = urlsplit(text).query if "?" in text else text
        data = dict(parse_qsl(query, keep_blank_values=False))
        if not data:
            raise InputError(
                "settings: not JSON and no query parameters (seed=..., steps=...) found"
            )
    parsed = parse_mapping(data, limits)
    if not parsed.values:
        raise InputError(
            "settings: nothing usable found ("
            + "; ".join(parsed.problems or ["no known keys"])
            + ")"
        )
    return parsed


def settings_json(
    model_key: str,
    model_name: str,
    class_label: str,
    seed: int,
    steps: int,
    sampler: str,
    guidance: float,
    images: int,
    schedule: str = "uniform",
    temperature: float = 1.0,
) -> str:
    """The JSON shown under the images; pasting it back reproduces the run."""
    return json.dumps(
        {
            "model": model_key,
            "model_name": model_name,
            "class": class_label,
            "seed": seed,
            "steps": steps,
            "sampler": sampler,
            "schedule": schedule,
            "guidance_scale": guidance,
            "temperature": temperature,
            "num_images": images,
        },
        indent=2,
        ensure_ascii=False,
    )


def query_string(
    model_key: str,
    default_model: str,
    class_label: str,
    seed: int,
    steps: int,
    sampler: str,
    guidance: float,
    images: int,
    schedule: str = "uniform",
    temperature: float | None = None,
) -> str:
    """The share link's query. temperature: None = the model's own (left out of the link)."""
    params = {
        "class": class_label,
        "seed": seed,
        "steps": steps,
        "sampler": sampler,
        "guidance": guidance,
        "images": images,
    }
    if schedule != "uniform":  # the default stays out, so links read as before
        params["schedule"] = schedule
    if temperature is not None:
        params["temperature"] = temperature
    if model_key != default_model:
        params = {"model": model_key, **params}
    return "?" + urlencode(params)


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
