"""Start, stop, resume and watch RL runs from another process (the Studio).

The service functions behind the Train tab. A run is a separate process,
``python -m spatialreward.rl rl --config OUT/config.json --run-id ID --db DB``
(or ``torchrun --standalone --nproc_per_node=K -m spatialreward.rl rl ...``), started
in its own session so the app stays responsive and a Stop reaches every process of
the run. Nothing here imports torch.

- :meth:`Launcher.start`: record the run (``queued``), write its config into its folder
  (``DATA/runs/rl-ID/``), start the process (it marks itself ``running``).
- :meth:`Launcher.stop`: SIGTERM to the run's process group; the trainer finishes its
  step, checkpoints and marks the run ``cancelled``.
- :meth:`Launcher.resume`: start the process again with ``--resume`` (a ``cancelled`` or
  ``failed`` run with a checkpoint).
- :meth:`Launcher.status`: the run's row, corrected when its process died without
  recording an outcome (killed, out of memory): it is then marked ``failed``.
- :meth:`Launcher.recover`: at start-up, runs left ``queued`` / ``running`` by a server
  that is gone are marked ``interrupted``, with the command that resumes them.

A signal goes only to a process that is this run's: an RL run (bench runs have no process
of their own: they run inside the server) whose recorded process is still the one running
under that pid (the run stores the pid with the process's start time), never the server
itself. A stale run whose pid was reused by another program is left alone and marked as
exited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from .config import RLConfig

REPO = Path(__file__).resolve().parents[2]
ENTRY = ("-m", "spatialreward.rl", "rl")
LOG = "train.log"
ACTIVE = ("queued", "running")


def run_folder(root: Path, run_id: int) -> Path:
    return root / "runs" / f"rl-{run_id}"


PROCESS_KINDS = ("rl", "reward")
"""Run kinds that have a process of their own (a bench run runs inside the server): RL
trainings, and fine-tunes of the reward model from the store's votes."""
REWARD_ENTRY = ("-m", "spatialreward.mini.finetune_job")
SETTINGS = "settings.json"


def reward_folder(root: Path, run_id: int) -> Path:
    return root / "runs" / f"reward-{run_id}"


LAUNCHED_ENV = "SPATIALREWARD_LAUNCHED_RUN"
"""Set by :class:`Launcher` for its children: the run's recorded process is then the one
the launcher started (e.g. torchrun), which the trainer must not overwrite with its own."""


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or
    None where that cannot be read (the process is gone, not Linux). A pid reused by a later
    process comes with another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_recorded_process(run: dict[str, Any], pid: int) -> bool:
    """True when ``pid`` is running and is the very process recorded with ``run`` (its
    start time matches ``pid_start``), not a later one that reuses the pid."""
    started = process_start(pid)
    return started is not None and started == run.get("pid_start") and _pid_alive(pid)


