"""The Annotate tab's RL samples queue: a pair of a sample group at a time, shown blind,
voted as a partial ranking of the two, Next, undo, the model's verdict on the pair and
why the queue is empty. Handlers are called directly on a tiny store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest

from spatialreward.config import StudioConfig
from spatialreward.judgment import Judgment
from spatialreward.service import Services
from storage import samples
from ui import annotate, annotate_pairs

QUEUE = "rl_samples"
LEVELS = (1.0, 5.0, 5.3, 9.0, 9.8, 0.0)
"""The model's scores of the group's six edits: edits 1 and 2 are the least sure pair,
then edits 3 and 4; edit 4 is the group's best, but not in the pair shown first. (A group
needs more than 4 edits to be voted a pair at a time: see the report.)"""


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)


def handler(demo: gr.Blocks, api_name: str) -> tuple[Any, list[Any]]:
    found = [f for f in demo.fns.values() if f.api_name == api_name]
    assert found, f"no event {api_name}"
    return found[0].fn, list(found[0].outputs)


def call(demo: gr.Blocks, api_name: str, *args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an event: its outputs by elem_id, and the session state it returned."""
    fn, outputs = handler(demo, api_name)
    values = fn(*args)
    assert len(values) == len(outputs)
    state = [v for c, v in zip(outputs, values, strict=True) if isinstance(c, gr.State)]
    return ({c.elem_id: v for c, v in zip(outputs, values, strict=True) if c.elem_id},
            state[0] if state else {})


def add_group(services: Services, seed: int = 0, levels: tuple[float, ...] = LEVELS) -> int:
    """An RL sample group whose edits the app's model (pixel) has already judged."""
    pixel = services.backend("pixel")
    judgments = [Judgment(status="ok", sc=(v, v), pq=(20.0, 20.0), backend=pixel.name,
                          backend_version=pixel.version) for v in levels]
    return samples.add_sample_group(
        services.store, source=tiny(900 + seed),
        edits=[tiny(seed * 100 + k) for k in range(len(levels))],
        instruction=f"make the cup red {seed}", judgments=judgments,
        truth=[{"score": v / 10, "success": v > 5} for v in levels])


@pytest.fixture
def app(tmp_path: Path) -> tuple[Services, gr.Blocks]:
    services = Services(StudioConfig(db=tmp_path / "data" / "studio.db", backend="pixel"))
    services.store.add_annotator("ann")
    with gr.Blocks() as demo:
        annotate.build_annotate_tab(services)
    return services, demo


def vote(demo: gr.Blocks, button: str, state: dict[str, Any]) -> dict[str, Any]:
    """Press a vote button on ``state``: the new state, verdict, progress and status."""
    fn, _ = handler(demo, f"annotate_{button}")
    new_state, verdict, progress, status = fn("ann", QUEUE, state, "", None, "", "", None)
    return {"state": new_state, "verdict": verdict, "progress": progress, "status": status}


def test_the_rl_queue_shows_the_least_sure_pair_blind(app) -> None:
    services, demo = app
    item = add_group(services)
    shown, state = call(demo, "annotate_queue", "ann", QUEUE, None)
    expected = services.annotation.shown_pair("ann", item, [1, 2])
    assert (state["item_id"], state["pair"], state["order"]) == (item, [1, 2],
                                                                 expected["order"])
    assert shown["annotate-instruction"] == (
        f"**Item {item}** · edit 1 and 2 of a group of 6 · make the cup red 0")
    gallery = shown["annotate-candidates"]["value"]
    assert [label for _, label in gallery] == ["A", "B"]
    # The images are the two edits in shown order (A is order[0]), not the group's others.
    for (image, _), k in zip(gallery, state["order"], strict=True):
        assert np.array_equal(np.asarray(image), tiny(k))
    assert np.array_equal(np.asarray(shown["annotate-source"]), tiny(900))
    assert [shown[f"vote-{c}"]["visible"] for c in "abcd"] == [True, True, False, False]
    assert shown["annotate-ranking"]["visible"] is False
    assert shown["model-verdict"] == annotate.HIDDEN_VERDICT
    assert "5.3" not in str(shown) and "gap" not in str(shown)  # no model score before
    assert shown["annotate-progress"].startswith("You voted on pairs of 0 of 1 RL sample")


def test_a_pair_vote_ranks_only_the_two_shown_edits(app) -> None:
    services, demo = app
    store = services.store
    item = add_group(services)
    _, state = call(demo, "annotate_queue", "ann", QUEUE, None)
    a, b = state["order"]
    done = vote(demo, "vote_a", state)
    judgment = store.last_human_judgment("ann", item)
    assert judgment is not None and judgment.id == done["state"]["vote"]
    assert [list(g) for g in judgment.ranking] == [[a], [b]]  # these two only, of 6
    assert judgment.preferred == a and not judgment.both_bad
    assert "Stored your vote **A**" in done["status"] and "next pair" in done["status"]
    assert done["progress"].startswith("You voted on pairs of 1 of 1")

    # The verdict compares the two edits (edit 2 scores above edit 1), not the group's best.
    reveal, _ = handler(demo, "annotate_vote_a_reveal")
    text = reveal(done["state"])
    model_pick = "A" if a == 2 else "B"
    assert f"**{model_pick}** is better" in text
    assert "You voted **A**" in text
    assert ("you agree" if model_pick == "A" else "you disagree") in text
    assert "C " not in text.split("Overall:")[1]  # only A and B are scored
    assert f"A was edit {a} and B edit {b} of the group of 6." in text

    # Both bad on the same pair replaces the vote: a tie of the two, flagged bad.
    again = vote(demo, "vote_bad", done["state"])
    current = store.human_judgments(item_id=item, annotator="ann")
    assert [j.id for j in current] == [again["state"]["vote"]]
    assert current[0].both_bad and current[0].preferred is None
    assert "replacing your earlier vote" in again["status"]


