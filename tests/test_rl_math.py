"""The arithmetic of Flow-GRPO: SDE steps and their densities, group advantages, the
clipped loss, the hacking alert, and the config's checks. Pure functions, no model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spatialreward.errors import ConfigError
from spatialreward.rl.config import RewardTerm, RLConfig, parse_reward_mix
from spatialreward.rl.grpo import clipped_policy_loss, group_advantages
from spatialreward.rl.monitor import hacking_alert
from spatialreward.rl.sde import gaussian_kl, sde_step, sigma_schedule, step_std

torch.set_num_threads(1)


def test_schedule_runs_from_noise_to_data():
    for shift in (1.0, 3.0):
        s = sigma_schedule(10, shift)
        assert s[0] == 1 and s[-1] == 0 and bool((s[1:] < s[:-1]).all())


def test_sde_log_prob_is_the_gaussian_density_of_the_step():
    torch.manual_seed(0)
    x, v = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    s, nxt = torch.full((3,), 0.6), torch.full((3,), 0.4)
    step = sde_step(x, v, s, nxt, noise_level=0.7, sigma_cap=0.9, noise=torch.randn(3, 2, 4, 4))
    scale = float(step_std(torch.tensor(0.6), 0.9, 0.7) * math.sqrt(0.2))
    assert torch.allclose(step.scale, torch.full((3,), scale))
    expected = torch.distributions.Normal(step.mean, scale).log_prob(step.sample)
    assert torch.allclose(step.log_prob, expected.flatten(1).mean(1), atol=1e-5)
    # Scoring the sampled state again (prev=) gives the same density.
    again = sde_step(x, v, s, nxt, noise_level=0.7, sigma_cap=0.9, prev=step.sample)
    assert torch.allclose(again.log_prob, step.log_prob) and torch.equal(again.mean, step.mean)


def test_sde_mean_reduces_to_euler_without_noise_and_first_step_is_finite():
    x, v = torch.randn(2, 3), torch.randn(2, 3)
    s, nxt = torch.full((2,), 0.5), torch.full((2,), 0.25)
    ode = sde_step(x, v, s, nxt, noise_level=0.0, sigma_cap=0.75, noise=torch.randn(2, 3))
    assert torch.allclose(ode.sample, x - 0.25 * v) and float(ode.log_prob.abs().sum()) == 0
    first = sde_step(x, v, torch.ones(2), torch.full((2,), 0.9), noise_level=0.7,
                     sigma_cap=0.9, noise=torch.randn(2, 3))
    assert torch.isfinite(first.log_prob).all() and torch.isfinite(first.sample).all()


def test_kl_is_zero_for_equal_means_and_the_gaussian_kl_otherwise():
    m = torch.randn(2, 5)
    assert float(gaussian_kl(m, m, torch.ones(2)).abs().max()) == 0
    other = m + 0.3
    p = torch.distributions.Normal(m, 0.5)
    q = torch.distributions.Normal(other, 0.5)
    exact = torch.distributions.kl_divergence(p, q).mean(1)
    assert torch.allclose(gaussian_kl(m, other, torch.full((2,), 0.5)), exact, atol=1e-6)


rewards_st = st.lists(st.floats(0, 1, allow_nan=False), min_size=8, max_size=8)


@given(rewards_st, st.lists(st.booleans(), min_size=8, max_size=8))
def test_advantages_are_normalised_within_groups_over_valid_samples(rewards, valid):
    r, ok = np.array(rewards), np.array(valid)
    groups = np.repeat(np.arange(2), 4)
    adv = group_advantages(r, groups, ok, clip=5.0)
    assert np.all(adv[~ok] == 0) and np.all(np.abs(adv) <= 5.0)
    for g in range(2):
        members = (groups == g) & ok
        if members.sum() >= 2 and np.abs(adv[members]).max() < 5.0:
            assert abs(adv[members].mean()) < 1e-6
        if members.sum() < 2:
            assert np.all(adv[groups == g] == 0)
        # A higher reward never gets a lower advantage than its group mates.
        idx = np.flatnonzero(members)
        for i in idx:
            for j in idx:
                if r[i] > r[j]:
                    assert adv[i] >= adv[j]


def test_clipped_loss_stops_pushing_beyond_the_clip():
    lp = torch.tensor([0.5, -0.5, 1e-6], requires_grad=True)
    loss, clipped = clipped_policy_loss(lp, torch.zeros(3), torch.tensor([1.0, -1.0, 1.0]), 0.1)
    loss.sum().backward()
    assert clipped.tolist() == [True, True, False]
    # Rows whose ratio already moved past the clip in the advantage's direction get no gradient;
    # the on-policy row (ratio 1) gets -A.
    assert lp.grad is not None and lp.grad.tolist()[:2] == [0.0, 0.0]
    assert lp.grad[2].item() == pytest.approx(-1.0, abs=1e-5)


def _run(seed: int, n: int, reward_trend: float, gt_trend: float) -> tuple[list, list]:
    """A run's per-step reward and ground-truth success, noisy as real ones: a step's few
    prompts lift or sink both curves together, plus each curve's own sampling noise."""
    rng = np.random.default_rng(seed)
    ease = rng.normal(0, 1, n)  # how easy the step's prompts were
    t = np.arange(n) / max(1, n - 1)
    reward = 0.75 + reward_trend * t + 0.04 * ease + rng.normal(0, 0.02, n)
    gt = 0.33 + gt_trend * t + 0.08 * ease + rng.normal(0, 0.06, n)
    return reward.tolist(), np.clip(gt, 0, 1).tolist()


