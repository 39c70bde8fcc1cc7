"""The outbox worker against the real server: embedding, topic clustering, dead-lettering, claims, crash safety.

Rows are written with SQL (benchmarks/bench_outbox_drain.py helpers, the same shape the API writes), so these tests do
not depend on the API. Each test works in its own scope (or its own database when it runs an all-scopes worker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from benchmarks.bench_outbox_drain import build_embed_backlog, create_commit, enqueue, insert_pending_nodes
from memload.config import REPO_ROOT
from memload.embedder import PROVIDER_NAME, fake_embed
from memload.errors import ExitCode
from memory_api.worker import OutboxWorker, WorkerConfig
from tests.support.cli import PYTHON, run_cli

CONTRACT_FIELDS = {"ok", "mode", "scope", "claimed", "processed", "topic_cluster_runs", "embed_backfill_runs",
                   "failed_marked", "topic_commit_hashes"}


def _scope(name: str) -> str:
    return f"wk_{name}_{uuid.uuid4().hex[:8]}"


def _conn(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    return conn


def _drain(url: str, config: WorkerConfig, max_batches: int = 200) -> list[dict]:
    lines = []
    with OutboxWorker(url, config) as w:
        for _ in range(max_batches):
            line = w.run_batch().as_json(mode="once", scope=config.scope)
            if line["claimed"] == 0 and line["failed_marked"] == 0:
                break
            lines.append(line)
    return lines


def test_embed_nodes_drain_vectors_status_and_publication(db_url: str) -> None:
    scope = _scope("embed")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 30, 10)
        # a node that is already ready: skipped, its vector untouched
        cid = create_commit(conn, scope)
        [ready_id] = insert_pending_nodes(conn, scope, cid, ["already ready"])
        conn.execute("UPDATE memory_nodes SET embedding = %s, embedding_status = 'ready', embedding_model = 'client'"
                     " WHERE scope = %s AND id = %s", (np.ones(1536, dtype=np.float32), scope, ready_id))
        skip_row = enqueue(conn, scope, cid, "embed_nodes", {"nodes": [{"id": ready_id, "text": "already ready"}]})

    lines = _drain(db_url, WorkerConfig(scope=scope))
    assert lines and CONTRACT_FIELDS <= set(lines[0])
    assert sum(x["claimed"] for x in lines) == 4 and sum(x["embed_backfill_runs"] for x in lines) == 4
    assert sum(x["nodes_embedded"] for x in lines) == 30
    assert all(x["ok"] and x["scope"] == scope for x in lines)

    with _conn(db_url) as conn:
        rows = conn.execute(
            "SELECT id::text, text_summary, embedding, embedding_status::text, embedding_model, embedding_attempts,"
            " embedding_ready_at IS NOT NULL FROM memory_nodes WHERE scope = %s AND id = ANY(%s::uuid[])",
            (scope, backlog.node_ids)).fetchall()
        assert len(rows) == 30
        for _id, text, vec, status, model, attempts, has_ready_at in rows:
            assert status == "ready" and model == PROVIDER_NAME == "fake:deterministic"
            assert attempts == 1 and has_ready_at
            np.testing.assert_array_equal(vec.to_numpy(), np.asarray(fake_embed(text), dtype=np.float32))
        untouched = conn.execute("SELECT embedding, embedding_model, embedding_attempts FROM memory_nodes"
                                 " WHERE scope = %s AND id = %s", (scope, ready_id)).fetchone()
        assert untouched[1] == "client" and untouched[2] == 0 and float(untouched[0].to_numpy()[0]) == 1.0
        out = conn.execute("SELECT id, published_at IS NOT NULL, claimed_at IS NOT NULL, attempts, payload"
                           " FROM memory_outbox WHERE scope = %s ORDER BY id", (scope,)).fetchall()
    assert all(r[1] and r[2] and r[3] == 1 for r in out)
    by_id = {r[0]: r[4]["embed_backfill"] for r in out}
    assert by_id[skip_row] == {"attempted": 0, "updated": 0, "skipped_already_ready": 1, "failed": 0, "status": "ok"}
    assert [by_id[i]["updated"] for i in backlog.outbox_ids] == [10, 10, 10]


def test_cli_once_prints_one_json_line(db_url: str) -> None:
    scope = _scope("cli")
    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 5, 1)
    # the contract's claim (embed rows limited by the batch size too)
    proc = run_cli("worker", "--once", "--scope", scope, "--batch-size", "3", "--embed-batch-rows", "3",
                   env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert CONTRACT_FIELDS <= set(data) and data["mode"] == "once" and data["ok"] is True
    assert data["claimed"] == data["processed"] == data["embed_backfill_runs"] == 3
    assert data["failed_marked"] == 0 and data["topic_commit_hashes"] == [] and data["elapsed_ms"] > 0


def test_cli_concurrency_splits_the_backlog_and_applies_each_job_once(db_url: str) -> None:
    """Two loops in one process: every row is claimed by exactly one of them (SKIP LOCKED) and every node is
    embedded once."""
    scope = _scope("conc")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 40, 1)
    # 2 loops x 10 batches x 4 rows = room for 80 rows: the 40 rows must be split, none taken twice
    proc = run_cli("worker", "--concurrency", "2", "--max-batches", "10", "--scope", scope, "--batch-size", "4",
                   "--embed-batch-rows", "4", "--poll-interval-ms", "20", env={"DATABASE_URL": db_url}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "concurrency=2" in proc.stderr
    lines = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    assert all(CONTRACT_FIELDS <= set(x) and x["ok"] and x["mode"] == "loop" for x in lines)
    assert sum(x["claimed"] for x in lines) == sum(x["processed"] for x in lines) == 40
    assert max(x["claimed"] for x in lines) <= 4 and len(lines) >= 10
    with _conn(db_url) as conn:
        out = conn.execute("SELECT count(*) FILTER (WHERE published_at IS NOT NULL AND attempts = 1), count(*)"
                           " FROM memory_outbox WHERE scope = %s", (scope,)).fetchone()
        ready = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s AND id = ANY(%s::uuid[])"
                             " AND embedding_status = 'ready' AND embedding_attempts = 1",
                             (scope, backlog.node_ids)).fetchone()[0]
    assert out == (40, 40) and ready == 40


def test_embed_claim_grows_to_the_node_budget(db_url: str) -> None:
    scope = _scope("budget")
    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 45, 1)  # API-shaped: one node per row
        build_embed_backlog(conn, scope, 60, 6)  # 10 rows of 6 nodes
    with OutboxWorker(db_url, WorkerConfig(scope=scope, batch_size=10, embed_batch_rows=40,
                                           embed_batch_nodes=70)) as w:
        first, second, third = (w.run_batch() for _ in range(3))
    # 10 rows, then 30 more (row cap 40); next: 5 one-node rows + 10 six-node rows = 65 nodes; nothing left
    assert (first.claimed, first.nodes_embedded) == (40, 40)
    assert (second.claimed, second.nodes_embedded) == (15, 65)
    assert third.claimed == 0

    # rows bigger than the budget: the first chunk (batch_size rows) is trimmed back to it, the surplus handed back
    scope = _scope("budget_big")
    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 300, 30)  # 10 rows of 30 nodes
    with OutboxWorker(db_url, WorkerConfig(scope=scope, batch_size=10, embed_batch_rows=40,
                                           embed_batch_nodes=70)) as w:
        s = w.run_batch()
    assert (s.claimed, s.nodes_embedded) == (2, 60)
    with _conn(db_url) as conn:
        rest = conn.execute("SELECT count(*), max(attempts), count(claimed_at) FROM memory_outbox WHERE scope = %s"
                            " AND published_at IS NULL", (scope,)).fetchone()
    assert rest == (8, 0, 0)


def test_bad_worker_flags_are_refused_naming_the_flag(db_url: str) -> None:
    proc = run_cli("worker", "--once", "--batch-size", "500", env={"DATABASE_URL": db_url})
    assert proc.returncode == 64 and "--batch-size" in proc.stderr and "out of range" in proc.stderr
    proc = run_cli("worker", "--once", env={"DATABASE_URL": db_url, "OUTBOX_MAX_ATTEMPTS": "many"})
    assert proc.returncode == 64 and "--max-attempts" in proc.stderr
    proc = run_cli("worker", "--once", env={"DATABASE_URL": db_url, "OUTBOX_WORKER_CONCURRENCY": "0"})
    assert proc.returncode == 64 and "--concurrency" in proc.stderr


def test_topic_clustering_creates_assigns_and_activates(db_url: str) -> None:
    scope = _scope("topics")
    texts = ["deploy failed on friday"] * 6 + ["user likes green tea", "quarterly report due"]
    with _conn(db_url) as conn:
        cid = create_commit(conn, scope)
        ids = insert_pending_nodes(conn, scope, cid, texts)
        enqueue(conn, scope, cid, "embed_nodes", {"nodes": [{"id": i, "text": t} for i, t in zip(ids, texts,
                                                                                               strict=True)],
                                                  "after_topic_cluster_event_ids": ids})
    lines = _drain(db_url, WorkerConfig(scope=scope))
    hashes = [h for x in lines for h in x["topic_commit_hashes"]]
    assert sum(x["topic_cluster_runs"] for x in lines) == 1 and len(hashes) == 1

    with _conn(db_url) as conn:
        topics = conn.execute(
            "SELECT id::text, slots, embedding_status::text, embedding FROM memory_nodes"
            " WHERE scope = %s AND type = 'topic' ORDER BY (slots->>'member_count')::int DESC", (scope,)).fetchall()
        assert [t[1]["member_count"] for t in topics] == [6, 1, 1]
        assert [t[1]["topic_state"] for t in topics] == ["active", "draft", "draft"]
        assert all(t[2] == "ready" for t in topics)
        # the active topic's vector is the mean of its (identical) members
        np.testing.assert_allclose(topics[0][3].to_numpy(), np.asarray(fake_embed(texts[0]), dtype=np.float32),
                                   rtol=1e-5, atol=1e-6)
        part_of = conn.execute(
            "SELECT e.src_id::text, e.dst_id::text FROM memory_edges e WHERE e.scope = %s AND e.type = 'part_of'",
            (scope,)).fetchall()
        assert sorted(s for s, _ in part_of) == sorted(ids)  # every event in exactly one topic
        assert {d for s, d in part_of if s in ids[:6]} == {topics[0][0]}
        derived = conn.execute("SELECT count(*) FROM memory_edges WHERE scope = %s AND type = 'derived_from'",
                               (scope,)).fetchone()[0]
        assert derived == 8
        commit = conn.execute("SELECT id, actor, parent_id FROM memory_commits WHERE scope = %s AND commit_hash = %s",
                              (scope, hashes[0])).fetchone()
        assert commit is not None and commit[1] == "job" and commit[2] == uuid.UUID(cid)
        assert all(t[1]["last_cluster_commit_hash"] == hashes[0] for t in topics)
        job = conn.execute("SELECT payload->'topic_cluster' FROM memory_outbox WHERE scope = %s"
                           " AND event_type = 'topic_cluster'", (scope,)).fetchone()[0]
        assert (job["processed_events"], job["assigned"], job["created_topics"], job["promoted"]) == (8, 8, 3, 1)
        # a second job for the same, already-assigned events is a no-op: no commit, no membership counted twice
        enqueue(conn, scope, cid, "topic_cluster", {"event_ids": ids, "again": True})
    again = _drain(db_url, WorkerConfig(scope=scope))
    assert sum(x["processed"] for x in again) == 1 and sum(x["topic_cluster_runs"] for x in again) == 0
    with _conn(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory_commits WHERE scope = %s AND actor = 'job'",
                            (scope,)).fetchone()[0] == 1
        total = conn.execute("SELECT sum((slots->>'member_count')::int) FROM memory_nodes WHERE scope = %s"
                             " AND type = 'topic'", (scope,)).fetchone()[0]
        assert total == 8


def test_dead_letter_after_max_attempts(db_url: str) -> None:
    scope = _scope("dead")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 2, 2)
        cid = backlog.commit_id
        stale = enqueue(conn, scope, cid, "topic_cluster", {"event_ids": []})
        live = enqueue(conn, scope, cid, "topic_cluster", {"event_ids": ["x"]})
        conn.execute("UPDATE memory_outbox SET attempts = 3 WHERE scope = %s AND id = %s", (scope, stale))
        conn.execute("UPDATE memory_outbox SET attempts = 3, claimed_at = now() WHERE scope = %s AND id = %s",
                     (scope, live))
    # no embedding provider: every attempt is a retryable error, until the attempts run out
    cfg = WorkerConfig(scope=scope, max_attempts=3, embedding_provider="none")
    with OutboxWorker(db_url, cfg) as w:
        first = w.run_batch()
        assert first.failed_marked == 1 and first.claimed == 1 and first.retried == 1
        assert [w.run_batch().retried for _ in range(2)] == [1, 1]
        last = w.run_batch()
        assert last.failed_marked == 1 and last.claimed == 0
    with _conn(db_url) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, failed_reason, attempts, published_at IS NULL, last_error FROM memory_outbox"
            " WHERE scope = %s", (scope,)).fetchall()}
        nodes = conn.execute("SELECT embedding_status::text, embedding_attempts, embedding_last_error"
                             " FROM memory_nodes WHERE scope = %s", (scope,)).fetchall()
    assert rows[backlog.outbox_ids[0]] == ("max_attempts_exceeded", 3, True, "embedding_provider_unavailable")
    assert rows[stale][0] == "max_attempts_exceeded"
    assert rows[live][0] is None  # its claim is live: in flight elsewhere, not dead-lettered under the other worker
    assert nodes == [("pending", 3, "embedding_provider_unavailable")] * 2


def test_claim_timeout_reclaims_only_expired_claims(db_url: str) -> None:
    scope = _scope("reclaim")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 2, 1)
        expired, live = backlog.outbox_ids
        conn.execute("UPDATE memory_outbox SET attempts = 1, claimed_at = now() - interval '10 minutes'"
                     " WHERE scope = %s AND id = %s", (scope, expired))
        conn.execute("UPDATE memory_outbox SET attempts = 1, claimed_at = now() WHERE scope = %s AND id = %s",
                     (scope, live))
    with OutboxWorker(db_url, WorkerConfig(scope=scope)) as w:
        s = w.run_batch()
    assert s.claimed == 1 and s.published == 1
    with OutboxWorker(db_url, WorkerConfig(scope=scope, claim_timeout_ms=1)) as w:
        time.sleep(0.01)
        s = w.run_batch()
    assert s.claimed == 1 and s.published == 1
    with _conn(db_url) as conn:
        rows = conn.execute("SELECT id, attempts, published_at IS NOT NULL FROM memory_outbox WHERE scope = %s"
                            " ORDER BY id", (scope,)).fetchall()
    assert rows == [(expired, 2, True), (live, 2, True)]


def test_fence_skips_a_job_reclaimed_by_another_worker(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scope = _scope("fence")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 3, 3, cluster=True)
    w = OutboxWorker(db_url, WorkerConfig(scope=scope))
    original = OutboxWorker._claim

    def claim_then_lose_it(self: OutboxWorker, conn: psycopg.Connection) -> list:
        rows = original(self, conn)
        with _conn(db_url) as other:  # "another worker" re-claims after our claim expired
            other.execute("UPDATE memory_outbox SET claimed_at = now() + interval '1 second', attempts = attempts + 1"
                          " WHERE scope = %s", (scope,))
        return rows

    monkeypatch.setattr(OutboxWorker, "_claim", claim_then_lose_it)
    with w:
        s = w.run_batch()
    assert s.claimed == 1 and s.fence_lost == 1 and s.published == 0 and s.nodes_embedded == 0
    with _conn(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s AND embedding_status = 'pending'",
                            (scope,)).fetchone()[0] == 3
        assert conn.execute("SELECT published_at FROM memory_outbox WHERE scope = %s AND id = %s",
                            (scope, backlog.outbox_ids[0])).fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM memory_outbox WHERE scope = %s AND event_type = 'topic_cluster'",
                            (scope,)).fetchone()[0] == 0


def test_stop_finishes_current_job_and_hands_back_the_rest(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scope = _scope("stop")
    with _conn(db_url) as conn:
        cid = create_commit(conn, scope)
        ids = [enqueue(conn, scope, cid, "topic_cluster", {"event_ids": [str(uuid.uuid4())], "n": n})
               for n in range(3)]
    w = OutboxWorker(db_url, WorkerConfig(scope=scope))
    original = OutboxWorker._single

    def single_then_sigterm(self: OutboxWorker, *args: object) -> None:
        original(self, *args)
        self.stop.set()  # what the SIGTERM handler does, arriving while the first job runs

    monkeypatch.setattr(OutboxWorker, "_single", single_then_sigterm)
    with w:
        s = w.run_batch()
    assert (s.claimed, s.processed, s.published, s.released) == (3, 1, 1, 2)
    with _conn(db_url) as conn:
        rows = conn.execute("SELECT id, published_at IS NOT NULL, claimed_at IS NULL, attempts FROM memory_outbox"
                            " WHERE scope = %s ORDER BY id", (scope,)).fetchall()
    assert rows == [(ids[0], True, False, 1), (ids[1], False, True, 0), (ids[2], False, True, 0)]


def test_poison_row_in_a_batch_only_fails_itself(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scope = _scope("poison")
    with _conn(db_url) as conn:
        backlog = build_embed_backlog(conn, scope, 4, 2)
        [poison_node] = insert_pending_nodes(conn, scope, backlog.commit_id, ["POISON"])
        bad = enqueue(conn, scope, backlog.commit_id, "embed_nodes", {"nodes": [{"id": poison_node, "text": "POISON"}]})
    from memory_api import worker as worker_module

    real = worker_module.embed_text

    def faulty(text: str, *args: object) -> str:  # a processing fault on one row's data
        if text == "POISON":
            raise ValueError("cannot embed this")
        return real(text, *args)

    monkeypatch.setattr(worker_module, "embed_text", faulty)
    with OutboxWorker(db_url, WorkerConfig(scope=scope)) as w:
        s = w.run_batch()
    assert s.claimed == 3 and s.processed == 3 and s.errors == 1 and s.published == 2 and s.nodes_embedded == 4
    with _conn(db_url) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT id, published_at IS NOT NULL, claimed_at IS NULL, last_error"
                                                  " FROM memory_outbox WHERE scope = %s", (scope,)).fetchall()}
        poison_status = conn.execute("SELECT embedding_status::text FROM memory_nodes WHERE scope = %s AND id = %s",
                                     (scope, poison_node)).fetchone()[0]
    assert rows[bad] == (False, True, "ValueError: cannot embed this")  # released for a retry, error recorded
    assert all(rows[i] == (True, False, None) for i in backlog.outbox_ids)
    assert poison_status == "pending"


def _worker_proc(url: str, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen([PYTHON, "-m", "scripts.cli", "worker", *args], cwd=REPO_ROOT, env=env,
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def _wait_blocked_on(url: str, blocker_pid: int, deadline_s: float = 120.0) -> str:
    """Block until a worker backend waits for a lock held by `blocker_pid` (the test's transaction), i.e. it sits
    inside its processing transaction, past the claim, with uncommitted work; returns the statement it waits in.
    A state to wait for, not a moment to catch: the worker cannot leave it before the test releases the lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'memload-worker'"
                " AND datname = current_database() AND backend_xid IS NOT NULL AND %s = ANY(pg_blocking_pids(pid))",
                (blocker_pid,)).fetchone()
            if row:
                return row[0]
            time.sleep(0.01)
    raise AssertionError("the worker never reached the node rows the test holds locked")


