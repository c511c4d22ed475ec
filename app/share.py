"""Shareable settings: the JSON that reproduces a run, URL query parameters, PNG metadata.

All three are one schema, `dimsum.settings.SamplingSettings.to_dict` (a link: flattened to a
query string), and all three are read by `dimsum.settings.read_fields`, which also reads the
older schemas. Here they map onto the app's controls, within this server's quota: anything
that is not a valid value for its control is reported and ignored, never passed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dimsum.settings import SamplingSettings, query_mapping, read_fields
from dimsum.validation import InputError, Limits

MAX_TEXT = 20_000  # characters accepted in the "load settings" box


@dataclass
class ParsedSettings:
    values: dict[str, Any] = field(default_factory=dict)  # control name -> value
    problems: list[str] = field(default_factory=list)


def parse_mapping(data: Mapping[str, Any], limits: Limits) -> ParsedSettings:
    """Control values from a settings mapping (our JSON, query parameters or PNG metadata)."""
    out = ParsedSettings()
    fields = read_fields(data, out.problems)
    v = out.values
    for name, control in (("model", "model"), ("steps", "steps"), ("sampler", "sampler")):
        if name in fields:
            v[control] = fields[name]
    for name in ("schedule", "temperature"):
        if name in fields:
            v[name] = fields[name]
    if "guidance_scale" in fields:
        v["guidance"] = fields["guidance_scale"]
    # The app shows one class and consecutive seeds: the first class, the first seed, the count.
    if "classes" in fields:
        v["class"] = fields["classes"][0]
    seeds = fields.get("seeds", ())
    if len(seeds) > limits.max_images:  # the seeds of a run this server would not make
        out.problems.append(
            f"images={len(seeds)} ignored (above this server's {limits.max_images})"
        )
    elif seeds:
        v["seed"], v["images"] = seeds[0], len(seeds)
    # This server's quota (the library's ranges are wider).
    for control, hi in (
        ("steps", limits.max_steps),
        ("guidance", limits.max_cfg),
    ):
        if control in v and v[control] > hi:
            out.problems.append(f"{control}={v.pop(control)} ignored (above this server's {hi:g})")
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
        data = query_mapping(text)
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


def settings_json(settings: SamplingSettings) -> str:
    """The JSON shown under the images; pasting it back reproduces the run."""
    return json.dumps(settings.to_dict(), indent=2, ensure_ascii=False)


def query_string(settings: SamplingSettings) -> str:
    """The share link's query (model None: the server's default; temperature None: the
    model's own)."""
    return settings.to_query()
