"""Coverage: SpatialReward-Mini says when a request is outside what it can read, and every
consumer (CLI, bench, RL, Annotate, Inspect) handles such a judgment the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialreward.backends.mini import MiniBackend
from spatialreward.bench.metrics import evaluate_item, summarize
from spatialreward.cli import format_judgment
from spatialreward.config import StudioConfig
from spatialreward.judgment import Coverage, Judgment
from spatialreward.mini.coverage import read_instruction
from spatialreward.rl.config import RewardTerm
from spatialreward.rl.prompts import EditPrompt
from spatialreward.rl.rewards import RewardMix
from spatialreward.service import Services
from spatialreward.synth.edits import Editor, random_task
from spatialreward.synth.generate import instruction_for
from spatialreward.synth.scenes import make_scene
from storage.annotate import model_verdict
from ui.annotate import verdict_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Real photographs (shipped in examples/) with everyday instructions Mini cannot read.
PHOTO_CASES = [
    ("photo-cat-source.jpg", "photo-cat-c0.jpg", "make the cat's collar red", ["cat", "collar"]),
    ("photo-cat-source.jpg", "photo-cat-c1.jpg", "make the dog's collar red", ["dog", "collar"]),
    ("photo-coffee-source.jpg", "photo-coffee-c0.jpg", "put latte art on the coffee",
     ["latte", "art", "coffee"]),
    ("photo-coffee-source.jpg", "photo-coffee-c1.jpg", "remove the spoon", ["spoon"]),
    ("photo-astronaut-source.jpg", "photo-astronaut-c0.jpg",
     "give the astronaut sunglasses", ["astronaut", "sunglasses"]),
    ("photo-astronaut-source.jpg", "photo-astronaut-c1.jpg", "make the flag bigger",
     ["flag"]),
    ("photo-astronaut-source.jpg", "photo-astronaut-c2.jpg", "blur the background",
     ["blur", "background"]),
]


@pytest.fixture(scope="module")
def mini() -> MiniBackend:
    return MiniBackend()


@pytest.mark.parametrize("split", ["test", "hard"])
def test_synthedit_instructions_are_never_flagged(mini, split):
    """Every phrasing SynthEdit writes (held-out verbs included) is read in full."""
    seen = 0
    for i in range(400):
        rng = np.random.default_rng(70_000 + i)
        scene = make_scene(rng, size=(64, 64), hard=split == "hard")
        task = random_task(scene, rng)
        Editor(scene, rng)
        text = instruction_for(scene, task, rng, split).text
        coverage = read_instruction(text, mini.tokenizer.index)
        assert not coverage.low, (text, coverage)
        assert coverage.target is not None and coverage.operation == task.op, text
        seen += bool(coverage.unknown_words)  # held-out verbs: listed, tolerated
    assert seen > 0


@pytest.mark.parametrize(("source", "edited", "text", "words"), PHOTO_CASES)
def test_real_photo_requests_outside_minis_words_are_flagged(source, edited, text, words):
    services = Services(StudioConfig())
    j = services.judge(EXAMPLES / source, EXAMPLES / edited, text, "mini")
    assert j.status == "low_coverage" and not j.ok and j.scored
    assert j.coverage is not None and j.coverage.low
    assert set(words) <= set(j.coverage.unknown_words)
    warning = next(w for w in j.warnings if "out of its depth" in w)
    assert "docs/vlm.md" in warning and all(reason in warning for reason in j.coverage.reasons)
    assert j.reward is None and j.overall is not None  # greyed, never a reward
    assert j.regions or "regions are still measured" in warning  # the evidence is kept
    assert Judgment.from_dict(j.to_dict()) == j
    text_block = format_judgment(j, "c0")
    assert "status: low_coverage" in text_block and "  warning: SpatialReward-Mini" in text_block


def test_a_known_request_on_a_synthetic_scene_is_ok(mini):
    rng = np.random.default_rng(3)
    scene = make_scene(rng, size=(128, 128))
    task = random_task(scene, rng, op="remove")
    editor = Editor(scene, rng)
    text = instruction_for(scene, task, rng, "test").text
    j = mini.judge(Image.fromarray(editor.source), Image.fromarray(editor.correct(task).image),
                   text)
    assert j.status == "ok" and j.coverage is not None and not j.coverage.low
    assert j.warnings == () and j.reward is not None


def _judgment(status: str, overall_sc: float) -> Judgment:
    coverage = Coverage(reasons=("it cannot read 'dog'",)) if status == "low_coverage" else None
    return Judgment(status=status, sc=(overall_sc, 20.0), pq=(20.0, 20.0), coverage=coverage,  # type: ignore[arg-type]
                    backend="mini", backend_version="v")


def test_bench_counts_low_coverage_items_apart():
    ranking = ((0,), (1,))
    results = [
        evaluate_item("a", ranking, [8.0, 2.0], statuses=["ok", "ok"]),
        evaluate_item("b", ranking, [2.0, 8.0], statuses=["low_coverage", "low_coverage"]),
        evaluate_item("c", ranking, [7.0, 1.0], statuses=["ok", "ok"]),
    ]
    s = summarize(results)
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["low_coverage"] == 1
    assert s["accuracy_full_coverage"] == 1.0 and s["accuracy_low_coverage"] == 0.0


def test_rl_excludes_low_coverage_judgments_and_counts_them():
    class Fixed:
        name, version = "fixed", "1"

        def judge(self, source, edited, instruction, evidence=None):
            return _judgment("low_coverage" if "dog" in instruction else "ok", 20.0)

    img = np.zeros((16, 16, 3), np.uint8)
    target = img.copy()
    target[4:8, 4:8] = 200
    footprint = target.any(axis=2)

    def prompt(text: str) -> EditPrompt:
        return EditPrompt(id=text, instruction=text, op="recolor", source=img, target=target,
                          footprint=footprint, task={})

    mix = RewardMix([RewardTerm("fixed", 1.0)], judge_size=16, build=lambda spec: Fixed())
    batch = mix.score([prompt("make the red circle blue"), prompt("make the dog red")],
                      np.stack([target, target]))
    assert batch.valid.tolist() == [True, False]
    assert np.isnan(batch.reward[1]) and batch.failures == {"fixed:low_coverage": 1}


def test_annotate_marks_a_low_coverage_verdict():
    verdict = model_verdict([_judgment("low_coverage", 20.0), _judgment("low_coverage", 5.0)],
                            [1, 0])
    assert verdict["low_coverage"] == {"A": "it cannot read 'dog'", "B": "it cannot read 'dog'"}
    text = verdict_text(verdict, "B")
    assert "Low coverage" in text and "cannot read 'dog'" in text
    clean = model_verdict([_judgment("ok", 20.0), _judgment("ok", 5.0)], [1, 0])
    assert "Low coverage" not in verdict_text(clean, "B")


def test_a_low_coverage_judgment_needs_its_reasons():
    from spatialreward.errors import JudgmentFormatError

    with pytest.raises(JudgmentFormatError, match="coverage with reasons"):
        Judgment(status="low_coverage", sc=(1.0, 1.0), pq=(1.0, 1.0))


def test_inspect_shows_the_low_coverage_banner_and_greys_the_scores(studio):
    from gradio_client import Client, handle_file

    client = Client(studio.url, verbose=False)
    out = client.predict(handle_file(str(EXAMPLES / "photo-cat-source.jpg")),
                         handle_file(str(EXAMPLES / "photo-cat-c0.jpg")),
                         [handle_file(str(EXAMPLES / "photo-cat-c1.jpg"))],
                         "make the dog's collar red", "mini", api_name="/inspect")
    texts = [o for o in out if isinstance(o, str)]
    banner = next(t for t in texts if "Low coverage" in t)
    assert "cannot read 'dog', 's', 'collar'" in banner and "docs/vlm.md" in banner
    ranking = next(t for t in texts if t.startswith("Ranking:"))
    assert ranking.count("(low coverage)") == 2 and 'class="low-coverage"' in ranking
