"""What the Train, Bench, Annotate and Data tabs say in the states a browser walk found
unclear: run lists read on page load, a run that is stopping, the ETA, the latest held-out
evaluation, full sample captions, described backends, why a queue is empty, a blind
vote, keys for N candidates, and named API parameters. Handlers are called directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest

from spatialreward.config import StudioConfig
from spatialreward.judgment import Judgment, Region
from spatialreward.rl.runs import record_process
from spatialreward.service import Services
from storage import annotate as store_annotate
from ui import annotate, bench, build_demo, data, train

# -- helpers ------------------------------------------------------------------------------


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)


def make_services(tmp_path: Path, **config: Any) -> Services:
    return Services(StudioConfig(db=tmp_path / "data" / "studio.db", backend="pixel",
                                 **config))


def build(services: Services, builder: Any) -> gr.Blocks:
    with gr.Blocks() as demo:
        builder(services)
    return demo


def handler(demo: gr.Blocks, api_name: str) -> tuple[Any, list[Any]]:
    """An event's function and its output components, by the event's api_name."""
    found = [f for f in demo.fns.values() if f.api_name == api_name]
    assert found, f"no event {api_name}"
    return found[0].fn, list(found[0].outputs)


def by_id(outputs: list[Any], values: tuple[Any, ...]) -> dict[str, Any]:
    """Returned values keyed by their component's elem_id (components without one are
    left out)."""
    assert len(outputs) == len(values)
    return {c.elem_id: v for c, v in zip(outputs, values, strict=True) if c.elem_id}


def rl_run(services: Services, name: str = "run", steps: int = 100, **config: Any) -> int:
    """An RL run row with a folder, as the launcher records one (no process)."""
    store = services.store
    run_id = store.create_run("rl", name, {"steps": steps, "prompts_per_step": 4,
                                          "group_size": 12, "sampling_steps": 10, **config})
    folder = services.data_root / "runs" / f"rl-{run_id}"
    folder.mkdir(parents=True)
    store.update_run(run_id, out_dir=f"runs/rl-{run_id}")
    return run_id


@pytest.fixture
def stubborn(tmp_path):
    """A process that ignores SIGTERM for a while, like a trainer finishing its step."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time; "
         "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
         "time.sleep(120)"], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    yield proc
    proc.kill()
    proc.wait()


# -- Train: run list, stop state, ETA, held out, captions ----------------------------------


def test_the_train_run_list_is_read_on_page_load(tmp_path):
    services = make_services(tmp_path)
    demo = build(services, train.build_train_tab)  # no runs yet when the app starts
    first, second = rl_run(services, "first"), rl_run(services, "second")
    load, outputs = handler(demo, "train_load")
    update = load(None)
    assert [c[1] for c in update["choices"]] == [str(second), str(first)]
    assert update["value"] == str(second)  # the newest, so its status shows at once
    assert load(str(first))["value"] == str(first)  # a pick already made stays


def test_stop_shows_stopping_at_once_until_the_run_records_its_outcome(tmp_path, stubborn):
    services = make_services(tmp_path)
    run_id = rl_run(services, "long run")
    services.store.update_run(run_id, status="running")
    record_process(services.store, run_id, stubborn.pid)
    demo = build(services, train.build_train_tab)
    stop, _ = handler(demo, "stop_rl")
    answer = stop(None, str(run_id))
    assert answer["status"] == "stopping" and answer["stop_requested_at"] is not None
    assert services.store.run(run_id)["status"] == "running"  # the trainer's own status
    # The tab's next redraw: the status line and the run list say so.
    tick, outputs = handler(demo, "refresh_rl_timer")
    shown = by_id(outputs, tick(str(run_id), ""))
    assert "stopping (finishing the current step" in shown["train-status"]
    assert any("(stopping)" in label for label, _ in shown["train-run-pick"]["choices"])
    # The process records its outcome: the stop request no longer shows.
    services.store.update_run(run_id, status="cancelled")
    assert services.rl_status(run_id)[0]["status"] == "cancelled"


def test_the_run_label_follows_the_run_from_queued_to_running(tmp_path):
    services = make_services(tmp_path)
    run_id = rl_run(services, "fresh")
    demo = build(services, train.build_train_tab)
    tick, outputs = handler(demo, "refresh_rl_timer")
    first = by_id(outputs, tick(str(run_id), ""))
    assert f"#{run_id} fresh (queued)" in [c[0] for c in first["train-run-pick"]["choices"]]
    services.store.update_run(run_id, status="done")
    later = by_id(outputs, tick(str(run_id), services.rl_progress(run_id) + "old"))
    assert f"#{run_id} fresh (done)" in [c[0] for c in later["train-run-pick"]["choices"]]


ROW = {"id": 4, "name": "rl mini", "status": "running", "pid": 123, "error": None,
       "out_dir": "runs/rl-4", "config": {"steps": 100}}


def step(k: int, seconds: float = 24.0) -> dict[str, float]:
    return {"step": float(k), "reward_mean": 0.5, "gt_success": 0.5, "kl": 0.001,
            "step_seconds": seconds}


