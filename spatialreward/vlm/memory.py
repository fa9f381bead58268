"""Peak memory of a piece of work: CUDA's allocator statistics on a GPU, live tensor bytes
on the CPU (every tensor an op creates is counted until its storage is freed).

The CPU figure counts tensors, not what a kernel allocates internally or what Python,
the allocator or loaded libraries hold, so it isolates exactly what attention capture
and ``output_attentions`` differ in: the attention tensors they keep or create.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

T = TypeVar("T")


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of CPU tensor storages created inside the mode while they live."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _freed(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self.live:
                continue
            self.live[key] = size
            self.current += size
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._freed, key)
        return out


@dataclass(frozen=True)
class Peak:
    """Peak memory of the work above what was allocated before it, in bytes."""

    bytes: int
    method: str

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def measure_peak(work: Callable[[], T], device: str = "cpu") -> tuple[T, Peak]:
    """Run ``work()`` and return its result and peak memory above the starting point."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = work()
        torch.cuda.synchronize()
        return result, Peak(torch.cuda.max_memory_allocated() - base, "torch.cuda allocator")
    with _LiveTensors() as tracker:
        result = work()
    return result, Peak(tracker.peak, "live CPU tensor bytes")
