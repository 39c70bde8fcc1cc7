"""`memload explain` and sql/explain_baseline.sql on the real embedded server.

The HNSW scope holds 5,000 ready vectors (the "large enough" threshold, scripts.explain_runner.DEFAULT_MIN_VECTORS) in a
partition of its own. The node partition is COPY-loaded as a plain table and then attached, so its HNSW index is
built in bulk (~5-10 s here): inserting into an existing HNSW index ran at ~140 rows/s on this 2-core machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from analysis.explain_parser import parse_explain
from memload.config import REPO_ROOT
from memload.errors import ExitCode
from scripts.embedded_db import psql_command
from scripts.explain_runner import DEFAULT_MIN_VECTORS, PSQL_STATEMENTS, edge_budgets, sync_psql_script, to_positional
from tests.support.cli import run_cli

SCRIPT = REPO_ROOT / "sql" / "explain_baseline.sql"
HOT_WARM_INDEX = "_ready_hot_warm_hnsw"  # suffix of each partition's ready hot/warm HNSW index
TOPICS = 50
USAGE_CODES = (ExitCode.USAGE, 2)  # memload's usage errors; 2 = argparse's own (a type check on the flag)


def load_scope(url: str, scope: str, events: int, *, attach: bool) -> None:
    """A scope in partitions of its own: `TOPICS` topics + `events` events (ready, hot, random 1536-d vectors) and
    the seeder's topology (event k part_of topic k mod T, topic derived_from event). With `attach` the node
    partition is loaded first and attached after (bulk index builds); else rows go through the parent table."""
    rng = np.random.default_rng(7)
    n = TOPICS + events
    vectors = rng.standard_normal((n, 1536)).astype(np.float32)
    ids = [uuid.uuid4() for _ in range(n)]
    commit = uuid.uuid4()
    with psycopg.connect(url) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        part = conn.execute("SELECT memload_partition_name('memory_nodes', %s)", (scope,)).fetchone()[0]
        target = "memory_nodes"
        if attach:
            conn.execute(f'CREATE TABLE "{part}" (LIKE memory_nodes INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
            target = f'"{part}"'
        conn.execute("SELECT memload_partition_ensure_scope(%s)", (scope,))
        conn.execute(
            "INSERT INTO memory_commits (id, scope, input_sha256, commit_hash, actor)"
            " VALUES (%s, %s, %s, %s, 'test:explain')",
            (commit, scope, "0" * 64, uuid.uuid4().hex),
        )
        cols = "id, scope, type, title, text_summary, embedding, commit_id, memory_lane, embedding_model"
        with conn.cursor().copy(f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["uuid", "text", "text", "text", "text", "vector", "uuid", "text", "text"])
            for i in range(n):
                topic = i < TOPICS
                title = f"perf topic #{i + 1}" if topic else None
                summary = f"synthetic perf topic #{i + 1}" if topic else f"synthetic perf event #{i - TOPICS + 1}"
                cp.write_row([ids[i], scope, "topic" if topic else "event", title, summary, vectors[i], commit,
                              "shared", "perf:seed"])
        if attach:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(f"ALTER TABLE memory_nodes ATTACH PARTITION \"{part}\" FOR VALUES IN ({_lit(scope)})")
            conn.execute("SELECT memload_ready_hnsw_index(%s)", (part,))  # the ready HNSW index is per partition
        edge_cols = "scope, type, src_id, dst_id, weight, confidence, commit_id"
        with conn.cursor().copy(f"COPY memory_edges ({edge_cols}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "text", "uuid", "uuid", "float4", "float4", "uuid"])
            for k in range(events):
                event, topic = ids[TOPICS + k], ids[k % TOPICS]
                cp.write_row([scope, "part_of", event, topic, 0.75, 0.75, commit])
                cp.write_row([scope, "derived_from", topic, event, 1.0, 1.0, commit])
        conn.commit()
        conn.autocommit = True
        for table in ("memory_nodes", "memory_edges"):
            name = conn.execute("SELECT memload_partition_name(%s, %s)", (table, scope)).fetchone()[0]
            conn.execute(f'ANALYZE "{name}"')


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def explain(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run_cli("explain", *args, env={"DATABASE_URL": url, **(env or {})}, timeout=300)
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        summary = {}
    return proc, summary


@pytest.fixture(scope="module")
def hnsw_scope(db_url: str) -> str:
    scope = f"explain_{uuid.uuid4().hex[:8]}"
    load_scope(db_url, scope, DEFAULT_MIN_VECTORS - TOPICS, attach=True)
    return scope


# ------------------------------------------------------------------ one source of truth for the SQL


def _prepared_bodies(text: str) -> dict[str, str]:
    return {m[1]: m[2] for m in re.finditer(r"PREPARE (\w+) AS(.*?);\s*$", text, re.S | re.M)}


def _normalise(statement: str) -> str:
    statement = re.sub(r"%\(\w+\)s|\$\d+", "?", statement)
    return re.sub(r"\s+", " ", statement).strip()


@pytest.mark.parametrize(("prepared", "constant"), [
    ("memload_stage1", "STAGE1_SQL"),
    ("memload_stage2", "STAGE2_HOP2_SQL"),
])
def test_psql_script_runs_the_api_statements(prepared: str, constant: str) -> None:
    from memory_api import recall_sql

    api = getattr(recall_sql, constant)
    script = _prepared_bodies(SCRIPT.read_text())[prepared]
    assert _normalise(script) == _normalise(api), (
        f"sql/explain_baseline.sql {prepared} drifted from {constant}: run `python -m scripts.explain_runner`")
    # and the placeholders correspond one to one: the same name always is the same $n, in order of appearance
    names = re.findall(r"%\((\w+)\)s", api)
    numbers = re.findall(r"\$(\d+)", script)
    assert len(names) == len(numbers)
    assert to_positional(api)[0].split() == script.split()
    pairs = set(zip(names, numbers, strict=True))
    assert len(pairs) == len(set(names)) == len(set(numbers))


def test_psql_script_documents_the_parameter_order_its_execute_calls_use() -> None:
    """The EXECUTE calls pass arguments positionally; the comment above each PREPARE is checked against the API."""
    from memory_api import recall_sql

    text = SCRIPT.read_text()
    for prepared, constant in PSQL_STATEMENTS.items():
        _, names = to_positional(getattr(recall_sql, constant))
        comment = re.search(rf"-- memory_api\.recall_sql\.{constant};(.*?)\nPREPARE {prepared} AS", text, re.S)
        assert comment, f"no parameter comment above PREPARE {prepared}"
        documented = re.findall(r"\$(\d+) (\w+)", comment[1])
        assert [name for _, name in documented] == names
        assert [int(n) for n, _ in documented] == list(range(1, len(names) + 1))


def test_sync_rewrites_a_drifted_script(tmp_path: Path) -> None:
    copy = tmp_path / "explain_baseline.sql"
    copy.write_text(SCRIPT.read_text().replace("LIMIT $6;", "LIMIT $6 + 1;"))
    assert sync_psql_script(copy) is True
    assert copy.read_text() == SCRIPT.read_text()
    assert sync_psql_script(copy) is False


def test_psql_script_budgets_are_the_api_defaults() -> None:
    text = SCRIPT.read_text()
    budgets = edge_budgets()
    call = re.search(r"EXECUTE memload_stage2\(%L, %L, 0, 0, (\d+), (\d+), (\d+)\)", text)
    assert call, "stage-2 EXECUTE call not found"
    assert tuple(int(x) for x in call.groups()) == (
        budgets["hop1_budget"], budgets["hop2_budget"], budgets["edge_budget"])


# ------------------------------------------------------------------ memload explain


def test_explain_uses_hnsw_on_a_large_scope(db_url: str, hnsw_scope: str, tmp_path: Path) -> None:
    out = tmp_path / f"explain_{DEFAULT_MIN_VECTORS}.txt"
    proc, summary = explain(db_url, "--scope", hnsw_scope, "--lim", "30", "--out", str(out),
                            env={"HNSW_EF_SEARCH": "64"})
    assert proc.returncode == 0, proc.stderr
    assert summary["ok"] is True and summary["enforced"] is True
    assert summary["ready_vectors"] == DEFAULT_MIN_VECTORS
    s1, s2 = summary["stages"]["stage1"], summary["stages"]["stage2"]
    assert s1["uses_hnsw"] is True
    hnsw = [u for u in s1["index_scans"] if u["method"] == "hnsw"]
    assert hnsw[0]["index"].endswith(HOT_WARM_INDEX) and summary["settings"]["index_precision"] == "vector"
    assert s1["rows"] == 30 and s1["execution_ms"] > 0 and s1["buffers"].startswith("shared hit=")
    assert s2["rows"] > 0 and s2["execution_ms"] > 0  # the seeds' topics/events have edges
    # the reference stage 2 reads the seeds' neighbourhood (one probe per node), not the scope's 9,900 edges
    assert 0 < s2["edge_rows_one_scan"] < summary["scope_edges"] == 2 * (DEFAULT_MIN_VECTORS - TOPICS)
    assert summary["max_edge_rows"] == 1500 and "every edge" not in summary["verdict"]
    assert summary["sql_source"] == "reference"
    # the API's knobs are applied and recorded
    assert summary["settings"]["hnsw.ef_search"] == "64"
    assert summary["settings"]["hnsw.iterative_scan"] == "relaxed_order"
    assert summary["settings"]["plan_cache_mode"] == "auto"
    assert f"index {hnsw[0]['index']} [hnsw]" in proc.stderr  # key lines on stderr
    # the artifact: parsed by the report's reader, one plan per stage, each with its Execution Time
    info = parse_explain(out)
    assert info.hnsw_used is True
    assert info.stage1 is not None and info.stage1.execution_ms == pytest.approx(s1["execution_ms"])
    assert info.stage2 is not None and info.stage2.execution_ms == pytest.approx(s2["execution_ms"])
    assert len(info.execution_times_ms) == 2
    text = out.read_text()
    assert "hnsw.ef_search=64" in text and "-- check: ok" in text
    assert "'[…]'::vector(1536)" in text and not re.search(r"\[[-0-9.e,]{200,}", text)


def test_explain_force_index_and_plan_cache_mode_are_recorded(db_url: str, hnsw_scope: str) -> None:
    proc, summary = explain(db_url, "--scope", hnsw_scope, "--lim", "10", "--force-index",
                            "--plan-cache-mode", "force_custom_plan")
    assert proc.returncode == 0, proc.stderr
    st = summary["settings"]
    assert (st["enable_seqscan"], st["enable_bitmapscan"], st["plan_cache_mode"]) == ("off", "off", "force_custom_plan")
    assert summary["oversample"] == 50 and summary["stages"]["stage1"]["rows"] == 10
    assert summary["stages"]["stage1"]["uses_hnsw"] is True
    assert "-- stage1" in proc.stderr  # without --out the plans go to stderr


def test_explain_detects_a_missing_hnsw_index(fresh_db_url: str, tmp_path: Path) -> None:
    """The planted fault: the scope partition's HNSW index of ready hot/warm vectors is dropped."""
    scope = "perf_noindex"
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("SELECT memload_partition_ensure_scope(%s)", (scope,))
        part = conn.execute("SELECT memload_partition_name('memory_nodes', %s)", (scope,)).fetchone()[0]
        conn.execute(f'DROP INDEX "{part}{HOT_WARM_INDEX}"')
    load_scope(fresh_db_url, scope, DEFAULT_MIN_VECTORS - TOPICS, attach=False)
    out = tmp_path / "explain_noindex.txt"
    proc, summary = explain(fresh_db_url, "--scope", scope, "--out", str(out))
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stderr
    assert summary["ok"] is False and summary["stages"]["stage1"]["uses_hnsw"] is False
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("memload: error: stage 1 did not use an HNSW index (Seq Scan on"), last
    assert f"{DEFAULT_MIN_VECTORS} ready vectors" in last
    assert "-- check: FAILED" in out.read_text()  # the artifact is still written
    assert parse_explain(out).hnsw_used is False
    # the same plan on a scope below the threshold is reported, not failed
    proc, summary = explain(fresh_db_url, "--scope", scope, "--min-vectors", str(DEFAULT_MIN_VECTORS + 1))
    assert proc.returncode == 0, proc.stderr
    assert summary["ok"] is True and summary["enforced"] is False and "not enforced" in summary["verdict"]


