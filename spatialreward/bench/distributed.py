"""Sharding a benchmark over processes started by ``torchrun``.

``torchrun --nproc_per_node=K -m spatialreward bench ...`` starts K copies of the command
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. :func:`from_env` joins them in a gloo
process group (CPU collectives; it works beside any GPU backend and across nodes), each
rank judges a contiguous block of the items (:meth:`Dist.shard`: rows next to each other
share a Parquet row group), and :meth:`Dist.gather` brings every rank's per-item results
to all ranks, so rank 0 computes the same metrics a single process would and writes the
files. Without ``WORLD_SIZE`` (or with 1) nothing is initialised and the calls are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import ConfigError

COLLECTIVE_TIMEOUT = timedelta(hours=12)
"""How long a rank waits for the others at a gather: ranks finish their shards at
different times, and a slow backend on a large benchmark can take hours."""


@dataclass(frozen=True)
class Dist:
    """This process's place among the ranks of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> range:
        """This rank's items: a contiguous block, sizes differing by at most one.

        >>> [list(Dist(r, 3).shard(7)) for r in range(3)]
        [[0, 1], [2, 3], [4, 5, 6]]
        """
        return range(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()


def from_env() -> Dist:
    """The ranks ``torchrun`` describes in the environment; joins the gloo group once."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; start "
                          "the ranks with torchrun") from None
    if world <= 1:
        return Dist()
    if not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is outside 0..{world - 1}")
    import torch
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    if torch.cuda.is_available():  # one GPU per local rank for backends that use one
        torch.cuda.set_device(local % torch.cuda.device_count())
    return Dist(td.get_rank(), td.get_world_size(), local)


def shutdown() -> None:
    """Leave the process group (at the end of a run) if one was joined."""
    import sys

    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
