"""The ``fastq`` command: ``train``, ``tune``, ``serve``, ``data``, ``evaluate``.

User errors (bad files, bad values) end with a non-zero exit and a one-line reason, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# ``fastq data <source>``: each source module provides ``add_cli_arguments(parser)`` and
# ``run_cli(args) -> int``.
DATA_SOURCES = {
    "player-platform": "rllib_fastq.envs.generate",
    "mujoco": "rllib_fastq.data.mujoco",
}

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, TypeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastq", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or convert offline datasets")
    data_sub = data.add_subparsers(dest="source", required=True)
    for name, module in DATA_SOURCES.items():
        p = data_sub.add_parser(name, help=f"make the {name} datasets")
        importlib.import_module(module).add_cli_arguments(p)
        p.set_defaults(run=importlib.import_module(module).run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"fastq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
