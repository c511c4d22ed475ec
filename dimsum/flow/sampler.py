"""ODE samplers for flow-matching models (noise at ``t = 0`` -> data at ``t = 1``).

``sample_ode`` integrates ``dx/dt = velocity_fn(x, t)`` from the noise ``x0`` at ``t = 0`` to
``t = 1`` with one of three methods:

* ``"dopri5"``: adaptive Dormand-Prince via ``torchdiffeq`` with the official DiMSUM / SiT
  settings (``atol=1e-6``, ``rtol=1e-3``, output grid ``torch.linspace(0, 1, num_steps)``).
  ``num_steps`` is the number of *output* grid points (>= 2); the number of velocity
  evaluations is chosen by the step-size controller and does not depend on it.
* ``"heun"``: fixed-step Heun (explicit trapezoid, 2 evaluations per step), ``num_steps``
  steps on the grid ``time_grid(num_steps, schedule)``. SiT's SDE sampler replaces the final
  Heun step by Euler because its drift blows up at ``t = 1``; the velocity ODE is regular
  there, so we use plain Heun on *every* step (which keeps the method second order).
* ``"euler"``: fixed-step Euler, ``num_steps`` steps on the same grid, 1 evaluation per step.

Fixed-step schedules (``time_grid``): ``"uniform"`` (``t_i = i / num_steps``) or ``"karras"``,
Karras et al. (2022, EDM) spacing of the noise-to-signal ratio ``sigma(t) / alpha(t)``: short
steps at both ends, where a guided velocity changes fastest. For 20 guided Heun steps of the
embedded model it puts the result 4.5x closer (RMSE) to a tight-tolerance dopri5 solution than
the uniform grid at the same 40 evaluations (``benchmarks/bench_time_grid.py``); its sample
metrics did not change with it (checkpoints/README.md), so ``"uniform"`` stays the default.

Sampling runs under ``torch.no_grad()`` and in float32 (``x0`` and every velocity are cast).

Recording. With ``return_trajectory=True`` or a ``callback``, the sampler records
``(t, x_t, velocity, x1_hat)`` at every recorded time:

* fixed-step methods: every grid time ``t_i`` for ``i = 0..num_steps`` (``num_steps + 1``
  records). The velocity at ``t_i`` (``i < num_steps``) is the one the step already used;
  only the final point ``t = 1`` needs one extra evaluation.
* dopri5: the ``num_steps`` output grid points. The solver's internal evaluations happen at
  other times, so the recorded velocity costs one extra evaluation per grid point.

Extra evaluations made only for recording are counted in ``Trajectory.nfe_record``, never in
``Trajectory.nfe`` (so ``nfe`` is ``num_steps`` for Euler and ``2 * num_steps`` for Heun).
Without trajectory and callback nothing is recorded and no extra evaluation is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from ..validation import SAMPLERS, SCHEDULES
from .paths import check_path, predict_x1

__all__ = [
    "METHODS",
    "MAX_STEPS",
    "VelocityFn",
    "StopSampling",
    "NonFiniteError",
    "StepRecord",
    "Trajectory",
    "SCHEDULES",
    "time_grid",
    "sample_ode",
]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
METHODS: tuple[str, ...] = SAMPLERS
# EDM's defaults (Karras et al. 2022, table 1), not tuned for our models: on the embedded
# model's 20-step runs, rho 5 / 10, sigma_max 40 / 200 and sigma_min 0.0005 / 0.01 / 0.03 were
# within 0.1 of (or worse than) these defaults' 1.19 mean pixel error (of 255) against dopri5.
KARRAS_SIGMA_MAX, KARRAS_SIGMA_MIN, KARRAS_RHO = 80.0, 0.002, 7.0
MAX_STEPS = 10_000

# Set to False to force the plain ``torchdiffeq.odeint`` path (used by the tests).
_STREAM_DOPRI5 = True


class StopSampling(Exception):
    """Raise from a callback (or from ``velocity_fn``) to stop sampling early and cleanly."""


class NonFiniteError(FloatingPointError):
    """The velocity or the ODE state became NaN/Inf.

    Attributes:
        step: fixed-step methods: the integration step; dopri5: the output-grid interval
            being integrated (``t`` in ``(grid[step - 1], grid[step]]``) or the grid point
            being recorded.
        t: the time at which the non-finite value appeared.
    """

    def __init__(self, message: str, *, step: int, t: float) -> None:
        super().__init__(message)
        self.step = step
        self.t = t


@dataclass(frozen=True)
class StepRecord:
    """One recorded point of a sampling run, passed to ``callback``.

    Tensors are the live float32 tensors on the sampling device (do not modify in place).

    Attributes:
        step: index of this record, ``0 .. total - 1``.
        total: number of records a complete run produces.
        t: time of this record in [0, 1].
        x_t: state, (N, ...).
        velocity: ``velocity_fn(x_t, t)``, (N, ...).
        x1_hat: clean-sample estimate ``predict_x1(path, x_t, velocity, t)``, (N, ...).
        nfe: velocity evaluations made by the integrator so far (recording excluded).
    """

    step: int
    total: int
    t: float
    x_t: Tensor
    velocity: Tensor
    x1_hat: Tensor
    nfe: int


@dataclass
class Trajectory:
    """Recorded sampling run with ``S`` records (``S < total`` when stopped early).

    Attributes:
        t: recorded times, (S,) float32.
        x_t: states, (S, N, ...).
        velocity: velocities at the recorded states, (S, N, ...).
        x1_hat: clean-sample estimates, (S, N, ...).
        nfe: velocity evaluations made by the integrator.
        nfe_record: extra evaluations made only for recording.
        method: ``"dopri5"``, ``"heun"`` or ``"euler"``.
        path: ``"gvp"`` or ``"linear"``.
        stopped_early: True if a callback / ``StopSampling`` ended the run before ``t = 1``
            was recorded.
    """

    t: Tensor
    x_t: Tensor
    velocity: Tensor
    x1_hat: Tensor
    nfe: int
    nfe_record: int
    method: str
    path: str
    stopped_early: bool = False

    @property
    def final(self) -> Tensor:
        """Latest recorded state, (N, ...) (the samples when the run completed)."""
        return self.x_t[-1]

    def __len__(self) -> int:
        return self.t.shape[0]


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------


class _Velocity:
    """Wraps ``velocity_fn``: builds the (N,) time tensor, counts and checks evaluations."""

    def __init__(self, fn: VelocityFn, x0: Tensor, check_finite: bool) -> None:
        self.fn = fn
        self.n = x0.shape[0]
        self.shape = x0.shape
        self.check_finite = check_finite
        self.nfe = 0
        self.nfe_record = 0
        self.step = 0  # updated by the integrators, only used in error messages

    def __call__(self, x: Tensor, t: Tensor | float, *, record: bool = False) -> Tensor:
        if isinstance(t, Tensor):  # torchdiffeq passes a 0-d tensor
            t_vec = t.reshape(1).to(torch.float32).repeat(self.n)
        else:
            t_vec = torch.full((self.n,), t, dtype=torch.float32, device=x.device)
        if record:
            self.nfe_record += 1
        else:
            self.nfe += 1
        v = self.fn(x, t_vec)
        if not isinstance(v, Tensor) or v.shape != self.shape:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"velocity_fn must return a tensor of shape {tuple(self.shape)}, got {got}"
            )
        v = v.float()
        if self.check_finite and not torch.isfinite(v).all():
            t_val = float(t)
            raise NonFiniteError(
                f"velocity_fn returned non-finite values at step {self.step} (t={t_val:.6g}, "
                f"evaluation {self.nfe + self.nfe_record})",
                step=self.step,
                t=t_val,
            )
        return v


def _check_state(x: Tensor, step: int, t: float) -> None:
    if not torch.isfinite(x).all():
        raise NonFiniteError(
            f"ODE state became non-finite at step {step} (t={t:.6g})", step=step, t=t
        )


class _Recorder:
    """Computes ``x1_hat``, fills preallocated trajectory buffers and runs the callback."""

    def __init__(
        self,
        total: int,
        x0: Tensor,
        path: str,
        callback: Callable[[StepRecord], bool | None] | None,
        store: bool,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.total = total
        self.path = path
        self.callback = callback
        self.count = 0
        self.store = store
        if store:
            # Preallocate so that memory is known upfront and no final torch.stack copy is needed.
            shape = (total, *x0.shape)
            self.t = torch.empty(total, dtype=torch.float32, device=device)
            self.x_t = torch.empty(shape, dtype=dtype, device=device)
            self.velocity = torch.empty(shape, dtype=dtype, device=device)
            self.x1_hat = torch.empty(shape, dtype=dtype, device=device)

    def __call__(self, t: float, x: Tensor, v: Tensor, nfe: int) -> bool:
        """Record one point; return True if the callback asked to stop."""
        x1_hat = predict_x1(self.path, x, v, t)
        i = self.count
        if self.store:
            self.t[i] = t
            self.x_t[i].copy_(x)
            self.velocity[i].copy_(v)
            self.x1_hat[i].copy_(x1_hat)
        self.count += 1
        if self.callback is None:
            return False
        rec = StepRecord(step=i, total=self.total, t=t, x_t=x, velocity=v, x1_hat=x1_hat, nfe=nfe)
        result = self.callback(rec)
        return bool(result) if result is not None else False

    def trajectory(self, vel: _Velocity, method: str, stopped: bool) -> Trajectory:
        s = self.count
        fields = [self.t, self.x_t, self.velocity, self.x1_hat]
        if s < self.total:  # truncated: copy so the unused part of the buffers can be freed
            fields = [f[:s].clone() for f in fields]
        return Trajectory(
            *fields,
            nfe=vel.nfe,
            nfe_record=vel.nfe_record,
            method=method,
            path=self.path,
            stopped_early=stopped,
        )


def time_grid(num_steps: int, schedule: str = "uniform", path: str = "gvp") -> list[float]:
    """The ``num_steps + 1`` times ``0 = t_0 < t_1 < ... < t_N = 1`` of a fixed-step sampler.

    * ``"uniform"``: ``t_i = i / N``.
    * ``"karras"``: the interior times follow Karras et al.'s rho = 7 spacing of the
      noise-to-signal ratio ``s = sigma(t) / alpha(t)`` (EDM's sigma; gvp: ``cot(pi t / 2)``,
      linear: ``(1 - t) / t``)::

          s_i = (s_max^(1/rho) + (i / N) (s_min^(1/rho) - s_max^(1/rho)))^rho,  i = 1..N-1

      mapped back to ``t`` on the path. The ends stay exactly at 0 (pure noise, s = inf,
      where sampling starts) and 1, so no step is spent between s_min and 0.
    """
    path = check_path(path)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
    if schedule == "uniform":
        return [i / num_steps for i in range(num_steps + 1)]
    hi, lo = KARRAS_SIGMA_MAX ** (1 / KARRAS_RHO), KARRAS_SIGMA_MIN ** (1 / KARRAS_RHO)
    ts = [0.0]
    for i in range(1, num_steps):
        s = (hi + i / num_steps * (lo - hi)) ** KARRAS_RHO
        ts.append(math.atan(1 / s) / (math.pi / 2) if path == "gvp" else 1 / (1 + s))
    return [*ts, 1.0]


def _integrate_fixed(
    vel: _Velocity, x: Tensor, ts: list[float], heun: bool, record: _Recorder | None
) -> tuple[Tensor, bool]:
    """Euler / Heun over the grid ``ts`` (from ``time_grid``). Returns ``(x, stopped)``."""
    num_steps = len(ts) - 1
    try:
        for i in range(num_steps):
            t, t_next = ts[i], ts[i + 1]
            dt = t_next - t
            vel.step = i
            v = vel(x, t)
            if record is not None and record(t, x, v, vel.nfe):
                return x, True
            if heun:
                v_next = vel(x + dt * v, t_next)
                x_next = x + (0.5 * dt) * (v + v_next)
            else:
                x_next = x + dt * v
            if vel.check_finite:
                _check_state(x_next, i + 1, t_next)
            x = x_next
        if record is not None:
            vel.step = num_steps
            record(1.0, x, vel(x, 1.0, record=True), vel.nfe)  # a stop request here is moot
    except StopSampling:
        return x, True
    return x, False


@cache
def _torchdiffeq() -> tuple[Callable, Callable | None, dict | None]:
    """(odeint, _check_inputs, SOLVERS) of torchdiffeq, imported on the first dopri5 run.

    Deliberately lazy: torchdiffeq imports scipy.integrate (about 1.8 s on a 2-core CPU) and
    only dopri5 needs it. The internals stream dopri5's output grid points (_dopri5_solver).
    """
    from torchdiffeq import odeint

    try:
        from torchdiffeq._impl.misc import _check_inputs
        from torchdiffeq._impl.odeint import SOLVERS
    except ImportError:  # pragma: no cover - depends on the installed torchdiffeq
        return odeint, None, None
    return odeint, _check_inputs, SOLVERS


def _dopri5_solver(func: Callable, x: Tensor, grid: Tensor, atol: float, rtol: float):
    """Build torchdiffeq's dopri5 solver exactly as ``odeint`` does, or None if unavailable.

    ``odeint`` integrates the whole grid in one call; driving the same solver object one grid
    point at a time (the loop in ``AdaptiveStepsizeODESolver.integrate``) gives bit-identical
    results while letting callbacks see, and stop at, each grid point without redoing work.
    """
    _, check_inputs, solvers = _torchdiffeq()
    if not _STREAM_DOPRI5 or check_inputs is None or solvers is None:
        return None
    try:
        shapes, func, y0, t, rtol_, atol_, method, options, _, reversed_ = check_inputs(
            func, x, grid, rtol, atol, "dopri5", None, None, solvers
        )
        if shapes is not None or reversed_:
            return None
        solver = solvers[method](func=func, y0=y0, rtol=rtol_, atol=atol_, **options)
        if not (hasattr(solver, "_before_integrate") and hasattr(solver, "_advance")):
            return None
        t = t.to(solver.dtype)
        solver._before_integrate(t)
    except (TypeError, ValueError, AttributeError, KeyError):  # internals changed
        return None
    return solver, t


def _integrate_dopri5(
    vel: _Velocity,
    x: Tensor,
    num_steps: int,
    atol: float,
    rtol: float,
    record: _Recorder | None,
) -> tuple[Tensor, bool]:
    """dopri5 over the official output grid ``linspace(0, 1, num_steps)``."""
    grid_cpu = torch.linspace(0, 1, num_steps)
    times = grid_cpu.tolist()
    grid = grid_cpu.to(x.device)

    def func(t: Tensor, y: Tensor) -> Tensor:
        return vel(y, t)

    def record_point(i: int, x_i: Tensor) -> bool:
        vel.step = i
        return record(times[i], x_i, vel(x_i, times[i], record=True), vel.nfe)

    try:
        if record is not None and record_point(0, x):
            return x, True
        built = _dopri5_solver(func, x, grid, atol, rtol)
        if built is not None:
            solver, t = built
            for i in range(1, num_steps):
                vel.step = i
                x_i = solver._advance(t[i])
                if vel.check_finite:
                    _check_state(x_i, i, times[i])
                x = x_i
                # A stop request at the last grid point is moot (the run is complete).
                if record is not None and record_point(i, x) and i < num_steps - 1:
                    return x, True
        else:
            # Fallback: one odeint call, then replay the grid (early stop only truncates).
            odeint = _torchdiffeq()[0]
            solution = odeint(func, x, grid, method="dopri5", atol=atol, rtol=rtol)
            for i in range(1, num_steps):
                if vel.check_finite:
                    _check_state(solution[i], i, times[i])
                x = solution[i]
                if record is not None and record_point(i, x) and i < num_steps - 1:
                    return x, True
    except StopSampling:
        return x, True
    return x, False


def _validate(
    velocity_fn: VelocityFn,
    x0: Tensor,
    path: str,
    method: str,
    num_steps: int,
    schedule: str,
    atol: float,
    rtol: float,
    trajectory_dtype: torch.dtype,
) -> tuple[str, str]:
    if not callable(velocity_fn):
        raise ValueError(f"velocity_fn must be callable, got {type(velocity_fn).__name__}")
    path = check_path(path)
    name = method.lower() if isinstance(method, str) else method
    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    min_steps = 2 if name == "dopri5" else 1
    if (
        isinstance(num_steps, bool)
        or not isinstance(num_steps, int)
        or not min_steps <= num_steps <= MAX_STEPS
    ):
        raise ValueError(
            f"num_steps must be an int in [{min_steps}, {MAX_STEPS}] for method {name!r}, "
            f"got {num_steps!r}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if name == "dopri5" and schedule != "uniform":
        raise ValueError(
            f"schedule={schedule!r} applies to the fixed-step methods (heun, euler); dopri5 "
            "chooses its own steps: use schedule='uniform'"
        )
    for arg, val in (("atol", atol), ("rtol", rtol)):
        if not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
            raise ValueError(f"{arg} must be a finite float in (0, inf), got {val!r}")
    if not isinstance(x0, Tensor) or x0.ndim < 1 or x0.shape[0] < 1:
        desc = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0 must be a tensor of shape (N, ...) with N >= 1, got {desc}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")
    if not torch.isfinite(x0).all():
        bad = int((~torch.isfinite(x0)).sum())
        raise ValueError(f"x0 must be finite, got {bad} NaN/Inf values out of {x0.numel()}")
    if not trajectory_dtype.is_floating_point:
        raise ValueError(f"trajectory_dtype must be a floating dtype, got {trajectory_dtype}")
    return path, name


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@torch.no_grad()
def sample_ode(
    velocity_fn: VelocityFn,
    x0: Tensor,
    *,
    path: str = "gvp",
    method: str = "dopri5",
    num_steps: int = 250,
    schedule: str = "uniform",
    atol: float = 1e-6,
    rtol: float = 1e-3,
    callback: Callable[[StepRecord], bool | None] | None = None,
    return_trajectory: bool = False,
    trajectory_dtype: torch.dtype = torch.float32,
    store_on_cpu: bool = False,
    check_finite: bool = True,
) -> Tensor | Trajectory:
    """Integrate ``dx/dt = velocity_fn(x, t)`` from noise (t = 0) to data (t = 1).

    Args:
        velocity_fn: ``velocity_fn(x, t) -> v`` with x (N, ...) float32 and t (N,) float32;
            wrap class labels / CFG in a closure.
        x0: initial noise, (N, ...); cast to float32. Must be finite.
        path: ``"gvp"`` or ``"linear"``; only used for ``x1_hat`` in the records.
        method: ``"dopri5"`` (default, official), ``"heun"`` or ``"euler"``.
        num_steps: dopri5: number of output grid points ``linspace(0, 1, num_steps)``
            (official default 250, >= 2); heun / euler: number of steps (>= 1).
            At most ``MAX_STEPS``.
        schedule: heun / euler: the step times, ``"uniform"`` or ``"karras"`` (see
            :func:`time_grid`). dopri5 chooses its own steps; its output grid stays the
            official ``linspace``, so it accepts only ``"uniform"``.
        atol, rtol: dopri5 tolerances (official 1e-6 / 1e-3); ignored by fixed-step methods.
        callback: called with a :class:`StepRecord` at every recorded point; returning True
            (or raising :class:`StopSampling`) stops the run early. ``velocity_fn`` may also
            raise ``StopSampling`` (e.g. a UI cancel flag).
        return_trajectory: return a :class:`Trajectory` instead of the final tensor.
        trajectory_dtype, store_on_cpu: dtype / device of the stored trajectory (use
            ``store_on_cpu=True`` and e.g. float16 to keep long GPU runs small).
        check_finite: check every velocity and state for NaN/Inf (one host sync per
            evaluation) and raise :class:`NonFiniteError`.

    Returns:
        The samples ``x`` at t = 1, (N, ...) float32 on ``x0``'s device; when stopped early,
        the latest state instead. With ``return_trajectory=True`` a :class:`Trajectory`.

    Raises:
        ValueError: invalid arguments (the message names the argument and allowed range).
        NonFiniteError: a velocity or state became NaN/Inf.
    """
    path, method = _validate(
        velocity_fn, x0, path, method, num_steps, schedule, atol, rtol, trajectory_dtype
    )
    x = x0.detach().to(torch.float32)
    vel = _Velocity(velocity_fn, x, check_finite)

    recorder = None
    if return_trajectory or callback is not None:
        total = num_steps if method == "dopri5" else num_steps + 1
        store_device = torch.device("cpu") if store_on_cpu else x.device
        recorder = _Recorder(
            total, x, path, callback, return_trajectory, trajectory_dtype, store_device
        )

    if method == "dopri5":
        x, stopped = _integrate_dopri5(vel, x, num_steps, float(atol), float(rtol), recorder)
    else:
        ts = time_grid(num_steps, schedule, path)
        x, stopped = _integrate_fixed(vel, x, ts, method == "heun", recorder)

    if not return_trajectory:
        return x
    assert recorder is not None
    return recorder.trajectory(vel, method, stopped)
