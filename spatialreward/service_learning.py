"""The service layer's "learn from votes": fine-tune the reward model on the store's votes.

:class:`~spatialreward.service.Services` inherits these. A fine-tune runs in its own
process (``python -m spatialreward.mini.finetune_job``), recorded in the store as a run of
kind ``reward`` with its loss and hold-out curves as metrics; its checkpoint folder is
served at once as ``mini:PATH`` in every tab (:meth:`reward_model_specs`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from storage.store import Store

    from .config import StudioConfig
    from .rl.runs import Launcher

KINDS = ("human", "simulated")
MAX_FINETUNE_STEPS = 5000


class LearningServices:
    """Fine-tune methods of :class:`~spatialreward.service.Services`."""

    config: StudioConfig

    if TYPE_CHECKING:
        @property
        def store(self) -> Store: ...
        @property
        def data_root(self) -> Path: ...
        @property
        def launcher(self) -> Launcher: ...
        def require(self, user: str | None, action: str) -> str: ...

    # -- what can be fine-tuned and served ------------------------------------------

    def reward_models(self) -> list[dict[str, Any]]:
        """Finished fine-tunes, newest first: run id, name, ``spec`` (``mini:PATH``), base,
        votes used and the hold-out figures (from the folder's ``finetune.json``)."""
        out: list[dict[str, Any]] = []
        if not Path(self.config.db).is_file():  # no store yet: listing must not create one
            return out
        for row in self.store.runs("reward"):
            if row["status"] != "done":
                continue
            folder = self._reward_folder(row)
            if folder is None or not (folder / "model.safetensors").is_file():
                continue
            try:
                result = json.loads((folder / "finetune.json").read_text())
            except (OSError, ValueError):
                result = {}
            out.append({"run_id": row["id"], "name": row["name"], "spec": f"mini:{folder}",
                        "base": result.get("base"), "votes": result.get("votes"),
                        "holdout": result.get("holdout")})
        return out

    def reward_model_specs(self) -> list[str]:
        """``mini:PATH`` of every finished fine-tune under the data folder: offered at once."""
        return [m["spec"] for m in self.reward_models()]

    def _reward_folder(self, row: dict[str, Any]) -> Path | None:
        """The checkpoint folder a reward run wrote, when it lies under the data folder."""
        config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])
        out = config.get("out")
        if not out:
            return None
        path = Path(out)
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        return path if path.is_relative_to(self.data_root.resolve()) else None

    def finetune_bases(self) -> list[tuple[str, str]]:
        """Dropdown choices for the checkpoint to start from: the shipped Mini, then the
        finished fine-tunes (a fine-tune of a fine-tune continues learning)."""
        return [("SpatialReward-Mini as shipped", "mini"),
                *((f"{m['name']} (run {m['run_id']})", m["spec"]) for m in self.reward_models())]

    # -- starting and watching a fine-tune -------------------------------------------

    def finetune_settings(self, *, base: str = "mini", kinds: Sequence[str] = ("human",),
                          holdout: float = 0.2, steps: int = 300, name: str = "",
                          replay: float = 0.3) -> dict:
        """Checked :class:`~spatialreward.mini.finetune.FinetuneConfig` fields for a run
        started from the app: the base must be Mini or a finished fine-tune, the output
        goes under the data folder, and the store must hold enough votes (refused here,
        before any process starts, with the numbers)."""
        from .mini.finetune import FinetuneConfig, count_votes, next_out

        base = (base or "mini").strip()
        if base != "mini" and base not in self.reward_model_specs():
            raise InputError(f"base {base!r} is neither the shipped mini nor a finished "
                             "fine-tune of this Studio; pick one from the list")
        kinds = tuple(k.strip() for k in kinds if k.strip())
        if not kinds or set(kinds) - set(KINDS):
            raise InputError(f"learn from votes of {' and/or '.join(KINDS)} annotators, "
                             f"got {list(kinds)}")
        if not 0.05 <= float(holdout) <= 0.5:
            raise InputError(f"hold out between 5% and 50% of the voted items, got {holdout}")
        if not 20 <= int(steps) <= MAX_FINETUNE_STEPS:
            raise InputError(f"steps must be 20..{MAX_FINETUNE_STEPS}, got {steps}")
        if not 0.0 <= float(replay) <= 0.9:
            raise InputError(f"the SynthEdit replay share must be 0..0.9, got {replay}")
        label = (name or "").strip() or "mini-votes"
        if not label.replace("-", "").replace("_", "").isalnum() or len(label) > 64:
            raise InputError("the model name may hold letters, digits, '-' and '_' (64 at most)")
        root = self.data_root.resolve() / "reward-models"
        config = FinetuneConfig(db=str(Path(self.config.db).resolve()),
                                base=base.removeprefix("mini:"), kinds=kinds,
                                holdout=float(holdout), steps=int(steps), name=label,
                                out_root=str(root), out=str(next_out(root, label)),
                                replay=float(replay))
        count_votes(config)  # raises InputError with the numbers when there are too few
        from dataclasses import asdict

        return asdict(config)

    def start_finetune(self, *, user: str | None = None, **form: Any) -> int:
        """Start a fine-tune of the reward model from the store's votes in its own process;
        returns the run id (see :meth:`finetune_settings` for what is checked)."""
        self.require(user, "start_run")
        settings = self.finetune_settings(**form)
        return self.launcher.start_reward(settings, name=settings["name"])

    def finetune_status(self, run_id: int) -> dict[str, Any]:
        """A fine-tune run: its row (status, error), the curves logged so far (loss per
        step, hold-out accuracy every few steps) and, once done, ``finetune.json``."""
        row = self.launcher.status(int(run_id))
        if row["kind"] != "reward":
            raise InputError(f"run {run_id} is a {row['kind']} run, not a fine-tune")
        curves: dict[str, list[tuple[int, float]]] = {}
        for m in self.store.metrics(int(run_id)):
            curves.setdefault(m["key"], []).append((int(m["step"]), float(m["value"])))
        folder = self._reward_folder(row)
        result = None
        if folder is not None and (folder / "finetune.json").is_file():
            result = json.loads((folder / "finetune.json").read_text())
        return {"run": row, "curves": curves, "result": result,
                "spec": f"mini:{folder}" if result and folder else None,
                "log": self.launcher.log_tail(int(run_id), 8)}

    def finetune_runs(self) -> list[dict[str, Any]]:
        return self.store.runs("reward")
