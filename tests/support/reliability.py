"""Helpers shared by the reliability tests (tests/test_reliability_*.py, tests/test_fuzz_api.py).

`Client` keeps one keep-alive HTTP connection (reconnecting after the server closes it), `row_counts` snapshots the
tables a request may change, `report` prints the one-line figures docs/RELIABILITY.md quotes (`pytest -s`).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from memload.config import REPO_ROOT
from tests.support.cli import PYTHON, cli_env, start_cli, stop

TABLES = ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox", "memory_rule_defs",
          "memory_recall_audit")
_COUNT_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
FIGURES_FILE = Path(os.environ.get("MEMLOAD_RELIABILITY_FIGURES", REPO_ROOT / ".memload" / "reliability.jsonl"))


def report(test: str, **figures: Any) -> None:
    """Print `[reliability] <test>: k=v ...` and append the figures to MEMLOAD_HOME-ish reliability.jsonl."""
    print(f"\n[reliability] {test}: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    try:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES_FILE.open("a") as fh:
            fh.write(json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}) + "\n")
    except OSError:
        pass


class Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def envelope_problem(self) -> str | None:
        """None if the body is the API's error envelope {"error": str, "message": str, ...}."""
        try:
            doc = self.json()
        except ValueError:
            return f"not JSON: {self.body[:120]!r}"
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), str) or not doc["error"]:
            return f"no error code: {self.body[:120]!r}"
        if not isinstance(doc.get("message"), str):
            return f"no message: {self.body[:120]!r}"
        return None


class Client:
    """A keep-alive HTTP/1.1 client for one base URL."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        hdrs = {"content-type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                data = resp.read()
                out = Response(resp.status, dict(resp.getheaders()), data)
                if resp.will_close:
                    self.close()
                return out
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()  # a kept-alive connection the server closed meanwhile: retry once on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, doc: Any, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("POST", path, json.dumps(doc).encode(), headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(_COUNT_SQL).fetchone()
    return dict(zip(TABLES, row, strict=True))


# ------------------------------------------------------------------------------------------- load-run harness
def start_worker(db_url: str, log_path: Path, *args: str) -> subprocess.Popen:
    return start_cli(["worker", "--poll-interval-ms", "100", *args], log_path, {"DATABASE_URL": db_url})


def start_bench(base_url: str, db_url: str, csv_prefix: Path, *args: str, env: Mapping[str, str] | None = None
                ) -> subprocess.Popen:
    """`memload bench` in the background; stdout (the JSON) goes to <prefix>.json, logs to <prefix>.log.
    The runs start on an empty scope and inject faults on purpose: the empty-scope preflight and the error gates
    are off, the tests assert the counts themselves."""
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    full = cli_env({"DATABASE_URL": db_url, **(env or {})})
    return subprocess.Popen([PYTHON, "-m", "scripts.cli", "bench", "--base-url", base_url, "--csv",
                             str(csv_prefix), "--warmup", "0", "--max-run-s", "240", "--allow-empty-scope",
                             "--fail-on-transport-error-rate", "1", "--max-5xx-rate", "1", *args],
                            cwd=REPO_ROOT, env=full,
                            stdout=open(f"{csv_prefix}.json", "w"), stderr=open(f"{csv_prefix}.log", "w"),
                            start_new_session=True)


def bench_result(proc: subprocess.Popen, csv_prefix: Path, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    """Wait for a bench started by start_bench: (exit code, its JSON, its stderr)."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)
        raise
    log = Path(f"{csv_prefix}.log").read_text(errors="replace")
    text = Path(f"{csv_prefix}.json").read_text()
    if not text.strip():
        raise AssertionError(f"bench printed no JSON (exit {rc}):\n{log[-3000:]}")
    return rc, json.loads(text), log


def ack_lines(csv_prefix: Path) -> int:
    path = Path(f"{csv_prefix}_write_acks.jsonl")
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def outbox_exactly_once(conn: psycopg.Connection, scope: str) -> dict[str, int]:
    """After the worker drained a scope written by the suite's write users (embed_on_write): every job is published,
    none failed, and each effect happened once (each node embedded once, each event clustered into one topic).
    Returns the figures; raises AssertionError naming the first violation."""
    rows = dict(conn.execute(
        "SELECT event_type, count(*) FROM memory_outbox WHERE scope = %s GROUP BY 1", (scope,)).fetchall())
    pending = conn.execute("SELECT count(*) FROM memory_outbox WHERE scope = %s AND (published_at IS NULL"
                           " OR failed_at IS NOT NULL)", (scope,)).fetchone()[0]
    writes = conn.execute("SELECT count(*) FROM memory_commits WHERE scope = %s AND actor = 'system'",
                          (scope,)).fetchone()[0]
    events = conn.execute("SELECT count(*), count(*) FILTER (WHERE embedding_status = 'ready'),"
                          " count(*) FILTER (WHERE embedding_attempts = 1), max(embedding_attempts)"
                          " FROM memory_nodes WHERE scope = %s AND type = 'event'", (scope,)).fetchone()
    part_of = conn.execute("SELECT count(*), count(DISTINCT src_id) FROM memory_edges e JOIN memory_nodes n"
                           " ON n.scope = e.scope AND n.id = e.src_id WHERE e.scope = %s AND e.type = 'part_of'"
                           " AND n.type = 'event'", (scope,)).fetchone()
    embedded = conn.execute("SELECT coalesce(sum((payload->'embed_backfill'->>'updated')::int), 0) FROM memory_outbox"
                            " WHERE scope = %s AND event_type = 'embed_nodes'", (scope,)).fetchone()[0]
    out = {"jobs_expected": 2 * writes, "jobs": sum(rows.values()), "jobs_unprocessed": pending,
           "embed_jobs": rows.get("embed_nodes", 0), "topic_jobs": rows.get("topic_cluster", 0), "events": events[0],
           "events_embedded_once": events[2], "nodes_embedded_by_jobs": embedded,
           "events_clustered": part_of[1], "part_of_edges": part_of[0]}
    assert pending == 0, f"unprocessed or failed outbox jobs: {out}"
    assert out["embed_jobs"] == writes and out["topic_jobs"] == writes, f"one embed + one topic job per write: {out}"
    assert events[0] == writes and events[1] == writes and events[2] == writes, f"each event embedded once: {out}"
    assert embedded == writes, f"the jobs' own counts: each node updated by exactly one job: {out}"
    assert part_of[0] == part_of[1] == writes, f"each event clustered into exactly one topic: {out}"
    out["jobs_processed"] = out["jobs"] - pending
    return out
