"""`memload worker [--once]` (the seed's `npm run job:outbox-worker`) and `memload worker-bench`.

The worker drains the outbox of every scope (or one, with --scope) and prints one JSON line per batch on stdout.
`worker-bench` is the seed's `job:perf-worker-benchmark`: outbox snapshot before/after, per-iteration figures and
totals, written to --out as `worker_baseline.json` (docs/ARTIFACTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.options import add_option, add_switch, bounded_int

if TYPE_CHECKING:  # the worker module (psycopg) is imported lazily, when the command runs
    from memory_api.worker import OutboxWorker, StopFlag

# worker knob -> (flag, env, help, type, default); defaults are the contract's (Settings has the same ones)
_KNOBS: list[tuple[str, str, str, str, Any, int | None]] = [
    ("batch_size", "--batch-size", "OUTBOX_BATCH_SIZE", "rows claimed per batch (max 200)", bounded_int(1, 200), 20),
    ("embed_batch_rows", "--embed-batch-rows", "OUTBOX_EMBED_BATCH_ROWS",
     "max embed_nodes rows claimed per batch and embedded together (equal to --batch-size: the contract's claim)",
     bounded_int(1, 1000), 200),
    ("embed_batch_nodes", "--embed-batch-nodes", "OUTBOX_EMBED_BATCH_NODES",
     "stop claiming embed_nodes rows once they hold this many nodes", bounded_int(1, 100_000), 500),
    ("claim_timeout_ms", "--claim-timeout-ms", "OUTBOX_CLAIM_TIMEOUT_MS", "a claim older than this is re-claimable",
     bounded_int(1, 86_400_000), 300_000),
    ("max_attempts", "--max-attempts", "OUTBOX_MAX_ATTEMPTS", "dead-letter a job after this many attempts",
     bounded_int(1, 10_000), 25),
    ("poll_interval_ms", "--poll-interval-ms", "OUTBOX_POLL_INTERVAL_MS", "sleep when a batch claimed nothing",
     bounded_int(1, 3_600_000), 1000),
]


def _add_worker_knobs(p: argparse.ArgumentParser) -> None:
    for _name, flag, env, help_text, typ, default in _KNOBS:
        add_option(p, flag, env=env, type=typ, help=help_text, default=default)


def _knob_args(args: argparse.Namespace) -> list[str]:
    """The knobs as CLI arguments (for spawned `memload worker --once` children)."""
    out: list[str] = []
    for name, flag, *_ in _KNOBS:
        value = getattr(args, name, None)
        if value is not None:
            out += [flag, str(value)]
    return out


def _worker_config(args: argparse.Namespace, settings: Any, scope: str | None) -> Any:
    from memory_api.worker import WorkerConfig

    overrides = {name: getattr(args, name, None) for name, *_ in _KNOBS}
    return WorkerConfig.from_settings(settings, scope=scope, **overrides)


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run the outbox worker: embed pending nodes, cluster topics (contract §5)")
    add_switch(w, "--once", env="OUTBOX_WORKER_ONCE", help="process one batch and exit")
    add_option(w, "--scope", env="OUTBOX_SCOPE", help="only claim rows of this scope key (default: all scopes)")
    add_option(w, "--max-batches", env="OUTBOX_MAX_BATCHES", type=bounded_int(1, 10_000_000),
               help="exit after this many batches (default: run until SIGTERM/SIGINT)")
    add_switch(w, "--log-idle", env="OUTBOX_LOG_IDLE",
               help="also print the JSON line of batches that claimed nothing (loop mode)")
    add_option(w, "--concurrency", env="OUTBOX_WORKER_CONCURRENCY", type=bounded_int(1, 32), default=1,
               help="worker loops in this process, one connection each (SKIP LOCKED gives each its own rows); an "
                    "embedded node costs one pgvector HNSW insert in its backend, so N loops use up to N cores "
                    "(--max-batches and --once apply to each loop)")
    _add_worker_knobs(w)
    w.set_defaults(func=run_worker)

    b = sub.add_parser("worker-bench", help="worker throughput baseline (the seed's job:perf-worker-benchmark)")
    add_option(b, "--scope", env="WORKER_SCOPE", help="scope to measure (default: MEMORY_SCOPE)")
    add_option(b, "--tenant-id", env="TENANT_ID", help="tenant of the scope (default: MEMORY_TENANT_ID)")
    add_option(b, "--iterations", env="WORKER_ITERATIONS", type=bounded_int(0, 200), default=8,
               help="worker batches to measure (0 only with --backlog-only)")
    add_switch(b, "--spawn", env="WORKER_BENCH_SPAWN",
               help="one `memload worker --once` process per iteration (the peer's way, start-up included)")
    add_option(b, "--out", env="WORKER_BENCH_OUT", help="also write the JSON to this file (worker_baseline.json)")
    add_option(b, "--backlog-writes", env="WORKER_BACKLOG_WRITES", type=bounded_int(0, 1_000_000), default=0,
               help="first make this many HTTP writes with auto_embed=true (needs --base-url)")
    add_switch(b, "--backlog-only", env="WORKER_BENCH_BACKLOG_ONLY",
               help="only build the backlog (worker_slo's write pass) and print its figures; measure nothing")
    add_option(b, "--backlog-concurrency", env="WORKER_BACKLOG_CONCURRENCY", type=bounded_int(1, 64), default=1,
               help="concurrent backlog writers")
    add_option(b, "--base-url", env="BASE_URL", help="API for the backlog writes (loopback only)",
               default="http://127.0.0.1:3001")
    _add_worker_knobs(b)
    b.set_defaults(func=run_worker_bench)


def run_worker(args: argparse.Namespace) -> int:
    from memory_api.worker import OutboxWorker, StopFlag, install_signal_handlers
    from scripts.common import settings_from_args
    from scripts.embedded_db import resolve_database_url

    settings = settings_from_args(args)
    config = _worker_config(args, settings, args.scope or None)
    url = resolve_database_url(settings)
    stop = StopFlag()
    install_signal_handlers(stop)

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    if not args.once:
        print(f"[worker] started: scope={config.scope or 'all'} batch={config.batch_size} "
              f"embed_rows={config.embed_batch_rows} embed_nodes={config.embed_batch_nodes} "
              f"poll={config.poll_interval_ms}ms concurrency={args.concurrency}", file=sys.stderr, flush=True)
    try:
        if args.concurrency == 1:
            worker = OutboxWorker(url, config, stop=stop)
            try:
                return worker.run(once=args.once, emit=emit, max_batches=args.max_batches, log_idle=args.log_idle)
            finally:
                worker.close()
        return _run_loops([OutboxWorker(url, config, stop=stop) for _ in range(args.concurrency)], stop, args, emit)
    finally:
        if not args.once:
            print("[worker] stopped", file=sys.stderr, flush=True)


def _run_loops(workers: list[OutboxWorker], stop: StopFlag, args: argparse.Namespace,
               emit: Callable[[dict[str, Any]], None]) -> int:
    """Run each worker's loop in a thread of its own. The work happens in PostgreSQL (the HNSW insert of every
    embedded node runs in that loop's backend), so threads are enough to keep several backends busy. A loop that
    fails stops the others after their current job; the first error is re-raised."""
    import threading

    lock = threading.Lock()
    codes = [0] * len(workers)
    errors: list[BaseException] = []

    def locked_emit(line: dict[str, Any]) -> None:
        with lock:
            emit(line)

    def loop(i: int) -> None:
        try:
            codes[i] = workers[i].run(once=args.once, emit=locked_emit, max_batches=args.max_batches,
                                      log_idle=args.log_idle)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)
            stop.set()
        finally:
            workers[i].close()

    # daemon: a second SIGINT/SIGTERM raises SystemExit in the main thread and must end the process (each open
    # transaction then rolls back with its connection)
    threads = [threading.Thread(target=loop, args=(i,), name=f"outbox-worker-{i}", daemon=True)
               for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep the main thread responsive to signals
    if errors:
        raise errors[0]
    return max(codes)


def run_worker_bench(args: argparse.Namespace) -> int:
    from memload.errors import ConfigError
    from memload.identity import scope_key
    from scripts import worker_bench as wb
    from scripts.common import log, settings_from_args
    from scripts.embedded_db import resolve_database_url

    settings = settings_from_args(args)
    scope = args.scope or settings.memory_scope
    tenant = args.tenant_id or settings.memory_tenant_id
    key = scope_key(scope, tenant, settings.memory_tenant_id)
    if args.iterations == 0 and not args.backlog_only:
        raise ConfigError("--iterations: must be at least 1 (0 is only accepted with --backlog-only)")
    if args.backlog_only and not args.backlog_writes:
        raise ConfigError("--backlog-only: needs --backlog-writes N (N > 0)")
    if args.backlog_writes:
        wb.check_loopback(args.base_url)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"--out: directory {out_path.parent} does not exist")
    url = resolve_database_url(settings)
    config = _worker_config(args, settings, key)

    backlog = None
    if args.backlog_writes:
        backlog = wb.build_http_backlog(
            wb.BacklogSpec(args.base_url, args.backlog_writes, args.backlog_concurrency, tenant, scope),
            log=lambda m: log(m, prefix="worker-bench"))
    if args.backlog_only:
        assert backlog is not None
        result_only = {"ok": backlog["ok"] == backlog["writes"], "mode": "backlog_only", "scope": scope,
                       "tenant_id": tenant, "scope_key": key, "backlog": backlog, "outbox": wb.snapshot(url, key)}
        text = json.dumps(result_only, indent=2)
        if out_path is not None:
            out_path.write_text(text + "\n")
        print(text)
        return 0 if result_only["ok"] else 1
    before = wb.snapshot(url, key)
    t0 = time.perf_counter()
    command = None
    if args.spawn:
        records, command = wb.run_spawned(url, ["--scope", key, *_knob_args(args)], args.iterations)
    else:
        records = wb.run_in_process(url, config, args.iterations)
    wall_ms = (time.perf_counter() - t0) * 1000
    after = wb.snapshot(url, key)
    result: dict[str, Any] = {
        "ok": all(r["ok"] for r in records),
        "scope": scope,
        "tenant_id": tenant,
        "scope_key": key,
        "iterations": args.iterations,
        "mode": "spawn" if args.spawn else "in_process",
        "totals": wb.totals(records, wall_ms),
        "outbox_before": before,
        "outbox_after": after,
        "per_iteration": records,
        "config": {"batch_size": config.batch_size, "embed_batch_rows": config.embed_batch_rows,
                   "embed_batch_nodes": config.embed_batch_nodes,
                   "claim_timeout_ms": config.claim_timeout_ms, "max_attempts": config.max_attempts},
    }
    if command:
        result["command"] = command
    if backlog is not None:
        result["backlog"] = backlog
    text = json.dumps(result, indent=2)
    if out_path is not None:
        out_path.write_text(text + "\n")
    print(text)
    t = result["totals"]
    log(f"{result['mode']}: {t['processed']} rows / {t['nodes_embedded']} nodes in {t['elapsed_ms_sum']:.0f} ms = "
        f"{t['throughput_processed_per_sec']} rows/s, {t['throughput_nodes_per_sec']} nodes/s", prefix="worker-bench")
    return 0 if result["ok"] else 1
