"""Smoke runs of the benchmarks (benchmarks/bench_api.py, benchmarks/bench_outbox_drain.py,
benchmarks/bench_generator.py).

They print figures; these tests keep them runnable and check that what they print is complete and
consistent (a benchmark that silently loses a case or its CPU split would mislead), not how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess

from memload.config import REPO_ROOT
from tests.support.cli import PYTHON


def _run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", module, *args], cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_bench_api_prints_every_case_with_its_cpu_split(db_url: str) -> None:
    proc = _run("benchmarks.bench_api", "--database-url", db_url, "--events", "200", "--topics", "2",
                "--recall-requests", "24", "--write-requests", "40", "--warmup", "2", "--api-workers", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["params"]["dataset"] == "seeder" and out["params"]["api_workers"] == 2
    assert out["seed"]["dataset"] == "seeder" and out["seed"]["nodes"] == 202 and out["seed"]["edges"] == 400
    assert set(out["cases"]) == {"recall_text", "recall_text_c1", "recall_text_distinct", "write"}
    sizes = {"recall_text": 24, "recall_text_c1": 6, "recall_text_distinct": 24, "write": 40}
    for name, case in out["cases"].items():
        assert case["total"] == case["ok"] == sizes[name], name
        lat = case["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], name
        cpu = case["cpu_ms_per_request"]
        # the API and the (local, embedded) PostgreSQL both did the work; /proc counts 10 ms ticks, so the handful
        # of toy writes or single-connection recalls may not show PostgreSQL's share, while 24 concurrent recalls do
        assert cpu["api"] > 0 and cpu["load_generator"] >= 0, (name, cpu)
        assert cpu["postgres"] > 0 or name in ("write", "recall_text_c1"), (name, cpu)
        assert abs(cpu["total"] - (cpu["api"] + cpu["postgres"] + cpu["load_generator"])) < 0.05, (name, cpu)
        # busy = CPU / (wall x cores); each process's CPU is read in 10 ms ticks (user and system), so a toy case of
        # a fraction of a second can read up to 20 ms per process over: about 16 processes (API workers, backends,
        # the generator) bound that error
        wall_s = case["total"] / case["rps"]
        slack = 16 * 0.02 / (wall_s * (os.cpu_count() or 1))
        assert 0 < case["cpu_busy_fraction"] <= 1 + slack and case["cpu_bound_rps"] > 0, (name, slack)
    assert set(out["meets_targets"]) == {"recall_text", "write"}
    assert "CPU-bound ceiling" in proc.stderr
    # a database it did not create is left as it was found: the scope is purged, partitions and audit rows included
    import psycopg

    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT (SELECT count(*) FROM memory_nodes WHERE scope = %(s)s)"
                            " + (SELECT count(*) FROM memory_recall_audit WHERE scope = %(s)s)"
                            " + (SELECT count(*) FROM pg_class WHERE relname = memload_partition_name('memory_nodes',"
                            " %(s)s))", {"s": out["scope"]}).fetchone()[0]
    assert left == 0


def test_bench_api_refuses_a_bad_flag_naming_it(db_url: str) -> None:
    proc = _run("benchmarks.bench_api", "--database-url", db_url, "--api-workers", "0")
    assert proc.returncode == 2 and "--api-workers" in proc.stderr


def test_bench_worker_drains_the_backlog_with_two_loops(db_url: str) -> None:
    proc = _run("benchmarks.bench_outbox_drain", "--nodes", "60", "--nodes-per-row", "10", "--workers", "2",
                env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["ok"] is True and len(out["cases"]) == 2  # claim sized by --batch-size, then by --embed-batch-rows
    for case in out["cases"]:
        assert case["workers"] == 2 and case["hnsw_index"] is True
        assert case["nodes_embedded"] == case["ready_after"] == 60 and case["unpublished_after"] == 0
        assert case["processed"] == case["rows"] == 6 and case["nodes_per_sec"] > 0


def test_bench_generator_runs_bare_and_suite_turns_against_the_static_target() -> None:
    """Both endpoints, bare and suite alternating, CPU from /proc for Locust and the target, and the suite's records
    file holding one row per request it counted, every response valid (the static bodies meet the contract)."""
    proc = _run("benchmarks.bench_generator", "--seconds", "2", "--rounds", "1", "--users", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert [(t["endpoint"], t["side"]) for t in out["turns"]] == [
        ("recall", "bare"), ("recall", "suite"), ("write", "bare"), ("write", "suite")]
    for t in out["turns"]:
        assert t["requests"] > 0 and t["cpu_s"] >= 0 and t["target_cpu_s"] is not None, t
    check = out["records_check"]
    assert check["rows_match"] is True and check["failed"] == {} and check["records_rows"] > 0
    for ep in ("recall", "write"):
        row = out["summary"][ep]
        assert len(row["bare"]["runs"]) == len(row["suite"]["runs"]) == 1 and len(row["ratio_per_pair"]) == 1
    assert "suite/bare" in proc.stderr and "rows for" in proc.stderr
