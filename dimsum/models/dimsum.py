"""DiMSUM: Diffusion Mamba with a spatial and a wavelet-frequency branch (NeurIPS 2024).

Forward `model(x, t, y)`, x (N, C, H, W), t (N,) flow time in [0, 1] (0 = noise, 1 = data), y (N,):

    c = t_embedder(t) + y_embedder(y)
    h = patch_embed(x) + pos_embed                                  (N, L, D)
    for i, block in enumerate(blocks):
        h, residual = block(h, residual, c)
        if (i + 1) % attn_every == 0: h = attn_block(h, c)          one shared DiT block
    out = unpatchify(final_layer(h, c))                             (N, C_out, H, W)

Combined block (official `DiMBlockCombined`):

    r = h_in (first block) or residual + h_in      (float32)
    n = RMSNorm(r);  x1, x2 = n[..., :D/2], n[..., D/2:]
    s = spatial branch(x1)      Mamba over this layer's spatial scan order
    w = frequency branch(x2)    Mamba over 2-level Haar packet tokens in window-scan order
    h = n + fusion(s, w)        cross-attention: each branch queries the other
    h = h + gate * GatedMLP(modulate(RMSNorm_2(h)))
    return h, r

Interventions (`dimsum.interventions`) change this computation through two explicit hook points,
`CombinedBlock.edit` (a `BlockEdit`) and `DiMSUM.attn_skip`; both are off by default and then
the forward above runs unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ..config import DiMSUMConfig
from ..ops import ScanStateInputs
from .layers import (
    CrossAttentionFusion,
    DiTBlock,
    DropPath,
    FinalLayer,
    GatedMLP,
    LabelEmbedder,
    PatchEmbed,
    RMSNorm,
    TimestepEmbedder,
    modulate,
    sincos_pos_embed_2d,
)
from .mamba import Mamba
from .scan_orders import (
    attention_after,
    freq_scan_order,
    inverse_permutation,
    layer_scan,
    spatial_scan_order,
)
from .wavelets import HaarDWT, HaarIDWT, inverse_wavelet_tokens, wavelet_tokens

# A tracer receives (block index, name, tensor); see dimsum.tracing.
Tracer = Callable[..., None]
# (batch rows, callback): asks a branch for its scan's hidden-state inputs (tracing only).
StateProbe = tuple[slice, Callable[[ScanStateInputs], None]]
# A scan order given as (perm, inverse perm), both (L,) int64.
ScanOrder = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class BlockEdit:
    """A change to one combined block's computation (set by `dimsum.interventions`).

    spatial / freq: "keep" the branch's output, replace it by "zeros", or by the "other"
        branch's output (computed on the other branch's input half).
    fusion: "cross" (the official cross-attention) or "add": f = cat(s, w), i.e. each branch's
        output is added to its own half of the normalized input, with no mixing between them.
    freq_order: scan order of the frequency branch instead of its window scan (None = keep).
    """

    spatial: str = "keep"
    freq: str = "keep"
    fusion: str = "cross"
    freq_order: ScanOrder | None = None


class _ScannedMamba(nn.Module):
    """adaLN-modulated Mamba over a fixed token permutation: x + gate * Mamba(m(x[perm]))[inv]."""

    def __init__(self, dim: int, cond_dim: int, perm: torch.Tensor, mamba_kwargs: dict) -> None:
        super().__init__()
        self.mixer = Mamba(dim, cond_dim, **mamba_kwargs)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 3 * dim))
        # Non-persistent: the orders are derived data (scan_orders.py), not weights.
        self.register_buffer("scan_perm", perm, persistent=False)
        self.register_buffer("scan_inv", inverse_permutation(perm), persistent=False)

    def mix(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        state: StateProbe | None = None,
        order: ScanOrder | None = None,
    ) -> torch.Tensor:
        """x (N, L, d) in raster/token layout -> same layout. `state`: (rows, callback) to
        receive the scan's `ScanStateInputs` of those rows (scan order; its mean |h_t| is
        computed later, `dimsum.ops.scan_state_magnitudes`). `order`: (perm,
        inv) instead of this layer's scan order (an intervention)."""
        perm, inv = (self.scan_perm, self.scan_inv) if order is None else order
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        xs = x.index_select(1, perm)  # ~5x faster than x[:, perm] on CPU
        if state is None:
            mixed = self.mixer(modulate(xs, shift, scale))
        else:
            mixed, scan = self.mixer(modulate(xs, shift, scale), state_rows=state[0])
            state[1](scan)
        xs = xs + gate.unsqueeze(1) * mixed
        return xs.index_select(1, inv)


