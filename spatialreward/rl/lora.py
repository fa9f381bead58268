"""Low-rank adapters for the embedded editor's convolutions and linear layers.

``add_lora(model, rank, alpha)`` replaces every ``nn.Conv2d`` and ``nn.Linear`` under
``model`` (except those named in ``skip``) with a wrapper that adds
``alpha / rank * up(down(x))``; ``down`` has the base layer's kernel, stride and padding
with ``rank`` output channels, ``up`` is a zero-initialised 1 x 1 (so a fresh adapter
changes nothing). The base weights are frozen. ``set_lora_enabled(model, False)`` turns
every adapter off: the model is then exactly the frozen reference policy (what
``peft``'s ``disable_adapter()`` does for a diffusers transformer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LoRAConv2d(nn.Module):
    def __init__(self, base: nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size,  # type: ignore[arg-type]
                              base.stride, base.padding, bias=False)  # type: ignore[arg-type]
        self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.enabled:
            out = out + self.scale * self.up(self.down(x))
        return out


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.enabled:
            out = out + self.scale * self.up(self.down(x))
        return out


def add_lora(model: nn.Module, rank: int, alpha: float, skip: Iterable[str] = ()) -> int:
    """Wrap every Conv2d / Linear of ``model`` (not under a name prefix in ``skip``);
    freeze everything else. Returns the number of wrapped layers."""
    skip = tuple(skip)
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear) and not name.startswith(skip) and name]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapper: nn.Module
        if isinstance(module, nn.Conv2d):
            wrapper = LoRAConv2d(module, rank, alpha)
        else:
            wrapper = LoRALinear(module, rank, alpha)
        setattr(parent, attr, wrapper)
    return len(targets)


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    for m in model.modules():
        if isinstance(m, LoRAConv2d | LoRALinear):
            m.enabled = enabled


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' weights, in a fixed order (what the optimiser trains)."""
    return [p for n, p in model.named_parameters() if n.endswith(("down.weight", "up.weight"))
            and isinstance(model.get_submodule(n.rsplit(".", 2)[0]), LoRAConv2d | LoRALinear)]
