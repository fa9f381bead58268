"""The service layer's RL runs: start, stop, resume and watch Flow-GRPO runs, and what the
Train tab shows and builds. :class:`~spatialreward.service.Services` inherits these; the
checks of who may start runs and of the app's caps live here, never in the tab."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backends
from .errors import InputError

if TYPE_CHECKING:
    from storage.store import Store

    from .config import StudioConfig
    from .rl.config import RLConfig
    from .rl.runs import Launcher

MAX_RUN_NAME_CHARS = 200
RL_LIMITS = {"prompts": 100_000, "eval_prompts": 10_000, "prompts_per_step": 64,
             "group_size": 64, "sampling_steps": 100, "micro_batch": 1024,
             "reward_batch": 1024, "judge_size": 1024, "updates_per_step": 16,
             "threads": max(1, os.cpu_count() or 1)}
"""The most an RL run started from the app may ask for, per config field (``steps``:
``StudioConfig.max_rl_steps``)."""
STOP_MARK = "stop_requested.json"
"""Written into a run's folder when Stop is pressed: the run finishes its current step
(tens of seconds) before it records ``cancelled``, and meanwhile it is shown as
``stopping``. The store's statuses stay the trainer's own; a resume removes the mark."""
STOPPING = "stopping"
ESTIMATE_RUNS = 10
"""How many earlier RL runs the step-time estimate of a run without a step reads."""


class RunServices:
    """RL run methods of :class:`~spatialreward.service.Services` (which provides the
    store, the config, the role check and the offered backends)."""

    config: StudioConfig
    _launcher: Launcher | None = None
    _store_lock: threading.Lock
    _runs_lock: threading.Lock

    if TYPE_CHECKING:
        @property
        def store(self) -> Store: ...
        @property
        def data_root(self) -> Path: ...
        def require(self, user: str | None, action: str) -> str: ...
        def _check_offered(self, spec: str, key: str, what: str = ...) -> None: ...

    @property
    def launcher(self) -> Launcher:
        """Starts, stops and watches RL runs (child processes of this app)."""
        store = self.store  # takes the store lock itself
        with self._store_lock:
            if self._launcher is None:
                from .rl.runs import Launcher

                self._launcher = Launcher(store, self.config.db)
            return self._launcher

    def policy_folder(self, policy: str) -> Path:
        """The editor checkpoint ``policy`` names, which must lie under ``models/`` or the
        data folder (an API caller chooses it, so nothing else on disk is read)."""
        from .rl.runs import REPO

        path = Path((policy or "").strip() or ".")
        path = (path if path.is_absolute() else REPO / path).resolve()
        if not any(path.is_relative_to(base.resolve())
                   for base in (REPO / "models", self.data_root)):
            raise InputError("the policy must be an editor checkpoint under models/ or the "
                             "data folder; copy it there")
        return path

    def policy_scenes(self, policy: str) -> str:
        """The scenes the policy was trained on (what the Train tab's Scenes follow)."""
        from .rl.config import recorded_scenes

        try:
            return recorded_scenes(self.policy_folder(policy))
        except InputError:
            return "default"

    # -- what the Train tab shows and builds ------------------------------------------

    def rl_form(self) -> dict[str, Any]:
        """The Train form's choices: ``defaults`` (an RLConfig), ``policies`` (editor
        checkpoints under models/ and the runs), ``scenes``, ``reward_oracle`` and the
        update ``methods``."""
        from .rl.config import METHODS, ORACLE
        from .rl.prompts import SCENES
        from .rl.view import DEFAULTS, policy_choices

        return {"defaults": DEFAULTS, "policies": policy_choices(self.data_root),
                "scenes": sorted(SCENES), "reward_oracle": ORACLE, "methods": list(METHODS)}

    def rl_config(self, *form: Any) -> RLConfig:
        """The Train form's values (policy, rewards, ... scenes; see ``rl.view.build_config``)
        as a validated RLConfig; the policy is checked before anything reads it."""
        from .rl.view import DEFAULTS, build_config

        policy = (form[0] if form else "") or DEFAULTS.policy
        self.policy_folder(policy)
        return build_config(*form)

    def rl_status(self, run_id: int) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """An RL run's row (status corrected when its process died) and metric history."""
        from .rl.charts import history_from_metrics

        row = self.launcher.status(run_id)
        if row["kind"] not in ("rl", "external"):
            raise InputError(f"run {run_id} is a {row['kind']} run; pick an RL run or an "
                             "external one (serve-reward)")
        return self._shown(row), history_from_metrics(self.store.metrics(run_id))

    def rl_view(self, run_id: int) -> dict[str, Any]:
        """What the Train tab shows of an RL run: :meth:`rl_status`'s ``row`` and
        ``history``, its ``folder``, the ``curves`` figure, the latest ``samples`` (image,
        caption) and the ``log`` tail."""
        from .rl.charts import curves_figure
        from .rl.view import sample_gallery

        row, history = self.rl_status(run_id)
        folder = self.launcher.folder(row) if row.get("out_dir") else None
        if row["kind"] == "external":  # a trainer elsewhere: its reward calls are the steps
            from .rl.external import external_figure

            return {"row": row, "history": history, "folder": folder,
                    "curves": external_figure(history),
                    "samples": sample_gallery(self.store, folder, run_id, groups=8),
                    "summary": self.external_summary(row, history),
                    "log": ""}
        return {"row": row, "history": history, "folder": folder,
                "curves": curves_figure(history),
                "samples": sample_gallery(self.store, folder, run_id),
                "log": self.launcher.log_tail(run_id)}

    def external_summary(self, row: Mapping[str, Any],
                         history: Sequence[Mapping[str, float]]) -> dict[str, Any]:
        """The status numbers of an external run (:meth:`rl_status`'s row and history)."""
        from .rl.external import external_summary

        return external_summary(row, history)

    def rl_runs(self) -> list[dict[str, Any]]:
        """The RL runs and the external ones (trainers calling ``serve-reward``), newest
        first (``stopping`` while a stop request is pending)."""
        rows = [*self.launcher.runs(), *self.store.runs("external")]
        return [self._shown(r) for r in sorted(rows, key=lambda r: -int(r["id"]))]

    def rl_progress(self, run_id: int) -> str:
        """A short signature that changes when a run makes progress (status, metric and
        sample counts): the tab redraws only then."""
        row = self._shown(self.launcher.status(run_id))
        return (f"{run_id}:{row['status']}:{len(self.store.metrics(run_id))}:"
                f"{len(self.store.rl_samples(run_id))}")

    def _check_run_caps(self, config: Mapping[str, Any], processes: int) -> None:
        """A run from the app stays within the caps (so one request cannot exhaust the
        machine), and at most ``max_active_runs`` train at once. Call with ``_runs_lock``."""
        limits = {**RL_LIMITS, "steps": self.config.max_rl_steps}
        for key, most in limits.items():
            value = config.get(key)
            if isinstance(value, (int, float)) and value > most:
                raise InputError(f"{key} = {value} is more than the {most:,} a run started "
                                 f"from the app may use; lower it")
        if not 1 <= processes <= self.config.max_rl_processes:
            raise InputError(f"processes must be 1..{self.config.max_rl_processes}, got "
                             f"{processes}")
        active = [r for r in self.store.runs("rl") if r["status"] in ("queued", "running")
                  and self.launcher.status(r["id"])["status"] in ("queued", "running")]
        if len(active) >= self.config.max_active_runs:
            raise InputError(f"{len(active)} RL runs are active already (the most at once is "
                             f"{self.config.max_active_runs}); stop one or wait for it to "
                             "finish")

    def start_rl(self, config: RLConfig, *, name: str = "", processes: int = 1,
                 user: str | None = None) -> int:
        """Start an RL run in its own process; returns its id. Reward backends must be
        offered (or ``gt``), the policy a checkpoint under ``models/`` or the data
        folder, and the run within the app's caps."""
        from .rl.config import ORACLE

        self.require(user, "start_run")
        for term in config.rewards:
            if term.backend.strip().lower() != ORACLE:
                self._check_offered(term.backend, backends.normalize_spec(term.backend),
                                    "reward backend")
        self.policy_folder(config.policy)
        if len(name) > MAX_RUN_NAME_CHARS:
            raise InputError(f"the run name has {len(name)} characters, more than the "
                             f"{MAX_RUN_NAME_CHARS} accepted; shorten it")
        with self._runs_lock:  # the count and the start, as one step
            self._check_run_caps(config.to_dict(), processes)
            return self.launcher.start(config, name=name, processes=processes)

    def recover_runs(self) -> list[int]:
        """At start-up: mark the runs a gone process left running as ``interrupted``."""
        return self.launcher.recover()

    def stop_run(self, run_id: int, user: str | None = None) -> dict[str, Any]:
        """Ask an RL run to stop (it finishes its step and checkpoints first); returns the
        row, shown as ``stopping`` from now until the run records its outcome."""
        self.require(user, "stop_run")
        row = self.launcher.stop(run_id)
        mark = self._stop_mark(row)
        if mark is not None:
            mark.write_text(json.dumps({"requested_at": time.time()}))
        return self._shown(self.launcher.status(run_id))

    def resume_run(self, run_id: int, user: str | None = None) -> int:
        """Start a stopped, failed or interrupted RL run again from its checkpoint, within
        the same caps as a new run."""
        self.require(user, "start_run")
        with self._runs_lock:
            row = self.store.run(run_id)
            config = row["config"]
            self._check_run_caps(config, int(config.get("processes", 1)))
            mark = self._stop_mark(row)
            if mark is not None:  # an old request must not show the new process as stopping
                mark.unlink(missing_ok=True)
            return self.launcher.resume(run_id)

    # -- the stop request and the step time ----------------------------------------

    def _stop_mark(self, row: Mapping[str, Any]) -> Path | None:
        """Where ``row``'s stop request is kept (None: the run has no folder yet)."""
        if not row.get("out_dir"):
            return None
        return self.launcher.folder(dict(row)) / STOP_MARK

    def _shown(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` as the Train tab shows it: an active run whose Stop was pressed is
        ``stopping``, with ``stop_requested_at`` (seconds since the epoch)."""
        mark = self._stop_mark(row) if row["status"] in ("queued", "running") else None
        if mark is None or not mark.is_file():
            return row
        try:
            at = float(json.loads(mark.read_text())["requested_at"])
        except (OSError, ValueError, KeyError, TypeError):
            at = mark.stat().st_mtime
        return {**row, "status": STOPPING, "stop_requested_at": at}

    def rl_step_estimate(self, run_id: int) -> float | None:
        """Seconds one step of ``run_id`` should take, estimated before its first step
        from the measured steps of up to :data:`ESTIMATE_RUNS` earlier RL runs, scaled
        by the edits a step samples (prompts x group x sampler steps); None without any
        measured run."""
        def work(config: Mapping[str, Any]) -> float:
            return float(config.get("prompts_per_step", 1) * config.get("group_size", 1)
                         * config.get("sampling_steps", 1))

        target = work(self.store.run(run_id)["config"])
        rates = []
        for other in [r for r in self.store.runs("rl") if r["id"] != run_id][:ESTIMATE_RUNS]:
            seconds = [m["value"] for m in self.store.metrics(other["id"], "step_seconds")]
            if seconds:
                config = json.loads(other["config"]) if isinstance(other["config"], str) \
                    else other["config"]
                rates.append(statistics.fmean(seconds) / max(work(config), 1.0))
        return statistics.median(rates) * target if rates else None
