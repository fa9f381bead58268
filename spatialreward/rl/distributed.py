"""Running the trainer on several processes: ``torchrun --nproc_per_node=K``.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; the
trainer then joins a process group (gloo on CPU, NCCL when CUDA is available) and
wraps the policy's network in ``DistributedDataParallel``. Prompts are sharded (each
process samples whole groups), rewards are gathered so every process sees the whole
batch for group statistics, the loss is scaled so that DDP's gradient average equals
the single-process gradient of the same global batch.

For policies too large for one device, wrap with FSDP instead of DDP
(``torch.distributed.fsdp.fully_shard`` on each transformer block, then on the root),
see ``docs/rl.md``; nothing else in the trainer changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the trainer's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world() -> World:
    """Join the process group torchrun describes (no-op for a single process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return World(rank, size, local)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(world: World, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for a single process)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def any_flag(world: World, flag: bool) -> bool:
    """True on every process when any process raised ``flag`` (a stop request)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sum_values(world: World, values: list[float]) -> list[float]:
    """Element-wise sum over processes."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def wrap_ddp(world: World, module: torch.nn.Module) -> torch.nn.Module:
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)
