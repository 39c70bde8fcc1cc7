"""`memload seed`, `memload purge`, `memload ann-check`: the seed document's step 3 and its quality check.

Registration only declares flags; numpy, SQLAlchemy and the seeding package are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from memload.config import Settings
from memload.contract import RECALL_INT_BOUNDS
from memload.errors import ConfigError, SafetyRefusal
from scripts.common import print_json, settings_from_args
from scripts.options import add_option, add_scope, add_switch, bounded_float, bounded_int, int_list

EVENTS_MIN, EVENTS_MAX = 100, 1_000_000  # seeding.params holds the same bounds; kept here so --help stays import-free


def _default_tenant() -> str:
    return os.environ.get("MEMORY_TENANT_ID") or "default"


def _mem_arg(text: str) -> str:
    from seeding.params import check_mem

    try:
        return check_mem(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def _tenant_arg(text: str) -> str:
    from memload.contract import TENANT_ID_RE

    if not TENANT_ID_RE.match(text):
        raise argparse.ArgumentTypeError(f"invalid tenant id {text!r} (must match {TENANT_ID_RE.pattern})")
    return text


def _scope_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("scope must not be empty")
    if text.startswith("tenant:"):
        raise argparse.ArgumentTypeError("scope must not start with 'tenant:' (reserved for scope keys)")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    _register_seed(sub)
    _register_purge(sub)
    _register_ann_check(sub)


def _register_seed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seed", help="seed a perf scope: T topics, E events, 2E edges, one commit (the Aionis kit's perf-seed), fast",
        description="Seeds the perf dataset (T topics, E events, 2E edges, one commit) with distinct clustered "
                    "vectors (or one copied vector) in one transaction. The layout is read from the catalog: on "
                    "memload's partitioned schema a new or reset scope is loaded into standalone tables, indexed, "
                    "then attached as the scope's partitions; on a shared plain table (an Aionis server's schema) "
                    "rows are COPYed into the live tables, whose indexes stay. --command runs the target's own "
                    "seeder instead and adopts its JSON. JSON summary on stdout, progress on stderr.")
    e = "MEMLOAD_SEED_"
    add_scope(p, "seed", type=_scope_arg, help="target scope")
    add_option(p, "--tenant-id", env=e + "TENANT_ID", default=_default_tenant(), type=_tenant_arg,
               help="target tenant (default: $MEMORY_TENANT_ID)")
    add_option(p, "--src-scope", env=e + "SRC_SCOPE", default=os.environ.get("MEMORY_SCOPE") or "default",
               type=_scope_arg, help="source scope: must hold one READY vector (copied in --vectors copy)")
    add_option(p, "--src-tenant-id", env=e + "SRC_TENANT_ID", default=_default_tenant(), type=_tenant_arg,
               help="source tenant")
    add_option(p, "--events", env=e + "EVENTS", default=50_000, type=bounded_int(EVENTS_MIN, EVENTS_MAX),
               help="event nodes E (100..10^6)")
    add_option(p, "--topics", env=e + "TOPICS", default=None, type=bounded_int(1, 100_000),
               help="topic nodes T (1..10^5); unset = max(50, min(5000, E/100))")
    add_switch(p, "--reset", env=e + "RESET", help="purge the scope first (inside the seed's transaction)")
    add_switch(p, "--allow-reset-active-scope", env=e + "ALLOW_RESET_ACTIVE_SCOPE",
               help="allow --reset when the target is the source scope")
    add_option(p, "--reset-batch", env=e + "RESET_BATCH", default=5000, type=bounded_int(100, 50_000),
               help="rows per DELETE batch when the reset cannot drop partitions")
    add_option(p, "--seed", env=e + "SEED", default=None, type=bounded_int(0, 2**63 - 1),
               help="random seed of ids and vectors (same seed + same scope state = same dataset); unset = random, "
                    "printed in the summary")
    add_option(p, "--vectors", env=e + "VECTORS", default="clustered", choices=("clustered", "copy"),
               help="clustered: topic title embedding + noise per event; copy: the source vector everywhere"
                    " (the Aionis kit's dataset)")
    add_option(p, "--noise", env=e + "NOISE", default=0.5, type=bounded_float(0.0, 10.0),
               help="clustered noise, relative: E‖event − centroid‖ = noise·‖centroid‖")
    add_option(p, "--query-set-out", env=e + "QUERY_SET_OUT", default=None,
               help="where to write the query set (default MEMLOAD_HOME/query_sets/<scope_key>.json)")
    add_option(p, "--out", env=e + "OUT", default=None, help="also write the JSON summary to this file")
    add_option(p, "--maintenance-work-mem", env=e + "MAINTENANCE_WORK_MEM", default="auto", type=_mem_arg,
               help="maintenance_work_mem for the index builds; auto = the estimated HNSW graph + 15%%, capped by "
                    "this machine's available memory (a remote server: 2GB); the choice and why are in the JSON")
    add_option(p, "--parallel-workers", env=e + "PARALLEL_WORKERS", default=None, type=bounded_int(0, 64),
               help="max_parallel_maintenance_workers for the index builds; unset = cores − 1 (the leader builds too)")
    add_option(p, "--precision", env=e + "PRECISION", default="halfvec", choices=("vector", "halfvec"),
               help="the scope's ready hot/warm HNSW index on memload's partitioned layout: halfvec = "
                    "(embedding::halfvec(1536)) halfvec_cosine_ops, half the graph and a faster build; vector = "
                    "float32. The API, ann-check and explain follow the scope's index. A shared table's indexes "
                    "are never changed")
    add_switch(p, "--progress", env=e + "PROGRESS", default=True, help="progress bar and index progress on stderr")
    add_option(p, "--command", env="SEED_COMMAND", default=None, dest="seed_command",
               help="seed with the target's own seeder: run this shell command and adopt the last JSON object it "
                    "prints (e.g. 'npm run -s job:perf-seed -- --scope {scope} --events {events} --topics {topics}'); "
                    "placeholders: {scope} {tenant_id} {scope_key} {src_scope} {src_tenant_id} {events} {topics} "
                    "{seed} {vectors} {reset_flag}")
    add_option(p, "--command-log", env="SEED_COMMAND_LOG", default=None,
               help="file for the command's full stdout+stderr (default: next to --out, else next to "
                    "--query-set-out, else MEMLOAD_HOME/logs/)")
    add_option(p, "--command-timeout-s", env="SEED_COMMAND_TIMEOUT_S", default=7200, type=bounded_int(1, 86_400),
               help="give up on the command after this many seconds")
    p.set_defaults(func=run_seed_cmd)


def _register_purge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "purge", help="delete every row of one scope (dry run unless --apply); --list shows every scope's size",
        description="The seed document's scope-purge. FK-safe order outbox → rule_feedback → rule_defs → "
                    "recall_audit → edges → nodes → commits; a scope's own partitions are detached and dropped. "
                    "--list changes nothing: it shows each scope's rows and size on disk. JSON summary on stdout.")
    e = "MEMLOAD_PURGE_"
    # destructive: only its own variable, never the shared MEMLOAD_SCOPE, and no default
    add_option(p, "--scope", env=e + "SCOPE", default=None, type=_scope_arg, help="scope to purge (required)")
    add_option(p, "--tenant-id", env=e + "TENANT_ID", default=_default_tenant(), type=_tenant_arg, help="tenant")
    add_option(p, "--mode", env=e + "MODE", default="auto", choices=("auto", "partition", "delete"),
               help="partition: drop the scope's partitions (error if rows sit elsewhere); delete: batched DELETE; "
                    "auto: partition where there is one, else delete")
    add_option(p, "--batch-size", env=e + "BATCH_SIZE", default=5000, type=bounded_int(100, 50_000),
               help="rows per DELETE batch")
    add_switch(p, "--apply", env=e + "APPLY", help="really purge (without it: dry run, nothing changes)")
    add_switch(p, "--allow-fallback-delete", env=e + "ALLOW_FALLBACK_DELETE",
               help="in --mode partition, DELETE rows that are not in a partition of the scope instead of failing")
    add_switch(p, "--fail-on-delete", env=e + "FAIL_ON_DELETE",
               help="refuse (before deleting anything) if a partitioned table would need DELETE")
    add_option(p, "--src-scope", env=e + "SRC_SCOPE", default=os.environ.get("MEMORY_SCOPE") or "default",
               type=_scope_arg, help="the source scope (the API's MEMORY_SCOPE, the seeder's default source): "
                                     "purging it is refused unless --allow-source-scope")
    add_option(p, "--src-tenant-id", env=e + "SRC_TENANT_ID", default=_default_tenant(), type=_tenant_arg,
               help="tenant of the source scope")
    add_switch(p, "--allow-source-scope", env=e + "ALLOW_SOURCE_SCOPE",
               help="allow purging the source scope (it holds the data the kit reads, not benchmark data)")
    add_switch(p, "--list", env=e + "LIST",
               help="list every scope (or only --scope) with its row counts and size on disk; purges nothing")
    p.set_defaults(func=run_purge_cmd)


def _register_ann_check(sub: argparse._SubParsersAction) -> None:
    defaults = Settings()
    p = sub.add_parser("ann-check", help="recall@k of the HNSW path against exact search on sampled queries",
                       description="Prints JSON with recall@k and the hnsw settings used (the API's).")
    e = "MEMLOAD_ANN_"
    add_scope(p, "ann-check", type=_scope_arg, help="scope to check")
    add_option(p, "--tenant-id", env=e + "TENANT_ID", default=_default_tenant(), type=_tenant_arg, help="tenant")
    add_option(p, "--queries", env=e + "QUERIES", default=200, type=bounded_int(1, 10_000), help="sampled queries")
    add_option(p, "--k", env=e + "K", default=10, type=bounded_int(1, 1000), help="neighbours per query")
    add_option(p, "--seed", env=e + "SEED", default=0, type=bounded_int(0, 2**63 - 1), help="query sampling seed")
    add_option(p, "--ef-search", env="HNSW_EF_SEARCH", default=defaults.hnsw_ef_search, type=bounded_int(1, 1000),
               help="hnsw.ef_search (the API's variable)")
    add_option(p, "--iterative-scan", env="HNSW_ITERATIVE_SCAN", default=defaults.hnsw_iterative_scan,
               choices=("off", "relaxed_order", "strict_order"), help="hnsw.iterative_scan (the API's variable)")
    add_option(p, "--max-scan-tuples", env="HNSW_MAX_SCAN_TUPLES", default=defaults.hnsw_max_scan_tuples,
               type=bounded_int(1, 10**9), help="hnsw.max_scan_tuples (the API's variable)")
    add_option(p, "--exact", env=e + "EXACT", default="sql", choices=("sql", "numpy"),
               help="ground truth: sql = SET LOCAL enable_indexscan = off on the scope's partition (~1 s/query at "
                    "10^5 here); numpy = the same cosine top-k computed client-side over all vectors, fetched once")
    add_option(p, "--cross-check", env=e + "CROSS_CHECK", default=0, type=bounded_int(0, 10_000),
               help="with --exact numpy: also run the SQL exact pass on this many queries and report agreement")
    lim = RECALL_INT_BOUNDS["limit"]
    add_option(p, "--limit", env=e + "LIMIT", default=lim[0], type=bounded_int(lim[1], lim[2]),
               help="the recall request's limit: stage 1 fetches max(limit, min(1000, 5*limit)) candidates and keeps "
                    "the k nearest (recall_at_k); index_recall_at_k is the bare LIMIT k query")
    add_option(p, "--ef-sweep", env=e + "EF_SWEEP", default=[], type=int_list(1, 1000),
               help="more hnsw.ef_search values to measure against the same ground truth, e.g. 100,200,400")
    add_option(p, "--target-recall", env=e + "TARGET_RECALL", default=None, type=bounded_float(0.0, 1.0),
               help="name the smallest measured ef_search whose recall_at_k reaches this (ef_search_for_target)")
    add_option(p, "--min-recall", env=e + "MIN_RECALL", default=None, type=bounded_float(0.0, 1.0),
               help="exit 1 when recall@k is below this")
    p.set_defaults(func=run_ann_check_cmd)


# ----------------------------------------------------------------------------------------------------- handlers
def _url(settings: Settings) -> str:
    from scripts.embedded_db import resolve_database_url

    return resolve_database_url(settings)


def _size_embedded_server(settings: Settings, nodes: int, precision: str) -> str | None:
    """On the embedded server, size its memory for this scope before seeding it (None on another server)."""
    if settings.database_url:
        return None
    from scripts import embedded_db
    from seeding.progress import log

    done = embedded_db.size_for(settings, embedded_db.Dataset(nodes, precision))
    log(done)
    return done


def run_seed_cmd(args: argparse.Namespace) -> int:
    import secrets

    from seeding.params import SeedParams, Tenancy
    from seeding.seed import run_seed

    settings = settings_from_args(args)
    dt = settings.memory_tenant_id
    params = SeedParams(
        target=Tenancy.resolve(args.scope, args.tenant_id, dt, flags=("--scope", "--tenant-id")),
        source=Tenancy.resolve(args.src_scope, args.src_tenant_id, dt, flags=("--src-scope", "--src-tenant-id")),
        events=args.events, topics=args.topics, reset=args.reset,
        allow_reset_active_scope=args.allow_reset_active_scope, reset_batch=args.reset_batch,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31), vectors=args.vectors,
        noise=args.noise, query_set_out=Path(args.query_set_out).resolve() if args.query_set_out else None,
        maintenance_work_mem=args.maintenance_work_mem, parallel_workers=args.parallel_workers,
        precision=args.precision,
        progress=args.progress,
    ).validate()
    if args.seed_command is not None:
        summary = _run_command(args, params, settings)
    else:
        sizing = _size_embedded_server(settings, params.topic_count + params.events, params.precision)
        summary = run_seed(_url(settings), params, settings)
        if sizing:
            summary["embedded_server"] = sizing
    _emit(summary, args.out)
    return 0


def _command_log_path(args: argparse.Namespace, settings: Settings, scope_key: str) -> Path:
    import re

    if args.command_log:
        return Path(args.command_log).resolve()
    name = "seed_command_" + re.sub(r"[^A-Za-z0-9._-]", "_", scope_key) + ".log"
    if args.out:
        out = Path(args.out).resolve()
        return out.with_name(out.stem + ".command.log")
    if args.query_set_out:
        return Path(args.query_set_out).resolve().parent / name
    return settings.memload_home / "logs" / name


def _run_command(args: argparse.Namespace, params: Any, settings: Settings) -> dict[str, Any]:
    """`seed --command`: the target's seeder does the work; memload adds its fields and, when the database is
    named (DATABASE_URL), the query set of the topics it created."""
    from scripts.seed_command import run_command_seed
    from seeding import query_set
    from seeding.progress import log

    log_path = _command_log_path(args, settings, params.target.scope_key)
    log(f"running the target's seeder (log: {log_path})")
    summary = run_command_seed(args.seed_command, params, log_path, timeout_s=args.command_timeout_s)
    if not settings.database_url:
        summary["warnings"].append("no DATABASE_URL: no query set written for the seeded scope")
        return summary
    qs_path = params.query_set_out or query_set.default_path(settings.memload_home, params.target.scope_key)
    try:
        qs = query_set.from_database(settings.database_url, params.target)
    except Exception as exc:  # the seed itself succeeded; the query set is a convenience
        summary["warnings"].append(f"query set not written: {str(exc).strip().splitlines()[0]}")
        return summary
    if qs is None:
        summary["warnings"].append("the seeded scope has no topic titled 'perf topic #k': no query set written")
    else:
        summary["query_set"] = str(query_set.write(qs_path, qs))
    return summary


def run_purge_cmd(args: argparse.Namespace) -> int:
    from seeding.params import Tenancy
    from seeding.purge import run_purge

    if args.list:
        return _list_scopes(args)
    if args.scope is None:
        raise ConfigError("--scope: required (refusing to guess which scope to purge)")
    settings = settings_from_args(args)
    tenancy = Tenancy.resolve(args.scope, args.tenant_id, settings.memory_tenant_id, flags=("--scope", "--tenant-id"))
    source = Tenancy.resolve(args.src_scope, args.src_tenant_id, settings.memory_tenant_id,
                             flags=("--src-scope", "--src-tenant-id"))
    if tenancy.scope_key == source.scope_key and not args.allow_source_scope:
        raise SafetyRefusal(f"--scope: refusing to purge the source scope {source.scope_key!r} (it is also "
                            "--src-scope); pass --allow-source-scope if you really mean it; nothing was changed")
    summary = run_purge(_url(settings), tenancy, mode=args.mode, batch_size=args.batch_size, apply=args.apply,
                        allow_fallback_delete=args.allow_fallback_delete, fail_on_delete=args.fail_on_delete)
    print_json(summary)
    if not summary["ok"]:
        raise SafetyRefusal(summary["message"])
    return 0


def _list_scopes(args: argparse.Namespace) -> int:
    import sys

    from memload.db import connection
    from seeding.inventory import list_scopes, table_text
    from seeding.params import Tenancy

    if args.apply:
        raise ConfigError("--list: lists only and purges nothing; drop --apply (or --list)")
    settings = settings_from_args(args)
    only = None
    if args.scope is not None:
        only = Tenancy.resolve(args.scope, args.tenant_id, settings.memory_tenant_id,
                               flags=("--scope", "--tenant-id")).scope_key
    with connection(_url(settings)) as conn:
        inventory = list_scopes(conn, default_tenant=settings.memory_tenant_id, only=only)
    print(table_text(inventory), file=sys.stderr, flush=True)
    print_json(inventory)
    return 0


def run_ann_check_cmd(args: argparse.Namespace) -> int:
    from seeding.ann_check import HnswSettings, run_ann_check
    from seeding.params import Tenancy

    settings = settings_from_args(args)
    tenancy = Tenancy.resolve(args.scope, args.tenant_id, settings.memory_tenant_id, flags=("--scope", "--tenant-id"))
    hnsw = HnswSettings(args.ef_search, args.iterative_scan, args.max_scan_tuples)
    result = run_ann_check(_url(settings), tenancy, hnsw, queries=args.queries, k=args.k, seed=args.seed,
                           exact=args.exact, cross_check=args.cross_check, limit=args.limit,
                           ef_sweep=args.ef_sweep, target_recall=args.target_recall)
    if args.min_recall is not None:
        result["min_recall_gate"] = args.min_recall
        result["ok"] = result["recall_at_k"] >= args.min_recall
    print_json(result)
    return 0 if result["ok"] else 1


def _emit(summary: dict[str, Any], out: str | None) -> None:
    import json

    print_json(summary)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
