"""The service layer's RL runs: start, stop, resume and watch Flow-GRPO runs, and what the
Train tab shows and builds. :class:`~spatialreward.service.Services` inherits these; the
checks of who may start runs and of the app's caps live here, never in the tab."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
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
        checkpoints under models/ and the runs), ``scenes`` and ``reward_oracle``."""
        from .rl.config import ORACLE
        from .rl.prompts import SCENES
        from .rl.view import DEFAULTS, policy_choices

        return {"defaults": DEFAULTS, "policies": policy_choices(self.data_root),
                "scenes": sorted(SCENES), "reward_oracle": ORACLE}

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
        if row["kind"] != "rl":
            raise InputError(f"run {run_id} is a {row['kind']} run; pick an RL run")
        return row, history_from_metrics(self.store.metrics(run_id))

    def rl_view(self, run_id: int) -> dict[str, Any]:
        """What the Train tab shows of an RL run: :meth:`rl_status`'s ``row`` and
        ``history``, its ``folder``, the ``curves`` figure, the latest ``samples`` (image,
        caption) and the ``log`` tail."""
        from .rl.charts import curves_figure
        from .rl.view import sample_gallery

        row, history = self.rl_status(run_id)
        folder = self.launcher.folder(row) if row.get("out_dir") else None
        return {"row": row, "history": history, "folder": folder,
                "curves": curves_figure(history),
                "samples": sample_gallery(self.store, folder, run_id),
                "log": self.launcher.log_tail(run_id)}

    def rl_runs(self) -> list[dict[str, Any]]:
        """The RL runs, newest first."""
        return list(self.launcher.runs())

    def rl_progress(self, run_id: int) -> str:
        """A short signature that changes when a run makes progress (status, metric and
        sample counts): the tab redraws only then."""
        row = self.launcher.status(run_id)
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
        """Ask an RL run to stop (it checkpoints first)."""
        self.require(user, "stop_run")
        return self.launcher.stop(run_id)

    def resume_run(self, run_id: int, user: str | None = None) -> int:
        """Start a stopped, failed or interrupted RL run again from its checkpoint, within
        the same caps as a new run."""
        self.require(user, "start_run")
        with self._runs_lock:
            config = self.store.run(run_id)["config"]
            self._check_run_caps(config, int(config.get("processes", 1)))
            return self.launcher.resume(run_id)
