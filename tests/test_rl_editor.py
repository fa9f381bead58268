"""The embedded editor: its vocabulary, its network, the policy protocol it implements,
checkpoints, and seeded pretraining that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spatialreward.errors import ConfigError
from spatialreward.rl.editor import UNK, VOCAB, EditorConfig, EditorNet, encode
from spatialreward.rl.editor_train import EditorTrainConfig, flow_matching_loss, train_editor
from spatialreward.rl.embedded import EmbeddedEditor, to_tensor
from spatialreward.rl.lora import lora_parameters
from spatialreward.rl.policy import EditPolicy
from spatialreward.rl.prompts import prompt_set
from spatialreward.rl.tiny import TINY_EDITOR, tiny_editor

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prompts():
    return prompt_set("val", 4, 16, seed=1)


def test_every_word_synthedit_writes_is_in_the_vocabulary():
    texts = [p.instruction for p in prompt_set("test", 60, 16, phrasings="all")]
    assert all(UNK not in encode(t) for t in texts)
    assert len(VOCAB) == len(set(VOCAB)) and VOCAB[:2] == ["[PAD]", "[UNK]"]


def test_default_editor_fits_the_checkpoint_budget():
    net = EditorNet(EditorConfig())
    n = sum(p.numel() for p in net.parameters())
    assert 4 * n <= 25e6  # float32 safetensors <= 25 MB
    with torch.no_grad():
        v = net(torch.zeros(2, 3, 64, 64), torch.rand(2), torch.zeros(2, 3, 64, 64),
                torch.tensor([encode("remove the red star")] * 2))
    assert v.shape == (2, 3, 64, 64) and float(v.abs().max()) == 0  # zero-initialised output
    with pytest.raises(ConfigError, match="divisible"):
        EditorConfig(size=18, channels=(8, 16, 32))


def test_the_embedded_editor_implements_the_policy_protocol(prompts):
    policy = EmbeddedEditor(tiny_editor(), finetune="lora", lora_rank=2)
    assert isinstance(policy, EditPolicy) and policy.image_size == 16
    src, words = [p.source for p in prompts[:2]], [p.instruction for p in prompts[:2]]
    r = policy.sample(src, words, 3, list(range(6)), steps=4, noise_level=0.7)
    assert r.states.shape == (6, 5, 3, 16, 16) and r.log_probs.shape == (6, 4)
    assert r.images.shape == (6, 16, 16, 3) and r.images.dtype == np.uint8
    assert r.stochastic.tolist() == [True, True, True, False]  # the last step is the ODE's
    # A row depends on its seed only, not on the rows sampled beside it.
    alone = policy.sample(src[1:], words[1:], 3, [3, 4, 5], steps=4, noise_level=0.7)
    assert torch.allclose(alone.states, r.states[3:], atol=1e-5)
    # Recomputed log-probs equal the recorded ones (same weights).
    rows, steps = torch.arange(6), torch.tensor([0, 1, 2, 0, 1, 2])
    again = policy.log_prob(r, rows, steps)
    assert torch.allclose(again.log_prob, r.log_probs[rows, steps], atol=1e-4)
    # With trained adapters the policy moves away from the reference; inside reference()
    # it is the base model again.
    with torch.no_grad():
        for p in lora_parameters(policy.net):
            p.add_(0.05)
    moved = policy.log_prob(r, rows, steps).mean
    with torch.no_grad(), policy.reference():
        ref = policy.log_prob(r, rows, steps).mean
    assert not torch.allclose(moved, ref, atol=1e-5)
    assert torch.allclose(ref, r.means[rows, steps], atol=1e-4)


def test_full_finetune_keeps_a_frozen_reference(prompts):
    policy = EmbeddedEditor(tiny_editor(), finetune="full")
    r = policy.sample([prompts[0].source], [prompts[0].instruction], 2, [1, 2], steps=3,
                      noise_level=0.7)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.mul_(1.1)
    rows, steps = torch.tensor([0, 1]), torch.tensor([0, 1])
    with torch.no_grad(), policy.reference():
        ref = policy.log_prob(r, rows, steps).mean
    assert torch.allclose(ref, r.means[rows, steps], atol=1e-4)


def test_checkpoints_round_trip_through_safetensors(tmp_path, prompts):
    policy = EmbeddedEditor(tiny_editor(), finetune="lora", lora_rank=2)
    with torch.no_grad():
        for p in lora_parameters(policy.net):
            p.normal_(0, 0.1)
    policy.save(tmp_path / "ck")
    loaded = EmbeddedEditor.load(tmp_path / "ck")
    src, words = [p.source for p in prompts], [p.instruction for p in prompts]
    a = policy.generate(src, words, [0, 1, 2, 3], steps=3)
    b = loaded.generate(src, words, [0, 1, 2, 3], steps=3)
    assert np.array_equal(a, b) and loaded.lora == {"rank": 2, "alpha": 16.0}
    with pytest.raises(ConfigError, match="train-editor"):
        EmbeddedEditor.load(tmp_path / "missing")


def test_flow_matching_learns_every_weight_and_overfits(prompts):
    torch.manual_seed(0)
    net = EditorNet(TINY_EDITOR)
    src = to_tensor([p.source for p in prompts])
    tgt = to_tensor([p.target for p in prompts])
    tokens = torch.tensor([encode(p.instruction) for p in prompts])
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    before = [p.detach().clone() for p in net.parameters()]
    losses = []
    for it in range(120):
        loss = flow_matching_loss(net, src, tgt, tokens, gen)
        opt.zero_grad()
        loss.backward()
        if it == 3:  # after a few steps the zero-initialised layers pass gradients on
            missing = [n for n, p in net.named_parameters()
                       if p.grad is None or float(p.grad.abs().sum()) == 0]
            assert not missing, missing
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_pretraining_is_seeded_and_writes_a_loadable_checkpoint(tmp_path):
    def run(out):
        cfg = EditorTrainConfig(out=str(out), model=TINY_EDITOR.to_dict(),
                                cache=str(tmp_path / "cache"), train_items=24, val_prompts=6,
                                steps=6, batch_size=4, eval_every=6, threads=1, workers=1,
                                sampling_steps=3, warmup=2)
        return train_editor(cfg, log=lambda line: None)

    metrics = run(tmp_path / "a")
    run(tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "editor.safetensors"))
    b = load_file(str(tmp_path / "b" / "editor.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {r["op"] for r in metrics["val"]} >= {"recolor", "all"}
    assert (tmp_path / "a" / "curves.html").is_file()
    assert EmbeddedEditor.load(tmp_path / "a").image_size == 16


def test_the_sampler_with_the_true_velocity_lands_on_the_target(prompts):
    """An oracle velocity (x - x_data) / s makes both samplers end exactly on the target
    edit, which ground truth then scores a success: sampler, residual and decoding agree."""
    from spatialreward.rl.embedded import residual_target
    from spatialreward.rl.groundtruth import ground_truth

    sources = to_tensor([p.source for p in prompts])
    data = residual_target(sources, to_tensor([p.target for p in prompts]))

    class Oracle(torch.nn.Module):
        def forward(self, x, sigma, source, tokens):
            rows = [int((sources - s).abs().flatten(1).sum(1).argmin()) for s in source]
            return (x - data[rows]) / sigma[:, None, None, None]

    policy = EmbeddedEditor(tiny_editor())
    policy.net = policy._wrapped = Oracle()  # type: ignore[assignment]
    for level in (0.0, 0.7):
        r = policy.sample([p.source for p in prompts], [p.instruction for p in prompts], 2,
                          list(range(8)), steps=5, noise_level=level)
        for k, img in enumerate(r.images):
            p = prompts[k // 2]
            assert np.abs(img.astype(int) - p.target.astype(int)).max() <= 1
            assert ground_truth(p.source, p.target, p.footprint, img).success


def test_a_fresh_residual_editor_leaves_the_source_alone(prompts):
    """With ``prediction = "residual"`` the zero-initialised output layer predicts "no
    change": the velocity is (x_s - 0) / s and both samplers land on the source."""
    from dataclasses import replace

    from spatialreward.rl.editor import MIN_SIGMA

    torch.manual_seed(0)
    net = EditorNet(replace(TINY_EDITOR, prediction="residual"))
    src = to_tensor([p.source for p in prompts])
    tokens = torch.tensor([encode(p.instruction) for p in prompts])
    x, sigma = torch.randn_like(src), torch.tensor([0.9, 0.5, 0.1, 0.01])
    expected = (x - net.predict(x, sigma, src, tokens)) / sigma.clamp(min=MIN_SIGMA)[
        :, None, None, None]
    assert torch.allclose(net(x, sigma, src, tokens), expected)
    policy = EmbeddedEditor(net)
    for level in (0.0, 0.7):
        r = policy.sample([p.source for p in prompts], [p.instruction for p in prompts], 1,
                          list(range(4)), steps=5, noise_level=level)
        for img, p in zip(r.images, prompts, strict=True):
            assert np.abs(img.astype(int) - p.source.astype(int)).max() <= 1
    with pytest.raises(ConfigError, match="prediction"):
        replace(TINY_EDITOR, prediction="noise")


