"""The Train tab: start, watch, stop and resume online RL (Flow-GRPO) of the editor.

A run is a separate process, so the app keeps answering while it trains; everything shown
is read back through the service layer (``Services.rl_form``, ``rl_config``, ``rl_status``,
``rl_view``, ``start_rl`` / ``stop_run`` / ``resume_run``), refreshed by a timer. This
module imports no torch and no ``rl`` module.

API: ``/start_rl`` (policy, rewards, prompts, ops, eval prompts, steps, prompts per step,
group size, sampling steps, lr, noise level, KL weight, clip range, timestep fraction,
finetune, threads, scenes, processes, name) -> run status dict; ``/stop_rl`` (run id)
and ``/resume_rl`` (run id) -> run status dict; ``/rl_status`` (run id) -> status dict
with the latest metrics and the hacking alert; ``/refresh_rl`` (run id) is the timer's view update.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from spatialreward.errors import InputError, StudioError
from spatialreward.service import Services
from spatialreward.synth.language import OPERATIONS

from .errors import redact_paths, user_errors, username
from .text import plain

HEAD = ""

REFRESH_S = 3.0


def run_label(row: Mapping[str, Any]) -> str:
    return f"#{row['id']} {row['name']} ({row['status']})"


def _latest(history: Sequence[Mapping[str, float]], key: str) -> float | None:
    for h in reversed(history):
        v = h.get(key)
        if v is not None and math.isfinite(v):
            return float(v)
    return None


def status_summary(row: Mapping[str, Any], history: Sequence[Mapping[str, float]]
                   ) -> dict[str, Any]:
    """What ``/rl_status`` answers: the run row's essentials and the latest numbers."""
    steps = [h for h in history if "reward_mean" in h]
    alerts = [int(h["step"]) for h in steps if h.get("hacking_alert", 0) > 0]
    return {
        "run_id": row["id"], "name": row["name"], "status": row["status"],
        "pid": row["pid"], "error": row["error"], "out_dir": row["out_dir"],
        "steps_done": len(steps), "steps": row["config"].get("steps"),
        "reward_mean": _latest(steps, "reward_mean"),
        "gt_success": _latest(steps, "gt_success"),
        "kl": _latest(steps, "kl"),
        "heldout_gt_success_first": next((h["heldout_gt_success"] for h in history
                                          if "heldout_gt_success" in h), None),
        "heldout_gt_success_last": _latest(history, "heldout_gt_success"),
        "hacking_alert_steps": alerts,
    }


def status_markdown(s: Mapping[str, Any]) -> str:
    def num(x: Any, pct: bool = False) -> str:
        if x is None:
            return "-"
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}"

    text = (f"**Run #{s['run_id']}** {plain(s['name'])}: **{s['status']}**"
            + (f" (pid {s['pid']})" if s["status"] in ("queued", "running") else "")
            + f" · step {s['steps_done']}/{s['steps']} · reward {num(s['reward_mean'])}"
            f" · ground-truth success {num(s['gt_success'], True)} · KL {num(s['kl'])}"
            f" · held out: {num(s['heldout_gt_success_first'], True)} at the start, "
            f"{num(s['heldout_gt_success_last'], True)} now")
    if s["error"] and s["status"] in ("failed", "interrupted"):
        text += f"\n\nError: {plain(redact_paths(s['error']))}"
    return text


def alert_markdown(folder: Path | None, summary: Mapping[str, Any]) -> str:
    if not summary["hacking_alert_steps"]:
        return ""
    message = ""
    if folder is not None and (folder / "alerts.jsonl").is_file():
        lines = (folder / "alerts.jsonl").read_text().strip().splitlines()
        if lines:
            message = json.loads(lines[-1])["message"]
    steps = ", ".join(str(s) for s in summary["hacking_alert_steps"][-5:])
    return (f"### ⚠ Reward-hacking alert\n{message or 'the reward rose while ground truth fell'}"
            f" (alert at steps {steps})")


