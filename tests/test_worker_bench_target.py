"""`memload worker-bench` against an Aionis-shaped target: the target's own worker (the stand-in external worker of
tests/fixtures/aionis) is timed with `--worker-command` or watched with `--observe`; memload runs no job itself.

The backlog is what Aionis writes leave behind (embed_nodes + associative_link per write) plus one job of a type the
worker is told to fail for good, so the counts show every job type, and the failed job as failed, never processed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from memload.config import REPO_ROOT
from memload.errors import ExitCode
from tests.support.aionis import OTHER_SCOPE, enqueue_writes, scope_counts, stand_in_worker_command
from tests.support.cli import PYTHON, run_cli

SCOPE = "wbench"
WRITES = 6
DOOMED = "doomed_job"  # the stand-in worker is told to fail every job of this type (failed_at set)


def _backlog(url: str) -> None:
    enqueue_writes(url, SCOPE, WRITES)
    with psycopg.connect(url) as conn:
        cid = conn.execute("SELECT commit_id FROM memory_outbox WHERE scope = %s LIMIT 1", (SCOPE,)).fetchone()[0]
        conn.execute("INSERT INTO memory_outbox (scope, commit_id, event_type, payload, job_key, payload_sha256)"
                     " VALUES (%s, %s, %s, %s, 'doomed-1', 'x')", (SCOPE, cid, DOOMED, Jsonb({"n": 1})))


def _expected_by_type() -> dict[str, dict[str, int]]:
    return {"associative_link": {"processed": WRITES, "failed": 0}, DOOMED: {"processed": 0, "failed": 1},
            "embed_nodes": {"processed": WRITES, "failed": 0}, "topic_cluster": {"processed": WRITES, "failed": 0}}


def _check_counts(data: dict) -> None:
    t = data["totals"]
    assert data["unit"] == "jobs/s" and data["scope"] == SCOPE and data["scope_nodes"] == WRITES
    assert t["by_job_type"] == _expected_by_type()
    assert t["processed"] == 3 * WRITES and t["failed"] == 1  # the failed job is not in processed
    assert t["throughput_processed_per_sec"] == round(t["processed"] / (t["elapsed_ms_sum"] / 1000), 2)
    assert data["enqueued_during_run"] == {"topic_cluster": WRITES}  # follow-up jobs the worker queued
    assert data["outbox_before"]["by_job_type"] == {"associative_link": WRITES, DOOMED: 1, "embed_nodes": WRITES}
    assert data["outbox_after"]["by_job_type"] == {DOOMED: 1} and data["outbox_after"]["failed"] == 1
    drained: dict[str, int] = {}
    for r in data["per_iteration"]:
        for k, v in r["job_types"].items():
            drained[k] = drained.get(k, 0) + v
    assert drained == {"associative_link": WRITES, "embed_nodes": WRITES, "topic_cluster": WRITES}
    assert sum(r["failed"] for r in data["per_iteration"]) == 1


def _outbox_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, attempts, claimed_at, published_at, failed_at, payload FROM memory_outbox"
                            " WHERE scope = %s ORDER BY id", (SCOPE,)).fetchall()


def test_worker_command_runs_the_targets_worker_once_per_iteration(aionis_db: str, tmp_path: Path) -> None:
    _backlog(aionis_db)
    other = scope_counts(aionis_db, OTHER_SCOPE)
    # no --scope: the stand-in takes MEMORY_SCOPE from memload, as the Aionis kit passes it to its worker
    cmd = shlex.join(stand_in_worker_command(aionis_db, None, "--once", "--fail-job-type", DOOMED))
    out = tmp_path / "worker_baseline.json"
    proc = run_cli("worker-bench", "--scope", SCOPE, "--iterations", "3", "--worker-command", cmd, "--out", str(out),
                   env={"DATABASE_URL": aionis_db}, timeout=300)
    assert proc.returncode == ExitCode.ERROR, proc.stderr  # a job failed: not ok
    data = json.loads(out.read_text())
    assert data["mode"] == "command" and data["command"] == cmd and data["ok"] is False
    _check_counts(data)
    first = data["per_iteration"][0]
    assert first["job_types"] == {"associative_link": WRITES, "embed_nodes": WRITES}
    assert first["failed_job_types"] == {DOOMED: 1} and first["enqueued"] == {"topic_cluster": WRITES}
    assert first["worker_reported"]["processed"] == 2 * WRITES  # what the worker printed, kept apart
    assert data["per_iteration"][1]["job_types"] == {"topic_cluster": WRITES}
    assert data["per_iteration"][2]["processed"] == 0
    assert "jobs/s" in proc.stderr and "rows/s" not in proc.stderr
    assert scope_counts(aionis_db, OTHER_SCOPE) == other


def test_worker_command_that_does_nothing_measures_nothing_and_touches_nothing(aionis_db: str) -> None:
    _backlog(aionis_db)
    before = _outbox_rows(aionis_db)
    proc = run_cli("worker-bench", "--scope", SCOPE, "--iterations", "2", "--worker-command", "true",
                   env={"DATABASE_URL": aionis_db}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["totals"]["processed"] == data["totals"]["failed"] == 0 and data["totals"]["by_job_type"] == {}
    assert _outbox_rows(aionis_db) == before  # memload claimed, ran and published nothing itself


def test_observe_measures_the_running_targets_worker(aionis_db: str, tmp_path: Path) -> None:
    _backlog(aionis_db)
    other = scope_counts(aionis_db, OTHER_SCOPE)
    out = tmp_path / "worker_baseline.json"
    env = {**os.environ, "DATABASE_URL": aionis_db}
    bench = subprocess.Popen(
        [PYTHON, "-m", "scripts.cli", "worker-bench", "--scope", SCOPE, "--observe", "--observe-interval-s", "0.2",
         "--observe-idle-s", "60", "--observe-timeout-s", "240", "--out", str(out)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        # the target's worker starts once memload has its first look at the outbox (nothing drained unseen)
        for line in bench.stderr:
            if "observe: watching scope" in line:
                break
        else:
            raise AssertionError(f"worker-bench exited early: {bench.wait()}")
        assert f"{2 * WRITES + 1} open jobs" in line
        worker = subprocess.Popen(stand_in_worker_command(aionis_db, SCOPE, "--poll-interval-ms", "100",
                                                          "--fail-job-type", DOOMED),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, stderr = bench.communicate(timeout=300)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
    assert bench.returncode == ExitCode.ERROR, stderr  # a job failed: not ok
    data = json.loads(out.read_text())
    assert data["mode"] == "observe" and data["observe"]["stop_reason"] == "empty"
    _check_counts(data)
    assert data["totals"]["elapsed_ms_sum"] > 0
    assert scope_counts(aionis_db, OTHER_SCOPE) == other


def test_memloads_own_worker_is_refused_on_a_target_that_is_not_memload(aionis_db: str) -> None:
    _backlog(aionis_db)
    before = _outbox_rows(aionis_db)
    for extra in ([], ["--spawn"]):
        proc = run_cli("worker-bench", "--scope", SCOPE, *extra, env={"DATABASE_URL": aionis_db}, timeout=120)
        assert proc.returncode == ExitCode.ERROR and proc.stdout == ""
        [line] = proc.stderr.strip().splitlines()
        assert "not memload's reference API" in line and "--worker-command" in line and "--observe" in line
    assert _outbox_rows(aionis_db) == before


def _health_server(body: dict) -> tuple[str, object]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def test_reference_target_is_what_health_says_else_the_schema(db_url: str, aionis_db: str) -> None:
    from scripts.worker_bench import reference_target

    cases = [({"ok": True, "server": "memload-reference", "version": "x"}, aionis_db, True),
             ({"ok": True, "server": "aionis"}, db_url, False),
             ({"ok": True}, db_url, True),  # an /health that names no server: the schema decides
             ({"ok": True}, aionis_db, False)]
    for body, url, expected in cases:
        base, server = _health_server(body)
        try:
            assert reference_target(url, base)[0] is expected, (body, url)
        finally:
            server.shutdown()  # type: ignore[attr-defined]
    assert reference_target(db_url, None) == (True, "the database has memload's reference schema")
    assert reference_target(aionis_db, None)[0] is False


def test_observe_builds_the_backlog_through_the_api_while_the_worker_runs(db_url: str, start_api) -> None:
    """The matrix's way with --observe: backlog writes through the API, the target's worker (here memload's own,
    started as a separate process, the way a deployment runs it) drains them; everything queued during the run,
    writes and follow-up jobs, is counted once, by job type."""
    api = start_api()
    scope = f"wb_obs_{os.urandom(4).hex()}"
    env = {**os.environ, "DATABASE_URL": db_url}
    worker = subprocess.Popen([PYTHON, "-m", "scripts.cli", "worker", "--scope", scope, "--poll-interval-ms", "100"],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc = run_cli("worker-bench", "--scope", scope, "--observe", "--backlog-writes", "5",
                       "--backlog-concurrency", "2", "--base-url", api.base_url, "--observe-interval-s", "0.2",
                       "--observe-idle-s", "60", env={"DATABASE_URL": db_url}, timeout=300)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mode"] == "observe" and data["observe"]["stop_reason"] == "empty" and data["ok"] is True
    assert data["backlog"]["ok"] == 5 and data["outbox_before"]["unpublished"] == 0
    assert data["enqueued_during_run"] == {"embed_nodes": 5, "topic_cluster": 5}
    assert data["totals"]["by_job_type"] == {"embed_nodes": {"processed": 5, "failed": 0},
                                             "topic_cluster": {"processed": 5, "failed": 0}}
    assert data["outbox_after"]["unpublished"] == 0 and data["scope_nodes"] == 0


def test_ledger_finds_a_job_whose_transaction_commits_after_a_higher_id(aionis_db: str) -> None:
    """Concurrent writers: a lower outbox id can become visible after a higher one was seen; it is still counted."""
    from scripts.worker_bench import advance, take_ledger

    _backlog(aionis_db)  # for a commit id
    with psycopg.connect(aionis_db, autocommit=True) as conn, psycopg.connect(aionis_db) as slow, \
            psycopg.connect(aionis_db, autocommit=True) as fast:
        cid = conn.execute("SELECT commit_id FROM memory_outbox WHERE scope = %s LIMIT 1", (SCOPE,)).fetchone()[0]
        ledger = take_ledger(conn, SCOPE)
        insert = ("INSERT INTO memory_outbox (scope, commit_id, event_type, payload, job_key, payload_sha256)"
                  " VALUES (%s, %s, 'late_job', '{}', %s, 'x') RETURNING id")
        low = slow.execute(insert, (SCOPE, cid, "late-low")).fetchone()[0]  # open transaction: not visible yet
        high = fast.execute(insert, (SCOPE, cid, "late-high")).fetchone()[0]
        assert low < high
        ledger, first = advance(conn, SCOPE, ledger, settled=False)
        assert first.enqueued == {"late_job": 1} and high in ledger.open_rows
        slow.commit()
        conn.execute("UPDATE memory_outbox SET published_at = now() WHERE id = ANY(%s)", ([low, high],))
        ledger, second = advance(conn, SCOPE, ledger, settled=True)
        assert second.enqueued == {"late_job": 1} and second.processed == {"late_job": 2}
        _, third = advance(conn, SCOPE, ledger, settled=True)
        assert not third.enqueued and not third.processed  # each job counted once
