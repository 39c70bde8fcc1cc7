"""`memload worker-bench` (the peer's `job:perf-worker-benchmark`): outbox snapshot, N worker batches, totals.

Two ways to measure, both reported with the peer's fields (docs/ARTIFACTS.md `worker_baseline.json`):
  * in_process (default): one long-lived worker runs N `--once` batches on one connection, so the figure is the
    worker's throughput;
  * spawn (`--spawn`): the peer's way, one `memload worker --once` process per iteration, so every iteration also
    pays interpreter start-up and connection set-up; kept for comparison with the peer's numbers.
The optional backlog builder makes N HTTP writes with `auto_embed=true` first (the matrix's `worker_slo` profile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from memload.errors import ConfigError

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
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
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{flag}: backlog writes go to loopback only (127.0.0.1/localhost), got {parts.hostname!r}")


def _auth_headers() -> dict[str, str]:
    """The peer benchmark's headers: x-api-key (PERF_API_KEY or the first MEMORY_API_KEYS_JSON key), Bearer."""
    headers: dict[str, str] = {}
    key = os.environ.get("PERF_API_KEY", "")
    if not key:
        try:
            keys = json.loads(os.environ.get("MEMORY_API_KEYS_JSON", "{}") or "{}")
            key = next(iter(keys), "") if isinstance(keys, dict) else ""
        except json.JSONDecodeError:
            key = ""
    if key:
        headers["x-api-key"] = key
    bearer = os.environ.get("PERF_AUTH_BEARER", "")
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    return headers


def build_http_backlog(spec: BacklogSpec, log: Any = None) -> dict[str, Any]:
    """`writes` POST /v1/memory/write with auto_embed=true, honouring 429 Retry-After (bounded retries)."""
    check_loopback(spec.base_url)
    url = spec.base_url.rstrip("/") + "/v1/memory/write"
    tag = f"{int(time.time() * 1000)}_{os.urandom(3).hex()}"
    headers = {"content-type": "application/json", **_auth_headers()}
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    counter = iter(range(spec.writes))
    retries_429 = 0

    def one(i: int) -> str:
        nonlocal retries_429
        body = json.dumps({
            "tenant_id": spec.tenant_id, "scope": spec.scope, "input_text": f"perf write {tag} #{i}",
            "auto_embed": True, "memory_lane": "shared",
            "nodes": [{"client_id": f"perf_write_{tag}_{i}", "type": "event",
                       "text_summary": f"perf write payload #{i}"}],
        }).encode()
        for _ in range(MAX_429_RETRIES + 1):
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=spec.timeout_s) as resp:
                    resp.read()
                    return str(resp.status)
            except urllib.error.HTTPError as exc:
                exc.read()
                if exc.code != 429:
                    return str(exc.code)
                with lock:
                    retries_429 += 1
                time.sleep(max(1.0, float(exc.headers.get("retry-after") or 1)))
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                return f"error:{type(reason).__name__}"
        return "429"

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


# ------------------------------------------------------------------------------------------------ the benchmark
def _iteration_record(i: int, data: dict[str, Any], elapsed_ms: float) -> dict[str, Any]:
    processed = int(data.get("processed", 0))
    return {
        "iteration": i,
        "claimed": int(data.get("claimed", 0)),
        "processed": processed,
        "topic_cluster_runs": int(data.get("topic_cluster_runs", 0)),
        "embed_backfill_runs": int(data.get("embed_backfill_runs", 0)),
        "failed_marked": int(data.get("failed_marked", 0)),
        "nodes_embedded": int(data.get("nodes_embedded", 0)),
        "ok": bool(data.get("ok", False)),
        "elapsed_ms": _round(elapsed_ms),
        "throughput_processed_per_sec": _throughput(processed, elapsed_ms),
    }


def run_in_process(database_url: str, config: Any, iterations: int) -> list[dict[str, Any]]:
    """N batches of one long-lived worker (connection opened before the clock starts)."""
    from memory_api.worker import OutboxWorker

    records = []
    with OutboxWorker(database_url, config) as worker:
        for i in range(1, iterations + 1):
            t0 = time.perf_counter()
            stats = worker.run_batch()
            elapsed = (time.perf_counter() - t0) * 1000
            records.append(_iteration_record(i, stats.as_json(mode="once", scope=config.scope), elapsed))
    return records


def run_spawned(database_url: str, worker_args: list[str], iterations: int) -> tuple[list[dict[str, Any]], str]:
    """N `memload worker --once` child processes; elapsed includes their start-up (the peer's measurement)."""
    from memload.config import REPO_ROOT

    cmd = [sys.executable, "-m", "scripts.cli", "worker", "--once", *worker_args]
    env = {**os.environ, "DATABASE_URL": database_url}
    records = []
    for i in range(1, iterations + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        elapsed = (time.perf_counter() - t0) * 1000
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
        try:
            data = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            data = {}
        if proc.returncode != 0:
            data["ok"] = False
            sys.stderr.write(proc.stderr[-2000:])
        records.append(_iteration_record(i, data, elapsed))
    return records, " ".join(["memload", "worker", "--once", *worker_args])


def totals(records: list[dict[str, Any]], wall_ms: float) -> dict[str, Any]:
    elapsed_sum = sum(r["elapsed_ms"] for r in records)
    out: dict[str, Any] = {k: sum(r[k] for r in records) for k in (
        "claimed", "processed", "topic_cluster_runs", "embed_backfill_runs", "failed_marked", "nodes_embedded")}
    out.update({
        "elapsed_ms_sum": _round(elapsed_sum),
        "elapsed_ms_wall": _round(wall_ms),
        "throughput_processed_per_sec": _throughput(out["processed"], elapsed_sum),
        "throughput_nodes_per_sec": _throughput(out["nodes_embedded"], elapsed_sum),
    })
    return out


def snapshot(database_url: str, scope_key: str) -> dict[str, int]:
    from memload.db import connection
    from memory_api.worker import outbox_snapshot

    with connection(database_url, autocommit=True) as conn:
        return outbox_snapshot(conn, scope_key)
