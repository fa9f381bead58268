"""Learn from votes through the service layer: the app's button, end to end.

A fine-tune starts in its own process (``spatialreward.mini.finetune_job``), is recorded
as a ``reward`` run with its curves, and its checkpoint is offered at once as
``mini:PATH``; too few votes are refused before any process starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spatialreward.config import StudioConfig
from spatialreward.errors import InputError
from spatialreward.service import Services
from tests.test_finetune import contrarian_store  # the same voters who contradict Mini
from ui.learn import curves_figure, status_text


def test_too_few_votes_are_refused_before_a_process_starts(tmp_path):
    services = Services(StudioConfig(db=tmp_path / "studio.db"))
    contrarian_store(tmp_path / "studio.db", 3, group=2)
    with pytest.raises(InputError, match="too few votes"):
        services.start_finetune(steps=20, replay=0.0)
    assert services.finetune_runs() == []
    with pytest.raises(InputError, match="base"):
        services.finetune_settings(base="mini:/etc")
    with pytest.raises(InputError, match="simulated"):
        services.finetune_settings(kinds=["robots"])


def test_a_fine_tune_runs_in_its_own_process_and_is_served_at_once(tmp_path):
    db = tmp_path / "studio.db"
    items = contrarian_store(db, 48, group=2)
    services = Services(StudioConfig(db=db))
    assert not services.reward_model_specs()
    run_id = services.start_finetune(steps=30, replay=0.0, holdout=0.3, name="contrary")
    assert services.launcher.wait(run_id, timeout=600) == 0, services.launcher.log_tail(run_id)
    view = services.finetune_status(run_id)
    assert view["run"]["status"] == "done" and view["run"]["kind"] == "reward"
    assert len(view["curves"]["loss"]) == 30  # every step logged by the job
    h = view["result"]["holdout"]
    assert h["after"] > h["before"] and h["after"] > 0.5
    spec = view["spec"]
    assert spec.startswith("mini:") and spec in services.offered()
    assert Path(spec[5:]).is_relative_to(tmp_path)
    source, edited, text = items[0]["triples"][0]
    tuned = services.backend(spec).judge(source, edited, text)
    shipped = services.backend("mini").judge(source, edited, text)
    assert tuned.sc != shipped.sc
    assert spec in [value for _, value in services.finetune_bases()]
    text = status_text(view)
    assert "before" in text and spec in text.replace("\\", "")
    assert curves_figure(view["curves"]).data


def test_the_learn_panel_refuses_with_the_numbers_and_lists_its_runs(tmp_path):
    import gradio as gr

    from ui.learn import build_learn_panel, run_choices

    services = Services(StudioConfig(db=tmp_path / "studio.db"))
    contrarian_store(tmp_path / "studio.db", 3, group=2)
    with gr.Blocks() as demo:
        build_learn_panel(services)
    start = next(f.fn for f in demo.fns.values() if f.api_name == "learn_from_votes")
    with pytest.raises(gr.Error, match="too few votes.*needs at least 50"):
        start("mini", ["human"], 0.2, 300, "mini-votes", None)
    assert run_choices(services) == []