def test_sigkill_mid_batch_then_restart_processes_every_job_exactly_once(fresh_db_url: str) -> None:
    url = fresh_db_url
    scope = "crash"
    distinct = [f"crash topic {k}" for k in range(6)]
    with _conn(url) as conn:
        cid = create_commit(conn, scope)
        texts = [distinct[i % len(distinct)] for i in range(240)]
        ids = insert_pending_nodes(conn, scope, cid, texts)
        for start in range(0, len(ids), 4):
            chunk = list(zip(ids[start:start + 4], texts[start:start + 4], strict=True))
            # force_reembed: applying a job twice would leave embedding_attempts = 2
            enqueue(conn, scope, cid, "embed_nodes", {"nodes": [{"id": i, "text": t} for i, t in chunk],
                                                      "force_reembed": True,
                                                      "after_topic_cluster_event_ids": [i for i, _ in chunk]})
    n_jobs = len(ids) // 4

    # Park the worker inside its second batch: the test locks one node of that batch's jobs (rows 5-8, claimed
    # after the first four embed rows), so the worker's vector UPDATE waits, mid-transaction, until the kill.
    locker = psycopg.connect(url)
    locker.execute("SELECT id FROM memory_nodes WHERE scope = %s AND id = %s FOR UPDATE", (scope, ids[4 * 4]))
    proc = _worker_proc(url, "--batch-size", "4", "--embed-batch-rows", "4")
    try:
        first = proc.stdout.readline()
        if not first:
            pytest.fail(f"worker exited before its first batch: {proc.stderr.read()}")
        assert json.loads(first)["claimed"] == 4
        waiting_in = _wait_blocked_on(url, locker.info.backend_pid)
        assert waiting_in.startswith("UPDATE memory_nodes n SET embedding"), waiting_in
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        locker.rollback()  # the orphaned backend finishes its statement, finds its client gone and rolls back
        locker.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    with _conn(url) as conn:
        in_flight = conn.execute("SELECT count(*) FROM memory_outbox WHERE published_at IS NULL"
                                 " AND claimed_at IS NOT NULL").fetchone()[0]
        unpublished = conn.execute("SELECT count(*) FROM memory_outbox WHERE published_at IS NULL").fetchone()[0]
    assert in_flight > 0 and unpublished > 0  # the kill left claimed, unapplied jobs behind

    # restart: expired claims are re-claimed; stop with SIGTERM once everything is published
    proc = _worker_proc(url, "--batch-size", "20", "--claim-timeout-ms", "1000", "--poll-interval-ms", "100",
                        stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with _conn(url) as conn:
                left = conn.execute("SELECT count(*) FROM memory_outbox WHERE published_at IS NULL").fetchone()[0]
            if left == 0:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert left == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        err = proc.stderr.read()
        assert "finishing the current job" in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    with _conn(url) as conn:
        outbox = conn.execute("SELECT event_type, count(*), count(failed_at), count(published_at)"
                              " FROM memory_outbox GROUP BY 1 ORDER BY 1").fetchall()
        assert outbox == [("embed_nodes", n_jobs, 0, n_jobs), ("topic_cluster", n_jobs, 0, n_jobs)]
        attempts = conn.execute("SELECT embedding_attempts, embedding_status::text, count(*) FROM memory_nodes"
                                " WHERE type = 'event' GROUP BY 1, 2").fetchall()
        assert attempts == [(1, "ready", len(ids))]
        part_of = conn.execute("SELECT count(*), count(DISTINCT src_id) FROM memory_edges WHERE type = 'part_of'"
                               ).fetchone()
        assert part_of == (len(ids), len(ids))
        members = conn.execute("SELECT count(*), sum((slots->>'member_count')::int) FROM memory_nodes"
                               " WHERE type = 'topic'").fetchone()
        assert members == (len(distinct), len(ids))
        job_commits = conn.execute("SELECT count(*), count(DISTINCT commit_hash) FROM memory_commits"
                                   " WHERE actor = 'job'").fetchone()
        runs = conn.execute("SELECT count(*) FROM memory_outbox WHERE event_type = 'topic_cluster'"
                            " AND payload->>'topic_commit_hash' IS NOT NULL").fetchone()[0]
        assert job_commits == (runs, runs) and runs == n_jobs


def test_worker_bench_in_process_and_spawn(db_url: str, tmp_path: Path) -> None:
    scope = _scope("bench")
    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 50, 1)
    out = tmp_path / "worker_baseline.json"
    proc = run_cli("worker-bench", "--scope", scope, "--iterations", "3", "--out", str(out),
                   "--embed-batch-rows", "20", env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data == json.loads(proc.stdout)
    assert data["ok"] is True and data["mode"] == "in_process" and data["iterations"] == 3
    assert data["unit"] == "jobs/s" and data["scope"] == scope and data["scope_nodes"] == 50
    assert data["outbox_before"] == {"unpublished": 50, "failed": 0, "claimed": 0, "by_job_type": {"embed_nodes": 50}}
    assert data["outbox_after"] == {"unpublished": 0, "failed": 0, "claimed": 0, "by_job_type": {}}
    assert data["enqueued_during_run"] == {}
    t = data["totals"]
    assert {"claimed", "processed", "topic_cluster_runs", "embed_backfill_runs", "failed_marked", "elapsed_ms_sum",
            "elapsed_ms_wall", "throughput_processed_per_sec"} <= set(t)
    assert [r["processed"] for r in data["per_iteration"]] == [20, 20, 10]
    assert [r["job_types"] for r in data["per_iteration"]] == [{"embed_nodes": n} for n in (20, 20, 10)]
    assert t["processed"] == t["claimed"] == t["embed_backfill_runs"] == 50 and t["failed"] == 0
    assert t["by_job_type"] == {"embed_nodes": {"processed": 50, "failed": 0}}
    assert t["elapsed_ms_sum"] == pytest.approx(sum(r["elapsed_ms"] for r in data["per_iteration"]), abs=0.01)
    assert t["throughput_processed_per_sec"] == pytest.approx(50 / (t["elapsed_ms_sum"] / 1000), rel=1e-3)
    assert {"iteration", "claimed", "processed", "failed_marked", "elapsed_ms",
            "throughput_processed_per_sec"} <= set(data["per_iteration"][0])

    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 6, 1)
    proc = run_cli("worker-bench", "--scope", scope, "--iterations", "2", "--spawn", "--batch-size", "4",
                   "--embed-batch-rows", "4", env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    spawned = json.loads(proc.stdout)
    assert spawned["mode"] == "command" and spawned["command"].startswith("memload worker --once --scope")
    assert "--embed-batch-rows 4" in spawned["command"]
    assert [r["processed"] for r in spawned["per_iteration"]] == [4, 2]
    assert spawned["outbox_after"]["unpublished"] == 0


def test_worker_bench_refuses_bad_input_before_touching_anything(db_url: str) -> None:
    scope = _scope("benchbad")
    with _conn(db_url) as conn:
        build_embed_backlog(conn, scope, 3, 1)
    proc = run_cli("worker-bench", "--scope", scope, "--iterations", "0", env={"DATABASE_URL": db_url})
    assert proc.returncode == ExitCode.USAGE and "--iterations" in proc.stderr and "--backlog-only" in proc.stderr
    proc = run_cli("worker-bench", "--scope", scope, "--iterations", "201", env={"DATABASE_URL": db_url})
    assert proc.returncode in (ExitCode.USAGE, 2) and "--iterations" in proc.stderr  # 2: argparse's type check
    proc = run_cli("worker-bench", "--scope", scope, "--backlog-writes", "3", "--base-url", "http://10.1.2.3:3001",
                   env={"DATABASE_URL": db_url})
    assert proc.returncode == ExitCode.USAGE and "--base-url" in proc.stderr and "loopback" in proc.stderr
    proc = run_cli("worker-bench", "--scope", scope, "--observe", "--worker-command", "true",
                   env={"DATABASE_URL": db_url})
    assert proc.returncode == ExitCode.USAGE and "--worker-command and --observe" in proc.stderr
    with _conn(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory_outbox WHERE scope = %s AND published_at IS NULL",
                            (scope,)).fetchone()[0] == 3
