"""`memload explain`: the Aionis kit's planner baseline, on the target's own psql script (`--sql FILE`) or on
memload's reference recall SQL (the default; the output's first line says which).

stdout: a JSON summary; stderr: the plan key lines (and the full plans when no --out file is given).
Exit 0 when both planner checks pass (stage 1 uses HNSW, or the scope is too small to require it, or holds no vector;
stage 2 not reading the scope's edges whole), 3 when one fails, 1 when the script cannot run, 64 for bad flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memload.contract import RECALL_INT_BOUNDS, TENANT_ID_RE
from memload.errors import ConfigError
from scripts.common import print_json, settings_from_args
from scripts.options import add_option, add_scope, add_switch, bounded_int

_LIM_MIN, _LIM_MAX = RECALL_INT_BOUNDS["limit"][1], RECALL_INT_BOUNDS["limit"][2]


def register(sub: argparse._SubParsersAction) -> None:
    from scripts.explain_runner import DEFAULT_MIN_VECTORS, PLAN_CACHE_MODES

    p = sub.add_parser(
        "explain",
        help="EXPLAIN (ANALYZE, BUFFERS) of the stage-1/stage-2 recall queries: the target's own psql script "
        "(--sql) or memload's reference SQL",
        description="EXPLAIN (ANALYZE, BUFFERS) of the recall queries on a scope: the target's own psql script with "
        "--sql FILE (run through psql with -v scope/lim/force_index), else memload's reference SQL "
        "(memory_api.recall_sql). Fails (exit 3) when stage 1 misses the HNSW index on a scope large enough "
        "for it, or stage 2 reads every edge of a scope larger than its edge budget.",
    )
    add_option(p, "--sql", env="EXPLAIN_SQL", default=None,
               help="the target's own explain script (e.g. an Aionis server's sql/explain_baseline.sql), run with "
                    "psql -v scope=<scope key> -v lim=<lim> [-v force_index=1]; unset = memload's reference SQL")
    add_option(p, "--max-edge-rows", env="MEMLOAD_EXPLAIN_MAX_EDGE_ROWS", default=None, type=bounded_int(1, 10**9),
               help="stage 2 fails when one of its edge scans reads every edge of a scope holding more edges than "
                    "this (unset = hop1 + hop2 + edge budgets of the recall defaults, 1500)")
    add_scope(p, "explain", help="scope to explain")
    add_option(p, "--tenant-id", env="MEMLOAD_EXPLAIN_TENANT_ID", default=None,
               help="tenant of the scope (unset = MEMORY_TENANT_ID, the default tenant)")
    add_option(p, "--lim", env="MEMLOAD_EXPLAIN_LIM", default=30, type=bounded_int(_LIM_MIN, _LIM_MAX),
               help="recall limit (stage 1 fetches max(lim, min(1000, 5*lim)) candidates)")
    add_switch(p, "--force-index", env="MEMLOAD_EXPLAIN_FORCE_INDEX",
               help="disable seqscan and bitmapscan (the Aionis kit's -v force_index=1)")
    add_option(p, "--plan-cache-mode", env="MEMLOAD_EXPLAIN_PLAN_CACHE_MODE", default="auto",
               choices=PLAN_CACHE_MODES,
               help="auto (PostgreSQL's choice after warm-up executions, as on a warmed API connection), "
               "force_custom_plan, or force_generic_plan (the Aionis kit's; not what the API runs); reference SQL only")
    add_option(p, "--min-vectors", env="MEMLOAD_EXPLAIN_MIN_VECTORS", default=DEFAULT_MIN_VECTORS,
               type=bounded_int(1, 10**9),
               help="ready hot/warm vectors from which stage 1 must use HNSW")
    add_option(p, "--out", env="MEMLOAD_EXPLAIN_OUT", default=None,
               help="write the plans to this file (explain_<scale>.txt format) instead of stderr")
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> None:
    if not args.scope or args.scope.startswith("tenant:"):
        raise ConfigError(f"--scope: invalid scope {args.scope!r} (empty, or starting with 'tenant:')")
    if args.tenant_id is not None and not TENANT_ID_RE.match(args.tenant_id):
        raise ConfigError(f"--tenant-id: invalid tenant id {args.tenant_id!r} (expected {TENANT_ID_RE.pattern})")
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        raise ConfigError(f"--out: directory of {args.out!r} does not exist")
    if args.sql is not None and not Path(args.sql).is_file():
        raise ConfigError(f"--sql: no such file {args.sql!r} (env EXPLAIN_SQL)")


def run(args: argparse.Namespace) -> int:
    _validate(args)
    from scripts.embedded_db import resolve_database_url
    from scripts.explain_runner import ExplainOptions, PlanCheckFailed, key_lines, render_text, run_explain, summary

    settings = settings_from_args(args)
    opts = ExplainOptions(
        scope=args.scope, tenant_id=args.tenant_id, lim=args.lim, force_index=args.force_index,
        plan_cache_mode=args.plan_cache_mode, min_vectors=args.min_vectors,
        sql_file=Path(args.sql) if args.sql else None, max_edge_rows=args.max_edge_rows,
    )
    report = run_explain(resolve_database_url(settings), settings, opts)
    text = render_text(report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stderr.write(text + "\n")
    for line in key_lines(report):
        print(f"[explain] {line}", file=sys.stderr)
    result = summary(report)
    result["out"] = str(args.out) if args.out else None
    print_json(result)
    if not report.ok:
        raise PlanCheckFailed(report.verdict)
    return 0