def test_the_eta_is_measured_or_an_estimate_said_so():
    history = [step(k) for k in range(1, 3)]
    s = train.status_summary(ROW, history)
    assert s["seconds_per_step"] == pytest.approx(24.0)
    assert s["eta_s"] == pytest.approx(98 * 24.0) and not s["eta_estimated"]
    assert "about 39 min left (24.0 s/step measured)" in train.status_markdown(s)
    before = train.status_summary(ROW, [], estimate=24.0)
    assert before["eta_estimated"] and before["eta_s"] == pytest.approx(2400.0)
    assert "about 40 min left (an estimate from earlier runs" in train.status_markdown(before)
    unknown = train.status_markdown(train.status_summary(ROW, []))
    assert "time left: known after the first step" in unknown
    done = train.status_summary({**ROW, "status": "done"}, history)
    assert done["eta_s"] is None and "left" not in train.status_markdown(done)


def test_the_step_estimate_comes_from_earlier_runs_scaled_by_work(tmp_path):
    services = make_services(tmp_path)
    earlier = rl_run(services, "earlier", group_size=6)
    for k in (1, 2):
        services.store.log_metrics(earlier, k, {"step_seconds": 10.0})
    new = rl_run(services, "new", group_size=12)  # twice the edits per step
    assert services.rl_step_estimate(new) == pytest.approx(20.0)
    lonely = make_services(tmp_path / "other")
    assert lonely.rl_step_estimate(rl_run(lonely)) is None


def test_held_out_now_is_the_latest_evaluation_or_says_there_was_none():
    start = {"step": 0.0, "heldout_gt_success": 0.25}
    stopped = train.status_summary({**ROW, "status": "cancelled"}, [start, step(1), step(2)])
    assert stopped["heldout_gt_success_last"] is None
    text = train.status_markdown(stopped)
    assert "25.0% at the start (no held-out evaluation since the start)" in text
    ended = train.status_summary(ROW, [start, step(1), {**step(2), "heldout_gt_success": 0.5}])
    assert ended["heldout_gt_success_last"] == 0.5 and ended["heldout_last_step"] == 2
    assert "25.0% at the start, 50.0% at step 2" in train.status_markdown(ended)


def test_sample_captions_are_shown_in_full():
    reasoning = "the cup at the left turned red while the plate stayed " * 8
    samples = [(None, "step 3 source: make the cup | on the left red"),
               (None, f"reward 0.812 · ground truth ✓ (progress 0.90, spill 0.02) · {reasoning}")]
    table = train.caption_markdown(samples)
    assert reasoning.strip().split()[-1] in table and "ground truth ✓" in table
    assert "make the cup \\| on the left red" in table  # a pipe cannot break the table
    assert table.count("\n") == 3 and train.caption_markdown([]) == ""


# -- Bench: described backends, run lists on page load -------------------------------------


def dropdown(demo: gr.Blocks, label: str) -> Any:
    found = [b for b in demo.blocks.values()
             if isinstance(b, gr.Dropdown) and b.label == label]
    assert len(found) == 1, label
    return found[0]


def test_bench_backends_are_offered_ones_with_descriptions(tmp_path):
    services = make_services(tmp_path)
    demo = build(services, bench.build_bench_tab)
    offered = services.offered_choices()
    choices = dropdown(demo, "Backend").choices
    assert [c[1] for c in choices] == [c[1] for c in offered] and "vlm" not in \
        [c[1] for c in choices]
    assert all(" - " in c[0] for c in choices)  # a one-line description with each
    agreement = dropdown(demo, "Model backend").choices
    assert agreement[0] == ("most judged", "") and agreement[1:] == choices


def test_bench_run_lists_are_read_on_page_load(tmp_path):
    services = make_services(tmp_path)
    demo = build(services, bench.build_bench_tab)
    run_id = services.store.create_run("bench", "pixel on synth", {"backend": "pixel"})
    load, _ = handler(demo, "bench_load")
    for update in load():
        assert [c[1] for c in update["choices"]] == [str(run_id)]


def test_data_statistics_are_read_on_page_load(tmp_path):
    services = make_services(tmp_path)
    demo = build(services, data.build_data_tab)
    services.store.add_item("make it red", tiny(1), [tiny(2), tiny(3)])
    load, _ = handler(demo, "data_load")
    stats, table = load()
    assert stats["tables"]["items"] == 1 and "items rows" in set(table["what"])


# -- Annotate: empty queues, blind votes, keys for N candidates ----------------------------


@pytest.fixture
def annotating(tmp_path):
    services = make_services(tmp_path)
    for name in ("ann", "bob"):
        services.store.add_annotator(name)
    return services, build(services, annotate.build_annotate_tab)


def screen(demo: gr.Blocks, api_name: str, *args: Any) -> dict[str, Any]:
    fn, outputs = handler(demo, api_name)
    return by_id(outputs, fn(*args))


