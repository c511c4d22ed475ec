"""Interventions: re-run the same seeds and classes with one part of the network changed.

    from dimsum.interventions import Intervention, compare
    iv = Intervention("freq-off", blocks=(0, 1), t_range=(0.0, 0.5))
    out = pipe([6] * 4, [0, 1, 2, 3], interventions=[iv])
    original, changed, diff, energy = compare(pipe, iv, classes=[6] * 4, seeds=[0, 1, 2, 3])

Kinds (each for the chosen `blocks`, default all, at the network evaluations whose flow time t
lies in `t_range`, inclusive; t = 0 is noise, t = 1 data):

    freq-off     the frequency branch's output replaced by zeros, or by the spatial branch's
                 output (replacement "other"); the frequency branch is then not run
    spatial-off  the spatial branch's output replaced by zeros, or by the frequency branch's
    fusion-add   the cross-attention fusion replaced by plain addition: f = cat(s, w), each
                 branch's output added to its own half of the normalized input
    attn-skip    the shared attention block skipped after the chosen blocks (it runs only
                 after every `attn_every`-th block; default: after all of them)
    freq-raster  the frequency branch reads its wavelet tokens in the spatial raster order
                 (row-major; replacement "spatial": this layer's spatial-branch order) instead
                 of its window scan

With no intervention the model runs exactly the official computation: the hook points
(`CombinedBlock.edit`, `DiMSUM.attn_skip`) are consulted, never patched in.

Compact text form (CLI `--intervention`, `Intervention.parse`, `str(iv)`):

    KIND[:blocks=B][:t=T0-T1][:with=R]      e.g.  freq-off:blocks=0-3:t=0-0.5
                                                   spatial-off:blocks=1,3:with=other
    B: "all", an index "2", a range "0-3", or a comma list of those "0,2-3"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from .models.dimsum import BlockEdit, CombinedBlock, DiMSUM, FrequencyBranch
from .models.scan_orders import attention_after, inverse_permutation
from .models.wavelets import SUBBANDS_L2, HaarDWT, packet_subbands
from .validation import InputError

if TYPE_CHECKING:
    from .pipeline import DiMSUMPipeline, PipelineOutput

# kind -> the replacements it accepts, the first being the default (empty: takes none).
KINDS: dict[str, tuple[str, ...]] = {
    "freq-off": ("zeros", "other"),
    "spatial-off": ("zeros", "other"),
    "fusion-add": (),
    "attn-skip": (),
    "freq-raster": ("raster", "spatial"),
}
KIND_MEANING = {
    "freq-off": "frequency branch output -> zeros (or the spatial branch's output)",
    "spatial-off": "spatial branch output -> zeros (or the frequency branch's output)",
    "fusion-add": "cross-attention fusion -> plain addition cat(s, w)",
    "attn-skip": "shared attention block skipped after the chosen blocks",
    "freq-raster": "frequency branch scans its tokens in raster order, not the window scan",
}
# The BlockEdit field each kind sets (attn-skip acts on the model, not on a block).
_FIELD = {"freq-off": "freq", "spatial-off": "spatial", "fusion-add": "fusion"}
# An evaluation's t is float32: 0.55 arrives as 0.550000011920929, so the gate allows this slack.
T_SLACK = 1e-6


@dataclass(frozen=True)
class Intervention:
    """One change to the network, for some blocks and some range of flow time t.

    kind: one of `KINDS`. blocks: block indices (None = all; for attn-skip, the blocks after
    which attention is skipped). t_range: (t0, t1) with 0 <= t0 <= t1 <= 1, inclusive.
    replacement: "zeros" | "other" (freq-off, spatial-off), "raster" | "spatial"
    (freq-raster); None = the kind's default. Values are checked and normalised on creation.
    """

    kind: str
    blocks: tuple[int, ...] | None = None
    t_range: tuple[float, float] = (0.0, 1.0)
    replacement: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(
                f"unknown intervention {self.kind!r}; choose one of {', '.join(KINDS)}"
            )
        blocks = self.blocks
        if blocks is not None:
            if isinstance(blocks, (int, str)) or not isinstance(blocks, Iterable):
                raise InputError(f"{self.kind}: blocks must be a sequence of ints or None")
            blocks = tuple(blocks)
            if not blocks or any(isinstance(b, bool) or not isinstance(b, int) for b in blocks):
                raise InputError(f"{self.kind}: blocks must be non-empty ints, got {blocks!r}")
            if min(blocks) < 0:
                raise InputError(f"{self.kind}: block indices must be >= 0, got {blocks!r}")
            blocks = tuple(sorted(set(blocks)))
        try:
            t0, t1 = (float(v) for v in self.t_range)
        except (TypeError, ValueError):
            raise InputError(
                f"{self.kind}: t_range must be two numbers (t0, t1), got {self.t_range!r}"
            ) from None
        if not 0.0 <= t0 <= t1 <= 1.0:
            raise InputError(f"{self.kind}: t_range needs 0 <= t0 <= t1 <= 1, got ({t0}, {t1})")
        allowed = KINDS[self.kind]
        rep = self.replacement
        if rep is None:
            rep = allowed[0] if allowed else None
        elif rep not in allowed:
            raise InputError(
                f"{self.kind}: replacement {rep!r} not accepted"
                + (f" (choose {' or '.join(allowed)})" if allowed else " (it takes none)")
            )
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "t_range", (t0, t1))
        object.__setattr__(self, "replacement", rep)

    # ---- gates ----------------------------------------------------------------------------
    def active_at(self, t: float) -> bool:
        """Whether an evaluation at flow time t is changed (t in [t0, t1], to `T_SLACK`)."""
        return self.t_range[0] - T_SLACK <= t <= self.t_range[1] + T_SLACK

    def resolve_blocks(self, model: DiMSUM) -> tuple[int, ...]:
        """The block indices this intervention changes in `model` (InputError if it cannot)."""
        depth, every = len(model.blocks), model.config.attn_every
        chosen = self.blocks if self.blocks is not None else tuple(range(depth))
        bad = [b for b in chosen if b >= depth]
        if bad:
            raise InputError(
                f"{self.kind}: blocks {bad} out of range (the model has 0..{depth - 1})"
            )
        if self.kind == "attn-skip":
            followed = tuple(b for b in range(depth) if attention_after(b, every))
            if not followed or not hasattr(model, "attn_block"):
                raise InputError("attn-skip: this model has no shared attention block")
            if self.blocks is None:
                return followed
            lone = [b for b in chosen if b not in followed]
            if lone:
                raise InputError(
                    f"attn-skip: no attention block runs after blocks {lone}; it runs after "
                    f"blocks {list(followed)}"
                )
            return chosen
        if model.config.block_type != "combined" or not all(
            isinstance(model.blocks[b], CombinedBlock) for b in chosen
        ):
            raise InputError(
                f"{self.kind}: needs the combined spatial + frequency blocks; this model's "
                f"blocks are {model.config.block_type!r}"
            )
        return chosen

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "blocks": None if self.blocks is None else list(self.blocks),
            "t_range": list(self.t_range),
            "replacement": self.replacement,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intervention:
        if not isinstance(d, dict) or "kind" not in d:
            raise InputError(f"an intervention needs a dict with a 'kind', got {d!r}")
        unknown = set(d) - {"kind", "blocks", "t_range", "replacement"}
        if unknown:
            raise InputError(f"intervention: unknown keys {sorted(unknown)}")
        blocks = d.get("blocks")
        return cls(
            kind=d["kind"],
            blocks=None if blocks is None else tuple(blocks),
            t_range=tuple(d.get("t_range", (0.0, 1.0))),  # type: ignore[arg-type]
            replacement=d.get("replacement"),
        )

    @classmethod
    def parse(cls, spec: str) -> Intervention:
        """`KIND[:blocks=B][:t=T0-T1][:with=R]` (see the module docstring) -> Intervention."""
        kind, *fields = [f.strip() for f in str(spec).split(":")]
        kwargs: dict[str, Any] = {}
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep or key not in ("blocks", "t", "with") or key in kwargs:
                raise InputError(
                    f"intervention {spec!r}: bad field {field!r}; expected "
                    "KIND[:blocks=0-3][:t=0-0.5][:with=other]"
                )
            kwargs[key] = value.strip()
        t_range = (0.0, 1.0)
        if "t" in kwargs:
            m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*-\s*([0-9]*\.?[0-9]+)", kwargs["t"])
            if not m:
                raise InputError(f"intervention {spec!r}: t must be T0-T1, e.g. t=0-0.5")
            t_range = (float(m[1]), float(m[2]))
        return cls(
            kind=kind,
            blocks=_parse_blocks(kwargs.get("blocks", "all"), spec),
            t_range=t_range,
            replacement=kwargs.get("with"),
        )

    def __str__(self) -> str:
        out = self.kind
        if self.blocks is not None:
            out += ":blocks=" + ",".join(str(b) for b in self.blocks)
        if self.t_range != (0.0, 1.0):
            out += f":t={self.t_range[0]:g}-{self.t_range[1]:g}"
        if self.replacement is not None and self.replacement != KINDS[self.kind][0]:
            out += f":with={self.replacement}"
        return out


def _parse_blocks(text: str, spec: str) -> tuple[int, ...] | None:
    """ "all" | "2" | "0-3" | "0,2-3" -> block indices (None = all)."""
    if text == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise InputError(
                f"intervention {spec!r}: blocks must look like 'all', '2', '0-3' or '0,2-3'"
            )
        out.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    return tuple(out)


def as_intervention(value: Intervention | str | dict[str, Any]) -> Intervention:
    """An Intervention from itself, its text form or its dict form."""
    if isinstance(value, Intervention):
        return value
    if isinstance(value, str):
        return Intervention.parse(value)
    if isinstance(value, dict):
        return Intervention.from_dict(value)
    raise InputError(f"not an intervention: {value!r}")


def check_interventions(
    model: DiMSUM, interventions: Iterable[Intervention | str | dict[str, Any]]
) -> list[Intervention]:
    """Checked interventions for `model`: blocks exist and have the part changed, and no two
    interventions set the same part of a block differently at the same t (InputError)."""
    ivs = [as_intervention(v) for v in interventions]
    resolved = [(iv, set(iv.resolve_blocks(model))) for iv in ivs]
    for i, (a, blocks_a) in enumerate(resolved):
        for b, blocks_b in resolved[i + 1 :]:
            # Different kinds change different parts (freq-off + spatial-off with "other" on
            # both is a swap of the branches); the same change twice is harmless.
            if a.kind != b.kind or a.replacement == b.replacement:
                continue
            common = sorted(blocks_a & blocks_b)
            if common and a.t_range[0] <= b.t_range[1] and b.t_range[0] <= a.t_range[1]:
                raise InputError(
                    f"interventions {str(a)!r} and {str(b)!r} both change blocks {common} "
                    "differently at the same t"
                )
    return ivs


def block_edits(
    model: DiMSUM, interventions: Iterable[Intervention], t: float | None = None
) -> tuple[dict[int, BlockEdit], frozenset[int]]:
    """({block: BlockEdit}, blocks whose attention is skipped) for the interventions active at t
    (t None: all of them). The interventions must have passed `check_interventions`."""
    fields: dict[int, dict[str, Any]] = {}
    skip: set[int] = set()
    for iv in interventions:
        if t is not None and not iv.active_at(t):
            continue
        for b in iv.resolve_blocks(model):
            if iv.kind == "attn-skip":
                skip.add(b)
            elif iv.kind == "freq-raster":
                fields.setdefault(b, {})["freq_order"] = _freq_order(model, b, iv.replacement)
            elif iv.kind == "fusion-add":
                fields.setdefault(b, {})["fusion"] = "add"
            else:
                fields.setdefault(b, {})[_FIELD[iv.kind]] = iv.replacement
    return {b: BlockEdit(**f) for b, f in fields.items()}, frozenset(skip)


def _freq_order(model: DiMSUM, block: int, replacement: str | None) -> tuple[torch.Tensor, ...]:
    """(perm, inv) for the frequency branch of `block`: row-major raster or the spatial order."""
    blk = model.blocks[block]
    assert isinstance(blk, CombinedBlock) and isinstance(blk.freq_mamba, FrequencyBranch)
    if replacement == "spatial":
        return blk.spatial_mamba.scan_perm, blk.spatial_mamba.scan_inv
    perm = torch.arange(model.config.num_tokens, device=blk.spatial_mamba.scan_perm.device)
    return perm, inverse_permutation(perm)


@contextmanager
def apply_interventions(
    model: DiMSUM, interventions: Iterable[Intervention], t: float | None = None
) -> Iterator[None]:
    """Apply the interventions active at flow time t (None: all) for the forwards run inside.

    The edits live on the model (like tracers), so one model runs one intervened forward at a
    time; nesting is refused. On exit the model is back to the official computation.
    """
    edits, skip = block_edits(model, interventions, t)
    if model.attn_skip or any(getattr(b, "edit", None) is not None for b in model.blocks):
        raise RuntimeError(
            "this model already has interventions applied: one intervened forward at a time"
        )
    try:
        for b, edit in edits.items():
            model.blocks[b].edit = edit
        model.attn_skip = skip
        yield
    finally:
        for b in edits:
            model.blocks[b].edit = None
        model.attn_skip = frozenset()


# ---- comparing an intervened run with the original --------------------------------------------
def subband_energy(images: np.ndarray) -> np.ndarray:
    """Mean energy per 2-level Haar packet subband. (N, H, W, 3) uint8 -> (N, 16) float64.

    Images are mapped to [-1, 1]; the packet is orthonormal (the model's /4 undone), so the 16
    values sum to the image's mean square. Order: `SUBBANDS_L2` (level-1 band . level-2 band).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 127.5 - 1
    bands = packet_subbands(x, HaarDWT().double()) * 4  # (N, 16, 3, H/4, W/4)
    return (bands.pow(2).sum(dim=(2, 3, 4)) / x[0].numel()).numpy()


# Subband groups for summaries: level-1 detail bands = the finest scale (edges, 1-2 px texture).
BAND_GROUPS = {
    "approximation": ("LL.LL",),
    "coarse detail": ("LL.LH", "LL.HL", "LL.HH"),
    "fine detail": tuple(b for b in SUBBANDS_L2 if not b.startswith("LL.")),
}


@dataclass
class SubbandEnergy:
    """Per-image, per-subband energy of the original and changed images, (N, 16) each."""

    original: np.ndarray
    changed: np.ndarray
    of_difference: np.ndarray  # energy of (changed - original): where the change lies
    names: tuple[str, ...] = SUBBANDS_L2

    @property
    def difference(self) -> np.ndarray:
        """changed - original, (N, 16)."""
        return self.changed - self.original

    def group_change(self) -> dict[str, float]:
        """Relative change of each `BAND_GROUPS` energy over all images (0.1 = +10%)."""
        out = {}
        for group, names in BAND_GROUPS.items():
            idx = [self.names.index(n) for n in names]
            before, after = self.original[:, idx].sum(), self.changed[:, idx].sum()
            out[group] = float((after - before) / max(before, 1e-12))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "original": self.original.tolist(),
            "changed": self.changed.tolist(),
            "difference": self.difference.tolist(),
            "of_difference": self.of_difference.tolist(),
            "group_change": self.group_change(),
        }