def test_hacking_alert_fires_on_a_hacked_run():
    # reward 0.75 -> 0.95 while ground-truth success falls 0.33 -> 0.03 over 100 steps
    reward, gt = _run(0, 100, reward_trend=0.2, gt_trend=-0.3)
    fired = [s for s in range(100)
             if hacking_alert(range(s + 1), reward[:s + 1], gt[:s + 1]) is not None]
    assert fired and fired[-1] == 99 and len(fired) >= 25
    alert = hacking_alert(range(100), reward, gt)
    assert alert is not None and alert.reward_change > 0.02 and alert.gt_change < -0.05
    assert alert.window == 50 and alert.reward_p < 0.01 and alert.gt_p < 0.01
    assert "reward hacking at step 99" in alert.message


def test_hacking_alert_stays_quiet_on_flat_noisy_runs():
    quiet, old = 0, 0
    for seed in range(20):  # 20 runs x 250 steps in which nothing trends
        reward, gt = _run(100 + seed, 250, 0.0, 0.0)
        quiet += all(hacking_alert(range(s + 1), reward[:s + 1], gt[:s + 1]) is None
                     for s in range(250))
        # the rule it replaced: later half minus earlier half of the last 10 steps
        old += sum(np.mean(reward[s - 4:s + 1]) - np.mean(reward[s - 9:s - 4]) >= 0.02
                   and np.mean(gt[s - 4:s + 1]) - np.mean(gt[s - 9:s - 4]) <= -0.05
                   for s in range(9, 250))
    assert quiet == 20
    assert old >= 10  # it cried wolf on these very runs


def test_hacking_alert_needs_reward_up_and_ground_truth_down():
    up, _ = _run(1, 60, 0.2, 0.0)
    down, _ = _run(2, 60, -0.2, 0.0)
    assert hacking_alert(range(60), up, up) is None  # both up: the reward helps
    assert hacking_alert(range(60), down, down) is None
    assert hacking_alert(range(30), up[:30], down[:30]) is None  # too early for the window
    tiny = [0.5 + 0.0001 * s for s in range(60)]  # a real but negligible rise
    assert hacking_alert(range(60), tiny, down) is None


