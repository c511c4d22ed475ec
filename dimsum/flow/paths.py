"""Flow-matching probability paths and the training loss.

Time convention follows the official DiMSUM / SiT code: ``t = 0`` is pure noise and
``t = 1`` is data. A path is ``x_t = alpha(t) * x1 + sigma(t) * x0`` with ``x0 ~ N(0, I)``
(noise) and ``x1`` a data sample; the regression target is the conditional velocity
``u_t = alpha'(t) * x1 + sigma'(t) * x0``.

Two paths are supported:

* ``"gvp"`` (generalised variance preserving, DiMSUM's default)::

      alpha = sin(pi t / 2),  sigma = cos(pi t / 2)

* ``"linear"`` (rectified flow / SiT "Linear")::

      alpha = t,  sigma = 1 - t

Every function takes ``t`` of shape ``(N,)`` (one time per sample; a Python float or a
0-d tensor is broadcast to all samples) and broadcasts it over the remaining dims of
``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "PATHS",
    "TIME_SAMPLINGS",
    "PathName",
    "check_path",
    "expand_t_like_x",
    "path_coefficients",
    "interpolate",
    "target_velocity",
    "predict_x1",
    "sample_time",
    "flow_matching_loss",
]

PathName = Literal["gvp", "linear"]
PATHS: tuple[str, ...] = ("gvp", "linear")
TIME_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")

_HALF_PI = math.pi / 2


def check_path(path: str) -> str:
    """Return the canonical (lower-case) path name or raise ``ValueError``."""
    name = path.lower() if isinstance(path, str) else path
    if name not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return name


def expand_t_like_x(t: Tensor | float, x: Tensor) -> Tensor:
    """Reshape per-sample times ``t`` (N,) to ``(N, 1, ..., 1)`` so they broadcast over ``x``.

    A Python float or a 0-d / 1-element tensor is first broadcast to all ``N = x.shape[0]``
    samples. The result has ``x``'s dtype and device.
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0 or t.numel() == 1:
        t = t.reshape(1).expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"t must be a scalar or have shape (N,) = ({x.shape[0]},), got shape {tuple(t.shape)}"
        )
    return t.view(-1, *([1] * (x.ndim - 1)))


def path_coefficients(path: str, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Coefficients ``(alpha, d_alpha, sigma, d_sigma)`` of the path at times ``t`` (any shape).

    ``x_t = alpha * x1 + sigma * x0`` and ``u_t = d_alpha * x1 + d_sigma * x0``.
    """
    path = check_path(path)
    if path == "gvp":
        s, c = torch.sin(_HALF_PI * t), torch.cos(_HALF_PI * t)
        return s, _HALF_PI * c, c, -_HALF_PI * s
    one = torch.ones_like(t)
    return t, one, 1 - t, -one


def interpolate(path: str, x0: Tensor, x1: Tensor, t: Tensor | float) -> Tensor:
    """Point on the path: ``x_t = alpha(t) x1 + sigma(t) x0``.

    Args:
        path: ``"gvp"`` or ``"linear"``.
        x0: noise, (N, ...).
        x1: data, (N, ...).
        t: times, (N,) in [0, 1].

    Returns:
        x_t, (N, ...).
    """
    alpha, _, sigma, _ = path_coefficients(path, expand_t_like_x(t, x1))
    return alpha * x1 + sigma * x0


def target_velocity(path: str, x0: Tensor, x1: Tensor, t: Tensor | float) -> Tensor:
    """Conditional velocity ``u_t = d/dt x_t = alpha'(t) x1 + sigma'(t) x0``, (N, ...)."""
    _, d_alpha, _, d_sigma = path_coefficients(path, expand_t_like_x(t, x1))
    return d_alpha * x1 + d_sigma * x0


def predict_x1(path: str, x_t: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """Clean-sample estimate ``x1_hat`` from a state ``x_t`` and a velocity ``v``, (N, ...).

    Inverts ``(x_t, u_t)`` for ``x1`` (exact when ``v`` is the conditional velocity; with
    the marginal velocity it gives the posterior mean ``E[x1 | x_t]``):

    * gvp:    ``x1_hat = sin(pi t/2) x_t + (2/pi) cos(pi t/2) v``
    * linear: ``x1_hat = x_t + (1 - t) v``

    Both are well defined on the whole closed interval [0, 1].
    """
    path = check_path(path)
    t = expand_t_like_x(t, x_t)
    if path == "gvp":
        return torch.sin(_HALF_PI * t) * x_t + torch.cos(_HALF_PI * t) * v / _HALF_PI
    return x_t + (1 - t) * v


def sample_time(
    n: int,
    *,
    time_sampling: str = "uniform",
    logit_normal_mean: float = 0.0,
    logit_normal_std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``n`` training times, shape (n,).

    ``"uniform"``: ``t ~ U[0, 1)`` (official DiMSUM / SiT). ``"logit_normal"``:
    ``t = sigmoid(m + s * eps)``, ``eps ~ N(0, 1)`` (SD3-style; puts more weight on mid times).
    """
    if time_sampling == "uniform":
        return torch.rand(n, generator=generator, device=device, dtype=dtype)
    if time_sampling == "logit_normal":
        eps = torch.randn(n, generator=generator, device=device, dtype=dtype)
        return torch.sigmoid(logit_normal_mean + logit_normal_std * eps)
    raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}")


