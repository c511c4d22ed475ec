"""Building blocks shared by DiMSUM and its ablation variants (DiT-style layers)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.gated_mlp import gelu_gate, gelu_gate_ref


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation. x (N, L, D), shift/scale (N, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 (as mamba-ssm's), weight only. Returns the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return out.to(x.dtype)


class TimestepEmbedder(nn.Module):
    """Flow time t (N,) in [0, 1], unscaled -> (N, D): [cos(t f), sin(t f)] then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class label table. Row `num_rows - 1` is the null class (or label 0 of a 1-class model)."""

    def __init__(self, num_rows: int, hidden_size: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_rows, hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


class GatedMLP(nn.Module):
    """w12: D -> 2H, split (a, b), gelu_tanh(a) * b, w3: H -> D."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.w3(gelu_gate_ref(self.w12(x)))
        # Inference: w12's bias joins the activation (one pass on the CPU: dimsum.ops.gated_mlp)
        return self.w3(gelu_gate(F.linear(x, self.w12.weight), self.w12.bias))


class Attention(nn.Module):
    """Multi-head self-attention (timm's names: `qkv`, `proj`). (N, L, D) -> (N, L, D)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} attention heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, seq, d = x.shape
        qkv = self.qkv(x).reshape(n, seq, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, seq, d))


class CrossAttentionFusion(nn.Module):
    """Fuses the branches: each branch queries the other. (N, L, D/2) x 2 -> (N, L, D).

    a12 = attention(q1, k2, v2) (spatial asks frequency), a21 = attention(q2, k1, v1);
    out = proj(cat(a12, a21)).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        half = dim // 2
        if half % num_heads:
            raise ValueError(f"branch width {half} is not divisible by {num_heads} fusion heads")
        self.num_heads = num_heads
        self.qkv1 = nn.Linear(half, 3 * half)
        self.qkv2 = nn.Linear(half, 3 * half)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n, seq, c = x.shape
        qkv = layer(x).reshape(n, seq, 3, self.num_heads, c // self.num_heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        n, seq, c = x1.shape
        q1, k1, v1 = self._qkv(self.qkv1, x1)
        q2, k2, v2 = self._qkv(self.qkv2, x2)
        a12 = F.scaled_dot_product_attention(q1, k2, v2).transpose(1, 2).reshape(n, seq, c)
        a21 = F.scaled_dot_product_attention(q2, k1, v1).transpose(1, 2).reshape(n, seq, c)
        return self.proj(torch.cat([a12, a21], dim=-1))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (the shared attention block; also the attention ablation)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = GatedMLP(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, 1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        x = x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift first), LayerNorm without affine, Linear(D, p*p*C_out)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    """Conv2d with kernel = stride = p; tokens in raster order. (N, C, H, W) -> (N, L, D)."""

    def __init__(self, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous: the residual stream then stays token-major through every block, so the
        # linear layers need no transposing copies (2% of a CPU forward of emoji-XS)
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def sincos_pos_embed_2d(dim: int, side: int) -> np.ndarray:
    """MAE-style 2-D sin-cos position embedding. Returns (side*side, dim) float64."""

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
