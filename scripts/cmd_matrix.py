"""`memload matrix` (= `make bench`): configured by the peer's environment variables (see scripts/matrix_config.py)."""

from __future__ import annotations

import argparse

from scripts.common import settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from scripts.matrix_config import VARS

    epilog = "environment variables (the peer's phase-d-matrix.sh names):\n" + "\n".join(
        f"  {v.name:<36} {v.help} (default {v.default or 'empty'})" for v in VARS)
    p = sub.add_parser("matrix", help="one-command baseline: seed + bench + explain + worker + report per scale",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scripts.matrix import Matrix
    from scripts.matrix_config import resolve

    cfg = resolve()
    if args.dry_run:
        print(cfg.echo())
        return 0
    return Matrix(cfg, settings_from_args(args)).run()
