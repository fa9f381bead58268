"""The Train tab: start, watch, stop and resume online RL (Flow-GRPO) of the editor.

A run is a separate process (:class:`spatialreward.rl.runs.Launcher`), so the app keeps
answering while it trains; everything shown is read back from the store and the run's
folder, refreshed by a timer. This module imports no torch.

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
from PIL import Image

from spatialreward.errors import InputError, StudioError
from spatialreward.judgment import Region
from spatialreward.overlay import draw_regions
from spatialreward.rl.charts import curves_figure, history_from_metrics
from spatialreward.rl.config import ORACLE, RLConfig, parse_reward_mix, recorded_scenes
from spatialreward.rl.prompts import SCENES
from spatialreward.rl.runs import REPO
from spatialreward.service import Services
from spatialreward.synth.language import OPERATIONS

from .errors import redact_paths, user_errors, username
from .text import plain

HEAD = ""

REFRESH_S = 3.0
GALLERY_PX = 192
DEFAULTS = RLConfig()


def policy_choices(root: Path, repo: Path = REPO) -> list[str]:
    """Editor checkpoints to offer: under models/ and the RL runs' last checkpoints."""
    found = []
    for base in (repo / "models", root / "runs"):
        if base.is_dir():
            for weights in sorted(base.rglob("editor.safetensors")):
                folder = weights.parent
                try:
                    found.append(folder.relative_to(repo).as_posix())
                except ValueError:
                    found.append(str(folder))
    return found or [DEFAULTS.policy]


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


def sample_gallery(store: Any, folder: Path | None, run_id: int, groups: int = 1
                   ) -> list[tuple[Image.Image, str]]:
    """The latest sample groups: the source, then each edit with its judge's regions drawn
    and its reward, ground truth and reasoning as the caption."""
    rows = store.rl_samples(run_id)[-groups:]
    out: list[tuple[Image.Image, str]] = []
    for row in reversed(rows):
        detail: dict[str, Any] = {}
        if folder is not None and (folder / "samples" / f"{row['id']}.json").is_file():
            detail = json.loads((folder / "samples" / f"{row['id']}.json").read_text())
        if row["source_sha256"]:
            src = _big(store.image_bytes(row["source_sha256"]))
            out.append((src, f"step {row['step']} source: {row['instruction']}"))
        for k, (sha, reward) in enumerate(zip(row["images"], row["rewards"], strict=True)):
            img = _big(store.image_bytes(sha))
            caption = [f"reward {reward:.3f}" if reward is not None and math.isfinite(reward)
                       else "reward: excluded (judgment failed)"]
            truth = (detail.get("truth") or [None] * (k + 1))[k]
            if truth:
                caption.append(f"ground truth {'✓' if truth['success'] else '✗'} "
                               f"(progress {truth['progress']:.2f}, spill {truth['spill']:.2f})")
            judgments = (detail.get("judgments") or [{}] * (k + 1))[k]
            judged = next((j for spec, j in judgments.items() if spec != ORACLE), None)
            if judged is not None:
                regions = [Region.from_dict(r) for r in judged.get("regions", [])]
                img = draw_regions(img, regions)
                reasoning = " ".join(judged.get("reasoning", "").split())
                if judged.get("status") != "ok":
                    reasoning = f"{judged.get('status')}: {judged.get('error') or ''}"
                caption.append(reasoning[:220])
            out.append((img, " · ".join(caption)))
    return out


def _big(data: bytes) -> Image.Image:
    import io

    img = Image.open(io.BytesIO(data)).convert("RGB")
    return img.resize((GALLERY_PX, GALLERY_PX), Image.Resampling.BICUBIC)


def build_config(policy: str, rewards: str, prompts: Any, ops: Sequence[str] | None,
                 eval_prompts: Any, steps: Any, prompts_per_step: Any, group_size: Any,
                 sampling_steps: Any, lr: Any, noise_level: Any, kl_weight: Any,
                 clip_range: Any, timestep_fraction: Any, finetune: str,
                 threads: Any = DEFAULTS.threads, scenes: str | None = None) -> RLConfig:
    """The form's values as a validated RLConfig (a bad value is a clear error)."""
    def whole(x: Any, name: str) -> int:
        if x is None or x == "":
            raise InputError(f"{name} is empty")
        return int(x)

    def real(x: Any, name: str) -> float:
        if x is None or x == "":
            raise InputError(f"{name} is empty")
        return float(x)

    policy = (policy or DEFAULTS.policy).strip()
    return RLConfig(
        policy=policy, rewards=parse_reward_mix(rewards or ""),
        scenes=scenes or recorded_scenes(policy),
        prompts=whole(prompts, "training prompts"), ops=tuple(ops or ()),
        eval_prompts=whole(eval_prompts, "held-out prompts"), steps=whole(steps, "steps"),
        prompts_per_step=whole(prompts_per_step, "prompts per step"),
        group_size=whole(group_size, "group size"),
        sampling_steps=whole(sampling_steps, "sampling steps"), lr=real(lr, "learning rate"),
        noise_level=real(noise_level, "noise level"), kl_weight=real(kl_weight, "KL weight"),
        clip_range=real(clip_range, "clip range"),
        timestep_fraction=real(timestep_fraction, "timestep fraction"),
        finetune=finetune or DEFAULTS.finetune, threads=whole(threads, "threads"))


