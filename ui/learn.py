"""The Train tab's "Learn from votes" panel: fine-tune the reward model on the store's votes.

People's votes (the Annotate tab; the "RL samples" queue holds the policy's own edits)
train SpatialReward-Mini, starting from the shipped checkpoint or an earlier fine-tune.
A share of the voted items is held out and never trained on; the panel shows the
model-vs-human accuracy on it before and after, beside the human ceiling, while the run
trains in its own process. The result is served at once as ``mini:PATH``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import plotly.graph_objects as go

from spatialreward.errors import InputError
from spatialreward.service import Services

from .errors import user_errors, username
from .text import plain

REFRESH_S = 3.0
KIND_CHOICES = [("people", "human"), ("simulated annotators (experiments only)", "simulated")]


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def run_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"#{r['id']} {r['name']} ({r['status']})", str(r["id"]))
            for r in services.finetune_runs()]


def status_text(view: dict[str, Any]) -> str:
    """What a fine-tune is doing, and what it achieved, in a few lines of Markdown."""
    run, result, curves = view["run"], view["result"], view["curves"]
    steps = run["config"].get("steps") if isinstance(run["config"], dict) else None
    done = max((s for s, _ in curves.get("loss", [])), default=0)
    lines = [f"**Run #{run['id']} {plain(run['name'])}: {run['status']}**"
             + (f", step {done} of {steps}" if steps and run["status"] == "running" else "")]
    if run.get("error"):
        lines.append(f"Error: {plain(run['error'])}")
    if result:
        h = result["holdout"]
        ceiling = (h.get("ceiling") or {}).get("accuracy") if h.get("ceiling") else None
        lines.append(f"Hold-out agreement with the votes ({h['pairs']} pair votes on "
                     f"{h['items']} items never trained on): **{_pct(h['before'])} before → "
                     f"{_pct(h['after'])} after**; human ceiling {_pct(ceiling)}.")
        lines.append(f"Use it as backend `{plain(view['spec'])}` in every tab (reload the page "
                     "to see it in the backend lists).")
    elif curves.get("holdout_accuracy"):
        step, acc = curves["holdout_accuracy"][-1]
        lines.append(f"Hold-out agreement at step {step}: {_pct(acc)}")
    return "\n\n".join(lines)


def curves_figure(curves: dict[str, list[tuple[int, float]]]) -> go.Figure:
    fig = go.Figure()
    for key, label, axis in (("loss", "training loss", "y"),
                             ("holdout_accuracy", "hold-out agreement", "y2")):
        points = curves.get(key, [])
        if points:
            fig.add_scatter(x=[s for s, _ in points], y=[v for _, v in points], name=label,
                            yaxis=axis, mode="lines+markers" if axis == "y2" else "lines")
    fig.update_layout(title="Learning from votes: loss and hold-out agreement",
                      xaxis_title="step", yaxis_title="loss",
                      yaxis2={"title": "agreement", "overlaying": "y", "side": "right",
                              "range": [0, 1]},
                      height=320, margin={"t": 40, "b": 40, "l": 50, "r": 50})
    return fig


def build_learn_panel(services: Services) -> None:
    with gr.Accordion("Learn from votes: fine-tune the reward model on the store's votes",
                      open=False):
        gr.Markdown("People's votes (Annotate tab; the **RL samples** queue holds the policy's "
                    "own edits, where the reward is weakest) train SpatialReward-Mini. A share "
                    "of the voted items is held out, never trained on, and measured before and "
                    "after. Simulated annotators are for experiments only and are never mixed "
                    "in unless you tick them.")
        with gr.Row():
            base = gr.Dropdown(services.finetune_bases(), value="mini", label="Start from",
                               scale=2, elem_id="learn-base")
            kinds = gr.CheckboxGroup(KIND_CHOICES, value=["human"], label="Votes of",
                                     scale=2, elem_id="learn-kinds")
            holdout = gr.Slider(0.05, 0.5, value=0.2, step=0.05, label="Hold out (share of "
                                "voted items)", scale=1)
            steps = gr.Number(300, precision=0, label="Steps", scale=1)
            name = gr.Textbox("mini-votes", label="Model name", scale=1)
        start = gr.Button("Learn from votes", variant="primary", elem_id="learn-start")
        with gr.Row():
            pick = gr.Dropdown(run_choices(services), label="Fine-tune run", scale=3,
                               elem_id="learn-run")
            stop = gr.Button("Stop", scale=1)
        status = gr.Markdown(elem_id="learn-status")
        plot = gr.Plot(label="Curves")

    def show(run_id: str | None) -> tuple[Any, Any]:
        if not run_id:
            return "", None
        view = services.finetune_status(int(run_id))
        return status_text(view), curves_figure(view["curves"])

    @user_errors
    def on_start(base: str, kinds: list[str], holdout: float, steps: float, name: str,
                 request: gr.Request) -> tuple[Any, Any, Any]:
        """Start a fine-tune of the reward model from the store's votes.

        Args:
            base: the checkpoint to start from ("mini" or a finished fine-tune's mini:PATH)
            kinds: annotator kinds whose votes to learn from ("human", "simulated")
            holdout: the share of voted items held out for measuring (0.05..0.5)
            steps: optimiser steps
            name: the new model's name (its folder is data/reward-models/NAME-vN)
        """
        run_id = services.start_finetune(user=username(request), base=base, kinds=kinds or [],
                                         holdout=holdout, steps=int(steps or 0), name=name)
        text, fig = show(str(run_id))
        return gr.update(choices=run_choices(services), value=str(run_id)), text, fig

    @user_errors
    def on_stop(run_id: str | None, request: gr.Request) -> Any:
        if not run_id:
            raise InputError("pick a fine-tune run to stop")
        services.stop_run(int(run_id), user=username(request))
        return show(run_id)[0]

    start.click(on_start, [base, kinds, holdout, steps, name], [pick, status, plot],
                api_name="learn_from_votes")
    stop.click(on_stop, [pick], [status], api_name="stop_learning")
    pick.change(show, [pick], [status, plot], api_name="learning_status",
                show_progress="hidden")
    timer = gr.Timer(REFRESH_S)
    timer.tick(show, [pick], [status, plot], api_visibility="private", show_progress="hidden")
    root = gr.context.Context.root_block
    if root is not None:  # the choices of a fresh page: runs and bases made since start-up
        root.load(lambda: (gr.update(choices=run_choices(services)),
                           gr.update(choices=services.finetune_bases())),
                  outputs=[pick, base], api_visibility="private")
