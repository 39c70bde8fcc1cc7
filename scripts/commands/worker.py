"""`memload worker [--once]` (the Aionis kit's `npm run job:outbox-worker`) and `memload worker-bench`.

The worker drains the outbox of every scope (or one, with --scope) and prints one JSON line per batch on stdout.
`worker-bench` is the Aionis kit's `job:perf-worker-benchmark`: outbox snapshot before/after, per-iteration figures and
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

from scripts.options import add_option, add_switch, bounded_float, bounded_int

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
    w = sub.add_parser("worker", help="run the outbox worker: embed pending nodes, cluster topics")
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

    b = sub.add_parser("worker-bench", help="worker throughput baseline in jobs/s (the Aionis kit's "
                       "job:perf-worker-benchmark): the target's worker with --worker-command or --observe")
    add_option(b, "--scope", env="WORKER_SCOPE", help="scope to measure (default: MEMORY_SCOPE)")
    add_option(b, "--tenant-id", env="TENANT_ID", help="tenant of the scope (default: MEMORY_TENANT_ID)")
    add_option(b, "--iterations", env="WORKER_ITERATIONS", type=bounded_int(0, 200), default=8,
               help="worker runs to measure (0 only with --backlog-only; unused with --observe)")
    add_switch(b, "--spawn", env="WORKER_BENCH_SPAWN",
               help="one `memload worker --once` process per iteration (the Aionis kit's way, start-up included; "
                    "memload's reference API only)")
    add_option(b, "--out", env="WORKER_BENCH_OUT", help="also write the JSON to this file (worker_baseline.json)")
    add_option(b, "--backlog-writes", env="WORKER_BACKLOG_WRITES", type=bounded_int(0, 1_000_000), default=0,
               help="first make this many HTTP writes with auto_embed=true (needs --base-url)")
    add_switch(b, "--backlog-only", env="WORKER_BENCH_BACKLOG_ONLY",
               help="only build the backlog (worker_slo's write pass) and print its figures; measure nothing")
    add_option(b, "--backlog-concurrency", env="WORKER_BACKLOG_CONCURRENCY", type=bounded_int(1, 64), default=1,
               help="concurrent backlog writers")
    add_option(b, "--base-url", env="BASE_URL", help="API for the backlog writes (loopback only)",
               default="http://127.0.0.1:3001")
    add_option(b, "--worker-command", env="WORKER_COMMAND",
               help="the target's worker as a shell command, run once per iteration and timed (e.g. its outbox "
                    "worker with --once); gets DATABASE_URL and MEMORY_SCOPE; memload runs no job itself")
    add_switch(b, "--observe", env="WORKER_OBSERVE",
               help="the target's worker already runs: make the backlog writes (if any), then watch the outbox "
                    "drain until empty or --observe-timeout-s; memload runs no job itself")
    add_option(b, "--observe-timeout-s", env="WORKER_OBSERVE_TIMEOUT_S", type=bounded_float(1, 86_400),
               default=300.0, help="stop watching the drain after this many seconds")
    add_option(b, "--observe-interval-s", env="WORKER_OBSERVE_INTERVAL_S", type=bounded_float(0.05, 60),
               default=1.0, help="seconds between two looks at the outbox (one per_iteration row each)")
    add_option(b, "--observe-idle-s", env="WORKER_OBSERVE_IDLE_S", type=bounded_float(0.1, 3600), default=10.0,
               help="stop when only claimed jobs are left and nothing changed for this long (jobs that died "
                    "mid-run stay claimed until the worker's claim timeout; they count as failed)")
    add_option(b, "--worker-timeout-s", env="WORKER_COMMAND_TIMEOUT_S", type=bounded_float(1, 86_400),
               default=600.0, help="kill a --worker-command run that takes longer than this")
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


def _bench_mode(args: argparse.Namespace) -> str:
    from memload.errors import ConfigError

    if args.worker_command is not None and not args.worker_command.strip():
        raise ConfigError("--worker-command: empty command (env WORKER_COMMAND)")
    chosen = [flag for flag, on in (("--worker-command", bool(args.worker_command)), ("--observe", args.observe),
                                    ("--spawn", args.spawn)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: choose one way to run the worker")
    if args.worker_command:
        return "command"
    if args.observe:
        return "observe"
    return "spawn" if args.spawn else "in_process"


def run_worker_bench(args: argparse.Namespace) -> int:
    import shlex

    from memload.config import REPO_ROOT
    from memload.errors import ConfigError, MemloadError
    from memload.identity import scope_key
    from scripts import worker_bench as wb
    from scripts.common import log, settings_from_args
    from scripts.embedded_db import resolve_database_url

    settings = settings_from_args(args)
    scope = args.scope or settings.memory_scope
    tenant = args.tenant_id or settings.memory_tenant_id
    key = scope_key(scope, tenant, settings.memory_tenant_id)
    mode = _bench_mode(args)
    if args.iterations == 0 and not args.backlog_only and mode != "observe":
        raise ConfigError("--iterations: must be at least 1 (0 is only accepted with --backlog-only)")
    if args.backlog_only and not args.backlog_writes:
        raise ConfigError("--backlog-only: needs --backlog-writes N (N > 0)")
    if args.backlog_writes:
        wb.check_loopback(args.base_url)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"--out: directory {out_path.parent} does not exist")
    url = resolve_database_url(settings)
    say = lambda m: log(m, prefix="worker-bench")  # noqa: E731

    if mode in ("in_process", "spawn") and not args.backlog_only:
        reference, why = wb.reference_target(url, args.base_url if args.backlog_writes else None)
        if not reference:
            raise MemloadError(f"worker-bench: the target is not memload's reference API ({why}); memload's own "
                               "worker would not measure it: pass --worker-command \"CMD\" (its worker, run once "
                               "per iteration) or --observe (its worker already runs)")
    spec = wb.BacklogSpec(args.base_url, args.backlog_writes, args.backlog_concurrency, tenant, scope)
    if args.backlog_only:
        backlog = wb.build_http_backlog(spec, log=say)
        result_only = {"ok": backlog["ok"] == backlog["writes"], "mode": "backlog_only", "scope": scope,
                       "tenant_id": tenant, "scope_key": key, "backlog": backlog,
                       "outbox": wb.outbox_counts(url, key)}
        _emit(result_only, out_path)
        return 0 if result_only["ok"] else 1

    backlog = None
    if args.backlog_writes and mode != "observe":
        backlog = wb.build_http_backlog(spec, log=say)
    nodes = wb.scope_nodes(url, key)
    before = wb.outbox_counts(url, key)
    start = wb.start_ledger(url, key)
    t0 = time.perf_counter()
    command = None
    extra: dict[str, Any] = {}
    if mode == "observe":
        records, total, extra = wb.observe(
            url, key, wb.ObserveSpec(args.observe_timeout_s, args.observe_interval_s, args.observe_idle_s),
            backlog=(lambda: wb.build_http_backlog(spec, log=say)) if args.backlog_writes else None, log=say)
        backlog = extra.pop("result", None)
        elapsed_sum = extra["elapsed_ms_drain"]
    else:
        if mode == "in_process":
            records = wb.run_in_process(url, _worker_config(args, settings, key), key, args.iterations)
        else:
            if mode == "spawn":
                argv = [sys.executable, "-m", "scripts.cli", "worker", "--once", "--scope", key, *_knob_args(args)]
                command = " ".join(["memload", "worker", "--once", "--scope", key, *_knob_args(args)])
                run = shlex.join(argv)
            else:
                command = run = args.worker_command
            records = wb.run_command(url, run, scope, key, args.iterations, args.worker_timeout_s, log=say,
                                     cwd=str(REPO_ROOT) if mode == "spawn" else None)
        total = wb.run_totals(url, key, start)
        elapsed_sum = sum(r["elapsed_ms"] for r in records)
    wall_ms = (time.perf_counter() - t0) * 1000
    after = wb.outbox_counts(url, key)
    result: dict[str, Any] = {
        "ok": all(r["ok"] for r in records) and not sum(total.failed.values()),
        "mode": "command" if mode == "spawn" else mode,
        "unit": "jobs/s",
        "scope": scope,
        "tenant_id": tenant,
        "scope_key": key,
        "scope_nodes": nodes,
        "iterations": len(records),
        "totals": wb.totals(records, total, elapsed_sum, wall_ms),
        "outbox_before": before,
        "outbox_after": after,
        "enqueued_during_run": dict(sorted(total.enqueued.items())),
        "per_iteration": records,
    }
    if mode == "in_process" or mode == "spawn":
        config = _worker_config(args, settings, key)
        result["config"] = {"batch_size": config.batch_size, "embed_batch_rows": config.embed_batch_rows,
                            "embed_batch_nodes": config.embed_batch_nodes,
                            "claim_timeout_ms": config.claim_timeout_ms, "max_attempts": config.max_attempts}
    if command:
        result["command"] = command
    if mode == "observe":
        result["observe"] = extra
    if backlog is not None:
        result["backlog"] = backlog
    _emit(result, out_path)
    t = result["totals"]
    kinds = ", ".join(f"{k} {v['processed']}" + (f" (+{v['failed']} failed)" if v["failed"] else "")
                      for k, v in t["by_job_type"].items()) or "nothing"
    say(f"{result['mode']} on scope {key} ({nodes} nodes): {t['processed']} jobs processed, {t['failed']} failed "
        f"in {t['elapsed_ms_sum']:.0f} ms = {t['throughput_processed_per_sec']} jobs/s [{kinds}]")
    return 0 if result["ok"] else 1


def _emit(result: dict[str, Any], out_path: Path | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    if out_path is not None:
        out_path.write_text(text + "\n")
    print(text)
