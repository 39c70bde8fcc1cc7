"""`memload seed` on the real server: topology and values, determinism, the two load paths, reset, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from memload.config import REPO_ROOT
from memload.embedder import fake_embed, fake_embed_many
from memload.errors import ConfigError, ExitCode, SafetyRefusal
from memload.identity import commit_hash
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.seed import SOURCE_TEXT, add_source_vector, params, seed, snapshot

SRC = "tseed_src"  # this module's source scope in the shared session database


# ----------------------------------------------------------------------------------------------------- helpers
def leftover_build_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^memory_(nodes|edges)_p_[0-9a-f]{16}_b'")]


@pytest.fixture(scope="module")
def src_url(db_url: str) -> str:
    """The session database (shared with other test files: every scope here is prefixed tseed_), with a source
    vector in scope 'tseed_src'."""
    add_source_vector(db_url, SRC)
    return db_url


# ----------------------------------------------------------------------------------------------------- tests
def test_topology_values_commit_and_partitions(src_url: str, tmp_path: Path) -> None:
    E, T = 250, 7
    out = seed(src_url, tmp_path, "tseed_topo", source=SRC, events=E, topics=T, seed=11)
    assert out["ok"] and out["load_path"] == "partition" and out["scope_key"] == "tseed_topo"
    assert out["inserted"] == {"topics": T, "events": E, "edges": 2 * E}
    assert out["totals_in_scope"] == {"nodes": T + E, "edges": 2 * E}
    assert set(out["timings_ms"]) == {"reset", "load", "index", "attach", "analyze"}
    assert out["vectors"] == "clustered" and out["seed"] == 11 and out["noise"] == 0.5
    assert out["warnings"] == [] and out["reset_stats"] is None
    with psycopg.connect(src_url) as conn:
        register_vector(conn)
        # node values
        rows = conn.execute(
            "SELECT type, count(*), min(tier::text), max(tier::text), bool_and(embedding_status = 'ready'),"
            " bool_and(embedding_model = 'perf:seed'), bool_and(memory_lane = 'shared'),"
            " bool_and(embedding_ready_at IS NOT NULL), min(salience), max(importance), min(confidence),"
            " bool_and(commit_id = %s::uuid), count(DISTINCT embedding)"
            " FROM memory_nodes WHERE scope = 'tseed_topo' GROUP BY type ORDER BY type", (out["commit_id"],)).fetchall()
        by_type = {r[0]: r[1:] for r in rows}
        assert by_type["topic"] == (T, "hot", "hot", True, True, True, True, pytest.approx(0.4), pytest.approx(0.4),
                                    pytest.approx(0.9), True, T)
        assert by_type["event"] == (E, "hot", "hot", True, True, True, True, 0.5, 0.5, pytest.approx(0.8), True, E)
        titles = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'tseed_topo' AND type = 'topic'"
                              " AND title = 'perf topic #' || substr(text_summary, 23)"
                              " AND text_summary LIKE 'synthetic perf topic #%'").fetchone()[0]
        assert titles == T
        assert conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'tseed_topo' AND type = 'event'"
                            " AND title IS NULL AND text_summary LIKE 'synthetic perf event #%'").fetchone()[0] == E
        # edges: event k -> topic 1+((k-1) mod T), both directions, exact weights
        bad = conn.execute(
            "SELECT count(*) FROM memory_edges e"
            " JOIN memory_nodes ev ON ev.scope = e.scope AND ev.id = CASE WHEN e.type = 'part_of' THEN e.src_id"
            "   ELSE e.dst_id END AND ev.type = 'event'"
            " JOIN memory_nodes tp ON tp.scope = e.scope AND tp.id = CASE WHEN e.type = 'part_of' THEN e.dst_id"
            "   ELSE e.src_id END AND tp.type = 'topic'"
            " WHERE e.scope = 'tseed_topo' AND NOT ("
            "   tp.title = 'perf topic #' || (1 + (substr(ev.text_summary, 23)::int - 1) %% %s)::text"
            "   AND e.decay_rate = real '0.01' AND e.commit_id = %s::uuid"
            "   AND ((e.type = 'part_of' AND e.weight = 0.75 AND e.confidence = 0.75)"
            "     OR (e.type = 'derived_from' AND e.weight = 1 AND e.confidence = 1)))", (T, out["commit_id"])
        ).fetchone()[0]
        assert bad == 0
        per_type = dict(conn.execute(
            "SELECT type::text, count(*) FROM memory_edges WHERE scope = 'tseed_topo' GROUP BY 1"))
        assert per_type == {"part_of": E, "derived_from": E}
        # commit: actor, no parent, the contract's hash over the recorded diff
        c = conn.execute("SELECT actor, parent_id, input_sha256, diff_json, commit_hash FROM memory_commits"
                         " WHERE scope = 'tseed_topo'").fetchall()
        assert len(c) == 1
        actor, parent, input_sha, diff, chash = c[0]
        assert actor == "job:perf_seed" and parent is None and chash == out["commit_hash"]
        assert chash == commit_hash(parent_hash="", input_sha256=input_sha, diff=diff, scope_key="tseed_topo",
                                    actor="job:perf_seed", model_version=None, prompt_version=None)
        assert diff["events"] == E and diff["topics"] == T and diff["vectors"] == "clustered"
        # own partitions; every parent index adopted on attach (HNSW included), nothing left behind
        for t in ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox"):
            assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (partition_name(t, "tseed_topo"),)).fetchone()[0]
        missing = conn.execute(
            "SELECT pi.indexrelid::regclass::text FROM pg_index pi WHERE pi.indrelid = 'memory_nodes'::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_inherits inh JOIN pg_index ci ON ci.indexrelid = inh.inhrelid"
            "  WHERE inh.inhparent = pi.indexrelid AND ci.indrelid = %s::regclass AND ci.indisvalid)",
            (partition_name("memory_nodes", "tseed_topo"),)).fetchall()
        assert missing == []
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%%scope_ck'").fetchone()[0] == 0
        # vectors: topics are exactly the fake embeddings of their titles; each event is nearest its own topic
        topics = conn.execute("SELECT title, embedding FROM memory_nodes WHERE scope = 'tseed_topo' AND type = 'topic'"
                              " ORDER BY substr(title, 13)::int").fetchall()
        tv = np.stack([r[1].to_numpy() for r in topics])
        np.testing.assert_allclose(tv, fake_embed_many([r[0] for r in topics]).astype(np.float32))
        events = conn.execute("SELECT substr(text_summary, 23)::int, embedding FROM memory_nodes"
                              " WHERE scope = 'tseed_topo' AND type = 'event'").fetchall()
    ks = np.array([r[0] for r in events])
    ev = np.stack([r[1].to_numpy() for r in events])
    cos = (ev / np.linalg.norm(ev, axis=1, keepdims=True)) @ (tv / np.linalg.norm(tv, axis=1, keepdims=True)).T
    assert (cos.argmax(axis=1) == (ks - 1) % T).all()
    assert 0.8 < float(np.median(cos.max(axis=1))) < 0.97  # noise 0.5: cos(event, centroid) ≈ 0.89
    assert leftover_build_tables(src_url) == []
    # query set: every topic title with its id (docs/ARTIFACTS.md)
    qs = json.loads(Path(out["query_set"]).read_text())
    assert set(qs) == {"scope", "tenant_id", "scope_key", "queries"} and qs["scope_key"] == "tseed_topo"
    assert [q["text"] for q in qs["queries"]] == [f"perf topic #{k}" for k in range(1, T + 1)]
    assert all(q["expected_min_seeds"] == 1 for q in qs["queries"])
    with psycopg.connect(src_url) as conn:
        ids = dict(conn.execute(
            "SELECT title, id::text FROM memory_nodes WHERE scope = 'tseed_topo' AND type = 'topic'"))
    assert {q["text"]: q["topic_id"] for q in qs["queries"]} == ids


def test_same_seed_same_dataset_other_seed_differs(src_url: str, tmp_path: Path) -> None:
    a = seed(src_url, tmp_path, "tseed_det", source=SRC, events=300, seed=5, reset=True)
    snap_a = snapshot(src_url, "tseed_det")
    b = seed(src_url, tmp_path, "tseed_det", source=SRC, events=300, seed=5, reset=True)
    snap_b = snapshot(src_url, "tseed_det")
    assert b["reset_stats"]["nodes"] == 350 and b["reset_stats"]["edges"] == 600 and b["reset_stats"]["commits"] == 1
    assert snap_a == snap_b and a["commit_hash"] == b["commit_hash"] and a["commit_id"] == b["commit_id"]
    seed(src_url, tmp_path, "tseed_det", source=SRC, events=300, seed=6, reset=True)
    snap_c = snapshot(src_url, "tseed_det")
    assert snap_c["nodes_md5"] != snap_a["nodes_md5"] and snap_c["edges_md5"] != snap_a["edges_md5"]
    with psycopg.connect(src_url) as conn:  # distinct clustered vectors
        distinct = conn.execute(
            "SELECT count(DISTINCT embedding) FROM memory_nodes WHERE scope = 'tseed_det'").fetchone()
    assert distinct[0] == 350


def test_copy_mode_is_the_aionis_kit_dataset(src_url: str, tmp_path: Path) -> None:
    out = seed(src_url, tmp_path, "tseed_peercopy", source=SRC, events=120, topics=3, vectors="copy", seed=1)
    src = np.asarray(fake_embed(SOURCE_TEXT), dtype=np.float32)
    with psycopg.connect(src_url) as conn:
        register_vector(conn)
        vecs = conn.execute("SELECT DISTINCT embedding FROM memory_nodes WHERE scope = 'tseed_peercopy'").fetchall()
    assert out["totals_in_scope"] == {"nodes": 123, "edges": 240}
    assert len(vecs) == 1 and np.array_equal(vecs[0][0].to_numpy(), src)


def test_append_without_reset_chains_to_the_head_commit(src_url: str, tmp_path: Path) -> None:
    first = seed(src_url, tmp_path, "tseed_chain", source=SRC, events=150, seed=1)
    second = seed(src_url, tmp_path, "tseed_chain", source=SRC, events=120, seed=1)
    assert second["load_path"] == "append" and second["warnings"]
    assert second["totals_in_scope"] == {"nodes": 150 + 50 + 120 + 50, "edges": 2 * (150 + 120)}
    with psycopg.connect(src_url) as conn:
        parent = conn.execute("SELECT parent_id::text FROM memory_commits WHERE scope = 'tseed_chain' AND id = %s",
                              (second["commit_id"],)).fetchone()[0]
        leaves = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM memory_nodes WHERE scope = 'tseed_chain'"
                              ).fetchall()
    assert parent == first["commit_id"]
    assert leaves == [(partition_name("memory_nodes", "tseed_chain"),)]


def test_scope_written_through_the_api_appends_then_reset_moves_it_to_a_partition(src_url: str,
                                                                                 tmp_path: Path) -> None:
    add_source_vector(src_url, "tseed_apiwritten", "an api write")  # rows of the scope in the default partitions
    out = seed(src_url, tmp_path, "tseed_apiwritten", source=SRC, events=100, topics=2, seed=3)
    assert out["load_path"] == "append" and out["totals_in_scope"]["nodes"] == 103
    with psycopg.connect(src_url) as conn:
        assert conn.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM memory_nodes WHERE scope = 'tseed_apiwritten'"
        ).fetchall() == [("memory_nodes_default",)]
    out = seed(src_url, tmp_path, "tseed_apiwritten", source=SRC, events=100, topics=2, seed=3, reset=True)
    assert out["load_path"] == "partition"
    assert out["reset_stats"]["nodes"] == 103 and out["reset_stats"]["commits"] == 2
    with psycopg.connect(src_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM memory_nodes_default WHERE scope = 'tseed_apiwritten'").fetchone()[0] == 0
        assert conn.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM memory_nodes WHERE scope = 'tseed_apiwritten'"
        ).fetchall() == [(partition_name("memory_nodes", "tseed_apiwritten"),)]


def test_tenant_scope_key_and_source_scope_refusal(src_url: str, tmp_path: Path) -> None:
    out = seed(src_url, tmp_path, "tseed_perf", source=SRC, tenant="acme", events=100, topics=1, seed=1)
    assert out["scope_key"] == "tenant:acme::scope:tseed_perf" and out["tenant_id"] == "acme"
    with pytest.raises(SafetyRefusal, match="--scope: refusing to reset the source scope"):
        params(SRC, source=SRC, reset=True, events=100).validate()
    with pytest.raises(ConfigError, match="--events"):
        params("x", events=99).validate()


def test_cli_json_summary_and_refusals_change_nothing(src_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path / "home")}
    out_file = tmp_path / "seed.json"
    ok = run_cli("seed", "--scope", "tseed_clijson", "--src-scope", SRC, "--events", "100", "--topics", "4", "--seed",
                 "9", "--out", str(out_file), env=env)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary == json.loads(out_file.read_text())
    assert summary["query_set"] == str(tmp_path / "home" / "query_sets" / "tseed_clijson.json")
    assert Path(summary["query_set"]).exists() and "[memload seed] committed" in ok.stderr
    before = snapshot(src_url, "tseed_src")
    refused = run_cli("seed", "--scope", "tseed_src", "--src-scope", "tseed_src", "--reset", "--events", "100", env=env)
    assert refused.returncode == ExitCode.REFUSED
    assert refused.stderr.strip().splitlines()[-1].startswith("memload: error: --scope: refusing to reset")
    assert snapshot(src_url, "tseed_src") == before


# argparse's own refusals exit 2 unless the CLI maps them to the usage code; memload's own usage errors exit 64.
ARGPARSE_USAGE = (2, ExitCode.USAGE)


@pytest.mark.parametrize(("args", "flag", "codes"), [
    (["--events", "50"], "--events", ARGPARSE_USAGE),
    (["--events", "2000000"], "--events", ARGPARSE_USAGE),
    (["--tenant-id", "bad tenant!"], "--tenant-id", ARGPARSE_USAGE),
    (["--src-scope", "tseed_nothing_here"], "--src-scope", (ExitCode.USAGE,)),
])
def test_bad_flags_one_line_error_nothing_changed(src_url: str, tmp_path: Path, args: list[str], flag: str,
                                                  codes: tuple[int, ...]) -> None:
    base = ["seed", "--scope", "tseed_badflags", "--src-scope", "tseed_src", "--events", "100"]
    proc = run_cli(*base, *args, env={"DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path)})
    assert proc.returncode in codes
    last = proc.stderr.strip().splitlines()[-1]
    assert flag in last and "Traceback" not in proc.stderr
    assert snapshot(src_url, "tseed_badflags") == snapshot(src_url, "tseed_never_used_scope")  # nothing at all
    assert leftover_build_tables(src_url) == []


def test_seed_killed_during_load_leaves_the_scope_as_it_was(src_url: str, tmp_path: Path) -> None:
    seed(src_url, tmp_path, "tseed_killme", source=SRC, events=200, seed=1)
    before = snapshot(src_url, "tseed_killme")
    env = {**os.environ, "DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "seed", "--scope", "tseed_killme", "--src-scope", "tseed_src", "--reset",
         "--events", "60000", "--seed", "2"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the "begin" line is printed right before the COPY starts
            if "[memload seed] begin" in line:
                break
        time.sleep(1.0)
        assert proc.poll() is None, "seed finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    with psycopg.connect(src_url, autocommit=True) as conn:  # the server notices the dead client and rolls back
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'memload-seed'"
                           " AND datname = current_database()").fetchone()[0]:
            assert time.monotonic() < deadline, "seed backend still alive"
            time.sleep(0.2)
    assert snapshot(src_url, "tseed_killme") == before
    assert leftover_build_tables(src_url) == []


def test_attach_runs_its_foreign_key_checks_without_merge_joins(fresh_db_url: str, tmp_path: Path) -> None:
    """ATTACH checks the new edges against every node of every scope in one anti-join; planned as a merge join on
    `scope` alone it compares each edge with each node of the scope (420 s at 10^5). An event trigger records the
    planner setting in force when each ATTACH runs, inside the seed's own transaction."""
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE attach_log (cmd text, mergejoin text)")
        conn.execute("CREATE FUNCTION log_attach() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO attach_log VALUES (current_query(), current_setting('enable_mergejoin')); END $$")
        conn.execute("CREATE EVENT TRIGGER log_attach ON ddl_command_start WHEN TAG IN ('ALTER TABLE') "
                     "EXECUTE FUNCTION log_attach()")
    add_source_vector(fresh_db_url, "src")
    out = seed(fresh_db_url, tmp_path, "tattach", events=300, topics=5)
    assert set(out["attach_seconds"]) == {"memory_nodes", "memory_edges"}
    with psycopg.connect(fresh_db_url) as conn:
        rows = conn.execute("SELECT cmd, mergejoin FROM attach_log").fetchall()
        after = conn.execute("SELECT current_setting('enable_mergejoin')").fetchone()[0]
    attaches = [m for cmd, m in rows if "ATTACH PARTITION" in cmd and "memory_outbox" not in cmd]
    assert len(attaches) == 2 and set(attaches) == {"off"}, rows
    others = [m for cmd, m in rows if "ATTACH PARTITION" not in cmd]
    assert others and set(others) == {"on"}, rows  # restored after each ATTACH: the seed's other statements as set
    assert after == "on"
