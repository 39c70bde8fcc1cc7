"""`memload ann-check`: recall@k of the HNSW path against exact search, with the API's HNSW settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memload.errors import ExitCode
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.seed import add_source_vector, seed


def test_ann_check_recall_on_a_clustered_scope(fresh_db_url: str, tmp_path: Path) -> None:
    add_source_vector(fresh_db_url, "src")
    seed(fresh_db_url, tmp_path, "annperf", events=2000, topics=20, seed=3)
    env = {"DATABASE_URL": fresh_db_url, "HNSW_EF_SEARCH": "64", "HNSW_ITERATIVE_SCAN": "relaxed_order"}
    proc = run_cli("ann-check", "--scope", "annperf", "--queries", "40", "--k", "10", "--min-recall", "0.95",
                   env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["recall_at_k"] >= 0.95 and out["recall_at_k_distance"] >= 0.95
    assert out["hnsw"] == {"ef_search": 64, "iterative_scan": "relaxed_order", "max_scan_tuples": 20000}
    assert out["queries"] == 40 and out["query_mix"] == {"topic_vectors": 20, "node_vectors": 20}
    assert out["vectors_in_scope"] == 2020
    # the figure is about the index: the plan scanned the scope partition's HNSW index, not a sequential scan,
    # and the ground truth did not (PostgreSQL 18 keeps a disabled index scan when asked through the parent)
    assert out["index_used"].startswith(partition_name("memory_nodes", "annperf"))
    assert out["index_used"].endswith("_ready_hot_warm_hnsw")
    assert out["exact"] == "sql" and out["exact_plan"].startswith("seq scan")
    assert out["latency_ms"]["exact_mean"] > out["latency_ms"]["index_mean"]
    # the client-side ground truth agrees with the SQL one
    fast = run_cli("ann-check", "--scope", "annperf", "--queries", "40", "--exact", "numpy", "--cross-check", "10",
                   env=env)
    assert fast.returncode == 0, fast.stderr
    fo = json.loads(fast.stdout)
    assert fo["exact_cross_check"] == {"queries": 10, "agreement_at_k": 1.0, "agreement_at_k_distance": 1.0}
    assert fo["recall_at_k"] == out["recall_at_k"]
    # the recall path: 150 candidates for the default limit of 30, re-ranked; the bare LIMIT k query beside it
    assert out["limit"] == 30 and out["candidates"] == 150 and 0.0 <= out["index_recall_at_k"] <= 1.0
    assert out["ef_sweep"] == [] and out["ef_search_for_target"] is None


def test_ann_check_sweeps_ef_search_and_names_the_smallest_that_reaches_the_target(fresh_db_url: str,
                                                                                     tmp_path: Path) -> None:
    """ef_search 1 without iterative scans returns one candidate (recall@10 ≤ 0.1); the sweep finds the value that
    reaches the target against the same ground truth."""
    add_source_vector(fresh_db_url, "src")
    seed(fresh_db_url, tmp_path, "sweep", events=2000, topics=20, seed=3)
    env = {"DATABASE_URL": fresh_db_url}
    proc = run_cli("ann-check", "--scope", "sweep", "--queries", "30", "--exact", "numpy", "--ef-search", "1",
                   "--iterative-scan", "off", "--ef-sweep", "2,64", "--target-recall", "0.95", env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rows = {r["ef_search"]: r for r in out["ef_sweep"]}
    assert set(rows) == {1, 2, 64}
    assert rows[1]["recall_at_k"] <= 0.1 and rows[1]["recall_at_k"] == out["recall_at_k"]
    assert rows[2]["recall_at_k"] <= 0.2 and rows[64]["recall_at_k_distance"] >= 0.95
    assert out["ef_search_for_target"] == 64 and out["target_recall"] == 0.95
    bad = run_cli("ann-check", "--scope", "sweep", "--k", "50", "--limit", "30", env=env)
    assert bad.returncode == ExitCode.USAGE and "--k" in bad.stderr.strip().splitlines()[-1]
    bad = run_cli("ann-check", "--scope", "sweep", "--ef-sweep", "100,x", env=env)
    assert bad.returncode == ExitCode.USAGE and "--ef-sweep" in bad.stderr


def test_ann_check_gate_and_empty_scope(fresh_db_url: str, tmp_path: Path) -> None:
    add_source_vector(fresh_db_url, "src")
    seed(fresh_db_url, tmp_path, "tiny", events=100, topics=2, seed=1, vectors="copy")
    # identical vectors: ids of the exact top k are arbitrary, distances all tie
    proc = run_cli("ann-check", "--scope", "tiny", "--queries", "10", "--min-recall", "1.0",
                   env={"DATABASE_URL": fresh_db_url})
    out = json.loads(proc.stdout)
    assert out["recall_at_k_distance"] == 1.0
    assert proc.returncode == (0 if out["recall_at_k"] >= 1.0 else 1)
    empty = run_cli("ann-check", "--scope", "nothing", env={"DATABASE_URL": fresh_db_url})
    assert empty.returncode == ExitCode.ERROR and "--scope" in empty.stderr.strip().splitlines()[-1]  # could not run


def test_recall_text_with_a_topic_title_finds_that_topics_events(fresh_db_url: str, tmp_path: Path,
                                                                 start_api: Callable[..., Any]) -> None:
    """The point of clustered vectors: through the API's fake provider, a topic title lands on its own cluster."""
    import urllib.request

    add_source_vector(fresh_db_url, "src")
    seed(fresh_db_url, tmp_path, "e2e", events=500, topics=5, seed=1)
    api = start_api(database_url=fresh_db_url)
    for k in range(1, 6):
        req = urllib.request.Request(
            api.base_url + "/v1/memory/recall_text", method="POST", headers={"content-type": "application/json"},
            data=json.dumps({"scope": "e2e", "query_text": f"perf topic #{k}", "limit": 10}).encode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            seeds = json.loads(resp.read())["seeds"]
        assert seeds[0]["type"] == "topic" and seeds[0]["title"] == f"perf topic #{k}"
        assert seeds[0]["similarity"] > 0.999
        events = [s for s in seeds if s["type"] == "event"]
        assert len(events) == 9
        assert all(int(s["text_summary"].rsplit("#", 1)[1]) % 5 == k % 5 for s in events), events