def flow_matching_loss(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    x1: Tensor,
    *,
    path: str = "gvp",
    t: Tensor | float | None = None,
    noise: Tensor | None = None,
    time_sampling: str = "uniform",
    logit_normal_mean: float = 0.0,
    logit_normal_std: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Velocity-matching loss ``mean((model_fn(x_t, t) - u_t)^2)``.

    Args:
        model_fn: ``model_fn(x_t, t) -> v`` with x_t (N, ...) and t (N,); wrap class labels
            / conditioning in a closure.
        x1: data batch, (N, ...).
        path: ``"gvp"`` (default) or ``"linear"``.
        t: optional times, (N,) or scalar; sampled with ``time_sampling`` when ``None``.
        noise: optional ``x0``, same shape as ``x1``; ``N(0, I)`` when ``None``.
        time_sampling: ``"uniform"`` (t ~ U[0, 1), official) or ``"logit_normal"``.
        logit_normal_mean, logit_normal_std: parameters of the logit-normal time density.
        generator: RNG for ``t`` and ``noise`` (must live on ``x1``'s device).

    Returns:
        ``(loss, info)``: ``loss`` is a scalar (mean over every element). ``info`` holds
        ``t`` (N,), ``noise`` / ``x_t`` / ``target`` / ``pred`` (N, ...) and
        ``loss_per_sample`` (N,, detached) for logging, e.g. loss binned by time.
    """
    path = check_path(path)
    n = x1.shape[0]
    if t is None:
        t = sample_time(
            n,
            time_sampling=time_sampling,
            logit_normal_mean=logit_normal_mean,
            logit_normal_std=logit_normal_std,
            generator=generator,
            device=x1.device,
            dtype=x1.dtype,
        )
    else:
        t = expand_t_like_x(t, x1).reshape(n)
    if noise is None:
        noise = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    elif noise.shape != x1.shape:
        raise ValueError(
            f"noise must have the shape of x1 {tuple(x1.shape)}, got {tuple(noise.shape)}"
        )

    x_t = interpolate(path, noise, x1, t)
    target = target_velocity(path, noise, x1, t)
    pred = model_fn(x_t, t)
    if pred.shape != target.shape:
        raise ValueError(
            f"model_fn returned shape {tuple(pred.shape)}, expected {tuple(target.shape)}"
        )

    sq_err = (pred.float() - target.float()) ** 2
    loss = sq_err.mean()
    info = {
        "t": t,
        "noise": noise,
        "x_t": x_t,
        "target": target,
        "pred": pred,
        "loss_per_sample": sq_err.detach().reshape(n, -1).mean(dim=1),
    }
    return loss, info
