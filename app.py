"""Start SpatialReward Studio: config -> services -> build_demo -> launch.

    python app.py [--host 127.0.0.1] [--port 7860] [--backend pixel] [--share]

Settings also come from the environment (``PORT``, ``STUDIO_BACKEND``, ``STUDIO_HOST``...).
Nothing heavy happens at import; backends load on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spatialreward.config import StudioConfig
from spatialreward.errors import StudioError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SpatialReward Studio web app")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="HTTP port (default 7860, or $PORT)")
    p.add_argument("--backend", help="default backend spec (default: mini)")
    p.add_argument("--db", help="judgment store file (default data/studio.db, or $STUDIO_DB)")
    p.add_argument("--auth", action="store_true", default=None,
                   help="require a login (annotators registered with `db add-annotator "
                   "NAME --password`)")
    p.add_argument("--share", action="store_true", default=None,
                   help="also publish a public gradio.live link (off by default)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = StudioConfig.from_env(
            host=args.host, port=args.port, backend=args.backend, share=args.share,
            db=Path(args.db) if args.db else None, auth=args.auth,
        )
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from spatialreward.service import Services
    from ui import build_demo, launch_options

    services = Services(config)
    shared = config.share or config.host not in ("127.0.0.1", "localhost", "::1")
    if shared and not config.auth:
        where = "a public share link" if config.share else config.host
        print(f"warning: serving on {where} without --auth: anyone who can reach it may "
              "judge, import, export, bench and start runs as the local user. Add --auth "
              "(and register annotators with passwords) for a shared Studio.",
              file=sys.stderr)
    for run_id in services.recover_runs():
        print(f"note: run {run_id} was left running by a server that is gone; marked "
              "interrupted", file=sys.stderr)
    demo = build_demo(services)
    # Store and UI events run side by side; model calls are capped per event
    # (concurrency_id="model") so requests queue instead of overloading the CPU.
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name=config.host, server_port=config.port, share=config.share,
                **launch_options(services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