def build_train_tab(services: Services) -> None:
    form = services.rl_form()
    defaults = form["defaults"]

    def run_choices() -> list[tuple[str, str]]:
        return [(run_label(r), str(r["id"])) for r in services.rl_runs()]

    gr.Markdown("Improve the embedded editor with **Flow-GRPO**: it samples a group of edits "
                "per SynthEdit prompt, a reward model judges them, and the policy moves toward "
                "the edits its group judged better. Every edit is also scored against its "
                "exact target (ground truth), so you can see whether the reward helps or is "
                "being gamed. Runs train in their own process and are kept in the store.")
    with gr.Row():
        policy = gr.Dropdown(form["policies"], value=defaults.policy,
                             allow_custom_value=True, label="Policy (editor checkpoint)",
                             scale=2, elem_id="train-policy")
        rewards = gr.Textbox(value="mini", label="Reward mix (BACKEND=WEIGHT, ...)", scale=3,
                             info="the backends this Studio offers (mini, pixel, --backend, "
                                  "STUDIO_BACKENDS: e.g. mini:data/runs/mini-global, the "
                                  "global-only ablation), or gt (the ground-truth oracle)",
                             elem_id="train-rewards")
    with gr.Row():
        prompts = gr.Number(value=defaults.prompts, precision=0, label="Training prompts")
        eval_prompts = gr.Number(value=defaults.eval_prompts, precision=0,
                                 label="Held-out prompts")
        ops = gr.CheckboxGroup(list(OPERATIONS), label="Operations (none ticked = all)",
                               scale=3)
        scenes = gr.Dropdown(form["scenes"], value=services.policy_scenes(defaults.policy),
                             label="Scenes", info="follows the policy: what it was trained on",
                             elem_id="train-scenes")
    with gr.Accordion("Hyper-parameters (Flow-GRPO defaults)", open=False):
        with gr.Row():
            steps = gr.Number(value=defaults.steps, precision=0, label="RL steps")
            per_step = gr.Number(value=defaults.prompts_per_step, precision=0,
                                 label="Prompts per step")
            group = gr.Number(value=defaults.group_size, precision=0, label="Group size G")
            sampling = gr.Number(value=defaults.sampling_steps, precision=0,
                                 label="Sampler steps")
            processes = gr.Number(value=1, precision=0, label="Processes (torchrun)")
        with gr.Row():
            lr = gr.Number(value=defaults.lr, label="Learning rate")
            noise = gr.Number(value=defaults.noise_level, label="Noise level")
            kl = gr.Number(value=defaults.kl_weight, label="KL weight")
            clip = gr.Number(value=defaults.clip_range, label="Clip range")
            fraction = gr.Number(value=defaults.timestep_fraction, label="Timestep fraction")
            finetune = gr.Radio(["lora", "full"], value=defaults.finetune, label="Fine-tune")
            threads = gr.Number(value=defaults.threads, precision=0,
                                label="CPU threads per process")
    with gr.Row():
        name = gr.Textbox(label="Run name (optional)", scale=2)
        start = gr.Button("Start", variant="primary", scale=1, elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
        resume = gr.Button("Resume", scale=1, elem_id="train-resume")
    with gr.Row():
        choices = run_choices()
        run_pick = gr.Dropdown(choices, value=choices[0][1] if choices else None,
                               allow_custom_value=True, label="Run", scale=4,
                               elem_id="train-run-pick")
        refresh_runs = gr.Button("Refresh runs", scale=1)
    status = gr.Markdown(elem_id="train-status")
    alert = gr.Markdown(elem_id="train-alert")
    curves = gr.Plot(label="Curves", elem_id="train-curves")
    gallery = gr.Gallery(label="Latest samples: judge's regions drawn, reward, ground truth, "
                               "reasoning", columns=7, height="auto", elem_id="train-gallery")
    with gr.Accordion("Process log", open=False):
        log = gr.Textbox(lines=10, max_lines=20, show_label=False, elem_id="train-log")
    timer = gr.Timer(REFRESH_S)

    def parse_id(value: Any) -> int:
        try:
            return int(str(value).strip().lstrip("#"))
        except (TypeError, ValueError):
            raise InputError("pick a run first") from None

    def summary(run_id: int) -> dict[str, Any]:
        return status_summary(*services.rl_status(run_id))

    def views(run_id: int) -> tuple[Any, ...]:
        view = services.rl_view(run_id)
        s = status_summary(view["row"], view["history"])
        return (status_markdown(s), alert_markdown(view["folder"], s), view["curves"],
                view["samples"], view["log"])

    def picks(value: str | None = None) -> Any:
        fresh = run_choices()
        return gr.update(choices=fresh, value=value) if value else gr.update(choices=fresh)

    @user_errors
    def on_start(request: gr.Request, *values: Any) -> dict[str, Any]:
        *fields, n_proc, label = values
        config = services.rl_config(*fields)
        run_id = services.start_rl(config, name=label or "", processes=int(n_proc or 1),
                                   user=username(request))
        return summary(run_id)

    policy.change(lambda p: gr.update(value=services.policy_scenes(p or defaults.policy)),
                  inputs=[policy], outputs=[scenes], api_visibility="private")
    start_inputs = [policy, rewards, prompts, ops, eval_prompts, steps, per_step, group,
                    sampling, lr, noise, kl, clip, fraction, finetune, threads, scenes,
                    processes, name]
    status_json = gr.JSON(visible=False)
    start.click(on_start, inputs=start_inputs, outputs=[status_json], api_name="start_rl"
                ).success(lambda s: picks(str(s["run_id"])), inputs=[status_json],
                          outputs=[run_pick], api_visibility="private")

    @user_errors
    def on_stop(run_id: Any, request: gr.Request) -> dict[str, Any]:
        rid = parse_id(run_id)
        services.stop_run(rid, user=username(request))
        return summary(rid)

    stop.click(on_stop, inputs=[run_pick], outputs=[status_json], api_name="stop_rl")

    @user_errors
    def on_resume(run_id: Any, request: gr.Request) -> dict[str, Any]:
        rid = parse_id(run_id)
        services.resume_run(rid, user=username(request))
        return summary(rid)

    resume.click(on_resume, inputs=[run_pick], outputs=[status_json], api_name="resume_rl")

    @user_errors
    def rl_status(run_id: str) -> dict[str, Any]:
        """An RL run's status, latest reward / ground truth / KL, held-out ground-truth
        success at the start and now, and the steps with a reward-hacking alert."""
        return summary(parse_id(run_id))

    gr.api(rl_status, api_name="rl_status")

    def on_refresh(run_id: Any) -> tuple[Any, ...]:
        if not run_id:
            return (gr.skip(),) * 5
        try:
            return views(parse_id(run_id))
        except StudioError as err:  # a timer tick must not raise toasts every 3 s
            return (plain(redact_paths(str(err))), "", gr.skip(), gr.skip(), gr.skip())

    def signature(run_id: Any) -> str:
        """What changes when a run makes progress (the timer redraws only then)."""
        try:
            return services.rl_progress(parse_id(run_id))
        except StudioError:
            return ""

    def on_tick(run_id: Any, last: str) -> tuple[Any, ...]:
        now = signature(run_id)
        if not run_id or now == last:
            return (gr.skip(),) * 6
        return (*on_refresh(run_id), now)

    outputs = [status, alert, curves, gallery, log]
    shown = gr.State("")
    run_pick.change(on_refresh, inputs=[run_pick], outputs=outputs, api_name="refresh_rl"
                    ).then(signature, inputs=[run_pick], outputs=[shown],
                           api_visibility="private")
    timer.tick(on_tick, inputs=[run_pick, shown], outputs=[*outputs, shown],
               api_name="refresh_rl_timer", api_visibility="private", show_progress="hidden")
    refresh_runs.click(lambda: picks(), outputs=[run_pick], api_name="refresh_rl_runs",
                       api_visibility="private")