class Comparison(NamedTuple):
    """What `compare` returns; unpacks as (original, changed, diff, energy)."""

    original: PipelineOutput
    changed: PipelineOutput
    diff: np.ndarray  # (N, H, W, 3) float32, (changed - original) / 255, in [-1, 1]
    energy: SubbandEnergy


# Settings that must agree between an original run passed to `compare` and the changed run.
_SAME_SETTINGS = (
    "classes",
    "seeds",
    "steps",
    "sampler",
    "schedule",
    "path",
    "guidance_scale",
    "temperature",
)


def compare(
    pipe: DiMSUMPipeline,
    intervention: Intervention | str | Sequence[Intervention | str],
    *,
    original: PipelineOutput | None = None,
    **kwargs: Any,
) -> Comparison:
    """Run `pipe(**kwargs)` plainly and with the intervention(s); return both, their difference
    and the per-subband energy of each image.

    original: a plain run already made with the same kwargs (it is checked against the
    changed run's settings), to pay for the intervened run only. kwargs: those of
    `DiMSUMPipeline.__call__` (classes, seeds, guidance_scale, ...); return_trajectory
    defaults to False here.
    """
    if isinstance(intervention, (Intervention, str, dict)):
        intervention = [intervention]
    kwargs.setdefault("return_trajectory", False)
    kwargs.pop("interventions", None)
    if original is None:
        original = pipe(**kwargs)
    changed = pipe(**kwargs, interventions=list(intervention))
    differ = [k for k in _SAME_SETTINGS if original.settings.get(k) != changed.settings.get(k)]
    if differ:
        raise InputError(f"the original run differs from this one in {differ}")
    a, b = original.array, changed.array
    diff = (b.astype(np.float32) - a.astype(np.float32)) / 255.0
    energy = SubbandEnergy(
        original=subband_energy(a),
        changed=subband_energy(b),
        of_difference=_difference_energy(a, b),
    )
    return Comparison(original, changed, diff, energy)


def _difference_energy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-subband energy of (b - a) in the [-1, 1] image scale, (N, 16)."""
    d = torch.from_numpy(b.astype(np.float64) - a.astype(np.float64)).permute(0, 3, 1, 2) / 127.5
    bands = packet_subbands(d, HaarDWT().double()) * 4
    return (bands.pow(2).sum(dim=(2, 3, 4)) / d[0].numel()).numpy()


def difference_rgb(diff: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Signed difference (N, H, W, 3) -> (N, H, W, 3) uint8 picture: blue where the changed
    image is darker, red where brighter, white where equal; one `scale` (default: the largest
    |mean over channels|) for all images so they can be compared."""
    d = diff.mean(axis=-1)
    scale = float(scale if scale is not None else max(np.abs(d).max(), 1e-6))
    v = np.clip(d / scale, -1, 1)[..., None]
    white = np.ones(3)
    red, blue = np.array([0.84, 0.15, 0.16]), np.array([0.13, 0.4, 0.75])
    rgb = np.where(v > 0, white + v * (red - white), white - v * (blue - white))
    return (rgb * 255).round().astype(np.uint8)