def test_explain_on_a_scope_without_vectors(db_url: str) -> None:
    proc, summary = explain(db_url, "--scope", f"empty_{uuid.uuid4().hex[:8]}")
    assert proc.returncode == 0, proc.stderr
    assert summary["ready_vectors"] == 0 and summary["stages"] == {}
    assert "nothing to explain" in summary["verdict"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--lim", "0"], "--lim"),
    (["--lim", "abc"], "--lim"),
    (["--tenant-id", "bad tenant"], "--tenant-id"),
    (["--scope", "tenant:x"], "--scope"),
    (["--plan-cache-mode", "sometimes"], "--plan-cache-mode"),
])
def test_explain_rejects_bad_flags(args: list[str], flag: str) -> None:
    proc = run_cli("explain", *args, env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert proc.returncode in USAGE_CODES
    assert flag in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------ the psql script


def psql(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(psql_command(url, "-X", *args, "-f", str(SCRIPT)), capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT)


def test_psql_script_runs_against_the_embedded_server(db_url: str, hnsw_scope: str, tmp_path: Path) -> None:
    proc = psql(db_url, "-v", f"scope={hnsw_scope}", "-v", "lim=30")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "-- memload explain: memload reference SQL (not the target's own queries)"
    out = tmp_path / "explain_psql.txt"
    out.write_text(proc.stdout)
    info = parse_explain(out)
    assert info.hnsw_used is True
    assert info.stage1 is not None and info.stage1.execution_ms is not None
    assert info.stage2 is not None and info.stage2.execution_ms is not None
    assert f"ready hot/warm vectors: {DEFAULT_MIN_VECTORS}" in proc.stdout
    assert "plan_cache_mode=auto" in proc.stdout and "enable_seqscan=on" in proc.stdout
    assert "2-hop edges of 30 seeds" in proc.stdout

    forced = psql(db_url, "-v", f"scope={hnsw_scope}", "-v", "lim=30", "-v", "force_index=1")
    assert forced.returncode == 0, forced.stderr
    assert "enable_seqscan=off enable_bitmapscan=off" in forced.stdout
    not_forced = psql(db_url, "-v", f"scope={hnsw_scope}", "-v", "lim=5", "-v", "force_index=0")
    assert not_forced.returncode == 0 and "enable_seqscan=on" in not_forced.stdout


def test_psql_script_without_vectors_and_with_a_bad_lim(db_url: str) -> None:
    empty = psql(db_url, "-v", "scope=no_such_scope_here", "-v", "lim=30")
    assert empty.returncode == 0, empty.stderr
    assert "no READY hot/warm embedding in scope no_such_scope_here; nothing to explain" in empty.stdout
    assert "-- stage1" not in empty.stdout
    bad = psql(db_url, "-v", "scope=perf", "-v", "lim=500")
    assert bad.returncode != 0 and "lim must be an integer in [1, 200]" in bad.stderr
