"""A recorded RL run: the process ``python -m spatialreward rl --config FILE`` runs.

It joins the process group when started by torchrun, builds the policy, the reward
mix and the trainer, and records everything in the store (main process only): the run's
status and pid, metrics per step, a sample group per ``sample_every`` steps (images and
rewards in ``rl_samples``; ground truth and full judgments, with regions and reasoning,
in ``OUT/samples/SAMPLE_ID.json``), hacking alerts in ``OUT/alerts.jsonl``; with
``samples_to_store``, groups as on-policy items of the RL samples queue (:mod:`.evaluate`).

SIGTERM (the Studio's Stop button) or Ctrl-C asks the trainer to stop after the current
step; it checkpoints and the run is marked ``cancelled``. ``--resume`` continues from
the checkpoint. A crash marks the run ``failed`` with the error.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .config import RLConfig
from .monitor import Alert
from .runs import LAUNCHED_ENV, record_process
from .trainer import SampleGroup

RUNS_DIR = "runs"


def run_dir(root: Path, run_id: int) -> Path:
    """Where the Studio keeps run ``run_id``'s files (``root`` = the data folder)."""
    return root / RUNS_DIR / f"rl-{run_id}"


class StoreRecorder:
    """Writes a run's metrics, samples and alerts to the store and its folder."""

    def __init__(self, store: Any, run_id: int, out: Path) -> None:
        self.store = store
        self.run_id = run_id
        self.out = out

    def metrics(self, step: int, values: dict[str, float]) -> None:
        finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
        if finite:
            self.store.log_metrics(self.run_id, step, finite)

    def samples(self, group: SampleGroup) -> None:
        sample_id = self.store.add_rl_sample(self.run_id, group.step, group.prompt.instruction,
                                             group.prompt.source, group.images, group.rewards)
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "step": group.step, "prompt": group.prompt.id, "op": group.prompt.op,
            "instruction": group.prompt.instruction,
            "rewards": [None if not math.isfinite(r) else r for r in group.rewards],
            "truth": [t.to_dict() for t in group.truth],
            "judgments": [{spec: j.to_dict() for spec, j in js.items()}
                          for js in group.judgments],
        }
        (folder / f"{sample_id}.json").write_text(json.dumps(payload))

    def store_items(self, groups: list[SampleGroup]) -> None:
        """``samples_to_store``: the groups as on-policy items of the RL samples queue."""
        from .evaluate import push_groups

        push_groups(self.store, groups, run_id=self.run_id)

    def alert(self, alert: Alert) -> None:
        with open(self.out / "alerts.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": alert.step, "message": alert.message,
                                 "reward_change": alert.reward_change,
                                 "gt_change": alert.gt_change}) + "\n")


def build_trainer(config: RLConfig, out: Path, world: Any = None, log: Any = print) -> Any:
    """The policy (from ``config.policy``), the reward mix and the trainer."""
    from .config import recorded_scenes
    from .embedded import EmbeddedEditor
    from .rewards import RewardMix
    from .trainer import FlowGRPOTrainer

    trained_on = recorded_scenes(config.policy)
    if trained_on != config.scenes:
        log(f"warning: {config.policy} was trained on {trained_on!r} scenes but this run "
            f"draws {config.scenes!r} ones; set \"scenes\": \"{trained_on}\" to train on "
            "what the editor knows")

    policy = EmbeddedEditor.load(config.policy, finetune=config.finetune,
                                 lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                                 micro_batch=max(config.micro_batch,
                                                 config.prompts_per_step * config.group_size))
    rewards = RewardMix(config.rewards, judge_size=config.judge_size,
                        batch=config.reward_batch)
    return FlowGRPOTrainer(config, policy, rewards, world=world, out=out, log=log)


def run_rl(config: RLConfig, *, db: Path | None, run_id: int | None = None,
           resume: bool = False, log: Any = print) -> str:
    """Run (or resume) an RL run and record it; returns the outcome
    (``done``, ``cancelled`` or ``budget``). With ``db=None`` nothing is recorded and
    ``config.out`` must name the output folder."""
    stop_requested: list[bool] = []
    trainer: Any = None

    def stop(signum: int, frame: Any) -> None:
        stop_requested.append(True)
        if trainer is not None:
            trainer.request_stop()

    # Before anything slow: a Stop that arrives while the run starts up is honoured too.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    import torch

    from .distributed import close_world, gather_objects, init_world

    world = init_world()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    store = None
    out: Path | None = Path(config.out) if config.out else None
    if world.main and db is not None:
        from storage.store import Store

        store = Store.open(db)
        if run_id is None:
            run_id = store.create_run("rl", f"rl {', '.join(t.backend for t in config.rewards)}",
                                      config.to_dict())
        if out is None:
            out = run_dir(Path(db).resolve().parent, run_id)
        rel = _relative(out, Path(db).resolve().parent)
        store.update_run(run_id, status="running", out_dir=rel)
        if os.environ.get(LAUNCHED_ENV) != str(run_id):
            record_process(store, run_id)  # started from a shell: this process is the run's
    out = gather_objects(world, out)[0]  # every process writes under the main one's folder
    if out is None:
        raise ConfigError("set `out` in the config (or record the run in a store) so the "
                          "run has a folder for its checkpoints")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recorder = None
    if store is not None and run_id is not None:
        recorder = StoreRecorder(store, run_id, out)
    try:
        trainer = build_trainer(config, out, world, log=log if world.main else (lambda s: None))
        if resume:
            trainer.resume()
            log(f"resumed at step {trainer.step} from {out / 'checkpoint'}")
        if stop_requested:
            trainer.request_stop()
        t0 = time.perf_counter()
        outcome = trainer.run(recorder)
        if world.main:
            _write_curves(trainer.history, out)
            log(f"{outcome} after step {trainer.step} ({time.perf_counter() - t0:.0f} s); "
                f"checkpoint in {out / 'checkpoint'}")
    except BaseException as err:
        if store is not None and run_id is not None:
            store.update_run(run_id, status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        close_world(world)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if store is not None and run_id is not None:
        store.update_run(run_id, status="cancelled" if outcome == "cancelled" else "done")
    return str(outcome)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path.resolve())


def _write_curves(history: list[dict[str, float]], out: Path) -> None:
    (out / "curves.json").write_text(json.dumps(history, default=_json_number))
    from .charts import curves_figure

    curves_figure(history).write_html(str(out / "curves.html"), include_plotlyjs="cdn")


def _json_number(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
