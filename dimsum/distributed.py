"""Minimal torch.distributed setup shared by training and sharded sampling/evaluation.

Run as one process (CPU or one GPU) or under `torchrun --nproc_per_node N` (DDP; NCCL on GPUs,
gloo on CPUs). Nothing here is needed for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun; choose the device.

    device: "cpu", "cuda" or None (cuda when available).
    """
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across(info: DistInfo, value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar tensor over all processes (for logging)."""
    if not info.enabled:
        return value
    v = value.detach().clone()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / info.world_size


def any_across(info: DistInfo, flag: bool) -> bool:
    """True on every process when `flag` is true on any (so all ranks leave a loop together)."""
    if not info.enabled:
        return flag
    v = torch.tensor([float(flag)], device=info.device)
    dist.all_reduce(v, op=dist.ReduceOp.MAX)
    return bool(v.item())


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (a list of one when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(items: list[Any], info: DistInfo) -> list[Any]:
    """This process's share of a list (round-robin, so shards differ by at most one item)."""
    return items[info.rank :: info.world_size]


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