def record_process(store: Any, run_id: int, pid: int | None = None) -> None:
    """Record ``pid`` (default: this process) as the run's process, with its start time."""
    pid = os.getpid() if pid is None else pid
    store.update_run(run_id, pid=pid, pid_start=process_start(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Launcher:
    """Runs RL trainings as child processes of the app, recorded in ``store``."""

    def __init__(self, store: Any, db: str | os.PathLike[str], *, cwd: Path = REPO,
                 python: str = sys.executable) -> None:
        self.store = store
        self.db = Path(db).resolve()
        self.root = self.db.parent
        self.cwd = cwd
        self.python = python
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def command(self, config_path: Path, run_id: int, processes: int = 1,
                resume: bool = False) -> list[str]:
        args = [*ENTRY, "--config", str(config_path), "--run-id", str(run_id),
                "--db", str(self.db)]
        if resume:
            args.append("--resume")
        if processes > 1:
            return [self.python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", *args]
        return [self.python, *args]

    def _spawn(self, run_id: int, out: Path, processes: int, resume: bool,
               cmd: list[str] | None = None) -> int:
        cmd = cmd or self.command(out / "config.json", run_id, processes, resume)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCHED_ENV: str(run_id)}
        with open(out / LOG, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._children[proc.pid] = proc
        record_process(self.store, run_id, proc.pid)
        return proc.pid

    def start(self, config: RLConfig, *, name: str = "", processes: int = 1) -> int:
        """Record and start a run; returns its id. The config is checked first."""
        if processes < 1:
            raise InputError(f"processes must be at least 1, got {processes}")
        config.check_world(processes)
        policy = (self.cwd / config.policy) if not Path(config.policy).is_absolute() \
            else Path(config.policy)
        if not (policy / "editor.safetensors").is_file():
            raise ConfigError(f"no editor checkpoint in {config.policy}; train one with "
                              "`python -m spatialreward train-editor --config "
                              "configs/editor.json` or pick another policy")
        label = name.strip() or "rl " + ", ".join(f"{t.backend}" for t in config.rewards)
        run_id = self.store.create_run("rl", label, {**config.to_dict(),
                                                    "processes": processes})
        out = run_folder(self.root, run_id)
        out.mkdir(parents=True, exist_ok=True)
        d = config.to_dict()
        d["out"] = str(out)
        (out / "config.json").write_text(json.dumps(d, indent=1))
        self.store.update_run(run_id, out_dir=out.relative_to(self.root).as_posix())
        self._spawn(run_id, out, processes, resume=False)
        return run_id

    def start_reward(self, settings: dict[str, Any], *, name: str = "") -> int:
        """Record and start a fine-tune of the reward model from the store's votes
        (``python -m spatialreward.mini.finetune_job``); returns its run id. ``settings``
        are :class:`~spatialreward.mini.finetune.FinetuneConfig` fields, already checked."""
        label = name.strip() or f"learn from votes ({settings.get('base') or 'mini'})"
        run_id = self.store.create_run("reward", label, settings)
        out = reward_folder(self.root, run_id)
        out.mkdir(parents=True, exist_ok=True)
        (out / SETTINGS).write_text(json.dumps(settings, indent=1))
        self.store.update_run(run_id, out_dir=out.relative_to(self.root).as_posix())
        cmd = [self.python, *REWARD_ENTRY, "--settings", str(out / SETTINGS),
               "--run-id", str(run_id), "--db", str(self.db)]
        self._spawn(run_id, out, 1, resume=False, cmd=cmd)
        return run_id

    def owns(self, run: dict[str, Any], pid: int) -> bool:
        """True when ``pid`` is ``run``'s own running process: started by this launcher,
        or the process recorded with the run (same pid *and* start time: a later process
        that reuses the pid is not it); never this server."""
        if pid <= 1 or pid == os.getpid() or run["kind"] not in PROCESS_KINDS:
            return False
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None
        return is_recorded_process(run, pid)

    def stop(self, run_id: int) -> dict[str, Any]:
        """Ask the run to stop (it checkpoints, then marks itself cancelled)."""
        row = self.status(run_id)
        if row["kind"] == "external":
            raise InputError(f"run {run_id} is an external run: it ends when its serve-reward "
                             "process stops (Ctrl-C where it runs)")
        if row["kind"] not in PROCESS_KINDS:
            raise InputError(f"run {run_id} is a {row['kind']} run: it runs inside the app and "
                             "cannot be stopped from here")
        if row["status"] not in ACTIVE:
            raise InputError(f"run {run_id} is {row['status']}, not running; nothing to stop")
        pid = int(row["pid"] or 0)
        if not (pid and self.owns(row, pid)):
            raise InputError(f"run {run_id}'s process cannot be found; nothing was signalled")
        try:
            # Started with start_new_session: the run's process group is its own pid.
            if os.getpgid(pid) == pid != os.getpgrp():
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it exited just now; its status says how
        return self.store.run(run_id)

    def resume(self, run_id: int) -> int:
        """Start a stopped (or failed) run again from its last checkpoint."""
        row = self.status(run_id)
        if row["kind"] != "rl":
            raise InputError(f"run {run_id} is a {row['kind']} run, not an RL run")
        if row["status"] in ACTIVE:
            raise InputError(f"run {run_id} is still {row['status']}; stop it first")
        if row["status"] == "done":
            raise InputError(f"run {run_id} is done; start a new run to train further")
        out = self.folder(row) if row.get("out_dir") else None
        if out is None or not (out / "checkpoint" / "state.json").is_file():
            raise InputError(f"run {run_id} has no checkpoint yet (it stopped before its "
                             "first one); start a new run")
        self.store.update_run(run_id, status="queued")
        processes = int(row["config"].get("processes", 1))
        return self._spawn(run_id, out, processes, resume=True)

    def folder(self, row: dict[str, Any]) -> Path:
        if not row.get("out_dir"):
            raise InputError(f"run {row['id']} has no folder")
        path = Path(row["out_dir"])
        return path if path.is_absolute() else self.root / path

    def alive(self, run: dict[str, Any]) -> bool:
        """True while ``run``'s own process is running (a reused pid does not count)."""
        return self.owns(run, int(run["pid"] or 0))

    def resume_command(self, row: dict[str, Any]) -> str:
        """The shell command that resumes ``row``'s run (paths relative to the repo)."""
        def rel(p: Path) -> str:
            return os.path.relpath(p, self.cwd) if p.is_relative_to(self.cwd) else str(p)

        out = self.folder(row) if row.get("out_dir") else run_folder(self.root, row["id"])
        processes = int(row["config"].get("processes", 1))
        cmd = self.command(Path(rel(out / "config.json")), row["id"], processes, resume=True)
        cmd[0] = "python"
        return " ".join(rel(self.db) if c == str(self.db) else c for c in cmd)

    def recover(self) -> list[int]:
        """Mark runs that a gone process left ``queued`` / ``running`` as ``interrupted``
        (RL runs whose process is not running; bench runs of a server that is not this
        one, or that this server started before a restart); returns their ids."""
        marked = []
        for row in self.store.runs():
            if row["status"] not in ACTIVE:
                continue
            row = self.store.run(row["id"])  # with its config decoded
            if row["kind"] == "reward":
                gone = not self.alive(row)
                how = "the fine-tune process is gone; start it again (it keeps no checkpoint)"
            elif row["kind"] in PROCESS_KINDS:
                gone = not self.alive(row)
                how = ("the training process is gone; resume it with Resume in the Train tab "
                       f"or `{self.resume_command(row)}`")
            else:  # in-server runs: their server is gone (or it is this one, restarted)
                pid = int(row["pid"] or 0)
                gone = pid == os.getpid() or not is_recorded_process(row, pid)
                how = "the server stopped while it ran; run the bench again"
            if gone:
                self.store.update_run(row["id"], status="interrupted",
                                      error=f"interrupted: {how}")
                marked.append(int(row["id"]))
        return marked

    def status(self, run_id: int) -> dict[str, Any]:
        row = self.store.run(run_id)
        if row["kind"] in PROCESS_KINDS and row["status"] in ACTIVE and row["pid"] \
                and not self.alive(row):
            row = self.store.run(run_id)  # it may have recorded its outcome just now
            if row["status"] in ACTIVE:
                self.store.update_run(run_id, status="failed",
                                      error="the training process exited without recording "
                                            f"an outcome; see {LOG} in the run folder")
                row = self.store.run(run_id)
        return row

    def runs(self) -> Sequence[dict[str, Any]]:
        return self.store.runs("rl")

    def log_tail(self, run_id: int, lines: int = 30) -> str:
        try:
            text = (self.folder(self.store.run(run_id)) / LOG).read_text(errors="replace")
        except (OSError, InputError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, run_id: int, timeout: float | None = None) -> int | None:
        """Wait for the run's process (tests, scripts); returns its exit code."""
        row = self.store.run(run_id)
        proc = self._children.get(int(row["pid"] or 0))
        if proc is None:
            return None
        return proc.wait(timeout)