def start(demo: gr.Blocks, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Press Start as ``name``: what is on screen, and the session state."""
    fn, outputs = handler(demo, "annotate_start")
    values = fn(name, "all")
    session = [v for c, v in zip(outputs, values, strict=True) if isinstance(c, gr.State)]
    return by_id(outputs, values), session[0]


def test_an_empty_store_says_where_items_come_from(annotating):
    _, demo = annotating
    shown = screen(demo, "annotate_start", "ann", "all")
    assert "The store is empty: save items in Inspect or import a folder in Data" in \
        shown["annotate-instruction"]


def test_an_empty_disagreement_queue_says_it_needs_two_voters(annotating):
    services, demo = annotating
    store = services.store
    items = []
    for seed in range(3):
        i = store.add_item(f"edit {seed}", tiny(100 + seed), [tiny(seed), tiny(seed + 50)])
        for k, level in enumerate((9.0, 1.0)):
            store.add_model_judgment(i, k, Judgment(status="ok", sc=(level, level),
                                                    pq=(20.0, 20.0), backend="m",
                                                    backend_version="1"))
        store.add_human_judgment(i, "ann", 1)  # one voter disagrees with the model
        items.append(i)
    shown = screen(demo, "annotate_queue", "ann", "disagreements", None)
    assert ("Disagreement needs at least 2 voters on an item: 3 items have one vote so far; "
            "ask a second annotator or pick another queue") in shown["annotate-instruction"]
    store.add_human_judgment(items[0], "bob", 1)  # a second voter: the item is a disagreement
    assert screen(demo, "annotate_queue", "bob", "disagreements", None)[
        "annotate-instruction"].startswith("**Nothing to judge here.** You have judged all 1")
    assert store_annotate.next_item(store, "ann", "disagreements") is None


def test_a_blind_vote_shows_no_model_boxes_until_after_the_vote(annotating):
    services, demo = annotating
    store = services.store
    pixel = services.backend("pixel")
    i = store.add_item("make the cup red", tiny(7), [tiny(8), tiny(9)])
    for k in range(2):
        store.add_model_judgment(i, k, Judgment(
            status="ok", sc=(8.0 - k, 8.0 - k), pq=(20.0, 20.0), backend=pixel.name,
            backend_version=pixel.version, regions=(Region(0, "a mug", (10, 20, 300, 400)),)))
    shown, session = start(demo, "ann")
    assert shown["annotate-regions"] == ""  # no model boxes or labels before the vote
    assert shown["model-verdict"] == annotate.HIDDEN_VERDICT
    assert "a mug" not in str(shown)
    vote, _ = handler(demo, "annotate_vote_a")
    session, *_ = vote("ann", "all", session, "", None, "", "", None)
    reveal, _ = handler(demo, "annotate_vote_a_reveal")
    verdict = reveal(session)
    assert "You voted **A**" in verdict and "The model's regions" in verdict
    assert "10,20,300,400 a mug" in verdict


def test_keys_and_buttons_match_the_number_of_candidates(annotating):
    services, demo = annotating
    store = services.store
    three = store.add_item("rank these", tiny(1), [tiny(2), tiny(3), tiny(4)])
    shown, session = start(demo, "ann")
    assert shown["annotate-instruction"].startswith(f"**Item {three}**")
    visible = [shown[f"vote-{c}"]["visible"] for c in "abcd"]
    assert visible == [True, True, True, False]
    assert shown["vote-c"]["value"] == "C is best (3)"
    keys = shown["annotate-keys"]
    assert "`3`/`C` C is best" in keys and "`4`" not in keys and "is better" not in keys
    assert annotate.KEYS["3"] == "vote-c" and annotate.KEYS["c"] == "vote-c"
    two = annotate.shortcuts(2)
    assert "`1`/`A` A is better" in two and "`2`/`B`" in two and "`3`" not in two
    assert "ranking" in annotate.shortcuts(6) and "`1`" not in annotate.shortcuts(6)
    # Pressing 3 votes for the candidate shown as C.
    vote, _ = handler(demo, "annotate_vote_c")
    vote("ann", "all", session, "", None, "", "", None)
    judgment = store.last_human_judgment("ann", three)
    assert judgment is not None and judgment.preferred == session["order"][2]


# -- named API parameters ------------------------------------------------------------------


MINE = ("/start_rl", "/stop_rl", "/resume_rl", "/rl_status", "/refresh_rl", "/run_bench",
        "/show_run", "/compare_runs", "/agreement", "/bench", "/refresh_runs", "/annotate",
        "/undo", "/next_item", "/import_data", "/export", "/stats", "/integrity")


def test_the_tabs_api_has_named_described_parameters(tmp_path):
    info = build_demo(make_services(tmp_path)).get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in info["/start_rl"]["parameters"]][:3] == \
        ["policy", "rewards", "prompts"]
    for name in MINE:
        endpoint = info[name]
        assert endpoint["description"], f"{name} has no description"
        for p in endpoint["parameters"]:
            assert not p["parameter_name"].startswith("param_"), (name, p["parameter_name"])
            # No "Hello!!" or PDF example: an optional parameter shows its default.
            shown = p["parameter_default"] if p["parameter_has_default"] else p["example_input"]
            assert shown != "Hello!!" and "pdf" not in str(shown).lower(), (name, p)
            assert not p["label"].endswith(("1st", "2nd", "3rd")), (name, p["label"])
