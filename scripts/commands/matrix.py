"""`memload matrix` (= `make bench`): configured by environment variables (see scripts/matrix_config.py)."""

from __future__ import annotations

import argparse

from memload.contract import HEALTH
from memload.errors import EXIT_CODES_TEXT
from scripts.common import settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from scripts.matrix_config import VARS

    epilog = "environment variables (the Aionis kit's matrix names):\n" + "\n".join(
        f"  {v.name:<36} {v.help} (default {v.default or 'empty'})" for v in VARS) + "\n\n" + EXIT_CODES_TEXT
    p = sub.add_parser(
        "matrix", help="one-command baseline: seed + bench + explain + worker + report per scale",
        description=f"The one-command baseline (`make bench`): probes the target (GET {HEALTH}), then per scale in "
                    "SCALES seeds a scope, benchmarks it and runs EXPLAIN, then the worker benchmark, and writes "
                    "PERFORMANCE_REPORT_V1.md with every artifact under artifacts/perf/<MATRIX_TAG>. Without "
                    "BASE_URL it starts and stops memload's local stack. A failed stage is one line (the traceback "
                    "is in <run dir>/logs/matrix.log), a stage that could not run is NOT MEASURED in the report, "
                    "and only the last KEEP_RUNS runs' scopes are kept on disk.",
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
