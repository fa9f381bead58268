"""``python -m spatialreward.rl COMMAND``: the RL commands on their own.

The same ``train-editor``, ``rl`` and ``eval-editor`` as ``python -m spatialreward``;
the Studio starts runs through this entry point.
"""

import argparse
import sys

from ..errors import StudioError
from .command import add_parsers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatialreward.rl",
                                     description="Online RL for the embedded editor.")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
