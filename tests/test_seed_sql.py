"""sql/seed_perf_dataset.sql (the Aionis kit's legacy psql seed) against the real server."""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from memload.config import SQL_DIR
from scripts.embedded_db import run_psql
from seeding.schema import partition_name
from tests.support.seed import SOURCE_TEXT, add_source_vector, snapshot

SCRIPT = str(SQL_DIR / "seed_perf_dataset.sql")


def test_psql_seed_script_copies_one_vector_into_n_events(fresh_db_url: str) -> None:
    src = add_source_vector(fresh_db_url, "src", SOURCE_TEXT)
    proc = run_psql(fresh_db_url, "-v", "src_scope=src", "-v", "scope=sqlperf", "-v", "n=300", "-f", SCRIPT,
                    check=False)
    assert proc.returncode == 0, proc.stderr
    second = run_psql(fresh_db_url, "-v", "src_scope=src", "-v", "scope=sqlperf", "-v", "n=50", "-f", SCRIPT,
                      check=False)
    assert second.returncode == 0, second.stderr
    with psycopg.connect(fresh_db_url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT embedding), bool_and(type = 'event' AND tier = 'hot'"
            " AND embedding_status = 'ready' AND embedding_model = 'perf:seed' AND embedding_ready_at IS NOT NULL"
            " AND text_summary LIKE 'perf seed event #%'), (array_agg(embedding))[1] FROM memory_nodes"
            " WHERE scope = 'sqlperf'").fetchone()
        commits = conn.execute("SELECT id, parent_id, actor, diff_json->>'n' FROM memory_commits"
                               " WHERE scope = 'sqlperf' ORDER BY created_at").fetchall()
        edges = conn.execute("SELECT count(*) FROM memory_edges WHERE scope = 'sqlperf'").fetchone()[0]
        leaf = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM memory_nodes WHERE scope = 'sqlperf'"
                            ).fetchall()
    assert rows[:3] == (350, 1, True) and np.array_equal(rows[3].to_numpy(), src)
    assert [c[2] for c in commits] == ["job:seed_perf_dataset"] * 2 and [c[3] for c in commits] == ["300", "50"]
    assert commits[0][1] is None and commits[1][1] == commits[0][0]  # chained to the scope's head
    assert edges == 0
    assert leaf == [(partition_name("memory_nodes", "sqlperf"),)]  # a new scope gets its own partition


def test_psql_seed_script_without_source_vector_fails_and_writes_nothing(fresh_db_url: str) -> None:
    proc = run_psql(fresh_db_url, "-v", "src_scope=empty", "-v", "scope=sqlperf", "-v", "n=10", "-f", SCRIPT,
                    check=False)
    assert proc.returncode != 0
    assert "No READY hot embedding found in src_scope=empty" in proc.stderr
    assert snapshot(fresh_db_url, "sqlperf") == snapshot(fresh_db_url, "never_used")


def test_psql_seed_script_on_shared_tables(aionis_db: str) -> None:
    from tests.support.aionis import OTHER_SCOPE, scope_counts

    other = scope_counts(aionis_db, OTHER_SCOPE)
    proc = run_psql(aionis_db, "-v", f"src_scope={OTHER_SCOPE}", "-v", "scope=sqlperf", "-v", "n=120", "-f", SCRIPT,
                    check=False)
    assert proc.returncode == 0, proc.stderr
    assert scope_counts(aionis_db, "sqlperf")["embedded"] == 120 and scope_counts(aionis_db, OTHER_SCOPE) == other
    with psycopg.connect(aionis_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()[0] == 0