def build_train_tab(services: Services) -> None:
    store = services.store
    launcher = services.launcher
    root = launcher.root

    def run_choices() -> list[tuple[str, str]]:
        return [(run_label(r), str(r["id"])) for r in launcher.runs()]

    gr.Markdown("Improve the embedded editor with **Flow-GRPO**: it samples a group of edits "
                "per SynthEdit prompt, a reward model judges them, and the policy moves toward "
                "the edits its group judged better. Every edit is also scored against its "
                "exact target (ground truth), so you can see whether the reward helps or is "
                "being gamed. Runs train in their own process and are kept in the store.")
    with gr.Row():
        policy = gr.Dropdown(policy_choices(root), value=DEFAULTS.policy,
                             allow_custom_value=True, label="Policy (editor checkpoint)",
                             scale=2, elem_id="train-policy")
        rewards = gr.Textbox(value="mini", label="Reward mix (BACKEND=WEIGHT, ...)", scale=3,
                             info="the backends this Studio offers (mini, pixel, --backend, "
                                  "STUDIO_BACKENDS: e.g. mini:data/runs/mini-global, the "
                                  "global-only ablation), or gt (the ground-truth oracle)",
                             elem_id="train-rewards")
    with gr.Row():
        prompts = gr.Number(value=DEFAULTS.prompts, precision=0, label="Training prompts")
        eval_prompts = gr.Number(value=DEFAULTS.eval_prompts, precision=0,
                                 label="Held-out prompts")
        ops = gr.CheckboxGroup(list(OPERATIONS), label="Operations (none ticked = all)",
                               scale=3)
        scenes = gr.Dropdown(sorted(SCENES), value=recorded_scenes(DEFAULTS.policy),
                             label="Scenes", info="follows the policy: what it was trained on",
                             elem_id="train-scenes")
    with gr.Accordion("Hyper-parameters (Flow-GRPO defaults)", open=False):
        with gr.Row():
            steps = gr.Number(value=DEFAULTS.steps, precision=0, label="RL steps")
            per_step = gr.Number(value=DEFAULTS.prompts_per_step, precision=0,
                                 label="Prompts per step")
            group = gr.Number(value=DEFAULTS.group_size, precision=0, label="Group size G")
            sampling = gr.Number(value=DEFAULTS.sampling_steps, precision=0,
                                 label="Sampler steps")
            processes = gr.Number(value=1, precision=0, label="Processes (torchrun)")
        with gr.Row():
            lr = gr.Number(value=DEFAULTS.lr, label="Learning rate")
            noise = gr.Number(value=DEFAULTS.noise_level, label="Noise level")
            kl = gr.Number(value=DEFAULTS.kl_weight, label="KL weight")
            clip = gr.Number(value=DEFAULTS.clip_range, label="Clip range")
            fraction = gr.Number(value=DEFAULTS.timestep_fraction, label="Timestep fraction")
            finetune = gr.Radio(["lora", "full"], value=DEFAULTS.finetune, label="Fine-tune")
            threads = gr.Number(value=DEFAULTS.threads, precision=0,
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

    def summary(run_id: int) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, float]]]:
        row = launcher.status(run_id)
        if row["kind"] != "rl":
            raise InputError(f"run {run_id} is a {row['kind']} run; pick an RL run")
        history = history_from_metrics(store.metrics(run_id))
        return row, status_summary(row, history), history

    def views(run_id: int) -> tuple[Any, ...]:
        row, s, history = summary(run_id)
        folder = launcher.folder(row) if row.get("out_dir") else None
        return (status_markdown(s), alert_markdown(folder, s), curves_figure(history),
                sample_gallery(store, folder, run_id), launcher.log_tail(run_id))

    def picks(value: str | None = None) -> Any:
        fresh = run_choices()
        return gr.update(choices=fresh, value=value) if value else gr.update(choices=fresh)

    @user_errors
    def on_start(request: gr.Request, *values: Any) -> dict[str, Any]:
        *form, n_proc, label = values
        services.policy_folder(form[0] or DEFAULTS.policy)  # before anything reads it
        config = build_config(*form)
        run_id = services.start_rl(config, name=label or "", processes=int(n_proc or 1),
                                   user=username(request))
        return summary(run_id)[1]

    policy.change(lambda p: gr.update(value=services.policy_scenes(p or DEFAULTS.policy)),
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
        return summary(rid)[1]

    stop.click(on_stop, inputs=[run_pick], outputs=[status_json], api_name="stop_rl")

    @user_errors
    def on_resume(run_id: Any, request: gr.Request) -> dict[str, Any]:
        rid = parse_id(run_id)
        services.resume_run(rid, user=username(request))
        return summary(rid)[1]

    resume.click(on_resume, inputs=[run_pick], outputs=[status_json], api_name="resume_rl")

    @user_errors
    def rl_status(run_id: str) -> dict[str, Any]:
        """An RL run's status, latest reward / ground truth / KL, held-out ground-truth
        success at the start and now, and the steps with a reward-hacking alert."""
        return summary(parse_id(run_id))[1]

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
            rid = parse_id(run_id)
            row = launcher.status(rid)
        except StudioError:
            return ""
        return f"{rid}:{row['status']}:{len(store.metrics(rid))}:{len(store.rl_samples(rid))}"

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