def test_the_residual_loss_and_the_change_weight(prompts):
    from dataclasses import replace

    torch.manual_seed(0)
    src = to_tensor([p.source for p in prompts])
    tgt = to_tensor([p.target for p in prompts])
    tokens = torch.tensor([encode(p.instruction) for p in prompts])
    net = EditorNet(replace(TINY_EDITOR, prediction="residual"))
    # A fresh residual net predicts zero, so its loss is the mean squared residual; the
    # change weight puts more of the mean on changed pixels, which is where it is nonzero.
    residual = ((tgt - src) / 2) ** 2
    plain = flow_matching_loss(net, src, tgt, tokens, torch.Generator().manual_seed(0))
    assert float(plain.detach()) == pytest.approx(float(residual.mean()), rel=1e-5)
    weighted = flow_matching_loss(net, src, tgt, tokens, torch.Generator().manual_seed(0),
                                  change_weight=9.0)
    assert float(weighted.detach()) > 2 * float(plain.detach())
    weighted.backward()
    assert net.out.weight.grad is not None and net.out.weight.grad.abs().sum() > 0


def test_simple_scenes_are_an_option_that_leaves_the_default_stream_alone():
    from spatialreward.rl.config import RLConfig
    from spatialreward.rl.prompts import make_prompt
    from spatialreward.synth.scenes import make_scene

    a = make_prompt("train", 3, 5, 32)
    b = make_prompt("train", 3, 5, 32, scenes="default")
    assert a.instruction == b.instruction and np.array_equal(a.target, b.target)
    simple = make_prompt("train", 3, 5, 32, scenes="simple")
    assert not np.array_equal(simple.source, a.source)
    for seed in range(20):
        scene = make_scene(np.random.default_rng(seed), size=(128, 128), n_objects=2,
                           backgrounds=("gradient",), area=(0.03, 0.06))
        assert scene.background_kind == "gradient" and len(scene.objects) == 2
    with pytest.raises(ConfigError, match="scenes"):
        make_prompt("train", 3, 5, 32, scenes="busy")
    with pytest.raises(ConfigError, match="scenes"):
        RLConfig(scenes="busy")
    with pytest.raises(ConfigError, match="scenes"):
        EditorTrainConfig(scenes="busy")