def test_next_moves_past_the_pair_on_screen(app) -> None:
    services, demo = app
    item = add_group(services)
    _, first = call(demo, "annotate_queue", "ann", QUEUE, None)
    _, skipped = call(demo, "annotate_next", "ann", QUEUE, first, None)
    assert (skipped["item_id"], skipped["pair"]) == (item, [3, 4])  # the next least sure
    voted = vote(demo, "vote_tie", skipped)["state"]
    _, after = call(demo, "annotate_next", "ann", QUEUE, voted, None)
    # After a vote the least sure pair not voted on comes first again: the skipped one.
    assert (after["pair"], after["vote"]) == (first["pair"], None)
    _, third = call(demo, "annotate_next", "ann", QUEUE, after, None)
    assert third["pair"] not in (first["pair"], skipped["pair"])
    # The voted pair is never served again to the same annotator.
    state = after
    for _ in range(8):
        _, state = call(demo, "annotate_next", "ann", QUEUE, state, None)
        assert state["pair"] != [3, 4]


def test_undo_retracts_the_pair_vote(app) -> None:
    services, demo = app
    store = services.store
    item = add_group(services)
    _, state = call(demo, "annotate_queue", "ann", QUEUE, None)
    voted = vote(demo, "vote_b", state)["state"]
    undo, _ = handler(demo, "annotate_undo")
    new_state, verdict, progress, status = undo("ann", QUEUE, voted, None)
    assert new_state["vote"] is None and verdict == annotate.HIDDEN_VERDICT
    assert store.human_judgments(item_id=item, annotator="ann") == []
    assert f"Undid your vote on item {item}" in status
    assert progress.startswith("You voted on pairs of 0 of 1")
    _, back = call(demo, "annotate_next", "ann", QUEUE, {}, None)
    assert back["pair"] == state["pair"]  # the undone pair is served again


def test_an_empty_rl_queue_says_how_to_add_samples(app) -> None:
    services, demo = app
    services.store.add_item("plain item", tiny(1), [tiny(2), tiny(3)])  # not an RL sample
    shown, state = call(demo, "annotate_queue", "ann", QUEUE, None)
    assert state == {}
    assert shown["annotate-instruction"] == (
        "**Nothing to judge here.** This queue is empty: no RL samples in the store: push "
        "them with `python -m spatialreward eval-editor --to-store` or an RL run with "
        "samples_to_store. Pick another queue.")
    assert annotate_pairs.NO_RL_SAMPLES in shown["annotate-instruction"]

    add_group(services, seed=1, levels=(2.0, 3.0))  # one pair in all
    _, state = call(demo, "annotate_queue", "ann", QUEUE, None)
    voted = vote(demo, "vote_a", state)["state"]
    shown, _ = call(demo, "annotate_next", "ann", QUEUE, voted, None)
    assert shown["annotate-instruction"] == (
        "**Nothing to judge here.** You have voted on every pair of the 1 RL sample group. "
        "Pick another queue, or undo a vote to change it.")


def test_other_queues_still_serve_whole_items(app) -> None:
    services, demo = app
    plain = services.store.add_item("plain item", tiny(1), [tiny(2), tiny(3)])
    shown, state = call(demo, "annotate_queue", "ann", "gold", None)
    assert "pair" not in state and "known answer" in shown["annotate-instruction"]
    fn, _ = handler(demo, "annotate_start")
    values = fn("ann", "all")
    state = next(v for v in values if isinstance(v, dict) and "order" in v)
    assert "pair" not in state and state["item_id"] == plain


def test_the_pair_api_serves_a_pair_and_records_the_vote(app) -> None:
    services, demo = app
    item = add_group(services)
    services.store.add_annotator("api")
    next_pair, _ = handler(demo, "next_pair")
    annotate_pair, _ = handler(demo, "annotate_pair")
    shown = next_pair(None, "api")
    assert shown["item_id"] == item and sorted(shown["pair"]) == [1, 2]  # the least sure
    assert "source" not in shown and shown["labels"] == ["A", "B"]
    jid = annotate_pair(None, "api", shown["item_id"], shown["pair"], shown["order"], "B")
    vote = next(h for h in services.store.human_judgments() if h.id == jid)
    assert vote.ranking == ((shown["order"][1],), (shown["order"][0],))
    skipped = next_pair(None, "api", shown["item_id"], shown["pair"])
    assert skipped["item_id"] == item and sorted(skipped["pair"]) != [1, 2]
