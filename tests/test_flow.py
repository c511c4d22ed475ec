"""Tests for dimsum.flow: paths, loss and ODE samplers.

The sampler tests use Gaussian data x1 ~ N(mu, s^2 I), for which everything is known in
closed form. For a path x_t = a(t) x1 + b(t) x0 with x0 ~ N(0, I) independent of x1,
x_t ~ N(a mu, V I) with V = a^2 s^2 + b^2, and the marginal (optimal) velocity is

    v*(x, t) = E[a' x1 + b' x0 | x_t = x] = a' mu + (a a' s^2 + b b') / V * (x - a mu),

since (x1, x0, x_t) are jointly Gaussian. The ODE solution started at x0 is
x_t = a mu + sqrt(V) x0 (differentiate: a' mu + V'/(2 sqrt V) x0 = v*), so the flow map is
x1 = mu + s x0, and predict_x1 returns the posterior mean E[x1 | x_t] =
mu + a s^2 / V (x - a mu). V > 0 on [0, 1] for s > 0, so nothing blows up at the ends.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torchdiffeq import odeint

try:
    import dimsum.flow as flow
except ImportError:  # dimsum/__init__.py may import unfinished modules: load the subpackage alone
    _root = Path(__file__).resolve().parents[1] / "dimsum" / "flow"
    _spec = importlib.util.spec_from_file_location(
        "_dimsum_flow_standalone", _root / "__init__.py", submodule_search_locations=[str(_root)]
    )
    flow = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = flow
    _spec.loader.exec_module(flow)

sampler_mod = sys.modules[flow.__name__ + ".sampler"]

PATHS = ("gvp", "linear")
METHODS = ("euler", "heun", "dopri5")
MU_SHAPE = (1, 2, 4, 4)
S = 0.5


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def gaussian_velocity(path, mu, s):
    """Exact marginal velocity for x1 ~ N(mu, s^2 I); see the module docstring."""

    def fn(x, t):
        a, da, b, db = flow.path_coefficients(path, flow.expand_t_like_x(t, x))
        return da * mu + (a * da * s**2 + b * db) / (a**2 * s**2 + b**2) * (x - a * mu)

    return fn


def analytic_state(path, mu, s, x0, t):
    a, _, b, _ = flow.path_coefficients(path, flow.expand_t_like_x(t, x0))
    return a * mu + torch.sqrt(a**2 * s**2 + b**2) * x0


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, *MU_SHAPE[1:], generator=g)
    mu = torch.randn(MU_SHAPE, generator=g)
    return x0, mu, mu + S * x0


def num_records(method, n):
    return n if method == "dopri5" else n + 1


def small_steps(method):
    return 9 if method == "dopri5" else 8


# --------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_interpolate_endpoints(path):
    x0, x1 = torch.randn(3, 5), torch.randn(3, 5)
    torch.testing.assert_close(flow.interpolate(path, x0, x1, torch.zeros(3)), x0)
    torch.testing.assert_close(flow.interpolate(path, x0, x1, 1.0), x1)


@pytest.mark.parametrize("path", PATHS)
def test_target_velocity_is_time_derivative(path):
    x0, x1 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.2, 0.7, 1.0], dtype=torch.float64)
    h = 1e-6
    fd = (flow.interpolate(path, x0, x1, t + h) - flow.interpolate(path, x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(flow.target_velocity(path, x0, x1, t), fd, atol=1e-8, rtol=1e-6)


def test_gvp_formulas_match_contract():
    x0, x1, t = torch.randn(5, 2), torch.randn(5, 2), torch.rand(5)
    c, s = torch.cos(math.pi * t / 2)[:, None], torch.sin(math.pi * t / 2)[:, None]
    torch.testing.assert_close(flow.interpolate("gvp", x0, x1, t), s * x1 + c * x0)
    u = math.pi / 2 * c * x1 - math.pi / 2 * s * x0
    torch.testing.assert_close(flow.target_velocity("gvp", x0, x1, t), u)
    torch.testing.assert_close(flow.target_velocity("linear", x0, x1, t), x1 - x0)


@pytest.mark.parametrize("path", PATHS)
def test_predict_x1_inverts_the_path(path):
    x0, x1 = torch.randn(6, 2, 3, 3), torch.randn(6, 2, 3, 3)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.999, 1.0])
    x_t = flow.interpolate(path, x0, x1, t)
    v = flow.target_velocity(path, x0, x1, t)
    torch.testing.assert_close(flow.predict_x1(path, x_t, v, t), x1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_predict_x1_of_exact_field_is_posterior_mean(path, problem):
    x0, mu, _ = problem
    t = torch.linspace(0, 1, x0.shape[0])
    x = torch.randn_like(x0)
    v = gaussian_velocity(path, mu, S)(x, t)
    a, _, b, _ = flow.path_coefficients(path, flow.expand_t_like_x(t, x))
    posterior_mean = mu + a * S**2 / (a**2 * S**2 + b**2) * (x - a * mu)
    torch.testing.assert_close(flow.predict_x1(path, x, v, t), posterior_mean, atol=1e-5, rtol=1e-5)


def test_expand_t_like_x_shapes():
    x = torch.zeros(3, 2, 5, 5)
    assert flow.expand_t_like_x(torch.rand(3), x).shape == (3, 1, 1, 1)
    assert flow.expand_t_like_x(0.3, x).shape == (3, 1, 1, 1)
    assert flow.expand_t_like_x(torch.tensor(0.3), x).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        flow.expand_t_like_x(torch.rand(4), x)


def test_unknown_path_raises():
    with pytest.raises(ValueError, match="path must be one of .* got 'vp'"):
        flow.interpolate("vp", torch.zeros(1), torch.zeros(1), 0.5)


# --------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_loss_is_zero_for_exact_target(path, time_sampling):
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(8, 3, 4, 4, generator=g)
    x0 = torch.randn(8, 3, 4, 4, generator=g)

    def exact(x_t, t):
        return flow.target_velocity(path, x0, x1, t)

    loss, info = flow.flow_matching_loss(
        exact, x1, path=path, noise=x0, time_sampling=time_sampling, generator=g
    )
    assert loss.ndim == 0 and loss.item() < 1e-12
    assert info["t"].shape == (8,) and ((info["t"] >= 0) & (info["t"] < 1)).all()
    assert info["loss_per_sample"].shape == (8,)
    torch.testing.assert_close(info["x_t"], flow.interpolate(path, x0, x1, info["t"]))


@pytest.mark.parametrize("path", PATHS)
def test_loss_is_mse_against_target(path):
    x1, x0 = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75])
    loss, info = flow.flow_matching_loss(
        lambda x, t: torch.zeros_like(x), x1, path=path, t=t, noise=x0
    )
    expected = flow.target_velocity(path, x0, x1, t).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 0.1
    torch.testing.assert_close(info["loss_per_sample"].mean(), expected)


def test_loss_backprop_and_generator_reproducibility():
    lin = torch.nn.Linear(6, 6)

    def model_fn(x, t):
        return lin(x) * t[:, None]

    x1 = torch.randn(5, 6)
    loss_a, info_a = flow.flow_matching_loss(
        model_fn, x1, generator=torch.Generator().manual_seed(3)
    )
    loss_b, info_b = flow.flow_matching_loss(
        model_fn, x1, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(info_a["t"], info_b["t"])
    loss_a.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_loss_validation():
    x1 = torch.randn(2, 3)
    with pytest.raises(ValueError, match="time_sampling must be one of"):
        flow.flow_matching_loss(lambda x, t: x, x1, time_sampling="beta")
    with pytest.raises(ValueError, match="noise must have the shape"):
        flow.flow_matching_loss(lambda x, t: x, x1, noise=torch.randn(2, 4))
    with pytest.raises(ValueError, match="model_fn returned shape"):
        flow.flow_matching_loss(lambda x, t: x[:, :1], x1)


def test_logit_normal_concentrates_mid_times():
    t = flow.sample_time(
        20000, time_sampling="logit_normal", generator=torch.Generator().manual_seed(0)
    )
    assert ((t > 0) & (t < 1)).all()
    assert abs(t.mean().item() - 0.5) < 0.01
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.6  # uniform would give 0.5


# --------------------------------------------------------------------------------------
# samplers: exact Gaussian flow
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_dopri5_maps_noise_to_exact_flow_map(path, problem):
    x0, mu, expected = problem
    fn = gaussian_velocity(path, mu, S)
    out = flow.sample_ode(fn, x0, path=path, method="dopri5", atol=1e-6, rtol=1e-6)
    assert out.dtype == torch.float32 and out.shape == x0.shape
    assert (out - expected).abs().max() < 1e-4
    # Official tolerances (atol=1e-6, rtol=1e-3) are looser but still close.
    out = flow.sample_ode(fn, x0, path=path, method="dopri5")
    assert (out - expected).abs().max() < 0.1


@pytest.mark.parametrize("path", PATHS)
def test_dopri5_trajectory_follows_analytic_solution(path, problem):
    x0, mu, _ = problem
    traj = flow.sample_ode(
        gaussian_velocity(path, mu, S),
        x0,
        path=path,
        num_steps=11,
        atol=1e-6,
        rtol=1e-6,
        return_trajectory=True,
    )
    for i, t in enumerate(traj.t.tolist()):
        assert (traj.x_t[i] - analytic_state(path, mu, S, x0, t)).abs().max() < 1e-4


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method,tol", [("euler", 0.06), ("heun", 1e-3)])
def test_fixed_step_maps_noise_to_exact_flow_map(path, method, tol, problem):
    x0, mu, expected = problem
    out = flow.sample_ode(
        gaussian_velocity(path, mu, S), x0, path=path, method=method, num_steps=64
    )
    assert (out - expected).abs().max() < tol


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2)])
def test_fixed_step_convergence_order(path, method, order, problem):
    x0, mu, expected = problem
    fn = gaussian_velocity(path, mu, S)
    errs = [
        (flow.sample_ode(fn, x0, path=path, method=method, num_steps=n) - expected)
        .abs()
        .max()
        .item()
        for n in (16, 32, 64)
    ]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    target = 2.0**order
    for r in ratios:
        assert 0.85 * target < r < 1.15 * target, (errs, ratios)


def test_dopri5_streaming_matches_torchdiffeq_odeint(problem, monkeypatch):
    x0, mu, _ = problem
    fn = gaussian_velocity("gvp", mu, S)
    grid = torch.linspace(0, 1, 25)
    ref = odeint(
        lambda t, x: fn(x, t.expand(x.shape[0])), x0, grid, method="dopri5", atol=1e-6, rtol=1e-3
    )
    traj = flow.sample_ode(fn, x0, num_steps=25, return_trajectory=True)
    assert torch.equal(traj.x_t, ref)  # bit-identical to the official single odeint call
    torch.testing.assert_close(traj.t, grid)

    monkeypatch.setattr(sampler_mod, "_STREAM_DOPRI5", False)
    fallback = flow.sample_ode(fn, x0, num_steps=25, return_trajectory=True)
    assert torch.equal(fallback.x_t, traj.x_t)
    assert fallback.nfe == traj.nfe


# --------------------------------------------------------------------------------------
# samplers: trajectory, nfe, callbacks
# --------------------------------------------------------------------------------------


class Counting:
    def __init__(self, fn):
        self.fn, self.calls, self.t_seen = fn, 0, []

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],) and t.dtype == torch.float32 and x.dtype == torch.float32
        self.calls += 1
        self.t_seen.append(t[0].item())
        return self.fn(x, t)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_trajectory_contents(path, method, problem):
    x0, mu, _ = problem
    n = small_steps(method)
    fn = Counting(gaussian_velocity(path, mu, S))
    traj = flow.sample_ode(fn, x0, path=path, method=method, num_steps=n, return_trajectory=True)
    s = num_records(method, n)

    assert isinstance(traj, flow.Trajectory) and len(traj) == s
    assert (traj.method, traj.path, traj.stopped_early) == (method, path, False)
    torch.testing.assert_close(traj.t, torch.linspace(0, 1, s))
    for field in (traj.x_t, traj.velocity, traj.x1_hat):
        assert field.shape == (s, *x0.shape) and field.dtype == torch.float32
    torch.testing.assert_close(traj.x_t[0], x0)
    assert fn.calls == traj.nfe + traj.nfe_record
    if method == "euler":
        assert (traj.nfe, traj.nfe_record) == (n, 1)
    elif method == "heun":
        assert (traj.nfe, traj.nfe_record) == (2 * n, 1)
    else:
        assert traj.nfe_record == n and traj.nfe > 0

    # Recorded velocity / x1_hat are consistent with the state; x1_hat at t = 1 is the sample.
    exact = gaussian_velocity(path, mu, S)
    for i in range(s):
        t = torch.full((x0.shape[0],), traj.t[i].item())
        torch.testing.assert_close(traj.velocity[i], exact(traj.x_t[i], t))
        torch.testing.assert_close(
            traj.x1_hat[i], flow.predict_x1(path, traj.x_t[i], traj.velocity[i], t)
        )
    torch.testing.assert_close(traj.x1_hat[-1], traj.final, atol=1e-6, rtol=1e-6)

    # Without recording: same samples, no extra evaluations.
    fn2 = Counting(exact)
    out = flow.sample_ode(fn2, x0, path=path, method=method, num_steps=n)
    assert torch.equal(out, traj.final)
    assert fn2.calls == traj.nfe


def test_fixed_step_time_grid():
    fn = Counting(lambda x, t: torch.zeros_like(x))
    flow.sample_ode(fn, torch.zeros(2, 3), method="heun", num_steps=4)
    assert fn.t_seen == pytest.approx([0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0])
    fn = Counting(lambda x, t: torch.zeros_like(x))
    flow.sample_ode(fn, torch.zeros(2, 3), method="euler", num_steps=4)
    assert fn.t_seen == pytest.approx([0, 0.25, 0.5, 0.75])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 2, 5, 20, 64])
def test_karras_time_grid(path, n):
    ts = flow.time_grid(n, "karras", path)
    assert len(ts) == n + 1 and ts[0] == 0.0 and ts[-1] == 1.0
    assert all(a < b for a, b in zip(ts[:-1], ts[1:], strict=True))
    # interior times: EDM's rho = 7 spacing of the noise-to-signal ratio sigma(t) / alpha(t)
    hi, lo = 80 ** (1 / 7), 0.002 ** (1 / 7)
    for i, t in enumerate(ts[1:-1], start=1):
        a, _, b, _ = flow.path_coefficients(path, torch.tensor(t, dtype=torch.float64))
        assert (b / a).item() == pytest.approx((hi + i / n * (lo - hi)) ** 7, rel=1e-9)
    assert flow.time_grid(n, "uniform", path) == pytest.approx([i / n for i in range(n + 1)])


def test_karras_grid_is_what_the_sampler_steps_on():
    fn = Counting(lambda x, t: torch.zeros_like(x))
    flow.sample_ode(fn, torch.zeros(2, 3), method="euler", num_steps=6, schedule="karras")
    assert fn.t_seen == pytest.approx(flow.time_grid(6, "karras")[:-1])
    traj = flow.sample_ode(
        lambda x, t: torch.ones_like(x),
        torch.zeros(2, 3),
        method="heun",
        num_steps=6,
        schedule="karras",
        path="linear",
        return_trajectory=True,
    )
    assert traj.t.tolist() == pytest.approx(flow.time_grid(6, "karras", "linear"), abs=1e-7)
    torch.testing.assert_close(traj.final, torch.ones(2, 3))  # still integrates t = 0 -> 1


@pytest.mark.parametrize("path", PATHS)
def test_karras_grid_beats_uniform_on_a_sharp_data_distribution(path):
    # x1 ~ N(mu, 0.02^2): the exact velocity turns fast near t = 1, as a trained model's does
    # near the data; the same 10 Heun steps land closer to the exact flow map on the karras grid.
    g = torch.Generator().manual_seed(1)
    x0, mu, s = torch.randn(64, 8, generator=g), torch.randn(1, 8, generator=g), 0.02
    exact = mu + s * x0
    fn = gaussian_velocity(path, mu, s)
    err = {
        sched: (
            flow.sample_ode(fn, x0, path=path, method="heun", num_steps=10, schedule=sched) - exact
        )
        .abs()
        .mean()
        .item()
        for sched in ("uniform", "karras")
    }
    assert err["karras"] < 0.5 * err["uniform"], err


def test_schedule_validation():
    with pytest.raises(
        ValueError, match=r"schedule must be one of \('uniform', 'karras'\), got 'cosine'"
    ):
        flow.sample_ode(lambda x, t: x, torch.zeros(2, 3), method="heun", schedule="cosine")
    with pytest.raises(ValueError, match="schedule='karras' applies to the fixed-step methods"):
        flow.sample_ode(lambda x, t: x, torch.zeros(2, 3), method="dopri5", schedule="karras")
    with pytest.raises(ValueError, match="num_steps must be an int >= 1, got 0"):
        flow.time_grid(0, "karras")


def test_constant_velocity_is_integrated_exactly():
    x0 = torch.randn(3, 4)
    for method in METHODS:
        out = flow.sample_ode(lambda x, t: torch.ones_like(x), x0, method=method, num_steps=7)
        torch.testing.assert_close(out, x0 + 1)


def test_trajectory_storage_options(problem):
    x0, mu, _ = problem
    traj = flow.sample_ode(
        gaussian_velocity("gvp", mu, S),
        x0,
        method="euler",
        num_steps=4,
        return_trajectory=True,
        trajectory_dtype=torch.float16,
        store_on_cpu=True,
    )
    assert traj.x_t.dtype == torch.float16 and traj.x_t.device.type == "cpu"
    assert traj.t.dtype == torch.float32


def test_float64_input_is_sampled_in_float32():
    out = flow.sample_ode(
        lambda x, t: -x, torch.randn(2, 3, dtype=torch.float64), method="euler", num_steps=3
    )
    assert out.dtype == torch.float32


@pytest.mark.parametrize("method", METHODS)
def test_callback_sees_every_record(method, problem):
    x0, mu, _ = problem
    n = small_steps(method)
    seen = []
    out = flow.sample_ode(
        gaussian_velocity("gvp", mu, S), x0, method=method, num_steps=n, callback=seen.append
    )
    s = num_records(method, n)
    assert [r.step for r in seen] == list(range(s))
    assert all(r.total == s for r in seen)
    assert [r.t for r in seen] == pytest.approx(torch.linspace(0, 1, s).tolist())
    assert isinstance(seen[0], flow.StepRecord) and seen[0].x_t.shape == x0.shape
    torch.testing.assert_close(seen[-1].x_t, out)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("how", ["return_true", "raise"])
def test_callback_early_stop(method, how, problem):
    x0, mu, _ = problem
    n = small_steps(method)
    fn = Counting(gaussian_velocity("gvp", mu, S))
    full = flow.sample_ode(fn, x0, method=method, num_steps=n, return_trajectory=True)
    full_calls = fn.calls

    def stop_at_3(rec):
        if rec.step == 3:
            if how == "raise":
                raise flow.StopSampling
            return True
        return None

    fn.calls = 0
    traj = flow.sample_ode(
        fn, x0, method=method, num_steps=n, callback=stop_at_3, return_trajectory=True
    )
    assert traj.stopped_early and len(traj) == 4
    torch.testing.assert_close(traj.t, torch.linspace(0, 1, num_records(method, n))[:4])
    torch.testing.assert_close(traj.x_t, full.x_t[:4])
    assert torch.equal(traj.final, traj.x_t[-1])
    assert fn.calls < full_calls  # the remaining work was skipped

    out = flow.sample_ode(fn, x0, method=method, num_steps=n, callback=stop_at_3)
    assert torch.equal(out, full.x_t[3])


@pytest.mark.parametrize("method", METHODS)
def test_stop_sampling_from_velocity_fn(method):
    calls = 0

    def fn(x, t):
        nonlocal calls
        calls += 1
        if calls > 3:
            raise flow.StopSampling
        return torch.ones_like(x)

    x0 = torch.zeros(2, 3)
    traj = flow.sample_ode(fn, x0, method=method, num_steps=8, return_trajectory=True)
    assert traj.stopped_early
    assert torch.equal(traj.final, traj.x_t[-1])
    assert torch.isfinite(traj.final).all()


def test_stop_request_at_last_record_is_not_early(problem):
    x0, mu, _ = problem
    for method in METHODS:
        traj = flow.sample_ode(
            gaussian_velocity("gvp", mu, S),
            x0,
            method=method,
            num_steps=4,
            callback=lambda rec: rec.step == rec.total - 1,
            return_trajectory=True,
        )
        assert not traj.stopped_early and len(traj) == num_records(method, 4)


# --------------------------------------------------------------------------------------
# samplers: NaN guard and validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_velocity_raises(method):
    def fn(x, t):
        v = -x
        return torch.full_like(x, float("nan")) if t[0] > 0.5 else v

    with pytest.raises(flow.NonFiniteError, match=r"non-finite values at step \d+ \(t=") as info:
        flow.sample_ode(fn, torch.randn(2, 3), method=method, num_steps=10)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.t > 0.5


def test_nonfinite_state_raises():
    x0 = torch.full((2, 3), 3e38)
    with pytest.raises(flow.NonFiniteError, match="state became non-finite at step 1"):
        flow.sample_ode(lambda x, t: torch.full_like(x, 3e38), x0, method="euler", num_steps=1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_steps": 0}, r"num_steps must be an int in \[1, 10000\] .* got 0"),
        ({"num_steps": 10001}, r"num_steps must be an int in \[1, 10000\] .* got 10001"),
        ({"num_steps": 2.5}, r"num_steps .* got 2.5"),
        ({"num_steps": True}, r"num_steps .* got True"),
        (
            {"num_steps": 1, "method": "dopri5"},
            r"num_steps must be an int in \[2, 10000\] .*'dopri5'.* got 1",
        ),
        ({"method": "rk4"}, r"method must be one of \('dopri5', 'heun', 'euler'\), got 'rk4'"),
        ({"path": "vp"}, r"path must be one of \('gvp', 'linear'\), got 'vp'"),
        ({"atol": -1.0}, r"atol must be a finite float in \(0, inf\), got -1.0"),
        ({"rtol": 0.0}, r"rtol must be a finite float"),
        ({"trajectory_dtype": torch.int32}, r"trajectory_dtype must be a floating dtype"),
    ],
)
def test_validation_errors(kwargs, match):
    kwargs = {"method": "euler", **kwargs}
    with pytest.raises(ValueError, match=match):
        flow.sample_ode(lambda x, t: x, torch.zeros(2, 3), **kwargs)


def test_validation_of_x0_and_velocity_output():
    with pytest.raises(ValueError, match="x0 must be finite, got 1 NaN/Inf"):
        flow.sample_ode(lambda x, t: x, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="x0 must be a floating-point tensor"):
        flow.sample_ode(lambda x, t: x, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"velocity_fn must return a tensor of shape \(2, 3\)"):
        flow.sample_ode(lambda x, t: x[:, :2], torch.zeros(2, 3), method="euler")
    with pytest.raises(ValueError, match="velocity_fn must be callable"):
        flow.sample_ode(None, torch.zeros(2, 3))


def test_method_and_path_names_are_case_insensitive():
    out = flow.sample_ode(
        lambda x, t: torch.ones_like(x), torch.zeros(1, 2), method="Euler", path="GVP", num_steps=2
    )
    torch.testing.assert_close(out, torch.ones(1, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_sampling_and_cpu_storage(method):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, *MU_SHAPE[1:], generator=g)
    mu = torch.randn(MU_SHAPE, generator=g)
    fn_cpu = gaussian_velocity("gvp", mu, S)
    fn_gpu = gaussian_velocity("gvp", mu.cuda(), S)
    n = small_steps(method)
    traj = flow.sample_ode(
        fn_gpu, x0.cuda(), method=method, num_steps=n, return_trajectory=True, store_on_cpu=True
    )
    ref = flow.sample_ode(fn_cpu, x0, method=method, num_steps=n, return_trajectory=True)
    assert traj.x_t.device.type == "cpu"
    torch.testing.assert_close(traj.x_t, ref.x_t, atol=1e-4, rtol=1e-4)