def test_an_editor_checkpoint_says_which_scenes_it_was_trained_on(tmp_path):
    from spatialreward.rl.config import recorded_scenes
    from spatialreward.rl.tiny import tiny_editor
    from spatialreward.rl.view import build_config

    assert recorded_scenes(tmp_path / "nothing-here") == "default"
    plain = EmbeddedEditor(tiny_editor()).save(tmp_path / "plain")
    assert recorded_scenes(plain) == "default"
    trained = EmbeddedEditor(tiny_editor()).save(
        tmp_path / "trained", {"train": EditorTrainConfig(scenes="simple").to_dict()})
    assert recorded_scenes(trained) == "simple"
    assert recorded_scenes(EmbeddedEditor(tiny_editor()).save(
        tmp_path / "rl", {"scenes": "simple"})) == "simple"
    # the Train tab's config follows the policy unless the form says otherwise
    form = ("pixel", 8, [], 4, 2, 2, 3, 4, 3e-4, 0.7, 0.04, 1e-4, 0.6, "lora", 1)
    assert build_config(str(trained), *form).scenes == "simple"
    assert build_config(str(plain), *form).scenes == "default"
    assert build_config(str(trained), *form, scenes="default").scenes == "default"


def test_the_shipped_editor_already_does_some_edits_right():
    """models/editor (configs/editor.json): the experiment's starting point. Measured on
    the first 48 held-out prompts: see docs/rl.md for the 120-prompt table."""
    from pathlib import Path

    from spatialreward.rl.config import recorded_scenes
    from spatialreward.rl.evaluate import evaluate_editor
    from spatialreward.rl.prompts import prompt_set
    from spatialreward.synth.language import OPERATIONS

    torch.set_num_threads(1)
    folder = Path(__file__).resolve().parents[1] / "models" / "editor"
    assert (folder / "editor.safetensors").stat().st_size <= 25 * 2**20
    assert recorded_scenes(folder) == "simple"
    policy = EmbeddedEditor.load(folder)
    prompts = prompt_set("test", 48, policy.image_size, seed=0, ops=OPERATIONS,
                         scenes="simple")
    result = evaluate_editor(policy, prompts, steps=10)
    rows = {r["op"]: r for r in result["rows"]}
    per_prompt = result["prompts"]  # what rl_experiment.py pairs before and after
    assert [p["id"] for p in per_prompt] == [p.id for p in prompts]
    assert np.mean([p["gt_success"] for p in per_prompt]) == rows["all"]["gt_success"]
    # measured 62.5% each (5 of 8); an untrained editor gets none
    assert rows["recolor"]["gt_success"] >= 0.375 and rows["remove"]["gt_success"] >= 0.375
    assert 0.15 <= rows["all"]["gt_success"] <= 0.6  # some edits right, room to improve
