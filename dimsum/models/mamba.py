"""The Mamba mixer (selective state-space layer), with mamba-ssm's parameter names.

    x, z   = in_proj(u)                         (N, L, d_inner) each, token-major throughout
    x      = SiLU(causal depthwise conv1d(x))   kernel d_conv, zero left padding
    dt,B,C = x_proj(x)                          (dt_rank, d_state, d_state)
    delta  = softplus(dt_proj.weight @ dt + dt_proj.bias)
    h_t    = exp(delta_t A) h_{t-1} + delta_t B_t x_t,   A = -exp(A_log)
    y_t    = <C_t, h_t> + D x_t ;  y = y * SiLU(z) ;  out = out_proj(y)

`cond_proj` exists only so official checkpoints load with strict=True: the official CUDA path uses
its output as a scratch buffer that the conv kernel overwrites, so it never affects the output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import ScanStateInputs, causal_conv1d_tokens, selective_scan_tokens


class Mamba(nn.Module):
    """Mamba mixer. forward: (N, L, d_model) -> (N, L, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_cond: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        d_inner = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.cond_proj = nn.Linear(d_cond, d_inner)  # kept for strict loading; never used
        self.cond_proj.requires_grad_(False)  # it never gets a gradient (official CUDA path)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

        # mamba-ssm initialisation: dt_proj so that softplus(bias) is log-uniform in [dt_min, dt_max].
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(
        self, u: torch.Tensor, state_rows: slice | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, ScanStateInputs]:
        """state_rows: also return what the scan's hidden state of these batch rows depends on
        (`ScanStateInputs`: views of the scan's own inputs, nothing computed; its mean |h_t|
        is `dimsum.tracing`'s `*_state`, computed later by `scan_state_magnitudes`); None (the
        default) returns the output only."""
        # Token-major throughout (N, L, channels): the layout the linear layers produce, so x, z
        # and B, C stay views of their projections and the scan reads them in place.
        xz = self.in_proj(u)
        if xz.dtype != torch.float32 and xz.device.type == "cpu" and not torch.is_grad_enabled():
            # CPU autocast: the conv and scan kernels compute in float32; widen their input once
            # here, not at each kernel's entry and exit (bf16 DiM-L/2: 8 -> 3 copies a layer)
            xz = xz.float()
        x, z = xz.chunk(2, dim=-1)
        x = causal_conv1d_tokens(x, self.conv1d.weight, self.conv1d.bias, silu=True)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta, A = dt @ self.dt_proj.weight.t(), -torch.exp(self.A_log.float())
        y = selective_scan_tokens(
            x,
            delta,
            A,
            B,
            C,
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        out = self.out_proj(y)
        if state_rows is None:
            return out
        r = state_rows
        return out, ScanStateInputs(
            x[r], dt[r], B[r], A, self.dt_proj.weight, self.dt_proj.bias, delta_softplus=True
        )
