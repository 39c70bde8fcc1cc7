"""`memload seed` on a target that is not memload's own schema: the Aionis-shaped fixture (plain shared tables, the
target's own indexes and constraints, another scope's rows), next to memload's partitioned layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from memload.embedder import fake_embed
from tests.support.aionis import COVER_INDEX, HNSW_INDEXES, OTHER_SCOPE, index_definitions
from tests.support.cli import run_cli

EVENTS, TOPICS = 150, 5


def scope_fingerprint(url: str, scope: str) -> tuple:
    """Every row of one scope, hashed (nodes with their vectors, edges, commits, outbox)."""
    with psycopg.connect(url) as conn:
        return tuple(conn.execute(q, (scope,)).fetchone()[0] for q in (
            "SELECT md5(string_agg(id::text || coalesce(embedding::text, '') || embedding_status::text, ','"
            " ORDER BY id)) FROM memory_nodes WHERE scope = %s",
            "SELECT md5(string_agg(id::text || src_id::text || dst_id::text, ',' ORDER BY id)) FROM memory_edges"
            " WHERE scope = %s",
            "SELECT md5(string_agg(id::text || commit_hash, ',' ORDER BY id)) FROM memory_commits WHERE scope = %s",
            "SELECT md5(string_agg(id::text || event_type || coalesce(published_at::text, ''), ',' ORDER BY id))"
            " FROM memory_outbox WHERE scope = %s",
        ))


def catalog(url: str) -> dict[str, object]:
    """Index definitions and validity of the seeded tables, and whether anything is partitioned."""
    with psycopg.connect(url) as conn:
        valid = dict(conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = ANY ('{memory_nodes,memory_edges,memory_commits}'::regclass[])").fetchall())
        partitioned = conn.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'memory_%'"
                              ).fetchone()[0]
    defs = {t: index_definitions(url, t) for t in ("memory_nodes", "memory_edges", "memory_commits")}
    return {"defs": defs, "valid": valid, "partitioned": partitioned, "tables": tables}


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (progress log lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith("memload: error")]


def index_sizes(url: str, names: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {n: conn.execute("SELECT pg_relation_size(%s::regclass)", (n,)).fetchone()[0] for n in names}


def seed_cli(url: str, tmp_path: Path, scope: str, *extra: str) -> tuple[int, dict | None, str]:
    out = tmp_path / f"seed_{scope}.json"
    proc = run_cli("seed", "--scope", scope, "--src-scope", OTHER_SCOPE, "--events", str(EVENTS), "--topics",
                   str(TOPICS), "--seed", "5", "--out", str(out), "--query-set-out", str(tmp_path / f"qs_{scope}.json"),
                   "--no-progress", *extra, env={"DATABASE_URL": url, "MEMLOAD_HOME": str(tmp_path / "home")})
    doc = json.loads(out.read_text()) if proc.returncode == 0 else None
    return proc.returncode, doc, proc.stderr


@pytest.mark.parametrize("vectors", ["clustered", "copy"])
def test_seed_into_shared_tables_keeps_the_targets_indexes_and_other_scopes(aionis_db: str, tmp_path: Path,
                                                                            vectors: str) -> None:
    before, other = catalog(aionis_db), scope_fingerprint(aionis_db, OTHER_SCOPE)
    hnsw_before = index_sizes(aionis_db, HNSW_INDEXES)
    rc, doc, err = seed_cli(aionis_db, tmp_path, "perf_shared", "--vectors", vectors)
    assert rc == 0, err
    hnsw_after = index_sizes(aionis_db, HNSW_INDEXES)
    assert doc["layout"] == "shared_table" and doc["seeded_by"] == "memload" and doc["load_path"] == "shared_table"
    assert set(doc["timings_s"]) == {"load", "analyze"}
    assert {COVER_INDEX, "memory_nodes_embedding_ready_hot_hnsw_idx", "memory_commits_commit_hash_key"} <= set(
        doc["unknown_indexes"])
    assert "memory_nodes_embedding_ready_hot_warm_hnsw_idx" not in doc["unknown_indexes"]  # memload has that one
    assert doc["inserted"] == {"topics": TOPICS, "events": EVENTS, "edges": 2 * EVENTS}
    assert doc["totals_in_scope"] == {"nodes": EVENTS + TOPICS, "edges": 2 * EVENTS}
    assert catalog(aionis_db) == before  # same indexes, all valid, nothing partitioned, no extra table
    assert scope_fingerprint(aionis_db, OTHER_SCOPE) == other
    with psycopg.connect(aionis_db) as conn:
        register_vector(conn)
        assert conn.execute("SELECT count(*) FROM memory_commits WHERE scope = 'perf_shared'").fetchone()[0] == 1
        distinct = conn.execute("SELECT count(DISTINCT embedding::text) FROM memory_nodes WHERE scope = 'perf_shared'"
                                ).fetchone()[0]
        source = conn.execute(
            "SELECT embedding FROM memory_nodes WHERE scope = %s AND embedding_status = 'ready'"
            " ORDER BY created_at, id LIMIT 1", (OTHER_SCOPE,)).fetchone()[0]
        nearest = conn.execute(
            "SELECT scope, title, embedding FROM memory_nodes WHERE embedding IS NOT NULL"
            " AND embedding_status = 'ready' AND tier IN ('hot', 'warm') ORDER BY embedding <=> %s LIMIT 1",
            (np.asarray(fake_embed("perf topic #1"), dtype=np.float32),)).fetchone()
    # The live HNSW indexes took the new rows: each grew by the seeded vectors' size (6 kB each; pgvector keeps up
    # to 10 rows of one identical vector in one graph element, hence /10 for the copied vector).
    grown = {name: hnsw_after[name] - hnsw_before[name] for name in HNSW_INDEXES}
    per_element = 10 if vectors == "copy" else 1
    assert all(g >= (EVENTS + TOPICS) * 6144 * 0.9 / per_element for g in grown.values()), grown
    if vectors == "copy":  # every seeded node has the source scope's first ready vector
        with psycopg.connect(aionis_db) as conn:
            register_vector(conn)
            mine = conn.execute("SELECT embedding FROM memory_nodes WHERE scope = 'perf_shared' LIMIT 1").fetchone()[0]
        assert distinct == 1 and np.allclose(mine.to_numpy(), source.to_numpy())
    else:
        assert distinct == EVENTS + TOPICS and nearest[:2] == ("perf_shared", "perf topic #1")
    assert len(json.loads((tmp_path / "qs_perf_shared.json").read_text())["queries"]) == TOPICS


def test_reset_on_shared_tables_replaces_only_the_scope(aionis_db: str, tmp_path: Path) -> None:
    other = scope_fingerprint(aionis_db, OTHER_SCOPE)
    assert seed_cli(aionis_db, tmp_path, "perf_again")[0] == 0
    rc, doc, err = seed_cli(aionis_db, tmp_path, "perf_again")  # without --reset: added to the scope's rows
    assert rc == 0, err
    assert doc["totals_in_scope"] == {"nodes": 2 * (EVENTS + TOPICS), "edges": 4 * EVENTS} and doc["warnings"]
    rc, doc, err = seed_cli(aionis_db, tmp_path, "perf_again", "--reset")
    assert rc == 0, err
    assert doc["totals_in_scope"] == {"nodes": EVENTS + TOPICS, "edges": 2 * EVENTS}
    assert doc["reset_stats"]["nodes"] == 2 * (EVENTS + TOPICS)
    assert set(doc["timings_s"]) == {"reset", "load", "analyze"}
    assert scope_fingerprint(aionis_db, OTHER_SCOPE) == other


def test_unknown_required_column_is_refused_in_one_line(aionis_db: str, tmp_path: Path) -> None:
    with psycopg.connect(aionis_db) as conn:
        conn.execute("ALTER TABLE memory_nodes ADD COLUMN tenant_ref text NOT NULL DEFAULT 'x'")
        conn.execute("ALTER TABLE memory_nodes ALTER COLUMN tenant_ref DROP DEFAULT")
    rc, _, err = seed_cli(aionis_db, tmp_path, "perf_refused")
    errors = error_lines(err)
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "memory_nodes.tenant_ref" in errors[0] and "SEED_COMMAND" in errors[0]
    with psycopg.connect(aionis_db) as conn:
        assert conn.execute("SELECT count(*) FROM memory_commits WHERE scope = 'perf_refused'").fetchone()[0] == 0


def test_known_columns_the_target_lacks_are_left_out(aionis_db: str, tmp_path: Path) -> None:
    with psycopg.connect(aionis_db) as conn:
        conn.execute("ALTER TABLE memory_nodes DROP COLUMN embedding_model")
        conn.execute("ALTER TABLE memory_edges DROP COLUMN decay_rate")
    rc, doc, err = seed_cli(aionis_db, tmp_path, "perf_fewer_columns")
    assert rc == 0, err
    assert doc["totals_in_scope"] == {"nodes": EVENTS + TOPICS, "edges": 2 * EVENTS}


def test_database_error_during_a_shared_load_is_one_line_and_changes_nothing(aionis_db: str, tmp_path: Path) -> None:
    with psycopg.connect(aionis_db) as conn:  # the target refuses the seeder's salience: a CHECK of its own
        conn.execute("ALTER TABLE memory_nodes ADD CONSTRAINT salience_cap"
                     " CHECK (salience < 0.45 OR type <> 'event') NOT VALID")
    rc, _, err = seed_cli(aionis_db, tmp_path, "perf_check")
    errors = error_lines(err)
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("memload: error: seed failed at load, shared_table, nothing changed:")
    assert "salience_cap" in errors[0] and "SEED_COMMAND" in errors[0]
    with psycopg.connect(aionis_db) as conn:
        assert conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'perf_check'").fetchone()[0] == 0


def test_partitioned_layout_lists_an_extra_index_and_attach_adopts_it(fresh_db_url: str, tmp_path: Path) -> None:
    from tests.support.seed import add_source_vector

    add_source_vector(fresh_db_url, OTHER_SCOPE)
    with psycopg.connect(fresh_db_url) as conn:
        conn.execute(f"CREATE INDEX {COVER_INDEX} ON memory_nodes (id) INCLUDE (scope)")
    rc, doc, err = seed_cli(fresh_db_url, tmp_path, "perf_parts")
    assert rc == 0, err
    assert doc["layout"] == "partitioned" and doc["load_path"] == "partition" and doc["warnings"] == []
    assert doc["unknown_indexes"] == [COVER_INDEX]
    assert set(doc["timings_s"]) == {"load", "index", "attach", "analyze"}
    assert any(k.startswith(COVER_INDEX) for k in doc["index_build"]["seconds"])
