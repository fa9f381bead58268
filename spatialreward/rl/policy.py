"""What the Flow-GRPO trainer needs from an editing model: the policy protocol.

A policy samples edits along the stochastic version of its flow sampler
(:mod:`spatialreward.rl.sde`) and can recompute the log-probability of any recorded
step under its current weights. That is all the trainer uses, so any flow-matching
editing pipeline can be trained by implementing these few methods.

Mapping onto a diffusers-style pipeline (OmniGen2, FLUX.1 Kontext, Qwen-Image-Edit; the
recipe Flow-GRPO and EditScore's OmniGen2-RL use):

==========================  ==================================================================
protocol                    diffusers pipeline
==========================  ==================================================================
``sample``                  ``pipe.encode_prompt(instruction)`` and the VAE-encoded source
                            latents as the condition; initial latents from
                            ``torch.randn(..., generator=Generator().manual_seed(seed))``;
                            loop over ``FlowMatchEulerDiscreteScheduler`` sigmas calling the
                            transformer, but replace ``scheduler.step`` with
                            :func:`~spatialreward.rl.sde.sde_step` (keep every latent, mean,
                            scale and log-prob); ``pipe.vae.decode`` the last latents to images
``log_prob``                one transformer forward at the recorded latents and sigma of
                            each requested step, then ``sde_step(..., prev=next_latents)``
``velocity``                one transformer forward at given latents and sigmas with the
                            rollout's condition (the likelihood-free update's only need)
``reference()``             ``with transformer.disable_adapter():`` (peft LoRA); for a full
                            fine-tune, swap in a frozen copy of the initial weights
``trainable_parameters``    the LoRA parameters (``requires_grad``) of the transformer
``wrap``                    ``transformer = wrapper(transformer)`` (DDP / FSDP); forward passes
                            with gradients go through the wrapped module
``trainable_state``         ``get_peft_model_state_dict(transformer)`` / the full state dict
==========================  ==================================================================

Rows of a rollout are prompt-major: prompt ``p``'s ``g``-th sample is row ``p * G + g``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@dataclass
class Rollout:
    """B = P * G trajectories of K sampler steps, with what a policy gradient needs."""

    states: torch.Tensor  # (B, K + 1, ...) the state before each step, and the final one
    means: torch.Tensor  # (B, K, ...) each step's Gaussian mean
    scales: torch.Tensor  # (B, K) each step's noise scale (0: a deterministic step)
    log_probs: torch.Tensor  # (B, K) log-probability per dimension of each step taken
    sigmas: torch.Tensor  # (K + 1,) the noise schedule
    stochastic: torch.Tensor  # (K,) bool: steps with a density (the ones to train on)
    noise_level: float
    images: np.ndarray  # (B, H, W, 3) uint8, the decoded edits
    group_size: int
    cond: dict[str, Any] = field(default_factory=dict)  # the policy's own condition, per row

    def __len__(self) -> int:
        return int(self.states.shape[0])


@dataclass(frozen=True)
class StepLogProb:
    """Recomputed steps of M rows."""

    log_prob: torch.Tensor  # (M,)
    mean: torch.Tensor  # (M, ...)
    scale: torch.Tensor  # (M,)


@runtime_checkable
class EditPolicy(Protocol):
    """A flow-matching editing model that the Flow-GRPO trainer can improve."""

    name: str
    version: str

    @property
    def image_size(self) -> int:
        """The side of the square images it edits (prompts are drawn at this size)."""
        ...

    def sample(self, sources: Sequence[np.ndarray], instructions: Sequence[str],
               group_size: int, seeds: Sequence[int], *, steps: int,
               noise_level: float, sde_window: int = 0) -> Rollout:
        """``group_size`` edits of each (source, instruction): sources are (H, W, 3) uint8;
        ``seeds`` has one entry per row and alone decides that row's noise (initial and
        per step), so a row is the same however the batch is split. ``noise_level = 0``
        samples the deterministic ODE; ``sde_window = N > 0`` makes only the first N steps
        stochastic (``Rollout.stochastic`` says which)."""
        ...

    def log_prob(self, rollout: Rollout, rows: torch.Tensor, steps: torch.Tensor
                 ) -> StepLogProb:
        """Log-probability of step ``steps[m]`` of row ``rows[m]`` (each (M,)) under the
        current weights (with gradients when they are enabled)."""
        ...

    def velocity(self, rollout: Rollout, rows: torch.Tensor, x: torch.Tensor,
                 sigma: torch.Tensor) -> torch.Tensor:
        """The flow's velocity at states ``x`` (M, ...) and noise levels ``sigma`` (M,),
        for rows ``rows`` of ``rollout``'s condition, under the current weights (with
        gradients when enabled). The likelihood-free update (``method = "nft"``) trains
        on this alone: the rollout's final states (``states[:, -1]``) noised again."""
        ...

    def reference(self) -> AbstractContextManager[None]:
        """Inside this block every forward pass uses the frozen reference policy."""
        ...

    def trainable_parameters(self) -> list[nn.Parameter]:
        ...

    def wrap(self, wrapper: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """Wrap the trainable network (DDP, FSDP); returns the wrapped module."""
        ...

    def trainable_state(self) -> dict[str, torch.Tensor]:
        ...

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        ...


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size``.

    >>> [(s.start, s.stop) for s in chunks(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
