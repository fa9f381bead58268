"""The GRPO arithmetic: group-normalised advantages and the clipped policy loss.

Pure functions over arrays, so the property tests can check them directly.
"""

from __future__ import annotations

import numpy as np
import torch

STD_EPS = 1e-4


def group_advantages(rewards: np.ndarray, groups: np.ndarray, valid: np.ndarray, *,
                     clip: float = 5.0, eps: float = STD_EPS) -> np.ndarray:
    """``(r - mean_group) / (std_group + eps)``, clipped to +-clip.

    Only valid samples take part: an excluded sample (its judgment failed) gets 0 and is
    left out of its group's mean and std. A group with fewer than two valid samples
    carries no comparison and gets 0 throughout.

    >>> group_advantages(np.array([1.0, 0.0, 5.0, 0.5]), np.array([0, 0, 1, 1]),
    ...                  np.array([True, True, False, True])).round(3).tolist()
    [1.0, -1.0, 0.0, 0.0]
    """
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros(len(rewards), np.float64)
    for g in np.unique(groups):
        members = (groups == g) & valid
        if members.sum() < 2:
            continue
        r = rewards[members]
        out[members] = (r - r.mean()) / (r.std() + eps)
    return np.clip(out, -clip, clip)


def clipped_policy_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor,
                        advantages: torch.Tensor, clip_range: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row PPO loss ``max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c))`` and whether
    the clip was active.

    >>> loss, clipped = clipped_policy_loss(torch.tensor([0.0, 0.1]), torch.zeros(2),
    ...                                     torch.tensor([1.0, 1.0]), 0.01)
    >>> [round(v, 4) for v in loss.tolist()], clipped.tolist()
    ([-1.0, -1.01], [False, True])
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), (ratio - 1.0).abs() > clip_range


def optimality(advantages: torch.Tensor, scale: float) -> torch.Tensor:
    """The likelihood-free method's per-sample weight in [0, 1]: ``0.5 + 0.5 *
    clip(A / scale, -1, 1)``; an average sample (A = 0) is 0.5 and teaches nothing.

    >>> optimality(torch.tensor([-4.0, 0.0, 1.0, 9.0]), 2.0).tolist()
    [0.0, 0.5, 0.75, 1.0]
    """
    return 0.5 + 0.5 * torch.clamp(advantages / scale, -1.0, 1.0)


def contrastive_velocity_loss(v: torch.Tensor, v_old: torch.Tensor, target: torch.Tensor,
                              r: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row loss of the likelihood-free update (after DiffusionNFT, Zheng et al. 2025).

    On the forward process of a sample (its clean result noised again), the policy's
    velocity ``v`` defines an implicit positive policy ``(1 - beta) v_old + beta v`` and
    an implicit negative one ``(1 + beta) v_old - beta v``; the flow-matching error of
    the positive one is weighted by the sample's optimality ``r``, the negative one's by
    ``1 - r``. A good sample pulls ``v`` toward the velocity that makes it, a bad one
    pushes it away, and at ``v = v_old`` a sample with ``r = 0.5`` gives no gradient.
    No log-probabilities are needed: the update is plain regression on the sampler's
    outputs, so its gradient noise is that of supervised training.

    >>> t = torch.zeros(2, 3); v0 = torch.ones(2, 3)
    >>> contrastive_velocity_loss(v0, v0, t, torch.tensor([1.0, 0.0]), 1.0).tolist()
    [1.0, 1.0]
    """
    positive = (1 - beta) * v_old + beta * v
    negative = (1 + beta) * v_old - beta * v
    dims = tuple(range(1, v.dim()))
    pos = ((positive - target) ** 2).mean(dims)
    neg = ((negative - target) ** 2).mean(dims)
    return r * pos + (1 - r) * neg
