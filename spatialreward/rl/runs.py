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

    def _spawn(self, run_id: int, out: Path, processes: int, resume: bool) -> int:
        cmd = self.command(out / "config.json", run_id, processes, resume)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(out / LOG, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._children[proc.pid] = proc
        self.store.update_run(run_id, pid=proc.pid)
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

    def stop(self, run_id: int) -> dict[str, Any]:
        """Ask the run to stop (it checkpoints, then marks itself cancelled)."""
        row = self.status(run_id)
        if row["status"] not in ACTIVE:
            raise InputError(f"run {run_id} is {row['status']}, not running; nothing to stop")
        pid = row["pid"]
        if pid:
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass
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

    def alive(self, pid: int) -> bool:
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None
        return _pid_alive(pid)

    def status(self, run_id: int) -> dict[str, Any]:
        row = self.store.run(run_id)
        if row["status"] in ACTIVE and row["pid"] and not self.alive(int(row["pid"])):
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
