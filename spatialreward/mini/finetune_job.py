"""``python -m spatialreward.mini.finetune_job``: one fine-tune started from the Studio.

The Studio's launcher (:meth:`spatialreward.rl.runs.Launcher.start_reward`) records a run
of kind ``reward``, writes the checked settings (:class:`~.finetune.FinetuneConfig`
fields) into the run's folder and starts this process in its own session. It marks the
run ``running``, logs every step's metrics into the store, and ends it ``done``,
``failed`` (with the error) or ``cancelled`` (SIGTERM: the Stop button; a fine-tune keeps
no checkpoint of a half-finished run, so it writes nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from typing import Any

from ..errors import StudioError


class Stopped(Exception):
    """Raised from the progress callback once Stop was pressed."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spatialreward.mini.finetune_job")
    p.add_argument("--settings", required=True, help="FinetuneConfig fields, JSON")
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--db", required=True)
    args = p.parse_args(argv)

    from storage.store import Store

    from ..rl.runs import record_process
    from .finetune import FinetuneConfig, finetune

    stop = {"asked": False}

    def ask_stop(*_: Any) -> None:
        stop["asked"] = True

    signal.signal(signal.SIGTERM, ask_stop)
    with Store.open(args.db) as store:
        record_process(store, args.run_id)
        store.update_run(args.run_id, status="running")

        def progress(step: int, total: int, metrics: dict[str, float]) -> None:
            finite = {k: float(v) for k, v in metrics.items()
                      if isinstance(v, int | float) and math.isfinite(float(v))}
            if finite:
                store.log_metrics(args.run_id, step, finite)
            print(f"step {step}/{total} " + " ".join(f"{k} {v:.4f}" for k, v in finite.items()),
                  flush=True)
            if stop["asked"]:
                raise Stopped

        try:
            settings = json.loads(open(args.settings, encoding="utf-8").read())
            settings["kinds"] = tuple(settings.get("kinds", ("human",)))
            result = finetune(FinetuneConfig(**settings), progress=progress,
                              log=lambda line: print(line, flush=True), run_id=args.run_id)
        except Stopped:
            store.update_run(args.run_id, status="cancelled",
                             error="stopped from the Studio before it finished")
            print("stopped", flush=True)
            return 1
        except (StudioError, ValueError, OSError) as err:
            store.update_run(args.run_id, status="failed", error=str(err))
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 2
        except BaseException as err:  # recorded, then re-raised for the log's traceback
            store.update_run(args.run_id, status="failed", error=f"{type(err).__name__}: {err}")
            raise
        print(f"done: hold-out {result['holdout']}; served as mini:{result['out']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
