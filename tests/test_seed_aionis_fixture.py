"""The Aionis-shaped fixture itself: the schema applies, the stand-in worker drains an Aionis write backlog, and the
target-shaped explain script runs."""

from __future__ import annotations

import json
import subprocess

import psycopg

from scripts.embedded_db import run_psql
from tests.support.aionis import (
    COVER_INDEX,
    EXPLAIN_SQL,
    HNSW_INDEXES,
    OTHER_SCOPE,
    enqueue_writes,
    index_definitions,
    scope_counts,
    stand_in_worker_command,
)


def test_schema_has_the_targets_shape(aionis_db: str) -> None:
    defs = index_definitions(aionis_db)
    assert "INCLUDE (scope)" in defs[COVER_INDEX]
    assert all(name in defs and "hnsw" in defs[name] for name in HNSW_INDEXES)
    with psycopg.connect(aionis_db) as conn:
        partitioned = conn.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()[0]
    assert partitioned == 0
    other = scope_counts(aionis_db, OTHER_SCOPE)
    assert other["nodes"] == 8 and other["embedded"] == 7 and other["edges"] == 12
    assert set(other["outbox"]) == {"embed_nodes", "topic_cluster", "associative_link"}


def test_stand_in_worker_drains_writes_of_one_scope(aionis_db: str) -> None:
    scope = "stand_in_scope"
    enqueue_writes(aionis_db, scope, 6)
    before_other = scope_counts(aionis_db, OTHER_SCOPE)
    lines = []
    for _ in range(6):
        out = subprocess.run(stand_in_worker_command(aionis_db, scope, "--once", "--batch-size", "10"),
                             capture_output=True, text=True, check=True, timeout=120)
        lines += [json.loads(line) for line in out.stdout.splitlines()]
        if lines[-1]["claimed"] == 0:
            break
    counts = scope_counts(aionis_db, scope)
    assert counts["embedded"] >= 6
    assert {t: c["unpublished"] for t, c in counts["outbox"].items()} == {
        "embed_nodes": 0, "associative_link": 0, "topic_cluster": 0}
    assert counts["outbox"]["topic_cluster"]["total"] == 6  # follow-up jobs enqueued by embed_nodes
    assert sum(line["processed"] for line in lines) == 18 and all(line["failed"] == 0 for line in lines)
    assert counts["edges"] > 0
    assert scope_counts(aionis_db, OTHER_SCOPE) == before_other


def test_stand_in_worker_counts_injected_failures(aionis_db: str) -> None:
    scope = "stand_in_fail"
    enqueue_writes(aionis_db, scope, 3)
    out = subprocess.run(stand_in_worker_command(aionis_db, scope, "--once", "--batch-size", "20",
                                                 "--fail-job-type", "associative_link"),
                         capture_output=True, text=True, check=True, timeout=120)
    line = json.loads(out.stdout.splitlines()[-1])
    assert line["by_job_type"]["associative_link"] == {"processed": 0, "failed": 3, "retried": 0}
    assert line["by_job_type"]["embed_nodes"]["processed"] == 3 and line["processed"] == 3


def test_explain_script_runs_with_psql_variables(aionis_db: str) -> None:
    out = run_psql(aionis_db, "-v", f"scope={OTHER_SCOPE}", "-v", "lim=5", "-v", "force_index=1",
                   "-f", str(EXPLAIN_SQL))
    assert "== stage2_neighborhood" in out.stdout
    assert out.stdout.count("Execution Time:") == 2
    assert "memory_edges" in out.stdout