class SpatialBranch(_ScannedMamba):
    """Spatial branch: Mamba over the token grid in this layer's spatial scan order."""

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, state: StateProbe | None = None
    ) -> torch.Tensor:
        return self.mix(x, c, state)


class FrequencyBranch(_ScannedMamba):
    """Frequency branch: Mamba over 2-level Haar packet wavelet tokens in window-scan order."""

    def __init__(self, dim: int, cond_dim: int, perm: torch.Tensor, mamba_kwargs: dict) -> None:
        super().__init__(dim, cond_dim, perm, mamba_kwargs)
        self.dwt = HaarDWT()
        self.idwt = HaarIDWT()

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        record: Callable[[str, torch.Tensor], None] | None,
        state: StateProbe | None = None,
        order: ScanOrder | None = None,
    ) -> torch.Tensor:
        tokens, bands = wavelet_tokens(x, self.dwt, self.idwt)
        if record is not None:
            record("freq_bands", bands)  # (N, 16, D/2, side/4, side/4)
            record("freq_tokens", tokens)
        return inverse_wavelet_tokens(self.mix(tokens, c, state, order), self.idwt, self.dwt)


class CombinedBlock(nn.Module):
    """One DiMSUM layer. (h, residual, c) -> (h, residual); see the module docstring."""

    def __init__(self, config: DiMSUMConfig, layer: int, drop_path: float = 0.0) -> None:
        super().__init__()
        dim, half, side = config.hidden_size, config.branch_width, config.grid_size
        mk = dict(
            d_state=config.d_state,
            d_conv=config.d_conv,
            expand=config.expand,
            dt_rank=config.mamba_dt_rank,
        )
        self.layer = layer
        self.norm = RMSNorm(dim, eps=1e-5)
        self.spatial_mamba = SpatialBranch(half, dim, spatial_scan_order(layer, side), mk)
        if config.block_type == "combined":
            self.freq_mamba: nn.Module = FrequencyBranch(
                half, dim, freq_scan_order(layer, side), mk
            )
        else:  # "spatial" ablation: the second half is a spatial Mamba with the same order
            self.freq_mamba = SpatialBranch(half, dim, spatial_scan_order(layer, side), mk)
        self.proj = CrossAttentionFusion(dim, num_heads=config.fusion_heads)
        self.norm_2 = RMSNorm(dim, eps=1e-5)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.mlp = GatedMLP(dim, int(dim * config.mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.tracer: Tracer | None = None
        # An intervention (dimsum.interventions) sets this; None = the official computation.
        self.edit: BlockEdit | None = None

    def _record(self, name: str, value: torch.Tensor) -> None:
        assert self.tracer is not None
        self.tracer(self.layer, name, value)

    def _state_probe(self, name: str) -> StateProbe | None:
        """An optional trace (`dimsum.tracing.OPTIONAL_TRACE_NAMES`) is computed only for a
        tracer whose `wants(name)` says so, on its `rows` only."""
        tracer = self.tracer
        wants = getattr(tracer, "wants", None)
        if wants is None or not wants(name):
            return None
        rows = getattr(tracer, "rows", None) or slice(None)
        return rows, lambda scan: tracer(self.layer, name, scan, rows_selected=True)

    def forward(
        self, h: torch.Tensor, residual: torch.Tensor | None, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        record = self._record if self.tracer is not None else None
        s_probe = f_probe = None
        if record is not None:
            s_probe, f_probe = self._state_probe("spatial_state"), self._state_probe("freq_state")
        r = h if residual is None else residual + self.drop_path(h)
        r = r.float()  # the residual stream is kept in float32 (official residual_in_fp32)
        n = self.norm(r)
        x1, x2 = n.chunk(2, dim=-1)
        if self.edit is None:  # the official computation
            s = self.spatial_mamba(x1, c, s_probe)
            w = (
                self.freq_mamba(x2, c, record, f_probe)
                if isinstance(self.freq_mamba, FrequencyBranch)
                else self.freq_mamba(x2, c, f_probe)
            )
            f = self.proj(s, w)
        else:  # an intervention (no hidden-state traces)
            s, w, f = self._edited_branches(self.edit, x1, x2, c, record)
        out = n + f  # the normalized input, not the residual stream (official)
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        out = out + gate.unsqueeze(1) * self.mlp(modulate(self.norm_2(out), shift, scale))
        if record is not None:
            record("normed", n)
            record("spatial_out", s)
            record("freq_out", w)
            record("fusion_out", f)
            record("block_out", out)
        return out, r

    def _edited_branches(
        self,
        edit: BlockEdit,
        x1: torch.Tensor,
        x2: torch.Tensor,
        c: torch.Tensor,
        record: Callable[[str, torch.Tensor], None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Branches and fusion under an intervention. x1, x2 (N, L, D/2) -> (s, w, f).

        A branch whose output is not used is not run (its traces are then absent).
        """
        s = w = None
        if edit.spatial == "keep" or edit.freq == "other":
            s = self.spatial_mamba(x1, c)
        if edit.freq == "keep" or edit.spatial == "other":
            if isinstance(self.freq_mamba, FrequencyBranch):
                w = self.freq_mamba(x2, c, record, order=edit.freq_order)
            else:
                w = self.freq_mamba(x2, c)
        s_used = _replaced(edit.spatial, s, w, x1)
        w_used = _replaced(edit.freq, w, s, x2)
        if edit.fusion == "add":
            f = torch.cat([s_used, w_used], dim=-1)
        else:
            f = self.proj(s_used, w_used)
        return s_used, w_used, f


def _replaced(
    choice: str, own: torch.Tensor | None, other: torch.Tensor | None, like: torch.Tensor
) -> torch.Tensor:
    """A branch's output under a `BlockEdit` choice: "keep", "other" or "zeros"."""
    out = torch.zeros_like(like) if choice == "zeros" else own if choice == "keep" else other
    assert out is not None  # _edited_branches runs every branch whose output is used
    return out


class AttentionBlock(DiTBlock):
    """DiT block with the (h, residual, c) interface of the Mamba blocks (attention ablation)."""

    def __init__(self, config: DiMSUMConfig, layer: int, drop_path: float = 0.0) -> None:
        super().__init__(config.hidden_size, config.attn_heads, config.mlp_ratio)
        self.layer = layer
        self.tracer: Tracer | None = None

    def forward(  # type: ignore[override]
        self, h: torch.Tensor, residual: torch.Tensor | None, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = super().forward(h, c)
        if self.tracer is not None:
            self.tracer(self.layer, "block_out", out)
        return out, None


class DiMSUM(nn.Module):
    """The DiMSUM network. See the module docstring for the forward pass."""

    def __init__(self, config: DiMSUMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(config.num_label_rows, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, d))
        # Stochastic depth rises linearly with depth (official: block i gets linspace[i-1], block 0 none).
        dpr = [0.0] + [config.drop_path * i / max(config.depth - 1, 1) for i in range(config.depth)]
        block_cls = AttentionBlock if config.block_type == "attention" else CombinedBlock
        self.blocks = nn.ModuleList(block_cls(config, i, dpr[i]) for i in range(config.depth))
        if 0 < config.attn_every <= config.depth:  # only when some block is followed by it
            self.attn_block = DiTBlock(d, config.attn_heads, config.mlp_ratio)
        # Blocks after which the shared attention block is skipped (an intervention).
        self.attn_skip: frozenset[int] = frozenset()
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        self.initialize_weights()

    # ---- initialisation -----------------------------------------------------------------
    def initialize_weights(self) -> None:
        """Official initialisation (models_dim.DiM.initialize_weights + mamba's _init_weights)."""
        cfg = self.config
        with torch.no_grad():
            pe = sincos_pos_embed_2d(cfg.hidden_size, cfg.grid_size)
            self.pos_embed.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        self.apply(partial(_mamba_init, n_layer=cfg.depth))

    # ---- forward ------------------------------------------------------------------------
    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, p*p*C) -> (N, C, H, W), reading tokens as (N, h, w, p, q, C)."""
        p, side = self.config.patch_size, self.config.grid_size
        return rearrange(x, "n (h w) (p q c) -> n c (h p) (w q)", h=side, w=side, p=p, q=p)

    def embed_condition(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """c = t_emb + y_emb, (N, D). y=None selects the last label row."""
        if y is None:
            y = torch.full((t.shape[0],), self.config.null_class, dtype=torch.long, device=t.device)
        return self.t_embedder(t) + self.y_embedder(y)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (N, C, H, W), t (N,) in [0, 1], y (N,) int64 or None -> velocity (N, C_out, H, W)."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        c = self.embed_condition(t, y)
        h = self.x_embedder(x) + self.pos_embed
        residual = None
        for i, block in enumerate(self.blocks):
            h, residual = block(h, residual, c)
            if attention_after(i, self.config.attn_every) and i not in self.attn_skip:
                h = self.attn_block(h, c)
        return self.unpatchify(self.final_layer(h, c))

    def forward_with_cfg(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float
    ) -> torch.Tensor:
        """Official classifier-free guidance on a 2N batch (x's second half is ignored).

        The network runs on [x[:N], x[:N]] with labels y (= [cond, null]); the result
        uncond + s * (cond - uncond) on all channels is returned duplicated to 2N rows.
        """
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y)
        cond, uncond = out.chunk(2, dim=0)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([guided, guided])

    def guided_velocity(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float
    ) -> torch.Tensor:
        """Guided velocity for an N batch: the official CFG with the null class appended."""
        null = torch.full_like(y, self.config.null_class)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        out = self.forward_with_cfg(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), cfg_scale
        )
        return out[: x.shape[0]]

    # ---- introspection ------------------------------------------------------------------
    def scan_orders(self) -> list[dict[str, Any]]:
        """Per layer: the spatial and frequency permutations the model uses, and their names."""
        out = []
        for block in self.blocks:
            s = layer_scan(block.layer)
            entry: dict[str, Any] = {
                "layer": block.layer,
                "attn_after": attention_after(block.layer, self.config.attn_every),
            }
            if isinstance(block, CombinedBlock):
                entry.update(
                    spatial=block.spatial_mamba.scan_perm.cpu(),
                    spatial_name=s.spatial_name,
                    freq=block.freq_mamba.scan_perm.cpu(),
                    freq_name=s.freq_name
                    if isinstance(block.freq_mamba, FrequencyBranch)
                    else s.spatial_name,
                )
            out.append(entry)
        return out

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # Saving and loading live in dimsum.checkpoints (save_pretrained, load_checkpoint), which
    # imports this module: the network itself knows nothing of files.


def _mamba_init(module: nn.Module, n_layer: int) -> None:
    """mamba-ssm `_init_weights`: zero Linear biases (except dt_proj), N(0, 0.02) embeddings,
    out_proj kaiming-uniform scaled by 1/sqrt(n_layer)."""
    if isinstance(module, nn.Linear) and module.bias is not None:
        if not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    for name, p in module.named_parameters():
        if name == "out_proj.weight":
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            with torch.no_grad():
                p /= math.sqrt(n_layer)
