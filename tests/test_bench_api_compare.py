"""`benchmarks/bench_api.py` as a before/after tool: an already seeded scope (--scope), a second checkout's API on the
same data (--compare-dir), alternating rounds, and the PostgreSQL CPU of the recall's bare SQL (--sql-floor).
Checks that what it prints is complete and consistent and that it leaves the scope as it found it, not how fast
anything is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg

from memload.config import REPO_ROOT
from tests.support.cli import PYTHON
from tests.support.seed import add_source_vector, seed


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "benchmarks.bench_api", *args], cwd=REPO_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def test_compare_rounds_on_an_existing_scope_with_the_sql_floor(db_url: str, tmp_path: Path) -> None:
    add_source_vector(db_url, "tbac_src")
    seed(db_url, tmp_path, "tbac_scope", source="tbac_src", events=300, topics=3, seed=2)
    with psycopg.connect(db_url) as conn:
        nodes_before = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'tbac_scope'").fetchone()[0]
        audit_before = conn.execute("SELECT count(*) FROM memory_recall_audit WHERE scope = 'tbac_scope'"
                                    ).fetchone()[0]
    proc = _run("--database-url", db_url, "--scope", "tbac_scope", "--compare-dir", str(REPO_ROOT), "--rounds", "2",
                "--recall-only", "--recall-requests", "16", "--warmup", "2", "--api-workers", "1", "--sql-floor", "20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["scope"] == "tbac_scope" and out["seed"]["dataset"] == "existing scope"
    assert out["seed"]["nodes"] == nodes_before
    # the two APIs alternate, round after round, each running the three recall cases (no write case)
    assert [(r["round"], r["api"]) for r in out["rounds"]] == [(1, "this"), (1, "compare"), (2, "this"),
                                                                (2, "compare")]
    for r in out["rounds"]:
        assert set(r["cases"]) == {"recall_text", "recall_text_c1", "recall_text_distinct"}
        assert r["cases"]["recall_text"]["ok"] == 16
    assert out["cases"] == out["rounds"][2]["cases"]  # the last round of this checkout
    assert set(out["meets_targets"]) == {"recall_text"}
    # the local server is found, so only the API's backends and the server's own processes count as PostgreSQL
    assert out["host"]["postgres_cpu_counted"].startswith("the API's backends")
    floor = out["sql_floor"]
    assert floor["iterations"] == 20 and floor["seeds"] > 0 and floor["ef_search"] == 100
    cpu = floor["postgres_cpu_ms"]
    assert set(cpu) == {"stage1", "stage2", "node_fetch", "audit_commit", "total"}
    assert abs(cpu["total"] - sum(v for k, v in cpu.items() if k != "total")) < 0.05
    # the scope it did not seed is left as it was: same nodes, none of the run's audit rows
    with psycopg.connect(db_url) as conn:
        nodes_after = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'tbac_scope'").fetchone()[0]
        assert nodes_after == nodes_before
        assert conn.execute("SELECT count(*) FROM memory_recall_audit WHERE scope = 'tbac_scope'"
                            ).fetchone()[0] == audit_before


def test_bad_compare_dir_and_scope_without_database_are_refused_naming_the_flag(tmp_path: Path) -> None:
    proc = _run("--compare-dir", str(tmp_path))
    assert proc.returncode == 2 and "--compare-dir" in proc.stderr.strip().splitlines()[-1]
    proc = _run("--scope", "x")
    assert proc.returncode == 2 and "--scope" in proc.stderr.strip().splitlines()[-1]