def test_reward_mix_parsing_and_config_checks():
    assert parse_reward_mix("mini=0.7, pixel=0.3") == (RewardTerm("mini", 0.7),
                                                       RewardTerm("pixel", 0.3))
    with pytest.raises(ConfigError, match="BACKEND=WEIGHT"):
        parse_reward_mix("mini=lots")
    with pytest.raises(ConfigError, match="at least one"):
        parse_reward_mix(" , ")
    c = RLConfig.from_dict({"rewards": "mini=2, pixel", "ops": ["recolor"]})
    assert c.rewards[0].weight == 2 and c.ops == ("recolor",)
    assert RLConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown keys"):
        RLConfig.from_dict({"group": 3})
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        RLConfig(group_size=1)
    with pytest.raises(ConfigError, match="unknown ops"):
        RLConfig(ops=("paint",))
    with pytest.raises(ConfigError, match="must be > 0"):
        RLConfig(rewards=({"backend": "mini", "weight": 0},))
    with pytest.raises(ConfigError, match="divisible by the 3 processes"):
        RLConfig(prompts_per_step=4).check_world(3)
    defaults = RLConfig()  # shared/PROTOCOL.md's Flow-GRPO settings
    assert (defaults.noise_level, defaults.clip_range, defaults.adv_clip, defaults.kl_weight,
            defaults.timestep_fraction, defaults.finetune) == (0.7, 1e-4, 5.0, 0.04, 0.6, "lora")
    assert 12 <= defaults.group_size <= 24


def test_shipped_configs_load_and_the_docs_name_every_command():
    from dataclasses import fields
    from pathlib import Path

    from spatialreward.rl.editor import EditorConfig
    from spatialreward.rl.editor_train import EditorTrainConfig

    root = Path(__file__).resolve().parents[1]
    specs = [RLConfig.from_file(root / "configs" / f"rl-{n}.json").rewards[0].backend
             for n in ("mini", "global", "pixel", "loop", "hacked")]
    assert specs == ["mini", "mini:data/runs/mini-global", "pixel",
                     "mini:data/experiments/learning2/mini-votes-all-tie-2000", "pixel"]
    assert EditorTrainConfig.from_file(root / "configs" / "editor.json").model == EditorConfig()
    for cls in (RLConfig, EditorTrainConfig, EditorConfig):
        assert all(f.metadata.get("help") for f in fields(cls)), cls
    doc = (root / "docs" / "rl.md").read_text()
    for command in ("train-editor --config configs/editor.json", "rl --config configs/rl-mini.json",
                    "rl --config configs/rl-global.json", "rl --config configs/rl-pixel.json",
                    "rl --config configs/rl-loop.json", "rl --config configs/rl-hacked.json",
                    "eval-editor --policy"):
        assert f"python -m spatialreward {command}" in doc, command
    assert "benchmarks/rl_step.py" in doc and "benchmarks/reward_signal.py" in doc
    # the experiment's figure is committed and shown
    assert "](rl/experiment.png)" in doc and (root / "docs" / "rl" / "experiment.png").is_file()


def test_scenes_follow_the_policy_checkpoint_unless_given(tmp_path):
    import json

    simple = tmp_path / "simple"
    simple.mkdir()
    (simple / "config.json").write_text(json.dumps({"train": {"scenes": "simple"}}))
    assert RLConfig(policy=str(simple)).scenes == "simple"
    assert RLConfig(policy=str(simple), scenes="default").scenes == "default"  # asked for
    assert RLConfig(policy=str(tmp_path / "none")).scenes == "default"  # records nothing
    assert RLConfig(policy=str(simple)).to_dict()["scenes"] == "simple"  # saved resolved
    with pytest.raises(ConfigError, match="alert_window"):
        RLConfig(alert_window=2)
    with pytest.raises(ConfigError, match="method"):
        RLConfig(method="ppo")
