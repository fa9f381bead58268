"""The Train tab: start, watch, stop and resume online RL (Flow-GRPO) of the editor.

A run is a separate process, so the app keeps answering while it trains; everything shown
is read back through the service layer (``Services.rl_form``, ``rl_config``, ``rl_status``,
``rl_view``, ``start_rl`` / ``stop_run`` / ``resume_run``), refreshed by a timer and
read again on every page load. A stopped run shows ``stopping`` at once (it finishes its
step first, tens of seconds); the status line gives the time left from the measured
seconds per step (before the first step: an estimate from earlier runs, said so) and the
latest held-out evaluation. This module imports no torch and no ``rl`` module.

API: ``/start_rl`` (policy, rewards, prompts, ops, eval prompts, steps, prompts per step,
group size, sampling steps, lr, noise level, KL weight, clip range, timestep fraction,
finetune, threads, scenes, processes, name, method) -> run status dict; ``/stop_rl`` (run id)
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

from .annotate import documented_api
from .errors import redact_paths, user_errors, username
from .learn import build_learn_panel
from .text import plain

HEAD = ""

REFRESH_S = 3.0


ACTIVE = ("queued", "running", "stopping")
STOPPING_NOTE = "stopping (finishing the current step, then it checkpoints)"
RECENT_STEPS = 5
"""Steps whose measured time the ETA averages (recent ones: the first steps warm up)."""


def run_label(row: Mapping[str, Any]) -> str:
    kind = " · external trainer" if row.get("kind") == "external" else ""
    return f"#{row['id']} {row['name']} ({row['status']}){kind}"


def _latest(history: Sequence[Mapping[str, float]], key: str) -> float | None:
    for h in reversed(history):
        v = h.get(key)
        if v is not None and math.isfinite(v):
            return float(v)
    return None


def _eta(row: Mapping[str, Any], steps: Sequence[Mapping[str, float]],
         estimate: float | None) -> dict[str, Any]:
    """Seconds per step (measured over the recent steps, else ``estimate``) and the time
    left while the run trains; ``eta_estimated`` says the figure is not measured yet."""
    measured = [h["step_seconds"] for h in steps[-RECENT_STEPS:]
                if h.get("step_seconds") is not None and math.isfinite(h["step_seconds"])]
    per_step = sum(measured) / len(measured) if measured else estimate
    total = row["config"].get("steps")
    left = None
    if per_step is not None and total is not None and row["status"] in ("queued", "running"):
        left = max(int(total) - len(steps), 0) * per_step
    return {"seconds_per_step": per_step, "eta_s": left,
            "eta_estimated": not measured and per_step is not None}


def status_summary(row: Mapping[str, Any], history: Sequence[Mapping[str, float]],
                   estimate: float | None = None) -> dict[str, Any]:
    """What ``/rl_status`` answers: the run row's essentials and the latest numbers.

    ``heldout_gt_success_last`` is the latest held-out evaluation *after* the start one
    (None when there was none since: a stopped run skips the final evaluation);
    ``estimate``: seconds per step to assume before the first step is measured."""
    steps = [h for h in history if "reward_mean" in h]
    alerts = [int(h["step"]) for h in steps if h.get("hacking_alert", 0) > 0]
    evals = [h for h in history if h.get("heldout_gt_success") is not None]
    later = evals[-1] if len(evals) > 1 else None
    return {
        "run_id": row["id"], "name": row["name"], "status": row["status"],
        "pid": row["pid"], "error": row["error"], "out_dir": row["out_dir"],
        "steps_done": len(steps), "steps": row["config"].get("steps"),
        "reward_mean": _latest(steps, "reward_mean"),
        "gt_success": _latest(steps, "gt_success"),
        "kl": _latest(steps, "kl"),
        "heldout_gt_success_first": evals[0]["heldout_gt_success"] if evals else None,
        "heldout_gt_success_last": None if later is None else later["heldout_gt_success"],
        "heldout_last_step": None if later is None else int(later["step"]),
        "hacking_alert_steps": alerts,
        "stop_requested_at": row.get("stop_requested_at"),
        **_eta(row, steps, estimate),
    }


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(42), duration(2400), duration(6000)
    ('42 s', '40 min', '1 h 40 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def _num(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def heldout_text(s: Mapping[str, Any]) -> str:
    """The held-out ground-truth success at the start and at the latest evaluation."""
    if s["heldout_gt_success_first"] is None:
        return "held out: not evaluated yet"
    text = f"held out: {_num(s['heldout_gt_success_first'], True)} at the start"
    if s["heldout_gt_success_last"] is None:
        return text + " (no held-out evaluation since the start)"
    return text + f", {_num(s['heldout_gt_success_last'], True)} at step {s['heldout_last_step']}"


def eta_text(s: Mapping[str, Any]) -> str:
    """Time left while the run trains: measured, estimated (said so), or unknown."""
    if s["status"] not in ("queued", "running"):
        return ""
    if s["eta_s"] is None:
        return " · time left: known after the first step"
    if s["eta_estimated"]:
        return (f" · about {duration(s['eta_s'])} left (an estimate from earlier runs, "
                f"~{s['seconds_per_step']:.0f} s/step; measured after the first step)")
    return f" · about {duration(s['eta_s'])} left ({s['seconds_per_step']:.1f} s/step measured)"


def status_markdown(s: Mapping[str, Any]) -> str:
    shown = STOPPING_NOTE if s["status"] == "stopping" else s["status"]
    text = (f"**Run #{s['run_id']}** {plain(s['name'])}: **{shown}**"
            + (f" (pid {s['pid']})" if s["status"] in ACTIVE else "")
            + f" · step {s['steps_done']}/{s['steps']}{eta_text(s)}"
            f" · reward {_num(s['reward_mean'])}"
            f" · ground-truth success {_num(s['gt_success'], True)} · KL {_num(s['kl'])}"
            f" · {heldout_text(s)}")
    if s["error"] and s["status"] in ("failed", "interrupted"):
        text += f"\n\nError: {plain(redact_paths(s['error']))}"
    return text


def external_markdown(s: Mapping[str, Any]) -> str:
    """The status line of an external run: a trainer elsewhere calling serve-reward."""
    latency = ("-" if s["latency_p50_ms"] is None
               else f"{s['latency_p50_ms']:.0f} / {s['latency_p95_ms']:.0f} ms")
    if s["spot_check"]:
        spot = (f"spot check {plain(s['spot_check'])}: {_num(s['spot_reward'])} on the kept "
                f"samples, served reward {_num(s['reward_on_spot'])} on the same "
                f"({s['spot_checks']} calls checked)")
    else:
        spot = ("no spot check (start serve-reward with --spot-check SPEC for a hacking "
                "alert; the kept samples below are there to look at)")
    failed = "-" if s["failure_rate"] is None else f"{100 * s['failure_rate']:.1f}%"
    return (f"**Run #{s['run_id']}** {plain(s['name'])}: **{s['status']}** · external "
            f"trainer judged by {plain(str(s['backend']))} · {s['calls']} reward calls, "
            f"{s['items']} items · reward {_num(s['reward_mean'])} (latest call) · failed "
            f"{failed} · latency p50 / p95 {latency} · {spot}")


def caption_markdown(samples: Sequence[Any] | None) -> str:
    """The gallery's captions in full, one table row per picture (the gallery cuts them
    off): the source's instruction, then each edit's reward, ground truth and reasoning."""
    rows = []
    for k, sample in enumerate(samples or []):
        caption = sample[1] if isinstance(sample, (list, tuple)) and len(sample) > 1 else ""
        rows.append(f"| {k + 1} | {plain(str(caption or ''))} |")
    if not rows:
        return ""
    return "| # | caption |\n|---|---|\n" + "\n".join(rows)


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
            method = gr.Radio(form["methods"], value=defaults.method,
                              label="Update (grpo: Flow-GRPO; nft: likelihood-free)")
            threads = gr.Number(value=defaults.threads, precision=0,
                                label="CPU threads per process")
    with gr.Row():
        name = gr.Textbox("", label="Run name (optional)", scale=2)
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
    with gr.Accordion("Sample captions in full", open=True):
        captions = gr.Markdown(elem_id="train-captions")
    with gr.Accordion("Process log", open=False):
        log = gr.Textbox(lines=10, max_lines=20, show_label=False, elem_id="train-log")
    timer = gr.Timer(REFRESH_S)
    status_json = gr.JSON(visible=False, label="Run status")
    shown = gr.State("")

    def views(run_id: int) -> tuple[Any, ...]:
        view = services.rl_view(run_id)
        if view["row"]["kind"] == "external":
            s = view["summary"]
            return (external_markdown(s), alert_markdown(view["folder"], s), view["curves"],
                    view["samples"], view["log"])
        s = run_summary(services, view["row"], view["history"])
        return (status_markdown(s), alert_markdown(view["folder"], s), view["curves"],
                view["samples"], view["log"])

    def picks(value: str | None = None) -> Any:
        fresh = run_choices()
        return gr.update(choices=fresh, value=value) if value else gr.update(choices=fresh)

    def on_refresh(run_id: str | None = None) -> tuple[Any, ...]:
        """What the tab shows of an RL run: status line, hacking alert, curves, the latest
        samples (image, caption) and the process log's tail.

        Args:
            run_id: the run's id (e.g. "3")
        """
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

    def redraw(run_id: Any) -> tuple[Any, ...]:
        """Everything the tab shows of a run, with the run list's labels (its status in
        them: queued, running, stopping, ...) and the progress signature."""
        shown_views = on_refresh(run_id)
        return (*shown_views, caption_markdown(shown_views[3]) if run_id else gr.skip(),
                signature(run_id), picks())

    def on_tick(run_id: Any, last: str) -> tuple[Any, ...]:
        if not run_id or signature(run_id) == last:
            return (gr.skip(),) * 8
        return redraw(run_id)

    def on_page_load(current: Any) -> Any:
        """The run list as it is now (not as it was when the app started), the newest
        run picked unless one is."""
        fresh = run_choices()
        ids = [value for _, value in fresh]
        value = str(current) if current is not None and str(current) in ids else (
            ids[0] if ids else None)
        return gr.update(choices=fresh, value=value)

    policy.change(lambda p: gr.update(value=services.policy_scenes(p or defaults.policy)),
                  inputs=[policy], outputs=[scenes], api_visibility="private")
    start_inputs = [policy, rewards, prompts, ops, eval_prompts, steps, per_step, group,
                    sampling, lr, noise, kl, clip, fraction, finetune, threads, scenes,
                    processes, name, method]
    handlers = api_handlers(services)
    outputs = [status, alert, curves, gallery, log]
    everything = [*outputs, captions, shown, run_pick]
    start.click(handlers["start_rl"], inputs=start_inputs, outputs=[status_json],
                api_name="start_rl"
                ).success(lambda s: picks(str(s["run_id"])), inputs=[status_json],
                          outputs=[run_pick], api_visibility="private")
    for button, key in ((stop, "stop_rl"), (resume, "resume_rl")):
        button.click(handlers[key], inputs=[run_pick], outputs=[status_json], api_name=key
                     ).success(redraw, inputs=[run_pick], outputs=everything,
                               api_visibility="private", show_progress="hidden")
    documented_api(handlers["rl_status"], api_name="rl_status")

    run_pick.change(on_refresh, inputs=[run_pick], outputs=outputs, api_name="refresh_rl"
                    ).then(lambda rid, pics: (signature(rid), caption_markdown(pics)),
                           inputs=[run_pick, gallery], outputs=[shown, captions],
                           api_visibility="private")
    timer.tick(on_tick, inputs=[run_pick, shown], outputs=everything,
               api_name="refresh_rl_timer", api_visibility="private", show_progress="hidden")
    refresh_runs.click(lambda: picks(), outputs=[run_pick], api_name="refresh_rl_runs",
                       api_visibility="private")
    root = gr.context.Context.root_block  # the Blocks being built: run on every page load
    if root is None:
        raise RuntimeError("build_train_tab must be called inside a gr.Blocks")
    root.load(on_page_load, inputs=[run_pick], outputs=[run_pick], api_name="train_load",
              api_visibility="private")
    build_learn_panel(services)


def run_summary(services: Services, row: Mapping[str, Any],
                history: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """:func:`status_summary`, with the step time estimated from earlier runs while the
    run has not measured a step of its own."""
    estimate = None
    if row["status"] in ("queued", "running") and not any("reward_mean" in h
                                                          for h in history):
        estimate = services.rl_step_estimate(int(row["id"]))
    return status_summary(row, history, estimate)


def parse_id(value: Any) -> int:
    try:
        return int(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        raise InputError("pick a run first (its id, e.g. 3)") from None


def api_handlers(services: Services) -> dict[str, Any]:
    """The tab's public endpoints, named parameters and docstrings (the API page lists
    them from these signatures)."""

    def summary(run_id: int) -> dict[str, Any]:
        row, history = services.rl_status(run_id)
        if row["kind"] == "external":
            return services.external_summary(row, history)
        return run_summary(services, row, history)

    @user_errors
    def start_rl(request: gr.Request, policy: str, rewards: str, prompts: int,
                 ops: list[str] | None, eval_prompts: int, steps: int, prompts_per_step: int,
                 group_size: int, sampling_steps: int, lr: float, noise_level: float,
                 kl_weight: float, clip_range: float, timestep_fraction: float,
                 finetune: str, threads: int, scenes: str, processes: int = 1,
                 name: str = "", method: str = "") -> dict[str, Any]:
        """Start an RL (Flow-GRPO) run of the editor in its own process; returns its status
        (as /rl_status answers).

        Args:
            policy: editor checkpoint folder under models/ or the data folder
            rewards: reward mix BACKEND=WEIGHT, ... of offered backends, or gt (the oracle)
            prompts: SynthEdit training prompts
            ops: operations to train on (empty: all)
            eval_prompts: held-out prompts evaluated at the start and the end
            steps: RL steps
            prompts_per_step: prompts per step
            group_size: edits sampled per prompt (G, at least 2)
            sampling_steps: sampler steps per edit
            lr: learning rate
            noise_level: sampler noise level
            kl_weight: weight of the KL to the starting policy
            clip_range: PPO clip range
            timestep_fraction: share of the sampler steps each edit trains on
            finetune: lora or full
            threads: CPU threads per process
            scenes: the scenes of the prompts (default: the policy's)
            processes: processes (torchrun), 1 or more
            name: the run's name (empty: from the rewards)
            method: the policy update, grpo or nft (empty: the default)
        """
        config = services.rl_config(policy, rewards, prompts, ops, eval_prompts, steps,
                                    prompts_per_step, group_size, sampling_steps, lr,
                                    noise_level, kl_weight, clip_range, timestep_fraction,
                                    finetune, threads, scenes, method or None)
        run_id = services.start_rl(config, name=name or "", processes=int(processes or 1),
                                   user=username(request))
        return summary(run_id)

    @user_errors
    def stop_rl(request: gr.Request, run_id: str | None = None) -> dict[str, Any]:
        """Ask an RL run to stop: it finishes its current step, checkpoints and is then
        cancelled; until then its status is "stopping".

        Args:
            run_id: the run's id (e.g. "3")
        """
        rid = parse_id(run_id)
        services.stop_run(rid, user=username(request))
        return summary(rid)

    @user_errors
    def resume_rl(request: gr.Request, run_id: str | None = None) -> dict[str, Any]:
        """Start a stopped, failed or interrupted RL run again from its checkpoint.

        Args:
            run_id: the run's id (e.g. "3")
        """
        rid = parse_id(run_id)
        services.resume_run(rid, user=username(request))
        return summary(rid)

    @user_errors
    def rl_status(run_id: str | None = None) -> dict[str, Any]:
        """An RL run's status (queued, running, stopping, done, cancelled, failed,
        interrupted), latest reward / ground truth / KL, held-out ground-truth success at
        the start and at the latest evaluation since, seconds per step and time left, and
        the steps with a reward-hacking alert.

        Args:
            run_id: the run's id (e.g. "3")
        """
        return summary(parse_id(run_id))

    return {"start_rl": start_rl, "stop_rl": stop_rl, "resume_rl": resume_rl,
            "rl_status": rl_status}
