"""Flow-GRPO on an editing policy, in named steps: sample -> reward -> advantages ->
loss -> update (:meth:`FlowGRPOTrainer.train_step` runs them in that order).

One RL step (P prompts, G samples each, K processes, each with P / K prompts):

1. **sample**: the policy draws G edits per prompt along the SDE sampler; the noise of
   row ``p * G + g`` comes from a seed derived from (seed, step, row) only.
2. **reward**: the reward mix judges the local edits in batches; every edit also gets
   its ground truth. Failed judgments are excluded and counted.
3. **advantages**: rewards are gathered from every process; each group is normalised
   over its valid samples and clipped.
4. **loss**: for each row, ``round(timestep_fraction * (steps - 1))`` of its stochastic
   steps (drawn from (seed, step, row)), the clipped ratio loss plus ``kl_weight`` times
   the KL to the reference policy, averaged over valid rows and those steps. With
   ``method = "nft"`` (likelihood-free), as many noise levels are drawn per row instead:
   the row's final sample is noised again to each, and the loss is
   :func:`~.grpo.contrastive_velocity_loss` plus ``kl_weight`` times the squared velocity
   change from the reference (what a Gaussian step's KL grows with).
5. **update**: rows are split into ``updates_per_step`` minibatches (row mod U); one
   AdamW step each, after gradient clipping. Later minibatches see the weights the
   earlier ones changed, which is where the ratio clip starts to bite.

Every process does the same forward/backward calls in the same order (excluded rows
are weighted 0, not skipped), and the local loss is scaled by K / (valid rows of the
global minibatch), so DDP's averaged gradient equals the single-process gradient of
the same global batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..judgment import Judgment
from ..synth.language import OPERATIONS
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .config import RLConfig
from .distributed import World, any_flag, gather_objects, sum_values, wrap_ddp
from .groundtruth import GroundTruth
from .grpo import (
    clipped_policy_loss,
    contrastive_velocity_loss,
    group_advantages,
    optimality,
)
from .monitor import Alert, hacking_alert
from .policy import EditPolicy, Rollout, chunks
from .prompts import EditPrompt, prompt_set
from .rewards import RewardBatch, RewardMix
from .sde import gaussian_kl

EVAL_STEP = -1  # the seed stream of held-out evaluations (the same noise every time)


def row_seed(seed: int, step: int, row: int, stream: int = 0) -> int:
    """The seed of one row's randomness at one step.

    >>> row_seed(0, 3, 5) == row_seed(0, 3, 5) != row_seed(0, 3, 6)
    True
    """
    ss = np.random.SeedSequence([seed, step + 1, row, stream])
    return int(ss.generate_state(1)[0])


@dataclass
class SampleGroup:
    """The G edits of one prompt at one step, as the store and the UI show them."""

    step: int
    prompt: EditPrompt
    images: list[np.ndarray]
    rewards: list[float]  # NaN where excluded
    truth: list[GroundTruth]
    judgments: list[dict[str, Judgment]]


@dataclass
class StepBatch:
    """This process's share of one step."""

    step: int
    prompts: list[EditPrompt]  # local prompts, P / K
    first_row: int  # global row index of local row 0
    rollout: Rollout
    seconds: float


@dataclass
class Advantages:
    local: np.ndarray  # (L,) advantages of the local rows
    valid_local: np.ndarray  # (L,) bool
    valid_global: np.ndarray  # (N,) bool
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class NFTDraws:
    """The likelihood-free update's inputs for a step's local rows: ``k`` per row."""

    xt: torch.Tensor  # (L, k, ...) final states noised again to sigma
    sigma: torch.Tensor  # (L, k)
    target: torch.Tensor  # (L, k, ...) the flow-matching velocity: noise - final state
    v_old: torch.Tensor  # (L, k, ...) the sampling weights' velocity at xt


