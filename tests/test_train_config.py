"""Every TrainConfig field is a `dimsum train` flag, and each flag's value reaches TrainConfig.

The flag of a field is spelled here independently of the derivation in dimsum.cli
(`batch_size` -> `--batch-size`): a field the parser leaves out fails to parse.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest

import dimsum.train
from dimsum.cli import build_parser, main, train_config_from_args
from dimsum.train import TrainConfig

FIELDS = dataclasses.fields(TrainConfig)
HINTS = typing.get_type_hints(TrainConfig)

# The flags the README and checkpoints/README.md use: their names and defaults must not change.
DOCUMENTED = {
    "--preset": "emoji-S",
    "--out": "runs/emoji-S",
    "--steps": 20000,
    "--batch-size": 256,
    "--lr": 1e-4,
    "--warmup": 0,
    "--cooldown": 0,
    "--ema-decay": 0.9999,
    "--label-dropout": 0.15,
    "--grad-clip": 2.0,
    "--seed": 0,
    "--ckpt-every": 1000,
    "--log-every": 50,
    "--eval-every": 0,
    "--eval-samples": 450,
    "--max-minutes": None,
    "--device": None,
    "--balance": 1.0,
    "--time-sampling": "uniform",
    "--bf16": False,
}


def parse(*argv: str) -> TrainConfig:
    return train_config_from_args(build_parser().parse_args(["train", *argv]))


def other_value(f: dataclasses.Field) -> tuple[list[str], object]:
    """(the flag's argv, the value TrainConfig should then hold), the value unlike the default."""
    flag = "--" + f.name.replace("_", "-")
    kind = HINTS[f.name]
    if type(None) in typing.get_args(kind):  # X | None -> X
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        return [flag], True
    if kind is dict or typing.get_origin(kind) is dict:
        return [flag, '{"depth": 3}'], {"depth": 3}
    if "choices" in f.metadata:
        value = next(c for c in f.metadata["choices"] if c != f.default)
        return [flag, value], value
    if kind is int:
        value = (f.default or 0) + 7
        return [flag, str(value)], value
    if kind is float:
        value = 0.375 if f.default != 0.375 else 0.25
        return [flag, str(value)], value
    assert kind is str, f"{f.name}: add a case for {kind}"
    return [flag, f"value-of-{f.name}"], f"value-of-{f.name}"


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_each_field_is_a_flag_whose_value_reaches_train_config(f: dataclasses.Field) -> None:
    argv, want = other_value(f)
    tc = parse(*argv)
    assert getattr(tc, f.name) == want != getattr(TrainConfig(), f.name)
    others = {g.name for g in FIELDS} - {f.name}
    assert {n: getattr(tc, n) for n in others} == {n: getattr(TrainConfig(), n) for n in others}


def test_no_flags_give_the_default_config() -> None:
    assert parse() == TrainConfig()


@pytest.mark.parametrize(("flag", "default"), DOCUMENTED.items())
def test_documented_flags_keep_their_names_and_defaults(flag: str, default: object) -> None:
    assert getattr(parse(), flag[2:].replace("-", "_")) == default


def test_no_balance_means_balance_zero_and_excludes_balance() -> None:
    assert parse("--no-balance").balance == 0.0
    with pytest.raises(SystemExit):
        parse("--balance", "0.5", "--no-balance")


def test_model_overrides_must_be_a_json_object() -> None:
    with pytest.raises(SystemExit):
        parse("--model-overrides", "[1, 2]")


def test_dimsum_train_passes_the_parsed_config_to_train(monkeypatch, tmp_path) -> None:
    seen: list[TrainConfig] = []
    monkeypatch.setattr(dimsum.train, "train", lambda tc: seen.append(tc) or {"losses": []})
    assert (
        main(["train", "--out", str(tmp_path), "--weight-decay", "0.01", "--path", "linear"]) == 0
    )
    assert seen == [TrainConfig(out=str(tmp_path), weight_decay=0.01, path="linear")]
