"""`memload explain --sql FILE`: the target's own explain script, run through psql against an Aionis-shaped database,
judged by the same planner checks as memload's reference SQL; and the header that says which SQL was explained.

The fixture script's stage 2 takes hop-1/hop-2 edges with an OR over src/dst, the way the Aionis kit's script does, so
it reads every edge of the scope: the stage-2 budget check must flag it (exit 3), where memload's reference stage 2,
bounded per seed, passes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from analysis.explain_parser import parse_explain
from memload.errors import ExitCode
from scripts.explain_runner import edge_rows_read, plan_blocks
from tests.support.aionis import EXPLAIN_SQL
from tests.support.cli import run_cli

SCOPE = "explain_target"
EVENTS = 300
LINKS_PER_EVENT = 7  # 2,100 related_to edges: more than stage 2's 1,500-row budget


def load_aionis_scope(url: str, scope: str = SCOPE) -> int:
    """EVENTS ready hot events with random vectors, each related_to its next LINKS_PER_EVENT events. Returns the
    scope's edge count."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute("INSERT INTO memory_commits (id, scope, input_sha256, actor, commit_hash)"
                     " VALUES ('00000000-0000-4000-9000-000000000001', %s, md5('t'), 'test', md5(%s))",
                     (scope, scope))
        conn.execute(
            "INSERT INTO memory_nodes (id, scope, type, tier, text_summary, embedding, commit_id, embedding_status,"
            " memory_lane)"
            " SELECT ('00000000-0000-4000-9000-' || lpad(k::text, 12, '0'))::uuid, %s, 'event', 'hot', 'event ' || k,"
            " (SELECT array_agg(random() - 0.5 + k * 0 ORDER BY i) FROM generate_series(1, 1536) i)::vector(1536),"
            " '00000000-0000-4000-9000-000000000001', 'ready', 'shared' FROM generate_series(1, %s) k",
            (scope, EVENTS))
        conn.execute(
            "INSERT INTO memory_edges (id, scope, type, src_id, dst_id, weight, confidence, commit_id)"
            " SELECT gen_random_uuid(), %s, 'related_to',"
            " ('00000000-0000-4000-9000-' || lpad(k::text, 12, '0'))::uuid,"
            " ('00000000-0000-4000-9000-' || lpad(((k + d - 1) %% %s + 1)::text, 12, '0'))::uuid,"
            " 0.5, 0.5, '00000000-0000-4000-9000-000000000001'"
            " FROM generate_series(1, %s) k, generate_series(1, %s) d",
            (scope, EVENTS, EVENTS, LINKS_PER_EVENT))
        conn.execute("ANALYZE")
        return conn.execute("SELECT count(*) FROM memory_edges WHERE scope = %s", (scope,)).fetchone()[0]


def explain(url: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run_cli("explain", *args, env={"DATABASE_URL": url}, timeout=300)
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        summary = {}
    return proc, summary


def test_explain_sql_runs_the_target_script_and_flags_its_stage2(aionis_db: str, tmp_path: Path) -> None:
    edges = load_aionis_scope(aionis_db)
    assert edges == EVENTS * LINKS_PER_EVENT
    out = tmp_path / "explain_target.txt"
    proc, summary = explain(aionis_db, "--sql", str(EXPLAIN_SQL), "--scope", SCOPE, "--lim", "30", "--out", str(out))
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stderr
    assert summary["sql_source"] == "target" and summary["sql_file"] == str(EXPLAIN_SQL)
    assert summary["ok"] is False and summary["scope_edges"] == edges
    s2 = summary["stages"]["stage2"]
    assert s2["edge_rows_one_scan"] >= edges  # one scan read every edge of the scope
    assert "stage 2 read" in summary["stage2_verdict"] and f"every edge of the scope ({edges}," in summary["verdict"]
    assert summary["verdict"].startswith("stage 2 read")  # the failed check leads the one-line error
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("memload: error: stage 2 read") and "more than the budget of 1500" in last
    # the script's own plans, captured from psql: stage 1 is its KNN query, stage 2 its neighbourhood query
    assert summary["stages"]["stage1"]["execution_ms"] > 0 and s2["execution_ms"] > 0
    assert "stage1_knn" in summary["stages"]["stage1"]["title"] and "stage2_neighborhood" in s2["title"]
    text = out.read_text()
    assert text.splitlines()[0] == f"-- memload explain: target SQL {EXPLAIN_SQL}"
    info = parse_explain(out)
    assert info.sql_source == "target" and info.check is not None and info.check[0] is False
    assert info.check[1].startswith("stage 2 read")
    assert info.stage1 is not None and info.stage2 is not None
    assert info.stage2.execution_ms == pytest.approx(s2["execution_ms"])


def test_explain_sql_with_force_index_and_a_generous_budget(aionis_db: str) -> None:
    load_aionis_scope(aionis_db)
    proc, summary = explain(aionis_db, "--sql", str(EXPLAIN_SQL), "--scope", SCOPE, "--force-index",
                            "--max-edge-rows", "100000")
    assert proc.returncode == 0, proc.stderr
    assert summary["ok"] is True and summary["settings"]["force_index"] == "1"
    # force_index reached the script: with seqscan off, stage 1 reads memory_nodes through an index
    assert "Seq Scan on memory_nodes" not in (summary["stages"]["stage1"]["first_scan"] or "")


def test_explain_sql_refuses_a_missing_file_and_reports_a_failing_script(aionis_db: str, tmp_path: Path) -> None:
    proc, _ = explain(aionis_db, "--sql", str(tmp_path / "nope.sql"))
    assert proc.returncode == ExitCode.USAGE and "--sql" in proc.stderr and "EXPLAIN_SQL" in proc.stderr
    broken = tmp_path / "broken.sql"
    broken.write_text("SELECT no_such_column FROM memory_nodes;\n")
    proc, _ = explain(aionis_db, "--sql", str(broken), "--scope", SCOPE)
    assert proc.returncode == ExitCode.ERROR
    assert proc.stderr.strip().splitlines()[-1].startswith("memload: error: --sql: psql -f")
    assert "no_such_column" in proc.stderr


def test_explain_without_sql_says_reference_sql_in_the_header(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "explain_ref.txt"
    proc, summary = explain(db_url, "--scope", "no_vectors_here", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert summary["sql_source"] == "reference"
    assert out.read_text().splitlines()[0] == \
        "-- memload explain: memload reference SQL (not the target's own queries)"
    assert parse_explain(out).sql_source == "reference"


def test_plan_blocks_and_edge_rows_from_psql_output() -> None:
    output = "\n".join([
        "SET", "== stage2 scope=x", "                    QUERY PLAN", "-" * 40,
        " Limit  (cost=1..2 rows=5 width=8) (actual time=0.1..0.2 rows=5.00 loops=1)",
        "   ->  Seq Scan on memory_edges e  (cost=0..9 rows=9 width=8) (actual time=0.01..0.1 rows=40.00 loops=2)",
        "         Filter: (scope = 'x'::text)",
        "         Rows Removed by Filter: 10",
        "   ->  Index Scan using memory_edges_scope_src_type_idx on memory_edges e2  (cost=0..1 rows=1 width=8)"
        " (actual time=0.01..0.01 rows=2.00 loops=30)",
        " Execution Time: 1.5 ms", "(6 rows)", "",
    ])
    [(title, plan)] = plan_blocks(output)
    assert title == "== stage2 scope=x" and plan[0].startswith("Limit") and plan[-1] == "Execution Time: 1.5 ms"
    assert edge_rows_read(plan) == ((40 + 10) * 2 + 2 * 30, (40 + 10) * 2)
