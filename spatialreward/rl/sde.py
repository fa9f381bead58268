"""The flow sampler as a stochastic process: Gaussian steps with log-probabilities.

Rectified-flow convention (SD3, FLUX, OmniGen2): ``x_s = (1 - s) * x_data + s * noise``
with the noise level ``s`` going from 1 (pure noise) to 0 (data) and the model predicting
the velocity ``v = noise - x_data``. The ODE sampler steps ``x + v * ds`` (``ds < 0``).

Flow-GRPO turns each step into a Gaussian with the same marginals: with
``a`` the noise level and ``std_s = a * sqrt(s / (1 - s))`` (``s = 1`` is replaced by the
schedule's second value, which keeps the first step finite),

    mean = x + (v + std_s**2 / (2 s) * (x + (1 - s) * v)) * ds
    x'   = mean + std_s * sqrt(-ds) * eps,      eps ~ N(0, I)

so every step has a density, and a policy-gradient method can use the ratio of its
probability under new and old weights. Log-probabilities are averaged over the
dimensions of one sample (as Flow-GRPO does), which keeps ratios near 1 and makes the
clip range independent of the image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def sigma_schedule(steps: int, shift: float = 1.0) -> torch.Tensor:
    """(steps + 1,) noise levels from 1 down to 0; ``shift`` > 1 spends more steps at
    high noise (SD3's time shift).

    >>> sigma_schedule(4).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
    >>> [round(v, 3) for v in sigma_schedule(2, shift=3.0).tolist()]
    [1.0, 0.75, 0.0]
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if shift != 1.0:
        s = shift * s / (1 + (shift - 1) * s)
    return s.to(torch.float32)


def step_std(sigma: torch.Tensor, sigma_cap: float, noise_level: float) -> torch.Tensor:
    """Flow-GRPO's diffusion coefficient ``a * sqrt(s / (1 - s))``; at ``s = 1`` the
    denominator uses ``sigma_cap`` (the schedule's second value).

    >>> round(float(step_std(torch.tensor(0.5), 0.9, 0.7)), 4)
    0.7
    """
    denom = 1 - torch.where(sigma >= 1, torch.as_tensor(sigma_cap, dtype=sigma.dtype), sigma)
    return noise_level * torch.sqrt(sigma / denom)


@dataclass(frozen=True)
class Step:
    """One stochastic step for a batch of B samples."""

    sample: torch.Tensor  # (B, ...) the next state x'
    mean: torch.Tensor  # (B, ...) the Gaussian's mean
    scale: torch.Tensor  # (B,) its standard deviation std_s * sqrt(-ds); 0 for an ODE step
    log_prob: torch.Tensor  # (B,) mean log-density per dimension; 0 for an ODE step


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def sde_step(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
             *, noise_level: float, sigma_cap: float, noise: torch.Tensor | None = None,
             prev: torch.Tensor | None = None) -> Step:
    """One step from noise level ``sigma`` to ``sigma_next`` (both (B,)).

    Give ``noise`` to sample a new state, or ``prev`` (a state sampled earlier) to get its
    log-probability under the current ``v``. ``noise_level = 0`` is the plain Euler ODE
    step (no density: scale and log_prob are 0).

    >>> x = torch.zeros(2, 3); v = torch.ones(2, 3)
    >>> s, n = torch.full((2,), 0.5), torch.full((2,), 0.25)
    >>> st = sde_step(x, v, s, n, noise_level=0.0, sigma_cap=0.75, noise=torch.randn(2, 3))
    >>> st.sample.tolist()
    [[-0.25, -0.25, -0.25], [-0.25, -0.25, -0.25]]
    """
    ds = _bcast(sigma_next - sigma, x)  # negative
    s = _bcast(sigma, x)
    if noise_level == 0:
        mean = x + v * ds
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return Step(mean if prev is None else prev, mean, zeros, zeros)
    std = _bcast(step_std(sigma, sigma_cap, noise_level), x)
    mean = x + (v + std**2 / (2 * s) * (x + (1 - s) * v)) * ds
    scale = std * torch.sqrt(-ds)
    if prev is None:
        if noise is None:
            raise ValueError("give the noise to sample a step, or prev to score one")
        prev = mean + scale * noise
    return Step(prev, mean, scale.reshape(-1), gaussian_log_prob(prev.detach(), mean, scale))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B,) log N(x; mean, scale^2) averaged over all but the first dimension.

    >>> round(float(gaussian_log_prob(torch.zeros(1, 4), torch.zeros(1, 4),
    ...                               torch.ones(1, 1))[0]), 4)
    -0.9189
    """
    scale = scale.reshape(-1, *([1] * (x.dim() - 1)))
    lp = -((x - mean) ** 2) / (2 * scale**2) - torch.log(scale) - LOG_SQRT_2PI
    return lp.flatten(1).mean(1)


def gaussian_kl(mean: torch.Tensor, mean_ref: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B,) KL between two Gaussian steps of the same scale, per dimension:
    ``|mean - mean_ref|^2 / (2 scale^2)`` averaged over the dimensions of a sample.

    >>> float(gaussian_kl(torch.ones(1, 2), torch.zeros(1, 2), torch.ones(1))[0])
    0.5
    """
    scale = scale.reshape(-1, *([1] * (mean.dim() - 1)))
    return ((mean - mean_ref) ** 2 / (2 * scale**2)).flatten(1).mean(1)
