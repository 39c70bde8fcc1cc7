"""`memload`: the kit's command line. Each subcommand lives in its own module of `scripts/commands/` with a
`register(subparsers)`; the services they drive (stack, matrix, EXPLAIN runner, ...) stay in `scripts/`.

Registering must stay cheap: command modules import heavy things (Locust, pandas, the API) inside their handlers,
so `memload --help` is instant and Locust's gevent monkey-patching never reaches the orchestration process.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from memload.errors import EXIT_CODES_TEXT, ExitCode, MemloadError
from scripts.options import CliParser, add_option

COMMAND_MODULES = [
    "scripts.commands.db",
    "scripts.commands.check_indexes",
    "scripts.commands.seed",
    "scripts.commands.api",
    "scripts.commands.matrix",
    "scripts.commands.report",
    "scripts.commands.worker",
    "scripts.commands.up",
    "scripts.commands.explain",
    "scripts.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="memload",
        description="Load-testing and performance-baseline kit for Aionis-compatible agent memory APIs.",
        epilog=EXIT_CODES_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_option(parser, "--database-url", env="DATABASE_URL",
               help="PostgreSQL URL; unset = the embedded server under MEMLOAD_HOME")
    add_option(parser, "--home", env="MEMLOAD_HOME", help="state directory of the kit (embedded pgdata, logs)",
               default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CliParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _describe_every_command(sub)
    return parser


def _describe_every_command(sub: argparse._SubParsersAction) -> None:
    """`memload X --help` starts with what X does: a subcommand registered without a description gets its one-line
    help as description, and every subcommand's help ends with the exit-code table."""
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, p in sub.choices.items():
        if not p.description and helps.get(name):
            p.description = helps[name][:1].upper() + helps[name][1:] + "."
        if not p.epilog:
            p.epilog = EXIT_CODES_TEXT
            if p.formatter_class is argparse.HelpFormatter:
                p.formatter_class = argparse.RawDescriptionHelpFormatter


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
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
