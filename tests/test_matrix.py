"""`memload matrix` end to end: every profile at SCALES=1000,3000 against a fresh database, local stack started by it.

Checks that every artifact of the seed document exists and that the numbers agree across files, and that an
interrupted run stops what it started and still writes a partial report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from memload.config import REPO_ROOT
from memload.errors import ExitCode
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow

SCALES = (1000, 3000)


def _matrix_env(db_url: str, out: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": db_url, "SCALES": ",".join(map(str, SCALES)), "OUT_DIR": str(out), "MATRIX_TAG": out.name,
        "MEMLOAD_HOME": str(out.parent / "memload_home"),  # the run registry of a test stays out of the user's
        "PORT": "0", "RECALL_REQUESTS": "60", "WRITE_REQUESTS": "30", "BENCH_WARMUP": "3",
        "WORKER_ITERATIONS": "3", "WORKER_BACKLOG_WRITES": "30", "ANN_QUERIES": "30",
    })
    env.update(extra)
    return env


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("profile", ["balanced", "recall_slo", "write_slo", "worker_slo"])
def test_matrix_profile_produces_consistent_artifacts(profile: str, fresh_db_url: str, tmp_path: Path) -> None:
    out = tmp_path / f"run_{profile}"
    env = _matrix_env(fresh_db_url, out, PERF_PROFILE=profile)
    if profile in ("recall_slo", "write_slo"):
        env.update({"RECALL_REQUESTS": "60", "WRITE_REQUESTS": "30", "BENCH_PACE_MS": "5"})
    proc = run_cli("matrix", env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "memload matrix configuration:" in proc.stderr  # configuration echoed first
    manifest = _load(out / "manifest.json")
    assert manifest["complete"] is True and manifest["config"]["PERF_PROFILE"] == profile
    switched_off = ({f"explain_{s}" for s in SCALES} if not manifest["config"]["RUN_EXPLAIN"] else set()) | (
        {"worker_benchmark"} if not manifest["config"]["RUN_WORKER_BENCHMARK"] else set())
    assert manifest["failed_phases"] == [] and {e["stage"] for e in manifest["not_measured"]} == switched_off
    assert manifest["target"]["kind"] == "reference" and "api_settings" in manifest  # the stack it started
    assert manifest["database"]["pgvector"] >= "0.8.4"
    phases = {p["name"]: p for p in manifest["phases"]}
    expected_mode = {"balanced": "all", "recall_slo": "recall", "write_slo": "write", "worker_slo": "recall"}[profile]
    for scale in SCALES:
        seed = _load(out / f"seed_{scale}.json")
        assert seed["ok"] is True and seed["inserted"]["events"] == scale
        assert seed["inserted"]["topics"] == scale // 100 and seed["inserted"]["edges"] == 2 * scale
        bench = _load(out / f"benchmark_{scale}.json")
        adapt = _load(out / f"benchmark_adapt_{scale}.json")
        attempts = sorted(out.glob(f"benchmark_{scale}_attempt*.json"))
        assert adapt["attempts_total"] == len(attempts) >= 1
        assert _load(attempts[-1]) == bench  # benchmark_<scale>.json = last attempt
        assert bench["scope"] == seed["scope"] and bench["params"]["mode"] == expected_mode
        names = {c["name"] for c in bench["cases"]}
        assert names == {"all": {"recall_text", "write"}, "recall": {"recall_text"}, "write": {"write"}}[expected_mode]
        for case in bench["cases"]:
            want = int(env["RECALL_REQUESTS"] if case["name"] == "recall_text" else env["WRITE_REQUESTS"])
            assert case["total"] == want and case["ok"] + case["failed"] == case["total"]
            assert sum(case["by_status"].values()) == case["total"]
        assert adapt["final"]["last_total_requests"] in (0, sum(c["total"] for c in bench["cases"]))
        assert (out / f"locust_{scale}_stats.csv").exists() and (out / f"locust_{scale}_exact.json").exists()
        assert phases[f"seed_{scale}"]["ok"] and phases[f"benchmark_{scale}"]["ok"]
        assert (out / f"explain_{scale}.txt").exists() == manifest["config"]["RUN_EXPLAIN"]
        ann = _load(out / f"ann_check_{scale}.json")  # before the benchmark: the recall the latency is for
        assert ann["scope"] == seed["scope"] and ann["queries"] == 30 and ann["exact"] == "numpy"
        assert ann["recall_at_k_distance"] >= 0.95 and ann["ef_search_used"] == 100 and not ann["ef_search_tuned"]
        assert phases[f"ann_check_{scale}"]["ok"]
        assert phases[f"ann_check_{scale}"]["started_at"] < phases[f"benchmark_{scale}"]["started_at"]
        _check_cost(out, scale, seed["scope"], _load(out / f"locust_{scale}_summary.json"))
    worker = out / "worker_baseline.json"
    assert worker.exists() == manifest["config"]["RUN_WORKER_BENCHMARK"]
    if worker.exists():
        wb = _load(worker)
        assert wb["totals"]["processed"] == sum(i["processed"] for i in wb["per_iteration"])
        assert wb["totals"]["processed"] > 0
    report = (out / "PERFORMANCE_REPORT_V1.md").read_text()
    assert "## Conclusion" in report
    if not switched_off:
        assert "PARTIAL" not in report.split("## Conclusion")[0]
    for scale in SCALES:
        bench = _load(out / f"benchmark_{scale}.json")
        for case in bench["cases"]:
            assert f"{case['latency_ms']['p95']:.2f} ms" in report, (case["name"], case["latency_ms"])
    plots = list((out / "plots").glob("*.png"))
    assert plots and all(p.stat().st_size > 1000 for p in plots)


def _check_cost(out: Path, scale: int, scope: str, summary: dict) -> None:
    """cost_<scale>.json lists the scope's own relations, samples every one of them throughout, and brackets the
    recall case with samples between which the API's and PostgreSQL's CPU moved. (Block counters are asserted only
    over longer cases: PostgreSQL publishes a backend's counts about once a second.)"""
    cost = _load(out / f"cost_{scale}.json")
    assert cost["scope"] == scope and cost["not_measured"] == {}, cost["not_measured"]
    assert cost["memory"]["shared_buffers_mb"] > 0 and cost["memory"]["host_mem_mb"] > 0
    rels = {r["name"]: r for r in cost["relations"]}
    assert not any(r["shared"] for r in rels.values())  # the scope's own partitions
    assert any(r["method"] == "hnsw" and r["mb"] > 0 for r in rels.values())
    assert any(r["kind"] == "toast" and r["table"] == "memory_nodes" for r in rels.values())  # the embeddings
    assert {r["table"] for r in rels.values()} == {"memory_nodes", "memory_edges"}
    samples = cost["samples"]
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert all(set(s["blocks"]) == set(rels) for s in samples)
    for name, case in summary["cases"].items():
        if not name.startswith("recall"):  # a few dozen writes may cost less than /proc's 10 ms ticks
            continue
        before = [s for s in samples if s["t"] <= case["first_start"]][-1]
        after = next(s for s in samples if s["t"] >= case["last_end"])
        for series in ("api", "postgres", "machine_busy"):
            assert after["cpu_s"][series] > before["cpu_s"][series], (name, series)


def test_interrupted_matrix_stops_its_processes_and_writes_partial_report(fresh_db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "run_interrupted"
    env = _matrix_env(fresh_db_url, out, SCALES="3000", RECALL_REQUESTS="100000", BENCH_PACE_MS="20")
    # SIGINT at its default: a test run in the background of a shell inherits it ignored, and a Python started
    # with SIGINT ignored never turns it into KeyboardInterrupt (as a backgrounded `memload matrix &` rightly would)
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "matrix"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    seen_children: set[int] = set()
    while time.monotonic() < deadline:
        if (out / "benchmark_3000_attempt1.json").exists() or any(out.glob("locust_3000*.csv")):
            break
        try:
            seen_children |= {c.pid for c in parent.children(recursive=True)}
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    time.sleep(3)
    seen_children |= {c.pid for c in parent.children(recursive=True)}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    manifest = _load(out / "manifest.json")
    assert manifest["interrupted"] is True and manifest["complete"] is False
    assert (out / "PERFORMANCE_REPORT_V1.md").exists()
    time.sleep(1)
    alive = [pid for pid in seen_children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == [], f"orphans: {alive}"


def test_matrix_raises_the_local_apis_ef_search_when_recall_misses(fresh_db_url: str, tmp_path: Path) -> None:
    """With ef_search 1 and no iterative scan, stage 1 returns one candidate: recall@10 is at most 0.1. The matrix
    measures that, restarts its API at the smallest swept ef_search that reaches SLO_MIN_RECALL, and benchmarks
    that API."""
    out = tmp_path / "run_tuned"
    env = _matrix_env(fresh_db_url, out, SCALES="1000", HNSW_EF_SEARCH="1", HNSW_ITERATIVE_SCAN="off",
                      ANN_EF_SWEEP="40,200", RUN_EXPLAIN="false", RUN_WORKER_BENCHMARK="false")
    proc = run_cli("matrix", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ann = _load(out / "ann_check_1000.json")
    assert ann["hnsw"]["ef_search"] == 1 and ann["recall_at_k_distance"] <= 0.1
    sweep = {r["ef_search"]: r for r in ann["ef_sweep"]}
    assert set(sweep) == {1, 40, 200} and sweep[200]["recall_at_k_distance"] >= 0.95
    assert ann["ef_search_used"] == ann["ef_search_for_target"] and ann["ef_search_tuned"] is True
    assert sweep[ann["ef_search_used"]]["recall_at_k_distance"] >= 0.95
    manifest = _load(out / "manifest.json")
    assert manifest["api_settings"]["hnsw_ef_search"] == 1
    assert manifest["api_settings"]["hnsw_ef_search_last"] == ann["ef_search_used"]
    api_log = (out / "logs" / "api.log").read_text()
    assert f"ef_search={ann['ef_search_used']}" in api_log.split("ef_search=1 ")[-1]  # the restarted API
    assert "restarting the local API with HNSW_EF_SEARCH" in proc.stderr


def test_matrix_targets_a_running_stack_and_starts_nothing(fresh_db_url: str, start_api, tmp_path: Path) -> None:
    api = start_api(database_url=fresh_db_url, TENANT_RECALL_RPS="1000", TENANT_RECALL_BURST="2000",
                    TENANT_WRITE_RPS="1000", TENANT_WRITE_BURST="2000")
    out = tmp_path / "run_remote"
    env = _matrix_env(fresh_db_url, out, SCALES="1000", BASE_URL=api.base_url, RUN_WORKER_BENCHMARK="false")
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    proc = run_cli("matrix", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = _load(out / "manifest.json")
    assert manifest["target"]["base_url"] == api.base_url and manifest["local_stack"] is None
    assert manifest["target"]["health_status"] == 200 and manifest["failed_phases"] == []
    assert "stack_up" not in {p["name"] for p in manifest["phases"]}
    assert _load(out / "benchmark_1000.json")["base_url"].rstrip("/") == api.base_url
    assert api.proc.poll() is None  # the target stack was left running
    cost = _load(out / "cost_1000.json")  # an API not started here: its processes unknown, its backends counted
    assert set(cost["not_measured"]) == {"api"} and cost["cpu"]["api"] is None
    assert "backends named memload-api" in cost["cpu"]["postgres"]  # GET /health said memload's reference API
    assert cost["samples"][-1]["cpu_s"]["postgres"] > cost["samples"][0]["cpu_s"]["postgres"]
    assert {c.pid for c in psutil.Process().children(recursive=True)} == before


def test_base_url_without_database_url_is_refused(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update({"BASE_URL": "http://127.0.0.1:9", "DATABASE_URL": "", "SCALES": "1000",
                "OUT_DIR": str(tmp_path / "r")})
    proc = run_cli("matrix", env=env, timeout=120)
    assert proc.returncode == ExitCode.USAGE
    assert "DATABASE_URL" in proc.stderr and "Traceback" not in proc.stderr
    failed = _load(tmp_path / "r" / "manifest.json")["failed_phases"]
    assert [f["name"] for f in failed] == ["configuration"] and "DATABASE_URL" in failed[0]["hint"]


def _scope_state(db_url: str, scope: str) -> tuple[int, int]:
    """(rows in memory_nodes, partitions of memory_nodes) of a default-tenant scope."""
    import psycopg

    from seeding.schema import scope_partitions

    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s", (scope,)).fetchone()[0]
        return int(rows), len(scope_partitions(conn, "memory_nodes", scope))


def test_keep_runs_leaves_only_the_last_runs_scopes(fresh_db_url: str, start_api, tmp_path: Path) -> None:
    api = start_api(database_url=fresh_db_url, TENANT_RECALL_RPS="1000", TENANT_RECALL_BURST="2000",
                    TENANT_WRITE_RPS="1000", TENANT_WRITE_BURST="2000")
    home = tmp_path / "home"
    tags = ["keep_a", "keep_b", "keep_c"]
    stderr = ""
    for tag in tags:
        env = _matrix_env(fresh_db_url, tmp_path / tag, SCALES="1000", BASE_URL=api.base_url, MATRIX_TAG=tag,
                          MEMLOAD_HOME=str(home), KEEP_RUNS="2", RUN_WORKER_BENCHMARK="false", RUN_EXPLAIN="false",
                          RECALL_REQUESTS="10", WRITE_REQUESTS="5", BENCH_WARMUP="1")
        proc = run_cli("matrix", env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stderr = proc.stderr
        rows, parts = _scope_state(fresh_db_url, f"perf_d_1000_{tag}")
        assert rows >= 1010 and parts == 1  # seeded nodes + the benchmark's writes, in the scope's own partition
    # the third run purged the first run's scope (partitions dropped) and kept the last two
    assert _scope_state(fresh_db_url, "perf_d_1000_keep_a") == (0, 0)
    assert _scope_state(fresh_db_url, "perf_d_1000_keep_b")[1] == 1
    assert _scope_state(fresh_db_url, "default")[0] >= 1  # the source scope is never touched
    hygiene = _load(tmp_path / "keep_c" / "manifest.json")["disk_hygiene"]
    assert [p["scope"] for p in hygiene["purged"]] == ["perf_d_1000_keep_a"] and hygiene["freed_bytes"] > 0
    said = [line for line in stderr.splitlines() if "purged" in line]
    assert len(said) == 1 and "keep_a" in said[0] and "freed" in said[0]
    registry = _load(home / "matrix_runs.json")
    assert [r["matrix_tag"] for r in registry["runs"]] == ["keep_b", "keep_c"]
