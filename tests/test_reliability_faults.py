"""Faults during a load run: the API killed and restarted, the database restarted, a worker killed
mid-batch.

Each test runs the suite's load through `memload bench` (open model, so a fault costs the requests scheduled during
it, not the whole budget): writes with auto_embed and --verify-writes, plus (API and database faults) concurrent
recalls. The fault is injected once enough writes are acknowledged. Then:

* the run completes: every budgeted request was sent and counted, the bench exits 0;
* failures are counted honestly: transport errors as `error:<Exception>` / `transport`, 503s as `server_5xx`;
  `total = ok + failed` per case, and `memload report` names the cause (transport / API errors);
* no acknowledged write is lost and none is half-written (the bench's --verify-writes);
* after recovery the worker drains the outbox and every job was processed exactly once (one embed and one topic job
  per write, each node embedded once, each event clustered once).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memload.config import Settings
from memload.net import free_port
from scripts import embedded_db
from scripts.migrate import migrate
from tests.support.api import start_api
from tests.support.cli import run_cli, stop
from tests.support.reliability import (
    ack_lines,
    bench_result,
    outbox_exactly_once,
    report,
    start_bench,
    start_worker,
    wait_for,
)

WRITES, RECALLS, RATE = 240, 240, 20.0  # 12 s of load per endpoint class
FAULT_AFTER_ACKS = 60
HIGH = {"tenant_write_rps": "1000", "tenant_write_burst": "1000", "tenant_recall_rps": "1000",
        "tenant_recall_burst": "1000"}


class Run:
    """One load run against a local API + worker, with a fault injected by the test."""

    def __init__(self, url: str, tmp_path: Path, *, recalls: bool = True, worker: bool = True) -> None:
        self.url, self.tmp = url, tmp_path
        self.scope = f"rel_f_{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = start_api(url, tmp_path / "api0", port=self.port, **HIGH).proc
        self.worker = start_worker(url, tmp_path / "worker0.log", "--claim-timeout-ms", "2000") if worker else None
        self.wpre, self.rpre = tmp_path / "w" / "locust", tmp_path / "r" / "locust"
        self.writer = start_bench(self.base, url, self.wpre, "--scope", self.scope, "--mode", "write",
                                  "--write-requests", str(WRITES), "--write-concurrency", "8", "--arrival-rate",
                                  str(RATE), "--adaptive", "off", "--embed-on-write", "--verify-writes",
                                  "--timeout-ms", "5000")
        self.reader = start_bench(self.base, url, self.rpre, "--scope", self.scope, "--mode", "recall",
                                  "--recall-requests", str(RECALLS), "--recall-concurrency", "8", "--arrival-rate",
                                  str(RATE), "--adaptive", "off", "--timeout-ms", "5000") if recalls else None
        self.procs = [p for p in (self.api, self.worker, self.writer, self.reader) if p is not None]

    def wait_acks(self, n: int = FAULT_AFTER_ACKS) -> None:
        wait_for(lambda: ack_lines(self.wpre) >= n, 90, f"{n} write acks")

    def finish(self) -> dict[str, Any]:
        """Wait for the benches, drain the outbox, stop everything; the figures of the run."""
        rc, wdoc, wlog = bench_result(self.writer, self.wpre)
        out: dict[str, Any] = {"write_rc": rc, "write": wdoc, "write_log": wlog}
        if self.reader is not None:
            out["read_rc"], out["read"], out["read_log"] = bench_result(self.reader, self.rpre)
        if self.worker is None or self.worker.poll() is not None:
            self.worker = start_worker(self.url, self.tmp / "worker_final.log", "--claim-timeout-ms", "1000")
            self.procs.append(self.worker)
        with psycopg.connect(self.url, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM memory_outbox WHERE scope = %s AND published_at IS"
                                          " NULL AND failed_at IS NULL", (self.scope,)).fetchone()[0] == 0,
                     120, "the worker to drain the outbox", interval=0.2)
            out["outbox"] = outbox_exactly_once(conn, self.scope)
        return out

    def close(self) -> None:
        for p in reversed(self.procs):
            stop(p)


def _check_counts(name: str, doc: dict[str, Any], expected_total: int) -> dict[str, int]:
    """The case is complete and its numbers add up; returns its error figures."""
    assert doc["run"]["completed"], f"{name}: run incomplete: {doc['run']}"
    for c in doc["cases"]:
        by_status = c["by_status"]
        transport = sum(n for k, n in by_status.items() if k.startswith("error:"))
        assert c["total"] == c["ok"] + c["failed"] == sum(by_status.values()), (name, c)
        assert transport == c["transport_error_count"] == c["errors"]["transport"], (name, c)
    total = sum(c["total"] for c in doc["cases"])
    assert total == expected_total, (name, total)
    return {"total": total, "ok": sum(c["ok"] for c in doc["cases"]),
            "transport": sum(c["transport_error_count"] for c in doc["cases"]),
            "server_5xx": sum(c["errors"]["server_5xx"] for c in doc["cases"])}


def _report_text(tmp_path: Path, *docs: dict[str, Any]) -> str:
    """`memload report` over the run (its benchmark file merged from the benches): the Markdown it writes."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    merged = dict(docs[0])
    merged["cases"] = [c for d in docs for c in d["cases"]]
    (run_dir / f"benchmark_{WRITES}.json").write_text(json.dumps(merged))
    proc = run_cli("report", "--dir", str(run_dir), "--no-plots", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (run_dir / "PERFORMANCE_REPORT_V1.md").read_text()


def _verify(doc: dict[str, Any]) -> dict[str, Any]:
    v = doc["verify_writes"]
    assert v["ok"] and v["missing"] == 0 and v["half_written"] == 0 and v["rejected_4xx_written"] == 0, v
    assert v["acknowledged"] == v["found"] and v["sent"] == WRITES, v
    return v


def _fault_test(url: str, tmp_path: Path, fault: Callable[[Run], dict[str, Any]], *, recalls: bool = True,
                worker: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    run = Run(url, tmp_path, recalls=recalls, worker=worker)
    try:
        run.wait_acks()
        what = fault(run)
        out = run.finish()
    finally:
        run.close()
    assert out["write_rc"] == 0, out["write_log"][-3000:]
    if recalls:
        assert out["read_rc"] == 0, out["read_log"][-3000:]
    return what, out


@pytest.mark.slow
def test_api_killed_and_restarted_mid_run(fresh_db_url: str, tmp_path: Path) -> None:
    def kill_api(run: Run) -> dict[str, Any]:
        t0 = time.monotonic()
        stop(run.api, signal.SIGKILL)
        time.sleep(1.0)
        run.api = start_api(run.url, run.tmp / "api1", port=run.port, **HIGH).proc
        run.procs.append(run.api)
        return {"downtime_s": round(time.monotonic() - t0, 2)}

    what, out = _fault_test(fresh_db_url, tmp_path, kill_api)
    w = _check_counts("write", out["write"], WRITES)
    r = _check_counts("recall", out["read"], RECALLS)
    v = _verify(out["write"])
    assert w["transport"] + r["transport"] > 0, "the outage must show up as transport errors"
    assert w["server_5xx"] == r["server_5xx"] == 0
    assert v["acknowledged"] + v["unknown_outcome"] == WRITES
    text = _report_text(tmp_path, out["write"], out["read"])
    assert "transport / availability" in text and f"{w['transport']} of {WRITES} requests" in text
    report("fault_api_restart", **what, write_ok=w["ok"], write_transport_errors=w["transport"],
           recall_ok=r["ok"], recall_transport_errors=r["transport"], acknowledged=v["acknowledged"],
           found=v["found"], unknown_outcome=v["unknown_outcome"], unknown_written=v["unknown_written"],
           half_written=v["half_written"], jobs_processed=out["outbox"]["jobs_processed"],
           jobs_expected=out["outbox"]["jobs_expected"])


@pytest.mark.slow
def test_database_restarted_mid_run(tmp_path: Path) -> None:
    settings = Settings(memload_home=tmp_path / "pg")  # a server of this test alone: the shared one never restarts
    url = embedded_db.start(settings)
    try:
        migrate(url)

        def restart_db(run: Run) -> dict[str, Any]:
            t0 = time.monotonic()
            assert embedded_db.stop(settings)
            time.sleep(1.0)
            embedded_db.start(settings)
            return {"downtime_s": round(time.monotonic() - t0, 2)}

        what, out = _fault_test(url, tmp_path, restart_db)
    finally:
        embedded_db.stop(settings)
    w = _check_counts("write", out["write"], WRITES)
    r = _check_counts("recall", out["read"], RECALLS)
    v = _verify(out["write"])
    failed = w["total"] - w["ok"] + r["total"] - r["ok"]
    assert failed > 0, "the outage must show up (as 503s, or timeouts of requests that waited for the pool)"
    for doc in (out["write"], out["read"]):
        for c in doc["cases"]:
            assert set(c["by_status"]) <= {"200", "503"} | {k for k in c["by_status"] if k.startswith("error:")}, c
            assert c["failed"] == c["by_status"].get("503", 0) + c["transport_error_count"], c
    text = _report_text(tmp_path, out["write"], out["read"])
    if w["server_5xx"] + r["server_5xx"]:
        assert "API errors (5xx)" in text
    if w["transport"] + r["transport"]:
        assert "transport / availability" in text
    worker_log = (tmp_path / "worker0.log").read_text(errors="replace")
    assert "database error, retrying" in worker_log  # the worker saw the outage and kept going
    report("fault_db_restart", **what, write_ok=w["ok"], write_503=w["server_5xx"], write_transport=w["transport"],
           recall_ok=r["ok"], recall_503=r["server_5xx"], acknowledged=v["acknowledged"], found=v["found"],
           unknown_outcome=v["unknown_outcome"], unknown_written=v["unknown_written"], half_written=v["half_written"],
           jobs_processed=out["outbox"]["jobs_processed"], jobs_expected=out["outbox"]["jobs_expected"])


def _mid_batch(url: str, scope: str, deadline_s: float = 60) -> str:
    """Block until the worker has claimed rows of the scope and is inside the transaction applying them (its effects
    written, not committed); returns the statement it is running."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'memload-worker'"
                " AND datname = current_database() AND backend_xid IS NOT NULL AND state <> 'idle'"
                # a statement of the effects transaction: fence lock, COPY, vector UPDATE, topic enqueue, publish
                " AND (query LIKE '%%FOR UPDATE OF o%%' OR query LIKE 'COPY memload_embed_tmp%%'"
                "      OR query LIKE 'UPDATE memory_nodes n SET embedding%%'"
                "      OR query LIKE '%%INSERT INTO memory_outbox%%'"
                "      OR query LIKE '%%SET payload = o.payload || p.patch, last_error = NULL%%')").fetchone()
            if row:
                return row[0]
            time.sleep(0.0005)
    raise AssertionError("never caught the worker inside a batch")


@pytest.mark.slow
def test_worker_killed_mid_batch(fresh_db_url: str, tmp_path: Path) -> None:
    url = fresh_db_url

    def kill_worker(run: Run) -> dict[str, Any]:
        # A backlog first, then a worker whose batches take long enough to be caught in the middle of one.
        run.wait_acks(120)
        worker = start_worker(url, tmp_path / "worker1.log", "--claim-timeout-ms", "1000", "--batch-size", "200",
                              "--embed-batch-rows", "200")
        run.procs.append(worker)
        statement = _mid_batch(url, run.scope)
        stop(worker, signal.SIGKILL)
        with psycopg.connect(url) as conn:
            claimed = conn.execute("SELECT count(*) FROM memory_outbox WHERE scope = %s AND published_at IS NULL"
                                   " AND claimed_at IS NOT NULL", (run.scope,)).fetchone()[0]
        assert claimed > 0, "the kill must leave claimed, unpublished jobs behind"
        run.worker = start_worker(url, tmp_path / "worker2.log", "--claim-timeout-ms", "1000")
        run.procs.append(run.worker)
        return {"killed_in": statement.split()[0] + " " + statement.split()[1], "claimed_at_kill": claimed}

    what, out = _fault_test(url, tmp_path, kill_worker, recalls=False, worker=False)
    w = _check_counts("write", out["write"], WRITES)
    v = _verify(out["write"])
    assert w["ok"] == WRITES and v["acknowledged"] == WRITES
    ob = out["outbox"]
    assert ob["jobs_processed"] == ob["jobs_expected"] == 2 * WRITES
    report("fault_worker_kill", **what, acknowledged=v["acknowledged"], found=v["found"],
           jobs_processed=ob["jobs_processed"], jobs_expected=ob["jobs_expected"],
           events_embedded_once=ob["events_embedded_once"], events_clustered_once=ob["events_clustered"])
