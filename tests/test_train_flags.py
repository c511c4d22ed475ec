"""Every `dimsum train` flag reaches TrainConfig: each option of the parser, given a value other
than its default, changes the matching TrainConfig field to that value (and nothing else), and
no flags give TrainConfig's own defaults. Written against the parser and the dataclass
generically, so it holds whether the parser is spelled out or derived from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from dimsum import cli
from dimsum.train import TrainConfig

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Flags whose value lands in a field of another name, or in another form.
SPECIAL = {
    "no_balance": ([], "balance", 0.0),
    "model_overrides": (
        ['{"depth": 3, "mlp_ratio": 2.0}'],
        "model_overrides",
        {"depth": 3, "mlp_ratio": 2.0},
    ),
}


def train_actions() -> list[argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices["train"]._actions if a.option_strings and a.dest != "help"]


def other_value(action: argparse.Action) -> tuple[list[str], object]:
    """(command-line values, parsed value) different from the default."""
    if action.choices:
        pick = next(c for c in action.choices if c != action.default)
        return [str(pick)], pick
    if action.type is int:
        v = (action.default or 4) + 3
        return [str(v)], v
    if action.type is float:
        v = action.default / 2 if action.default else 0.25
        return [repr(v)], v
    v = f"{action.default or 'value'}-{action.dest}"
    return [v], v


def _captured(monkeypatch, argv: list[str]) -> TrainConfig:
    import dimsum.train

    seen: list[TrainConfig] = []
    monkeypatch.setattr(dimsum.train, "train", lambda tc: seen.append(tc) or {"losses": []})
    assert cli.main(["train", *argv]) == 0
    assert len(seen) == 1
    return seen[0]


def test_no_flags_give_the_dataclass_defaults(monkeypatch) -> None:
    assert _captured(monkeypatch, []) == TrainConfig()


@pytest.mark.parametrize("action", train_actions(), ids=lambda a: a.option_strings[-1])
def test_flag_reaches_train_config(action: argparse.Action, monkeypatch) -> None:
    flag = action.option_strings[-1]
    if action.dest in SPECIAL:
        values, field, want = SPECIAL[action.dest]
    elif isinstance(action, argparse._StoreTrueAction):
        values, field, want = [], action.dest, True
    else:
        values, want = other_value(action)
        field = action.dest
    assert field in FIELDS, f"{flag} has no TrainConfig field {field!r}"
    tc = _captured(monkeypatch, [flag, *values])
    assert getattr(tc, field) == want, (
        f"{flag} {values}: TrainConfig.{field} = {getattr(tc, field)!r}"
    )
    assert getattr(TrainConfig(), field) != want, "the test value must differ from the default"
    changed = {f for f in FIELDS if getattr(tc, f) != getattr(TrainConfig(), f)}
    assert changed == {field}, f"{flag} changed {sorted(changed)}"


def test_every_train_config_field_has_a_flag() -> None:
    reached = {a.dest for a in train_actions()} | {"balance"}
    assert set(FIELDS) <= reached, sorted(set(FIELDS) - reached)
