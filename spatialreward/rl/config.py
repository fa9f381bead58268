"""Settings of a Flow-GRPO run: one frozen dataclass, read from JSON, validated.

The Flow-GRPO defaults follow ``shared/PROTOCOL.md`` (noise level 0.7, groups of 12,
advantages clipped to +-5, clip range 1e-4, KL weight 0.04, 60% of the timesteps,
LoRA). The protocol gives no learning rate; 3e-4 is Flow-GRPO's LoRA default.
This module imports no torch: the UI validates a config before starting a run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..configfile import config_from_dict, load_config
from ..errors import ConfigError
from ..synth.language import OPERATIONS

ORACLE = "gt"  # the ground-truth score as a reward: an upper bound, and cheap in tests
METHODS = ("grpo", "nft")
"""Policy updates the trainer offers (RLConfig.method)."""


@dataclass(frozen=True)
class RewardTerm:
    """One reward backend and its weight in the mix."""

    backend: str = field(metadata={"help": "backend spec (mini, mini:PATH, pixel, vlm:PATH) "
                                           "or 'gt', the ground-truth oracle"})
    weight: float = field(default=1.0, metadata={"help": "weight in the mix (> 0)"})

    def __post_init__(self) -> None:
        if not self.backend.strip():
            raise ConfigError("a reward term needs a backend spec, e.g. 'mini'")
        if not self.weight > 0:
            raise ConfigError(f"reward weight of {self.backend!r} must be > 0, got {self.weight}")


def reward_term(part: str, default: float | None = 1.0) -> RewardTerm:
    """``"BACKEND=WEIGHT"`` (or ``"BACKEND"``, weighing ``default``; with ``default=None``
    the weight must be written) as a reward term.

    >>> reward_term("pixel=0.2")
    RewardTerm(backend='pixel', weight=0.2)
    """
    spec, eq, weight = part.rpartition("=")
    if not eq:
        if default is None:
            raise ConfigError(f"write BACKEND=WEIGHT, e.g. pixel=0.2; got {part!r}")
        spec, weight = part, str(default)
    try:
        return RewardTerm(spec.strip(), float(weight))
    except ValueError:
        raise ConfigError(f"reward weight {weight!r} in {part!r} is not a number; "
                          "write BACKEND=WEIGHT, e.g. mini=0.7") from None


def parse_reward_mix(text: str) -> tuple[RewardTerm, ...]:
    """``"mini=0.7, pixel=0.3"`` (or just ``"mini"``) -> reward terms.

    >>> [(t.backend, t.weight) for t in parse_reward_mix("mini:data/x=2, pixel")]
    [('mini:data/x', 2.0), ('pixel', 1.0)]
    """
    terms = [reward_term(part) for part in (p.strip() for p in text.split(",")) if part]
    if not terms:
        raise ConfigError("name at least one reward backend, e.g. 'mini' or 'mini=0.7, pixel=0.3'")
    return tuple(terms)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RLConfig:
    """One Flow-GRPO run (a JSON file with these keys; paths relative to the repo root)."""

    policy: str = field(default="models/editor", metadata=_help(
        "editor checkpoint folder (editor.safetensors + config.json)"))
    rewards: tuple[RewardTerm, ...] = field(default=(RewardTerm("mini"),), metadata=_help(
        "reward mix: [{backend, weight}, ...] or 'mini=0.7, pixel=0.3'"))
    out: str = field(default="", metadata=_help(
        "output folder (checkpoints, samples, curves); the Studio sets it per run"))
    # -- prompts
    prompts: int = field(default=256, metadata=_help("training prompts (SynthEdit train split)"))
    ops: tuple[str, ...] = field(default=(), metadata=_help(
        "operations to train on (empty: all, taking turns)"))
    phrasings: str = field(default="seen", metadata=_help(
        "'seen': the train split's phrasings; 'all': held-out phrasings too"))
    scenes: str = field(default="policy", metadata=_help(
        "scene distribution of training and held-out prompts (rl.prompts.SCENES): "
        "'default' or 'simple', or 'policy': the one the policy checkpoint records it was "
        "trained on (config.json; 'default' when it records none)"))
    eval_prompts: int = field(default=60, metadata=_help(
        "held-out prompts (test split) for ground-truth success before, during, after"))
    eval_every: int = field(default=0, metadata=_help(
        "held-out evaluation every N steps (0: only at the start and the end)"))
    # -- Flow-GRPO
    steps: int = field(default=100, metadata=_help("RL steps (sample, reward, update)"))
    prompts_per_step: int = field(default=4, metadata=_help("prompts per step (all ranks)"))
    group_size: int = field(default=12, metadata=_help("samples per prompt G"))
    sampling_steps: int = field(default=10, metadata=_help("sampler steps per edit"))
    noise_level: float = field(default=0.7, metadata=_help(
        "SDE noise level a (0: the plain ODE sampler, 'nft' only: a group then differs "
        "only in its starting noise)"))
    sde_window: int = field(default=0, metadata=_help(
        "0: every sampler step but the last is stochastic; N: only the first N (the "
        "high-noise ones, Flow-GRPO-Fast), the rest follow the ODE, and grpo trains on "
        "those N alone"))
    method: str = field(default="grpo", metadata=_help(
        "'grpo': Flow-GRPO's clipped likelihood-ratio loss on recorded SDE steps; 'nft': "
        "the likelihood-free update (rl.grpo.contrastive_velocity_loss) on the final "
        "samples noised again"))
    clip_range: float = field(default=1e-4, metadata=_help("PPO ratio clip range"))
    adv_clip: float = field(default=5.0, metadata=_help("advantages clipped to +-this"))
    kl_weight: float = field(default=0.04, metadata=_help("beta: weight of the KL to the "
                                                          "reference policy"))
    timestep_fraction: float = field(default=0.6, metadata=_help(
        "share of the stochastic steps each trajectory trains on (nft: as many noise "
        "levels drawn per sample)"))
    nft_beta: float = field(default=1.0, metadata=_help(
        "nft: how far the implicit positive / negative policies sit from the sampling one"))
    nft_scale: float = field(default=2.0, metadata=_help(
        "nft: advantage at which a sample counts as wholly good (or bad)"))
    lr: float = field(default=3e-4, metadata=_help("AdamW learning rate"))
    weight_decay: float = field(default=1e-4, metadata=_help("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient norm clip"))
    updates_per_step: int = field(default=2, metadata=_help(
        "optimiser steps per RL step (the rollouts split into this many minibatches)"))
    finetune: str = field(default="lora", metadata=_help("'lora' or 'full'"))
    lora_rank: int = field(default=8, metadata=_help("LoRA rank"))
    lora_alpha: float = field(default=16.0, metadata=_help("LoRA alpha (scale alpha/rank)"))
    micro_batch: int = field(default=16, metadata=_help("rows per forward/backward pass"))
    # -- rewards and monitoring
    judge_size: int = field(default=256, metadata=_help(
        "edits are upscaled to this many pixels before the reward model judges them"))
    reward_batch: int = field(default=32, metadata=_help("edits per reward-model call"))
    alert_window: int = field(default=50, metadata=_help(
        "steps the hacking alert fits its two trends to (rl.monitor)"))
    alert_rise: float = field(default=0.02, metadata=_help(
        "reward rise (0..1) of the fitted line over the window that, with a ground-truth "
        "fall, raises the alert"))
    alert_drop: float = field(default=0.05, metadata=_help(
        "ground-truth success fall (0..1) of the fitted line over the window that raises "
        "the alert"))
    alert_p: float = field(default=0.01, metadata=_help(
        "one-sided p-value each trend must be below: the noise of the window's own steps"))
    # -- bookkeeping
    seed: int = field(default=0, metadata=_help("seed of prompts, noise and timesteps"))
    threads: int = field(default=2, metadata=_help("torch CPU threads per process"))
    checkpoint_every: int = field(default=5, metadata=_help("steps between checkpoints"))
    sample_every: int = field(default=1, metadata=_help(
        "steps between sample groups logged to the store (0: never)"))
    samples_to_store: int = field(default=0, metadata=_help(
        "sample groups per step put into the store as on-policy annotation items (the "
        "Annotate tab's RL samples queue; at most the main process's prompts; 0: none)"))
    max_minutes: float = field(default=0.0, metadata=_help(
        "stop (and checkpoint) after this much wall-clock time; 0: no limit"))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        rewards = self.rewards
        if isinstance(rewards, str):
            rewards = parse_reward_mix(rewards)
        set_(self, "rewards", tuple(r if isinstance(r, RewardTerm) else
                                    RewardTerm(r) if isinstance(r, str) else RewardTerm(**r)
                                    for r in rewards))
        set_(self, "ops", tuple(self.ops))
        if not self.rewards:
            raise ConfigError("rewards is empty; name at least one backend, e.g. ['mini']")
        bad_ops = [o for o in self.ops if o not in OPERATIONS]
        if bad_ops:
            raise ConfigError(f"unknown ops {bad_ops}; choose from {', '.join(OPERATIONS)}")
        positive = ("prompts", "steps", "prompts_per_step", "group_size", "sampling_steps",
                    "updates_per_step", "micro_batch", "judge_size", "reward_batch",
                    "alert_window", "threads", "checkpoint_every", "lora_rank")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be at least 2 (advantages compare samples of "
                              f"a prompt), got {self.group_size}")
        if self.sampling_steps < 2:
            raise ConfigError("sampling_steps must be at least 2 (the last step is the "
                              "deterministic one; the others are trained)")
        if self.prompts_per_step > self.prompts:
            raise ConfigError(f"prompts_per_step {self.prompts_per_step} exceeds the "
                              f"{self.prompts} training prompts")
        if (self.prompts_per_step * self.group_size) % self.updates_per_step:
            raise ConfigError(f"prompts_per_step * group_size = "
                              f"{self.prompts_per_step * self.group_size} rollouts do not "
                              f"split into updates_per_step = {self.updates_per_step} "
                              "equal minibatches")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.nft_beta <= 0 or self.nft_scale <= 0:
            raise ConfigError("nft_beta and nft_scale must be positive")
        if self.alert_window < 3:
            raise ConfigError(f"alert_window must be at least 3 steps (it fits a trend), got "
                              f"{self.alert_window}")
        if not 0 < self.alert_p < 1:
            raise ConfigError(f"alert_p must be a probability in (0, 1), got {self.alert_p}")
        if not 0 < self.timestep_fraction <= 1:
            raise ConfigError(f"timestep_fraction must be in (0, 1], got "
                              f"{self.timestep_fraction}")
        # grpo trains on the SDE steps' log-probabilities; nft only needs final samples
        floor_ok = self.noise_level >= 0 if self.method == "nft" else self.noise_level > 0
        if not (floor_ok and self.noise_level <= 2):
            raise ConfigError(f"noise_level must be in (0, 2], or 0 with method 'nft' (the "
                              f"ODE sampler; 'grpo' trains on the SDE's log-probabilities), "
                              f"got {self.noise_level}")
        if not 0 <= self.sde_window < max(1, self.sampling_steps):
            raise ConfigError(f"sde_window must be 0 (all but the last step) or 1.."
                              f"{self.sampling_steps - 1} (sampling_steps - 1), got "
                              f"{self.sde_window}")
        for name in ("clip_range", "adv_clip", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.samples_to_store <= self.prompts_per_step:
            raise ConfigError(f"samples_to_store must be 0..prompts_per_step "
                              f"({self.prompts_per_step}), got {self.samples_to_store}")
        for name in ("kl_weight", "weight_decay", "max_minutes", "eval_prompts", "eval_every",
                     "sample_every", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.finetune not in ("lora", "full"):
            raise ConfigError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.phrasings not in ("seen", "all"):
            raise ConfigError(f"phrasings must be 'seen' or 'all', got {self.phrasings!r}")
        if self.scenes == "policy":
            set_(self, "scenes", recorded_scenes(self.policy))
        from .prompts import check_scenes

        check_scenes(self.scenes)

    def train_timesteps(self) -> int:
        """How many of the stochastic steps (all but the last) each row trains on.

        >>> RLConfig(sampling_steps=10).train_timesteps()
        5
        """
        return max(1, round(self.timestep_fraction * (self.sampling_steps - 1)))

    def check_world(self, world: int) -> None:
        """Prompts are sharded across ``world`` processes: each takes the same number."""
        if self.prompts_per_step % world:
            raise ConfigError(f"prompts_per_step {self.prompts_per_step} must be divisible by "
                              f"the {world} processes (each samples whole groups)")
        local = self.prompts_per_step // world * self.group_size
        if local % self.updates_per_step:
            raise ConfigError(f"each process's {local} rollouts must split into "
                              f"updates_per_step = {self.updates_per_step} minibatches")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rewards"] = [asdict(r) for r in self.rewards]
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "the config") -> RLConfig:
        """The settings in ``data``; unknown keys are refused (``where`` names the source)."""
        return config_from_dict(cls, data, where)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RLConfig:
        """The run in the JSON file ``path``, ``overrides`` put over it (:func:`load_config`)."""
        return load_config(cls, path, what="RL config", overrides=overrides)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def recorded_scenes(folder: str | Path) -> str:
    """The scene distribution an editor checkpoint was trained on, as its config.json
    records it (``train-editor`` writes ``train.scenes``, an RL checkpoint ``scenes``);
    ``"default"`` when it records none. Train, reward and evaluate an editor on this one."""
    config = Path(folder) / "config.json"
    try:
        meta = json.loads(config.read_text())
    except (OSError, ValueError):
        return "default"
    train = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    return str(meta.get("scenes") or train.get("scenes") or "default")