class Recorder(Protocol):
    """Where a run's numbers and samples go (the store, a list in tests)."""

    def metrics(self, step: int, values: dict[str, float]) -> None: ...

    def samples(self, group: SampleGroup) -> None: ...

    def store_items(self, groups: list[SampleGroup]) -> None:
        """Put groups into the store as on-policy annotation items."""
        ...

    def alert(self, alert: Alert) -> None: ...


class NullRecorder:
    def metrics(self, step: int, values: dict[str, float]) -> None:
        pass

    def samples(self, group: SampleGroup) -> None:
        pass

    def store_items(self, groups: list[SampleGroup]) -> None:
        pass

    def alert(self, alert: Alert) -> None:
        pass


class FlowGRPOTrainer:
    """Improves ``policy`` on SynthEdit prompts with the ``rewards`` mix."""

    def __init__(self, config: RLConfig, policy: EditPolicy, rewards: RewardMix, *,
                 world: World | None = None, out: Path | None = None,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.config = config
        self.policy = policy
        self.rewards = rewards
        self.world = world or World()
        self.world_check()
        self.out = Path(out or config.out or "data/runs/rl")
        self.log = log
        params = policy.trainable_parameters()
        if not params:
            raise ValueError("the policy has no trainable parameters (finetune mode 'none'?)")
        self.optimizer = torch.optim.AdamW(params, lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.module = policy.wrap(lambda m: wrap_ddp(self.world, m))
        size = policy.image_size
        self.train_prompts = prompt_set("train", config.prompts, size, seed=config.seed,
                                        ops=config.ops, phrasings=config.phrasings,
                                        scenes=config.scenes)
        self.eval_prompts = (prompt_set("test", config.eval_prompts, size, seed=config.seed,
                                        ops=config.ops or OPERATIONS,
                                        phrasings=config.phrasings, scenes=config.scenes)
                             if config.eval_prompts else [])
        self.step = 0  # completed steps
        self.history: list[dict[str, float]] = []  # metrics of every completed step
        self.alerts: list[dict[str, Any]] = []
        self._stop = False
        self._started = time.perf_counter()

    def world_check(self) -> None:
        self.config.check_world(self.world.size)

    def request_stop(self) -> None:
        """Stop after the current step (a SIGTERM handler calls this)."""
        self._stop = True

    # -- 1. sample ----------------------------------------------------------------------
    def sample(self, step: int) -> StepBatch:
        cfg, world = self.config, self.world
        rng = np.random.default_rng([cfg.seed, step, 0xC0DE])
        chosen = rng.choice(len(self.train_prompts), cfg.prompts_per_step, replace=False)
        per_rank = cfg.prompts_per_step // world.size
        mine = chosen[world.rank * per_rank:(world.rank + 1) * per_rank]
        prompts = [self.train_prompts[int(i)] for i in mine]
        first = world.rank * per_rank * cfg.group_size
        seeds = [row_seed(cfg.seed, step, first + k)
                 for k in range(len(prompts) * cfg.group_size)]
        t0 = time.perf_counter()
        rollout = self.policy.sample([p.source for p in prompts],
                                     [p.instruction for p in prompts], cfg.group_size, seeds,
                                     steps=cfg.sampling_steps, noise_level=cfg.noise_level,
                                     sde_window=cfg.sde_window)
        return StepBatch(step, prompts, first, rollout, time.perf_counter() - t0)

    # -- 2. reward ----------------------------------------------------------------------
    def reward(self, batch: StepBatch) -> RewardBatch:
        g = self.config.group_size
        row_prompts = [batch.prompts[k // g] for k in range(len(batch.rollout))]
        return self.rewards.score(row_prompts, batch.rollout.images)

    # -- 3. advantages ------------------------------------------------------------------
    def advantages(self, batch: StepBatch, rewards: RewardBatch) -> Advantages:
        cfg = self.config
        local = {"reward": rewards.reward, "valid": rewards.valid,
                 "gt_success": rewards.gt_success, "gt_score": rewards.gt_score,
                 "per_term": rewards.per_term, "failures": dict(rewards.failures)}
        parts = gather_objects(self.world, local)
        reward = np.concatenate([p["reward"] for p in parts])
        valid = np.concatenate([p["valid"] for p in parts])
        groups = np.arange(len(reward)) // cfg.group_size
        adv = group_advantages(np.nan_to_num(reward), groups, valid, clip=cfg.adv_clip)
        n_local = len(batch.rollout)
        mine = slice(batch.first_row, batch.first_row + n_local)
        stats = _reward_stats(reward, valid, groups, parts)
        return Advantages(adv[mine], valid[mine], valid, stats)

    # -- 4. loss ------------------------------------------------------------------------
    def timesteps(self, batch: StepBatch) -> torch.Tensor:
        """(L, k) the steps each local row trains on."""
        stochastic = torch.nonzero(batch.rollout.stochastic).flatten().numpy()
        k = min(self.config.train_timesteps(), len(stochastic))
        rows = []
        for r in range(len(batch.rollout)):
            rng = np.random.default_rng(row_seed(self.config.seed, batch.step,
                                                 batch.first_row + r, stream=1))
            rows.append(np.sort(rng.permutation(stochastic)[:k]))
        return torch.from_numpy(np.stack(rows)).long()

    def loss(self, batch: StepBatch, rows: torch.Tensor, steps: torch.Tensor,
             adv: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the per-row losses at ``steps`` (one per row) and its parts."""
        cfg, rollout = self.config, batch.rollout
        new = self.policy.log_prob(rollout, rows, steps)
        old = rollout.log_probs[rows, steps]
        policy_loss, clipped = clipped_policy_loss(new.log_prob, old, adv, cfg.clip_range)
        if cfg.kl_weight > 0:
            with torch.no_grad(), self.policy.reference():
                ref = self.policy.log_prob(rollout, rows, steps)
            kl = gaussian_kl(new.mean, ref.mean, new.scale)
        else:
            kl = torch.zeros_like(policy_loss)
        per_row = policy_loss + cfg.kl_weight * kl
        total = (per_row * weight).sum()
        parts = {"policy_loss": float((policy_loss.detach() * weight).sum()),
                 "kl": float((kl.detach() * weight).sum()),
                 "clip_fraction": float((clipped.float() * weight).sum()),
                 "ratio_dev": float(((new.log_prob.detach() - old).abs() * weight).sum())}
        return total, parts

    def nft_draws(self, batch: StepBatch, k: int) -> NFTDraws:
        """``k`` noise levels and noises per local row (from (seed, step, row) only), the
        noised final states and, under the weights the samples came from, their velocity."""
        rollout = batch.rollout
        x0 = rollout.states[:, -1]
        sigma, noise = [], []
        for r in range(len(rollout)):
            gen = torch.Generator().manual_seed(
                row_seed(self.config.seed, batch.step, batch.first_row + r, stream=2))
            sigma.append(torch.rand(k, generator=gen))
            noise.append(torch.randn((k, *x0.shape[1:]), generator=gen))
        s, e = torch.stack(sigma), torch.stack(noise)  # (L, k), (L, k, ...)
        shape = (*s.shape, *([1] * (x0.dim() - 1)))
        xt = (1 - s.view(shape)) * x0[:, None] + s.view(shape) * e
        v_old = torch.empty_like(xt)
        with torch.no_grad():
            for c in chunks(len(rollout), self.config.micro_batch):
                rows = torch.arange(c.start, c.stop)
                for j in range(k):
                    v_old[c, j] = self.policy.velocity(rollout, rows, xt[c, j], s[c, j])
        return NFTDraws(xt, s, e - x0[:, None], v_old)

    def nft_loss(self, batch: StepBatch, draws: NFTDraws, rows: torch.Tensor, j: int,
                 adv: torch.Tensor, weight: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """The likelihood-free counterpart of :meth:`loss`, at noise draw ``j`` of each row."""
        cfg = self.config
        xt, sigma = draws.xt[rows, j], draws.sigma[rows, j]
        # Velocities times sigma: the error in the clean image's units (for an x-predicting
        # net, its own pretraining loss), where plain velocities would weight the
        # nearly-clean draws by 1 / sigma^2.
        s = sigma.view(-1, *([1] * (xt.dim() - 1)))
        v = self.policy.velocity(batch.rollout, rows, xt, sigma) * s
        v_old = draws.v_old[rows, j] * s
        per_row = contrastive_velocity_loss(v, v_old, draws.target[rows, j] * s,
                                            optimality(adv, cfg.nft_scale), cfg.nft_beta)
        dims = tuple(range(1, v.dim()))
        if cfg.kl_weight > 0:  # a Gaussian step's KL grows with the squared velocity change
            with torch.no_grad(), self.policy.reference():
                ref = self.policy.velocity(batch.rollout, rows, xt, sigma) * s
            kl = ((v - ref) ** 2).mean(dims)
        else:
            kl = torch.zeros_like(per_row)
        total = ((per_row + cfg.kl_weight * kl) * weight).sum()
        moved = (v.detach() - v_old).abs().mean(dims)
        parts = {"policy_loss": float((per_row.detach() * weight).sum()),
                 "kl": float((kl.detach() * weight).sum()), "clip_fraction": 0.0,
                 "ratio_dev": float((moved * weight).sum())}
        return total, parts

    # -- 5. update ----------------------------------------------------------------------
    def update(self, batch: StepBatch, advantages: Advantages) -> dict[str, float]:
        cfg, world = self.config, self.world
        n_local = len(batch.rollout)
        u_count = cfg.updates_per_step
        nft = cfg.method == "nft"
        steps = self.timesteps(batch)
        k = cfg.train_timesteps() if nft else steps.shape[1]
        draws = self.nft_draws(batch, k) if nft else None
        global_rows = np.arange(len(advantages.valid_global))
        sums = {"policy_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio_dev": 0.0,
                "grad_norm": 0.0}
        for u in range(u_count):
            count = int(advantages.valid_global[global_rows % u_count == u].sum())
            if count == 0:
                continue  # every process sees the same count and skips together
            local = np.flatnonzero((batch.first_row + np.arange(n_local)) % u_count == u)
            scale = world.size / (count * k)
            passes = [(c, j) for c in chunks(len(local), cfg.micro_batch) for j in range(k)]
            self.optimizer.zero_grad(set_to_none=True)
            for n, (c, j) in enumerate(passes):
                rows = torch.from_numpy(local[c]).long()
                adv = torch.from_numpy(advantages.local[local[c]]).float()
                weight = torch.from_numpy(advantages.valid_local[local[c]]).float() * scale
                sync = n == len(passes) - 1
                no_sync = getattr(self.module, "no_sync", None)
                ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
                with ctx:
                    total, parts = (
                        self.nft_loss(batch, draws, rows, j, adv, weight) if draws is not None
                        else self.loss(batch, rows, steps[rows, j], adv, weight))
                    total.backward()
                for key, value in parts.items():
                    sums[key] += value / u_count / world.size
            params = self.policy.trainable_parameters()
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            sums["grad_norm"] += float(norm) / u_count / world.size
            self.optimizer.step()
        totals = sum_values(world, list(sums.values()))
        out = dict(zip(sums, totals, strict=True))
        out["loss"] = out["policy_loss"] + cfg.kl_weight * out["kl"]
        return out

    # -- one step, evaluation, the loop ------------------------------------------------------
    def train_step(self, recorder: Recorder | None = None) -> dict[str, float]:
        recorder = recorder or NullRecorder()
        t0 = time.perf_counter()
        step = self.step
        batch = self.sample(step)
        rewards = self.reward(batch)
        adv = self.advantages(batch, rewards)
        t1 = time.perf_counter()
        parts = self.update(batch, adv)
        t2 = time.perf_counter()
        timing = sum_values(self.world, [batch.seconds, rewards.seconds, t2 - t1, t2 - t0])
        sample_s, reward_s, update_s, step_s = (v / self.world.size for v in timing)
        rollouts = self.config.prompts_per_step * self.config.group_size
        metrics = {**adv.stats, **parts, "sample_seconds": sample_s, "reward_seconds": reward_s,
                   "update_seconds": update_s, "step_seconds": step_s,
                   "rollouts_per_second": rollouts / max(step_s, 1e-9)}
        self.step += 1
        self.history.append({"step": float(step), **metrics})
        steps = [h for h in self.history if "reward_mean" in h]
        alert = hacking_alert([int(h["step"]) for h in steps],
                              [h["reward_mean"] for h in steps],
                              [h["gt_success"] for h in steps],
                              window=self.config.alert_window, rise=self.config.alert_rise,
                              drop=self.config.alert_drop, p=self.config.alert_p)
        metrics["hacking_alert"] = 0.0 if alert is None else 1.0
        self.history[-1]["hacking_alert"] = metrics["hacking_alert"]
        if self.world.main:
            recorder.metrics(step, metrics)
            if alert is not None:
                self.alerts.append({"step": alert.step, "message": alert.message})
                recorder.alert(alert)
            every = self.config.sample_every
            if every and step % every == 0:
                recorder.samples(self._group(batch, rewards))
            if self.config.samples_to_store:  # reads the batch only: resume stays exact
                n = min(self.config.samples_to_store, len(batch.prompts))
                recorder.store_items([self._group(batch, rewards, k) for k in range(n)])
        return metrics

    def _group(self, batch: StepBatch, rewards: RewardBatch, k: int = 0) -> SampleGroup:
        """The ``k``-th local prompt's group of this step."""
        g = self.config.group_size
        rows = slice(k * g, (k + 1) * g)
        return SampleGroup(batch.step, batch.prompts[k], list(batch.rollout.images[rows]),
                           [float(r) for r in rewards.reward[rows]], rewards.truth[rows],
                           rewards.judgments[rows])

    def evaluate(self) -> dict[str, float]:
        """Held-out ground-truth success (ODE samples, the same noise every time) and the
        reward mix's opinion of the same edits, per operation too."""
        if not self.eval_prompts:
            return {}
        world, cfg = self.world, self.config
        mine = list(range(world.rank, len(self.eval_prompts), world.size))
        prompts = [self.eval_prompts[i] for i in mine]
        seeds = [row_seed(cfg.seed, EVAL_STEP, i) for i in mine]
        rollout = self.policy.sample([p.source for p in prompts],
                                     [p.instruction for p in prompts], 1, seeds,
                                     steps=cfg.sampling_steps, noise_level=0.0)
        scored = self.rewards.score(prompts, rollout.images)
        local = [(i, p.op, t.success, t.score, r, v) for i, p, t, r, v in
                 zip(mine, prompts, scored.truth, scored.reward, scored.valid, strict=True)]
        # in prompt order, so the means add up in the same order on any number of processes
        rows = sorted((r for part in gather_objects(world, local) for r in part),
                      key=lambda r: r[0])
        rows = [r[1:] for r in rows]
        out = {"heldout_gt_success": float(np.mean([r[1] for r in rows])),
               "heldout_gt_score": float(np.mean([r[2] for r in rows]))}
        valid = [r[3] for r in rows if r[4]]
        if valid:
            out["heldout_reward"] = float(np.mean(valid))
        for op in OPERATIONS:
            ok = [r[1] for r in rows if r[0] == op]
            if ok:
                out[f"heldout_gt_success/{op}"] = float(np.mean(ok))
        return out

    def run(self, recorder: Recorder | None = None, max_steps: int | None = None) -> str:
        """Train until ``config.steps`` (or ``max_steps`` more steps), a stop request or
        the time budget; returns ``"done"``, ``"cancelled"`` or ``"budget"``. Evaluates
        held out at the start (fresh runs), every ``eval_every`` steps and at the end;
        checkpoints every ``checkpoint_every`` steps and when it stops."""
        recorder = recorder or NullRecorder()
        cfg = self.config
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        if self.step == 0:
            self._record_eval(recorder)
        outcome = "done"
        while self.step < end:
            if any_flag(self.world, self._stop):
                outcome = "cancelled"
                break
            metrics = self.train_step(recorder)
            self.log(f"step {self.step}/{cfg.steps}: reward {metrics['reward_mean']:.3f} "
                     f"gt {metrics['gt_success']:.2f} kl {metrics['kl']:.2e} "
                     f"({metrics['step_seconds']:.1f} s)")
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < end:
                self._record_eval(recorder)
            over = bool(cfg.max_minutes) and (
                time.perf_counter() - self._started > 60 * cfg.max_minutes)
            if any_flag(self.world, over):
                outcome = "budget"
                break
            if self.step % cfg.checkpoint_every == 0:
                self.save()
        if outcome != "cancelled":  # a stop request should stop quickly
            self._record_eval(recorder)
        self.save()
        return outcome

    def _record_eval(self, recorder: Recorder) -> None:
        values = self.evaluate()
        if values and self.world.main:
            recorder.metrics(self.step, values)
            self.history.append({"step": float(self.step), "eval": 1.0, **values})
            per_op = " ".join(f"{k.split('/')[1]}={100 * v:.0f}%" for k, v in values.items()
                              if k.startswith("heldout_gt_success/"))
            self.log(f"held-out at step {self.step}: ground-truth success "
                     f"{100 * values['heldout_gt_success']:.1f}% ({per_op})")

    # -- checkpoints --------------------------------------------------------------------
    def save(self) -> None:
        if not self.world.main:
            return
        state = {"step": self.step, "history": self.history, "alerts": self.alerts,
                 "config": self.config.to_dict()}
        folder = save_checkpoint(self.out, policy_state=self.policy.trainable_state(),
                                 optimizer=self.optimizer, state=state)
        save = getattr(self.policy, "save", None)
        if save is not None:  # the whole editor, for eval-editor --policy
            save(folder / "editor", {"rl_step": self.step, "scenes": self.config.scenes})

    def resume(self) -> None:
        """Continue from ``out/checkpoint`` (every process loads the same files)."""
        policy_state, state = load_checkpoint(self.out, self.optimizer)
        self.policy.load_trainable_state(policy_state)
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.alerts = list(state.get("alerts", []))

    def has_checkpoint(self) -> bool:
        return has_checkpoint(self.out)


def _reward_stats(reward: np.ndarray, valid: np.ndarray, groups: np.ndarray,
                  parts: list[dict[str, Any]]) -> dict[str, float]:
    """Reward mean / spread, ground truth, failures, per backend: over all N rows."""
    r = reward[valid]
    group_std = [float(reward[(groups == g) & valid].std())
                 for g in np.unique(groups) if ((groups == g) & valid).sum() >= 2]
    stats = {
        "reward_mean": float(r.mean()) if len(r) else float("nan"),
        "reward_std": float(r.std()) if len(r) else float("nan"),
        "reward_group_std": float(np.mean(group_std)) if group_std else 0.0,
        "reward_failed": float((~valid).sum()),
        "gt_success": float(np.concatenate([p["gt_success"] for p in parts]).mean()),
        "gt_score": float(np.concatenate([p["gt_score"] for p in parts]).mean()),
    }
    for spec in parts[0]["per_term"]:
        values = np.concatenate([p["per_term"][spec] for p in parts])
        ok = values[~np.isnan(values)]
        stats[f"reward/{spec}"] = float(ok.mean()) if len(ok) else float("nan")
    failures: dict[str, int] = {}
    for p in parts:
        for key, n in p["failures"].items():
            failures[key] = failures.get(key, 0) + n
    for key, n in failures.items():
        stats[f"failed/{key}"] = float(n)
    return stats
