"""Training: loss goes down, exact resume, SIGKILL durability, Ctrl-C/SIGTERM saves, corrupt states,
torchrun (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dimsum.checkpoints import CheckpointError
from dimsum.train import TrainConfig, learning_rate, load_state, train

from .emoji_fake import make_fake_emoji_npz

ROOT = Path(__file__).resolve().parent.parent
TINY = {"hidden_size": 32, "depth": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_emoji_npz(tmp_path_factory.mktemp("data") / "emoji.npz")


def cfg(out: Path, data: Path, **kw) -> TrainConfig:
    base = dict(
        preset="emoji-XS",
        out=str(out),
        data=str(data),
        steps=10,
        batch_size=8,
        lr=1e-3,
        ckpt_every=5,
        log_every=5,
        ema_decay=0.99,
        model_overrides=dict(TINY),
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_training_lowers_the_loss(tmp_path: Path, data: Path) -> None:
    summary = train(cfg(tmp_path / "run", data, steps=60, batch_size=16, lr=2e-3, ckpt_every=60))
    losses = summary["losses"]
    assert len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert (tmp_path / "run" / "ema" / "model.safetensors").exists()
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 60


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_time_sampling_reaches_the_loss(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, time_sampling: str
) -> None:
    """`--time-sampling` decides the training times (it was once parsed and then ignored)."""
    import dimsum.train as train_module

    seen: list[torch.Tensor] = []
    real_loss = train_module.flow_matching_loss

    def spy(model_fn, x1, **kw):
        seen.append(kw["t"].detach().cpu())
        return real_loss(model_fn, x1, **kw)

    monkeypatch.setattr(train_module, "flow_matching_loss", spy)
    train(cfg(tmp_path / "run", data, steps=40, batch_size=64, time_sampling=time_sampling))
    t = torch.cat(seen)
    assert t.numel() == 40 * 64 and 0 < t.min() and t.max() < 1
    # U[0, 1) puts ~20% of the draws in the outer fifths; logit-normal(0, 1) puts ~2.8% there
    outer = ((t < 0.1) | (t > 0.9)).float().mean().item()
    if time_sampling == "uniform":
        assert 0.16 < outer < 0.24, outer
    else:
        assert 0.012 < outer < 0.06, outer


def test_learning_rate_warmup_constant_cooldown() -> None:
    tc = TrainConfig(steps=100, lr=1e-3, warmup=10, cooldown=20)
    lrs = [learning_rate(tc, s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4)  # warm-up: (0 + 1) / 10
    assert lrs[9] == lrs[50] == lrs[80] == pytest.approx(1e-3)  # constant phase
    assert lrs[90] == pytest.approx(1e-3 * 10 / 20)  # halfway through the cool-down
    assert lrs[99] == pytest.approx(1e-3 / 20)  # last step: one cool-down step left
    assert all(a >= b for a, b in zip(lrs[80:-1], lrs[81:], strict=True))
    with pytest.raises(ValueError, match="cooldown=200"):
        TrainConfig(steps=100, cooldown=200).validate()


def test_resume_into_a_cooldown_logs_the_decayed_lr(tmp_path: Path, data: Path) -> None:
    """A constant-LR run, resumed with a cool-down, continues and decays its LR to ~0."""
    train(cfg(tmp_path / "run", data, steps=6, ckpt_every=3, log_every=1))
    train(cfg(tmp_path / "run", data, steps=12, cooldown=6, ckpt_every=3, log_every=1))
    logged = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    lr_by_step = {r["step"]: r["lr"] for r in logged}
    assert lr_by_step[6] == pytest.approx(1e-3)
    assert lr_by_step[12] == pytest.approx(1e-3 / 6)
    assert sorted(lr_by_step) == list(range(1, 13))


def test_resume_reproduces_uninterrupted_losses(tmp_path: Path, data: Path) -> None:
    full = train(cfg(tmp_path / "a", data, steps=10))["losses"]
    train(cfg(tmp_path / "b", data, steps=5))
    resumed = train(cfg(tmp_path / "b", data, steps=10))["losses"]
    assert resumed == full[5:]
    assert load_state(tmp_path / "b" / "state.pt")["history"] == full


def test_corrupt_state_falls_back_to_previous(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "c"
    train(cfg(out, data, steps=10))  # writes state.pt (step 10) and state.prev.pt (step 5)
    raw = (out / "state.pt").read_bytes()
    (out / "state.pt").write_bytes(raw[: len(raw) // 3])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_state(out / "state.pt")
    summary = train(cfg(out, data, steps=12))
    assert "trying the previous checkpoint" in caplog.text
    assert len(summary["losses"]) == 7  # resumed from step 5
    (out / "state.pt").write_bytes(b"garbage")
    (out / "state.prev.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable training state"):
        train(cfg(out, data, steps=20))


def _cli(out: Path, data: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dimsum.cli",
        "train",
        "--preset",
        "emoji-XS",
        "--out",
        str(out),
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--ckpt-every",
        "4",
        "--log-every",
        "1",
        "--ema-decay",
        "0.99",
        "--device",
        "cpu",
        "--model-overrides",
        json.dumps(TINY),
    ]


def test_sigkill_mid_run_then_resume(tmp_path: Path, data: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref, data, 24), check=True, env=env, cwd=ROOT, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(out, data, 24), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a checkpoint exists and training went past it
        log = out / "log.jsonl"
        if (out / "state.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_state(out / "state.pt")["step"]
    assert 0 < killed_at < 24
    subprocess.run(_cli(out, data, 24), check=True, env=env, cwd=ROOT, capture_output=True)
    got = load_state(out / "state.pt")
    want = load_state(ref / "state.pt")
    assert got["step"] == 24
    assert got["history"] == want["history"]
    for k in want["ema"]:
        torch.testing.assert_close(got["ema"][k], want["ema"][k], rtol=0, atol=0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_the_current_step_and_stops(
    tmp_path: Path, data: Path, sig: signal.Signals
) -> None:
    """Ctrl-C or a scheduler's SIGTERM loses no steps: the state is saved at the step reached."""
    out = tmp_path / "run"
    # no periodic checkpoint in reach: a state.pt can only come from the signal
    cmd = [*_cli(out, data, 500), "--ckpt-every", "10000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    assert not (out / "state.pt").exists()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert f"{sig.name} received" in err.decode()
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    state = load_state(out / "state.pt")
    assert 3 <= state["step"] < 500
    assert state["step"] == logged[-1] == len(state["history"])


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_processes_gloo(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        "torchrun",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dimsum.cli",
        *_cli(out, data, 4)[3:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    state = load_state(out / "state.pt")
    assert state["step"] == 4 and len(state["history"]) == 4


def test_export_state_keeps_the_configured_heads(tmp_path: Path, data: Path) -> None:
    """`dimsum export`: EMA weights in bf16 plus the state's own config (head counts are not
    visible in weight shapes, so an inferred config would get them wrong)."""
    import dimsum
    from dimsum.cli import main

    train(cfg(tmp_path / "run", data, steps=5, model_overrides=dict(TINY, fusion_heads=2)))
    assert main(["export", str(tmp_path / "run" / "state.pt"), str(tmp_path / "out")]) == 0
    model = dimsum.load_checkpoint(tmp_path / "out")
    assert model.config.fusion_heads == 2 and model.config.hidden_size == 32
    ema = load_state(tmp_path / "run" / "state.pt")["ema"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ema[k].to(torch.bfloat16).float())
    assert model.config.sampling_temperature == 1.0
    state = str(tmp_path / "run" / "state.pt")
    assert main(["export", state, str(tmp_path / "warm"), "--sampling-temperature", "0.9"]) == 0
    assert dimsum.load_checkpoint(tmp_path / "warm").config.sampling_temperature == 0.9
    assert main(["export", state, str(tmp_path / "bad"), "--sampling-temperature", "-1"]) == 2
    assert not (tmp_path / "bad").exists()


def test_bf16_training_runs_in_bf16_and_updates_the_weights(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--bf16`: the network runs under bf16 autocast (its velocity comes out in bfloat16), the
    loss stays finite, and the steps move the weights (the optimizer works on float32 masters)."""
    import dimsum.train as train_module

    dtypes: list[torch.dtype] = []
    real_loss = train_module.flow_matching_loss

    def spy(model_fn, x1, **kw):
        def net(*a, **k):
            v = model_fn(*a, **k)
            dtypes.append(v.dtype)
            return v

        return real_loss(net, x1, **kw)

    monkeypatch.setattr(train_module, "flow_matching_loss", spy)
    out = tmp_path / "run"
    first = train(cfg(out, data, steps=2, ckpt_every=2, bf16=True))
    before = load_state(out / "state.pt")["model"]
    second = train(cfg(out, data, steps=5, ckpt_every=5, bf16=True))  # resumes at step 2
    after = load_state(out / "state.pt")["model"]
    losses = first["losses"] + second["losses"]
    assert len(losses) == 5 and all(torch.isfinite(torch.tensor(losses))), losses
    assert dtypes == [torch.bfloat16] * 5, dtypes
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    moved = [
        k for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[k])
    ]
    assert len(moved) > len(after) // 2, f"only {len(moved)} of {len(after)} tensors changed"
