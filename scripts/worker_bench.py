"""`memload worker-bench` (the Aionis kit's `job:perf-worker-benchmark`): outbox snapshot, N worker runs, totals.

Three modes, all counted the same way, from the outbox table (a job = one outbox row; the unit is jobs/s):
  * command (`--worker-command CMD`): the target's own worker, run once per iteration as the Aionis kit does
    (`... --once`), so every iteration also pays the worker's start-up;
  * observe (`--observe`): the target's worker already runs; optional backlog writes through the API, then the drain
    is watched until the scope's outbox is empty (or a timeout);
  * in_process (default, memload's reference API only): memload's own worker runs N batches on one connection.
`spawn` (`--spawn`) is the command mode with memload's own `memload worker --once`.

What a job did is read from its row, never from a worker's self-report: published in the window = processed;
dead-lettered (`failed_at`) in the window, or attempted (`attempts` grew) and still unpublished once the worker is
done = failed. A failed job is never counted as processed. Command and observe modes only read the outbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from memload.client import HEALTH, WRITE, ApiClient, RequestFailed, write_body
from memload.errors import ConfigError
from memload.net import is_loopback_host

MAX_429_RETRIES = 20


def _round(value: float, digits: int = 3) -> float:
    return round(value, digits)


def _throughput(processed: int, elapsed_ms: float) -> float:
    return round(processed / (elapsed_ms / 1000.0), 2) if elapsed_ms > 0 else 0.0


# ------------------------------------------------------------------------------------------------ backlog builder
@dataclass(frozen=True)
class BacklogSpec:
    base_url: str
    writes: int
    concurrency: int
    tenant_id: str
    scope: str
    timeout_s: float = 15.0


def check_loopback(base_url: str, flag: str = "--base-url") -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag}: expected an http://host:port URL, got {base_url!r}")
    if not is_loopback_host(parts.hostname):
        raise ConfigError(f"{flag}: backlog writes go to loopback only (127.0.0.1/localhost), got {parts.hostname!r}")


def build_http_backlog(spec: BacklogSpec, log: Any = None) -> dict[str, Any]:
    """`writes` POST writes with auto_embed=true (the Locust users' write body), honouring 429 Retry-After (bounded
    retries)."""
    check_loopback(spec.base_url)
    client = ApiClient(spec.base_url, timeout_s=spec.timeout_s, max_429_retries=MAX_429_RETRIES,
                       min_retry_wait_s=1.0)
    tag = f"{int(time.time() * 1000)}_{os.urandom(3).hex()}"
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    counter = iter(range(spec.writes))
    retries_429 = 0

    def one(i: int) -> str:
        nonlocal retries_429
        body = write_body(spec.tenant_id, spec.scope, tag, i, True)
        try:
            reply = client.request("POST", WRITE, body)
        except RequestFailed as exc:  # no response
            with lock:
                retries_429 += exc.retries_429
            return f"error:{type(exc.cause).__name__}"
        with lock:
            retries_429 += reply.retries_429
        return str(reply.status)

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            status = one(i)
            with lock:
                statuses[status] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, spec.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed_ms = (time.perf_counter() - t0) * 1000
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    if log:
        log(f"backlog: {ok}/{spec.writes} writes ok in {elapsed_ms:.0f} ms ({dict(statuses)})")
    return {"writes": spec.writes, "ok": ok, "by_status": dict(statuses), "retries_429": retries_429,
            "concurrency": spec.concurrency, "elapsed_ms": _round(elapsed_ms), "base_url": spec.base_url}


# ------------------------------------------------------------------------------------------------ the target
REFERENCE_SERVER = "memload-reference"


def probe_health(base_url: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """GET /health of the API as JSON (None when it does not answer with a JSON object)."""
    try:
        body = ApiClient(base_url, timeout_s=timeout_s, max_429_retries=0).get(HEALTH)
    except RequestFailed:
        return None
    return body if isinstance(body, dict) else None


def schema_is_memload(database_url: str) -> bool:
    """memload's reference schema carries its partition helpers; an Aionis (or any other) schema does not."""
    from memload.db import connection

    with connection(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regproc('memload_partition_ensure_scope') IS NOT NULL").fetchone()
    return bool(row and row[0])


def reference_target(database_url: str, base_url: str | None) -> tuple[bool, str]:
    """(is memload's reference API, why): `/health` decides when a base URL is in use and it names its server
    (memload's reference API answers `server: memload-reference`; an Aionis server answers `{"ok": true}` only),
    else the schema."""
    if base_url:
        health = probe_health(base_url)
        if health is not None and "server" in health:
            server = health.get("server")
            return server == REFERENCE_SERVER, f"{base_url}{HEALTH} says server={server!r}"
    if schema_is_memload(database_url):
        return True, "the database has memload's reference schema"
    return False, "the database does not have memload's reference schema"


# ------------------------------------------------------------------------------------------------ the outbox ledger
@dataclass(frozen=True)
class RowState:
    event_type: str
    attempts: int
    published: bool
    failed: bool
    claimed: bool


@dataclass(frozen=True)
class Ledger:
    """The scope's open jobs (unpublished, not dead-lettered) at one moment, plus what is needed to find the jobs
    created since the run started: its start time and highest id then, and the new jobs already seen closed.
    New jobs are found by `created_at` as well as by id: a writer's transaction may commit a lower id after a
    higher one was seen, and `created_at` (its transaction's start) is after the run's start all the same."""

    at: datetime
    open_rows: dict[int, RowState]
    since: datetime
    start_max_id: int
    seen_closed: frozenset[int] = frozenset()


@dataclass
class Drained:
    """What happened to the jobs between two ledgers, per job type."""

    processed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    attempted: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    enqueued: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    last_change: datetime | None = None


def _row_states(conn: Any, where: str, params: tuple[Any, ...]) -> dict[int, RowState]:
    rows = conn.execute(
        "SELECT id, event_type, attempts, published_at IS NOT NULL, failed_at IS NOT NULL, claimed_at IS NOT NULL"
        f" FROM memory_outbox WHERE {where}", params).fetchall()
    return {int(r[0]): RowState(r[1], int(r[2]), bool(r[3]), bool(r[4]), bool(r[5])) for r in rows}


def take_ledger(conn: Any, scope_key: str) -> Ledger:
    at, max_id = conn.execute("SELECT clock_timestamp(), coalesce(max(id), 0) FROM memory_outbox WHERE scope = %s",
                              (scope_key,)).fetchone()
    open_rows = _row_states(conn, "scope = %s AND published_at IS NULL AND failed_at IS NULL", (scope_key,))
    return Ledger(at, open_rows, at, int(max_id))


def advance(conn: Any, scope_key: str, before: Ledger, *, settled: bool) -> tuple[Ledger, Drained]:
    """The next ledger and what drained since `before`. `settled`: no worker is mid-job (a command exited, or the
    end of an observation), so an attempted job that is still unpublished and claimed has failed, one whose claim
    was handed back waits for a retry; otherwise it may be in flight and is left for a later look."""
    at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    now = _row_states(
        conn, "scope = %s AND (id = ANY(%s) OR ((created_at >= %s OR id > %s) AND NOT id = ANY(%s)))",
        (scope_key, list(before.open_rows), before.since, before.start_max_id, list(before.seen_closed)))
    closed = [i for i, r in now.items() if r.published or r.failed]
    last = conn.execute(
        "SELECT max(greatest(published_at, failed_at)) FROM memory_outbox WHERE scope = %s AND id = ANY(%s)",
        (scope_key, closed)).fetchone()[0]
    out = Drained(last_change=last)
    for job_id, row in now.items():
        prev = before.open_rows.get(job_id)
        if prev is None:
            out.enqueued[row.event_type] += 1
        attempts_before = prev.attempts if prev is not None else 0
        if row.attempts > attempts_before:
            out.attempted[row.event_type] += 1
        if row.published:
            out.processed[row.event_type] += 1
        elif row.failed:
            out.failed[row.event_type] += 1
            out.dead_lettered += 1
        elif settled and row.attempts > attempts_before:
            # still claimed: the job died (its error was rolled back; it waits for the claim timeout); released
            # with the claim handed back: the worker asked for a retry
            (out.failed if row.claimed else out.retried)[row.event_type] += 1
    open_rows = {i: r for i, r in now.items() if not r.published and not r.failed}
    return Ledger(at, open_rows, before.since, before.start_max_id, before.seen_closed | frozenset(closed)), out


def outbox_counts(database_url: str, scope_key: str) -> dict[str, Any]:
    """{unpublished, failed, claimed, by_job_type: {type: unpublished}} of a scope (the kit's outbox snapshot)."""
    from memload.db import connection

    with connection(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_type, count(*) FILTER (WHERE published_at IS NULL),"
            " count(*) FILTER (WHERE failed_at IS NOT NULL),"
            " count(*) FILTER (WHERE published_at IS NULL AND failed_at IS NULL AND claimed_at IS NOT NULL)"
            " FROM memory_outbox WHERE scope = %s GROUP BY event_type ORDER BY event_type", (scope_key,)).fetchall()
    return {"unpublished": sum(int(r[1]) for r in rows), "failed": sum(int(r[2]) for r in rows),
            "claimed": sum(int(r[3]) for r in rows), "by_job_type": {r[0]: int(r[1]) for r in rows if r[1]}}


def scope_nodes(database_url: str, scope_key: str) -> int:
    from memload.db import connection

    with connection(database_url, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s", (scope_key,)).fetchone()[0])


# ------------------------------------------------------------------------------------------------ the benchmark
REPORTED_FIELDS = ("claimed", "processed", "topic_cluster_runs", "embed_backfill_runs", "failed_marked",
                   "nodes_embedded")


def _iteration_record(i: int, drained: Drained, elapsed_ms: float, ok: bool,
                      reported: dict[str, Any] | None) -> dict[str, Any]:
    processed = sum(drained.processed.values())
    record: dict[str, Any] = {
        "iteration": i,
        "claimed": sum(drained.attempted.values()),
        "processed": processed,
        "failed": sum(drained.failed.values()),
        "failed_marked": drained.dead_lettered,
        "job_types": dict(sorted(drained.processed.items())),
        "failed_job_types": dict(sorted(drained.failed.items())),
        "retry_pending": sum(drained.retried.values()),
        "enqueued": dict(sorted(drained.enqueued.items())),
        "ok": ok,
        "elapsed_ms": _round(elapsed_ms),
        "throughput_processed_per_sec": _throughput(processed, elapsed_ms),
    }
    if reported is not None:  # what the worker itself printed (its own counting; processed may include failures)
        record["worker_reported"] = reported
        for key in ("topic_cluster_runs", "embed_backfill_runs", "nodes_embedded"):
            if key in reported:
                record[key] = reported[key]
    return record


def run_in_process(database_url: str, config: Any, scope_key: str, iterations: int) -> list[dict[str, Any]]:
    """N batches of memload's own long-lived worker (connection opened before the clock starts)."""
    from memload.db import connection
    from memory_api.worker import OutboxWorker

    records = []
    with OutboxWorker(database_url, config) as worker, connection(database_url, autocommit=True) as conn:
        ledger = take_ledger(conn, scope_key)
        for i in range(1, iterations + 1):
            t0 = time.perf_counter()
            stats = worker.run_batch()
            elapsed = (time.perf_counter() - t0) * 1000
            ledger, drained = advance(conn, scope_key, ledger, settled=True)
            reported = {k: v for k, v in stats.as_json(mode="once", scope=config.scope).items() if k in REPORTED_FIELDS}
            records.append(_iteration_record(i, drained, elapsed, stats.errors == 0, reported))
    return records


def _reported(stdout: str) -> dict[str, Any] | None:
    """Sum of the numeric fields of the JSON lines a worker printed (one per batch), or None if it printed none."""
    total: Counter[str] = Counter()
    seen = False
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            seen = True
            total.update({k: int(v) for k, v in data.items() if k in REPORTED_FIELDS and isinstance(v, int | float)})
    return dict(total) if seen else None


def run_command(database_url: str, command: str, scope: str, scope_key: str, iterations: int, timeout_s: float,
                log: Any = None, cwd: str | None = None) -> list[dict[str, Any]]:
    """Run the target's worker command N times (a shell command line), timing each run and reading the outbox."""
    from memload.db import connection

    env = {**os.environ, "DATABASE_URL": database_url, "MEMORY_SCOPE": scope}
    records = []
    with connection(database_url, autocommit=True) as conn:
        ledger = take_ledger(conn, scope_key)
        for i in range(1, iterations + 1):
            t0 = time.perf_counter()
            code, stdout, stderr = _run_shell(command, env, cwd, timeout_s)
            ok = code == 0
            if not ok and log:
                why = (f"still running after {timeout_s:g} s: killed" if code is None else
                       f"exited {code}: {(stderr.strip().splitlines() or [''])[-1][:300]}")
                log(f"iteration {i}: worker command {why}")
            elapsed = (time.perf_counter() - t0) * 1000
            ledger, drained = advance(conn, scope_key, ledger, settled=True)
            records.append(_iteration_record(i, drained, elapsed, ok, _reported(stdout)))
    return records


def _run_shell(command: str, env: dict[str, str], cwd: str | None, timeout_s: float
               ) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr) of a shell command; on timeout its whole process group is
    killed (the shell's children too), so no stray worker keeps draining the outbox afterwards."""
    proc = subprocess.Popen(command, shell=True, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


@dataclass(frozen=True)
class ObserveSpec:
    timeout_s: float = 300.0
    interval_s: float = 1.0
    idle_s: float = 10.0


def observe(database_url: str, scope_key: str, spec: ObserveSpec, backlog: Callable[[], Any] | None = None,
            log: Any = None) -> tuple[list[dict[str, Any]], Drained, dict[str, Any]]:
    """Watch the target's running worker drain the scope's outbox (while `backlog` writes, if given). Stops when
    no job is open, when only claimed jobs are left and nothing changed for `idle_s` (a job that died mid-run
    stays claimed until the worker's claim timeout), or after `timeout_s`. Returns the per-interval records, the
    whole run's drain and how the watch ended."""
    from memload.db import connection

    records: list[dict[str, Any]] = []
    backlog_result: dict[str, Any] = {}
    writer: threading.Thread | None = None
    with connection(database_url, autocommit=True) as conn:
        start = take_ledger(conn, scope_key)
        if log:
            log(f"observe: watching scope {scope_key}: {len(start.open_rows)} open jobs"
                + (", backlog writes starting" if backlog is not None else ""))
        if backlog is not None:
            writer = threading.Thread(target=lambda: backlog_result.update(result=backlog()), daemon=True)
            writer.start()
        ledger = start
        t0 = t_prev = time.perf_counter()
        quiet_since = t0
        reason = "timeout"
        i = 0
        while True:
            time.sleep(spec.interval_s)
            i += 1
            ledger, drained = advance(conn, scope_key, ledger, settled=False)
            now = time.perf_counter()
            records.append(_iteration_record(i, drained, (now - t_prev) * 1000, True, None))
            t_prev = now
            writing = writer is not None and writer.is_alive()
            if drained.processed or drained.failed or drained.attempted or drained.enqueued:
                quiet_since = now
            unclaimed = conn.execute(
                "SELECT count(*) FROM memory_outbox WHERE scope = %s AND published_at IS NULL AND failed_at IS NULL"
                " AND claimed_at IS NULL", (scope_key,)).fetchone()[0]
            if not writing and not ledger.open_rows:
                reason = "empty"
                break
            if not writing and unclaimed == 0 and now - quiet_since >= spec.idle_s:
                reason = "only_stuck_claims_left"
                break
            if now - t0 >= spec.timeout_s:
                break
        _, total = advance(conn, scope_key, start, settled=True)
        elapsed_ms = ((total.last_change - start.at).total_seconds() * 1000
                      if total.last_change is not None else (time.perf_counter() - t0) * 1000)
    if writer is not None:
        writer.join()
    if log:
        log(f"observe: stopped ({reason}) after {time.perf_counter() - t0:.1f} s")
    return records, total, {"stop_reason": reason, "drained": reason == "empty",
                            "elapsed_ms_drain": _round(max(elapsed_ms, 0.0)), **backlog_result}


def totals(records: list[dict[str, Any]], total: Drained, elapsed_ms_sum: float, wall_ms: float) -> dict[str, Any]:
    """Run totals: jobs from the whole run's drain (a job retried over several iterations counts once)."""
    processed = sum(total.processed.values())
    out: dict[str, Any] = {
        "claimed": sum(r["claimed"] for r in records),
        "processed": processed,
        "failed": sum(total.failed.values()),
        "failed_marked": total.dead_lettered,
        "retry_pending": sum(total.retried.values()),
        "by_job_type": {t: {"processed": total.processed.get(t, 0), "failed": total.failed.get(t, 0)}
                        for t in sorted(set(total.processed) | set(total.failed))},
    }
    for key in ("topic_cluster_runs", "embed_backfill_runs", "nodes_embedded"):
        if any(key in r for r in records):
            out[key] = sum(r.get(key, 0) for r in records)
    out.update({
        "elapsed_ms_sum": _round(elapsed_ms_sum),
        "elapsed_ms_wall": _round(wall_ms),
        "throughput_processed_per_sec": _throughput(processed, elapsed_ms_sum),
    })
    return out


def run_totals(database_url: str, scope_key: str, start: Ledger) -> Drained:
    """The whole run's drain, from the ledger taken before the first iteration."""
    from memload.db import connection

    with connection(database_url, autocommit=True) as conn:
        return advance(conn, scope_key, start, settled=True)[1]


def start_ledger(database_url: str, scope_key: str) -> Ledger:
    from memload.db import connection

    with connection(database_url, autocommit=True) as conn:
        return take_ledger(conn, scope_key)
