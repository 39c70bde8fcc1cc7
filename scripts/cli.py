"""`memload`: the kit's command line. Each subcommand lives in its own module with a `register(subparsers)`.

Registering must stay cheap: command modules import heavy things (Locust, pandas, the API) inside their handlers,
so `memload --help` is instant and Locust's gevent monkey-patching never reaches the orchestration process.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from memload.errors import MemloadError
from scripts.options import add_option

COMMAND_MODULES = [
    "scripts.cmd_db",
    "scripts.check_indexes",
    "scripts.cmd_seed",
    "scripts.cmd_api",
    "scripts.cmd_matrix",
    "scripts.cmd_report",
    "scripts.cmd_worker",
    "scripts.cmd_up",
    "scripts.cmd_explain",
    "scripts.cmd_bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memload",
        description="Load-testing and performance-baseline kit for Aionis-compatible agent memory APIs.",
    )
    add_option(parser, "--database-url", env="DATABASE_URL",
               help="PostgreSQL URL; unset = the embedded server under MEMLOAD_HOME")
    add_option(parser, "--home", env="MEMLOAD_HOME", help="state directory of the kit (embedded pgdata, logs)",
               default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except MemloadError as exc:
        print(f"memload: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("memload: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
