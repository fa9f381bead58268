"""The Flow-GRPO trainer in-process on a tiny editor: its steps, learning from a reward,
excluded judgments, the reward mix, the hacking alert, and exact resumption."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialreward.errors import ConfigError
from spatialreward.judgment import Judgment
from spatialreward.rl.config import RewardTerm, RLConfig, recorded_scenes
from spatialreward.rl.embedded import EmbeddedEditor
from spatialreward.rl.prompts import prompt_set
from spatialreward.rl.rewards import RewardMix
from spatialreward.rl.tiny import tiny_editor, tiny_rl_config
from spatialreward.rl.trainer import FlowGRPOTrainer, SampleGroup

torch.set_num_threads(1)


class FakeBackend:
    """A judge whose reward is ``fn(edited image)``; ``fn`` may also say the judgment failed."""

    version = "1"

    def __init__(self, fn: Callable[[np.ndarray], float | str], name: str = "fake") -> None:
        self.fn = fn
        self.name = name
        self.calls = 0

    def judge(self, source, edited, instruction, evidence=None) -> Judgment:
        self.calls += 1
        value = self.fn(np.asarray(edited))
        if isinstance(value, str):  # a judge whose output did not parse
            return Judgment(status=value, backend=self.name, backend_version="1",
                            raw_sc="I think it is fine", error="no JSON in the output")
        s = 25.0 * float(value)
        return Judgment(status="ok", sc=(s, s), pq=(s, s), backend=self.name,
                        backend_version="1")


def brightness(img: np.ndarray) -> float:
    return float(img.mean() / 255.0)


class ListRecorder:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []
        self.groups: list[SampleGroup] = []
        self.alerts: list = []

    def metrics(self, step, values):
        self.rows.append((step, dict(values)))

    def samples(self, group):
        self.groups.append(group)

    def alert(self, alert):
        self.alerts.append(alert)


def make_trainer(out: Path, config: RLConfig, backends: dict[str, FakeBackend],
                 finetune: str | None = None) -> FlowGRPOTrainer:
    torch.manual_seed(0)  # the adapters' initial weights
    policy = EmbeddedEditor(tiny_editor(), finetune=finetune or config.finetune,
                            lora_rank=config.lora_rank, micro_batch=64)
    mix = RewardMix(config.rewards, judge_size=16, build=lambda spec: backends[spec])
    return FlowGRPOTrainer(config, policy, mix, out=out)


def test_one_step_trains_only_the_adapters_and_every_adapter_gets_a_gradient(tmp_path):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    frozen = {k: v.clone() for k, v in trainer.policy.net.named_parameters()
              if not v.requires_grad}
    metrics = trainer.train_step()
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    for key in ("reward_mean", "reward_std", "gt_success", "kl", "loss", "clip_fraction",
                "sample_seconds", "reward_seconds", "update_seconds", "rollouts_per_second"):
        assert key in metrics
    lora = trainer.policy.trainable_parameters()
    assert lora and all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in lora)
    assert all(torch.equal(v, dict(trainer.policy.net.named_parameters())[k])
               for k, v in frozen.items())
    assert metrics["kl"] > 0  # the second minibatch sees the first one's update


@pytest.mark.parametrize("method", ["grpo", "nft"])
def test_the_policy_learns_what_the_reward_asks_for(tmp_path, method):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0,
                            steps=8, lr=3e-3, finetune="full", group_size=6,
                            kl_weight=0.0, method=method)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    rewards = [trainer.train_step()["reward_mean"] for _ in range(config.steps)]
    assert np.mean(rewards[-2:]) > np.mean(rewards[:2]) + 0.02, rewards


def test_failed_judgments_are_excluded_and_counted_never_scored(tmp_path):
    calls = {"n": 0}

    def flaky(img: np.ndarray) -> float | str:
        calls["n"] += 1
        return "parse_failed" if calls["n"] % 3 == 0 else brightness(img)

    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(flaky)})
    batch = trainer.sample(0)
    scored = trainer.reward(batch)
    failed = ~scored.valid
    assert failed.sum() == len(batch.rollout) // 3
    assert np.isnan(scored.reward[failed]).all() and scored.failures == {
        "fake:parse_failed": int(failed.sum())}
    adv = trainer.advantages(batch, scored)
    assert np.all(adv.local[failed] == 0)
    assert adv.stats["reward_failed"] == failed.sum()
    assert adv.stats["reward_mean"] == pytest.approx(np.mean(scored.reward[~failed]))
    assert adv.stats["failed/fake:parse_failed"] == failed.sum()
    metrics = trainer.update(batch, adv)
    assert np.isfinite(metrics["loss"])


def test_reward_mix_weights_backends_and_reports_a_crashing_one():
    prompts = prompt_set("val", 2, 16)
    images = np.stack([p.source for p in prompts])
    backends = {"a": FakeBackend(lambda im: 0.2, "a"), "b": FakeBackend(lambda im: 0.8, "b")}
    mix = RewardMix([RewardTerm("a", 1.0), RewardTerm("b", 3.0)], judge_size=16,
                    build=lambda spec: backends[spec])
    scored = mix.score(prompts, images)
    assert np.allclose(scored.reward, 0.65) and scored.valid.all()
    assert np.allclose(scored.per_term["a"], 0.2)

    def boom(img):
        raise RuntimeError("server down")

    crashing = RewardMix([RewardTerm("c")], judge_size=16,
                         build=lambda spec: FakeBackend(boom, "c"))
    scored = crashing.score(prompts, images)
    assert not scored.valid.any() and scored.failures == {"c:backend_error": 2}
    assert "server down" in (scored.judgments[0]["c"].error or "")
    oracle = RewardMix([RewardTerm("gt")], judge_size=16).score(
        prompts, np.stack([p.target for p in prompts]))
    assert np.allclose(oracle.reward, 1.0) and oracle.gt_success.all()


def test_the_hacking_alert_reaches_the_recorder(tmp_path):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0,
                            alert_window=10)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(lambda im: 0.9)})
    # nine steps of reward rising and ground truth falling, then this one continues both
    trainer.history = [{"step": float(s), "reward_mean": 0.45 + 0.05 * s + 0.01 * (s % 2),
                        "gt_success": 0.9 - 0.1 * s} for s in range(9)]
    trainer.step = 9
    rec = ListRecorder()
    metrics = trainer.train_step(rec)  # reward 0.9 now, ground truth 0 (an untrained editor)
    assert metrics["hacking_alert"] == 1.0 and len(rec.alerts) == 1
    assert rec.alerts[0].step == 9 and rec.groups and len(rec.groups[0].images) == 4


@pytest.mark.parametrize("method", ["grpo", "nft"])
def test_resuming_after_a_stop_equals_training_straight_through(tmp_path, method):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=2, steps=4,
                            checkpoint_every=1, method=method)
    fake = {"fake": FakeBackend(brightness)}
    first = make_trainer(tmp_path / "a", config, fake)
    assert first.run(max_steps=2) == "done" and first.step == 2
    first.request_stop()
    resumed = make_trainer(tmp_path / "a", config, fake)
    resumed.resume()
    assert resumed.step == 2
    assert resumed.run() == "done" and resumed.step == 4
    straight = make_trainer(tmp_path / "b", config, fake)
    straight.run()
    a, b = resumed.policy.trainable_state(), straight.policy.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = resumed.optimizer.state_dict()["state"], straight.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    curve = [h["reward_mean"] for h in resumed.history if "reward_mean" in h]
    assert curve == [h["reward_mean"] for h in straight.history if "reward_mean" in h]


def test_a_stop_request_checkpoints_and_cancels(tmp_path):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0, steps=5)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    trainer.log = lambda line: trainer.request_stop()  # stop after the first step
    assert trainer.run() == "cancelled" and trainer.step == 1
    assert (tmp_path / "checkpoint" / "state.json").is_file()
    # the editor kept for eval-editor records the scenes it was trained on
    assert recorded_scenes(tmp_path / "checkpoint" / "editor") == config.scenes


def test_the_likelihood_free_update_pulls_toward_good_samples_and_away_from_bad(tmp_path):
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0,
                            method="nft", kl_weight=0.0, lr=1e-2, finetune="full",
                            updates_per_step=1)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    batch = trainer.sample(0)
    adv = trainer.advantages(batch, trainer.reward(batch))
    draws = trainer.nft_draws(batch, 1)
    rows = torch.arange(len(batch.rollout))

    def error() -> torch.Tensor:  # each row's flow-matching error at its noise draw
        with torch.no_grad():
            v = trainer.policy.velocity(batch.rollout, rows, draws.xt[:, 0], draws.sigma[:, 0])
        s = draws.sigma[:, 0, None, None, None]  # in the clean image's units, as trained
        return ((s * (v - draws.target[:, 0])) ** 2).mean((1, 2, 3))

    before = error()
    trainer.update(batch, adv)
    change = error() - before
    good, bad = adv.local > 1.0, adv.local < -1.0
    assert good.any() and bad.any()
    assert change[torch.from_numpy(good)].mean() < change[torch.from_numpy(bad)].mean()


def test_the_likelihood_free_update_trains_on_ode_samples_and_grpo_refuses_them(tmp_path):
    with pytest.raises(ConfigError, match="0 with method 'nft'"):
        tiny_rl_config("unused", rewards=({"backend": "fake"},), noise_level=0.0)
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0,
                            method="nft", noise_level=0.0, kl_weight=0.0, lr=1e-2,
                            finetune="full", updates_per_step=1)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    batch = trainer.sample(0)
    assert not batch.rollout.stochastic.any()  # every step is the plain ODE
    # a group still differs, through its starting noise alone, and the update moves it
    images = batch.rollout.states[:, -1]
    assert (images[0] - images[1]).abs().max() > 1e-3
    before = [p.detach().clone() for p in trainer.policy.trainable_parameters()]
    out = trainer.update(batch, trainer.advantages(batch, trainer.reward(batch)))
    assert out["grad_norm"] > 0
    assert any((p - b).abs().max() > 0 for p, b in zip(trainer.policy.trainable_parameters(),
                                                       before, strict=True))


def test_a_high_noise_window_makes_only_its_steps_stochastic_and_trains_on_them(tmp_path):
    """Flow-GRPO-Fast: ``sde_window = 2`` keeps the SDE on the first two (high-noise) steps
    only; the rest of the trajectory is the ODE (no log-probability spread), and the loss
    draws its timesteps from those two."""
    with pytest.raises(ConfigError, match="sde_window"):
        tiny_rl_config("unused", rewards=({"backend": "fake"},), sde_window=99)
    config = tiny_rl_config("unused", rewards=({"backend": "fake"},), eval_prompts=0,
                            sde_window=2, timestep_fraction=1.0)
    trainer = make_trainer(tmp_path, config, {"fake": FakeBackend(brightness)})
    batch = trainer.sample(0)
    assert batch.rollout.stochastic.tolist() == [True, True] + [False] * (
        config.sampling_steps - 2)
    # ODE steps add no noise: the recorded next state is the step's mean
    ode = batch.rollout.states[:, 3]
    assert torch.allclose(ode, batch.rollout.means[:, 2], atol=1e-6)
    assert not torch.allclose(batch.rollout.states[:, 1], batch.rollout.means[:, 0], atol=1e-3)
    steps = trainer.timesteps(batch)
    assert steps.shape[1] == 2 and set(steps.flatten().tolist()) == {0, 1}
    out = trainer.update(batch, trainer.advantages(batch, trainer.reward(batch)))
    assert out["grad_norm"] > 0 and np.isfinite(out["loss"])
