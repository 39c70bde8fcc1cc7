"""Scope starvation: another scope's vectors must not starve recall in a seeded scope.

The case seen on a shared-index server, reproduced: scope A is seeded with 10^4 events (`memload seed`), then 600
varied nodes are written through the API into scope B, every one of them nearer to the benchmark queries than anything
in A (B's vectors are the queries' embeddings plus independent noise; A's are clustered around A's topic titles). The
queries — the Aionis kit's constant "memory graph perf" and two more — have answers in A in the only sense recall
knows: A holds 10^4 ready vectors, so a recall in A must return seeds (`expected_min_seeds: 1` in the query set).

* Ours: the seeder gave A partitions of its own, so A's stage 1 reads only A's HNSW index: recall stays non-empty
  and its p95 stays within 1.5x of before B existed (the plan is checked too: it never touches the default
  partition).
* With RECALL_SCOPE_PATH=false (the API setting that simulates an Aionis server's shared index: ANN over every scope
  first, scope filter after), B's 600 vectors fill the candidate list and A gets no seeds; the suite's `empty_recall`
  category counts every such request and `memload report` names ANN starvation.
* Two scopes sharing the default partition (A2 and B, both written through the API): on the ANN index path (forced
  with PGOPTIONS, as the planner chooses it once the shared partition is large), hnsw.iterative_scan keeps A2's recall
  non-empty; with iterative scan off, the same query starves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from memload import contract as C
from memload.embedder import fake_embed, fake_embed_many
from memory_api.recall_sql import STAGE1_SQL
from tests.support.cli import run_cli
from tests.support.reliability import Client, report
from tests.support.seed import add_source_vector

QUERIES = ("memory graph perf", "agent memory question", "what happened yesterday")
EVENTS, CROWD = 10_000, 600
REQUESTS = 100
FORCE_ANN = "-c enable_seqscan=off -c enable_bitmapscan=off -c enable_sort=off"
HIGH = {"tenant_recall_rps": "100000", "tenant_recall_burst": "100000"}


def query_set(path: Path, scope: str) -> Path:
    path.write_text(json.dumps({"scope": scope, "tenant_id": "default", "scope_key": scope,
                                "queries": [{"text": q, "expected_min_seeds": 1} for q in QUERIES]}))
    return path


def write_nodes(c: Client, scope: str, vectors: np.ndarray, prefix: str) -> None:
    """Through the API, 100 nodes (with their vectors) per write."""
    for start in range(0, len(vectors), 100):
        nodes = [{"client_id": f"{prefix}{i}", "type": "event", "text_summary": f"{prefix} note {i}",
                  "embedding": vectors[i].tolist(), "memory_lane": "shared"}
                 for i in range(start, min(start + 100, len(vectors)))]
        r = c.post(C.WRITE, {"scope": scope, "input_text": f"{prefix} batch {start}", "nodes": nodes})
        assert r.status == 200, r.body[:300]


def crowd_vectors(n: int, seed: int = 7) -> np.ndarray:
    """n distinct vectors, each one of the queries' embeddings plus its own noise (cosine ~0.9 to its query)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, C.EMBEDDING_DIM))
    for i in range(n):
        q = np.asarray(fake_embed(QUERIES[i % len(QUERIES)]))
        out[i] = q + rng.normal(0.0, 0.5 * np.linalg.norm(q) / np.sqrt(C.EMBEDDING_DIM), C.EMBEDDING_DIM)
    return out


def warm(c: Client, scope: str, rounds: int = 20) -> None:
    for _ in range(rounds):
        for q in QUERIES:
            assert c.post(C.RECALL_TEXT, {"scope": scope, "query_text": q, "limit": 20}).status == 200


def bench(base_url: str, scope: str, qs: Path, prefix: Path) -> dict[str, Any]:
    proc = run_cli("bench", "--base-url", base_url, "--scope", scope, "--mode", "recall", "--query-set", str(qs),
                   "--recall-requests", str(REQUESTS), "--recall-concurrency", "2", "--warmup", "5",
                   "--allow-empty-scope",  # a starved server's preflight recall finds no seeds either: measure it
                   "--csv", str(prefix), "--max-run-s", "120", timeout=300)
    rc, out, err = proc.returncode, proc.stdout, proc.stderr
    assert rc == 0 and out.strip(), err[-2000:]
    doc = json.loads(out)
    (prefix.parent / f"benchmark_{EVENTS}.json").write_text(out)
    return doc


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    c = doc["cases"][0]
    return {"p95_ms": c["latency_ms"]["p95"], "rps": c["rps"], "empty_recall": c["errors"]["empty_recall"],
            "ok": c["ok"], "total": c["total"]}


@pytest.mark.slow
def test_seeded_scope_is_not_starved_and_the_suite_detects_a_server_that_is(
        start_api: Any, fresh_db_url: str, tmp_path: Path) -> None:
    url = fresh_db_url
    add_source_vector(url, "rel_src")
    r = run_cli("seed", "--scope", "rel_a", "--src-scope", "rel_src", "--events", str(EVENTS), "--seed", "3",
                "--no-progress", env={"DATABASE_URL": url, "MEMLOAD_HOME": str(tmp_path / "home")}, in_process=True)
    rc, err = r.returncode, r.stderr
    assert rc == 0, err[-2000:]
    qs = query_set(tmp_path / "qs_a.json", "rel_a")
    api = start_api(database_url=url, **HIGH)
    c = Client(api.base_url)
    warm(c, "rel_a")  # both measurements start warm: a cold first run would flatter the comparison
    before = figures(bench(api.base_url, "rel_a", qs, tmp_path / "before" / "locust"))
    assert before["empty_recall"] == 0 and before["ok"] == REQUESTS

    write_nodes(c, "rel_b", crowd_vectors(CROWD), "b")
    warm(c, "rel_a")
    after = figures(bench(api.base_url, "rel_a", qs, tmp_path / "after" / "locust"))
    retried = None
    if after["p95_ms"] > 1.5 * before["p95_ms"]:  # a shared 2-core box: one re-measurement before judging
        retried = after
        after = figures(bench(api.base_url, "rel_a", qs, tmp_path / "after2" / "locust"))
    assert after["empty_recall"] == 0 and after["ok"] == REQUESTS
    assert after["p95_ms"] <= 1.5 * before["p95_ms"], (before, after, retried)
    with psycopg.connect(url) as conn:  # A's stage 1 reads A's partition only, whatever B holds
        conn.execute("SET plan_cache_mode = force_custom_plan")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + STAGE1_SQL.replace("%(q)s", "%(qt)s"),
            {"qt": str(fake_embed(QUERIES[0])), "scope": "rel_a", "oversample": 100, "limit": 20, "agent": None,
             "team": None}))
        b_in_default = conn.execute("SELECT count(*) FROM memory_nodes_default WHERE scope = 'rel_b'").fetchone()[0]
    assert b_in_default == CROWD and "memory_nodes_default" not in plan and "Index Scan using" in plan

    shared_index = start_api(database_url=url, recall_scope_path="false", **HIGH)
    starved_doc = bench(shared_index.base_url, "rel_a", qs, tmp_path / "starved" / "locust")
    starved = figures(starved_doc)
    assert starved["empty_recall"] == REQUESTS and starved["ok"] == 0, starved
    assert starved_doc["cases"][0]["by_status"] == {"empty_recall": REQUESTS}
    rep = run_cli("report", "--dir", str(tmp_path / "starved"), "--no-plots", timeout=180)
    assert rep.returncode == 0, rep.stderr[-1500:]
    text = (tmp_path / "starved" / "PERFORMANCE_REPORT_V1.md").read_text()
    assert "ANN starvation" in text and f"{REQUESTS} of {REQUESTS} recalls for questions that have answers" in text
    report("starvation_own_partition", events=EVENTS, crowd=CROWD, p95_before_ms=before["p95_ms"],
           p95_after_ms=after["p95_ms"], ratio=round(after["p95_ms"] / before["p95_ms"], 2),
           rps_before=before["rps"], rps_after=after["rps"], empty_before=before["empty_recall"],
           empty_after=after["empty_recall"], remeasured=retried is not None,
           shared_index_empty_recall=f"{starved['empty_recall']}/{starved['total']}",
           shared_index_p95_ms=starved["p95_ms"],
           shared_index_rps=starved["rps"])


@pytest.mark.slow
def test_shared_default_partition_iterative_scan_keeps_recall_non_empty(
        start_api: Any, fresh_db_url: str, tmp_path: Path) -> None:
    url = fresh_db_url
    api = start_api(database_url=url, **HIGH)
    c = Client(api.base_url)
    write_nodes(c, "rel_a2", fake_embed_many([f"a2 memory {i}" for i in range(300)]), "a")
    write_nodes(c, "rel_b2", crowd_vectors(CROWD, seed=11), "b")
    with psycopg.connect(url) as conn:
        conn.execute("ANALYZE memory_nodes")
        leaves = {r[0] for r in conn.execute("SELECT DISTINCT tableoid::regclass::text FROM memory_nodes")}
    assert leaves == {"memory_nodes_default"}  # both scopes share the default partition and its HNSW index
    qs = query_set(tmp_path / "qs_a2.json", "rel_a2")
    iterative = start_api(database_url=url, pgoptions=FORCE_ANN, **HIGH)
    kept = figures(bench(iterative.base_url, "rel_a2", qs, tmp_path / "iterative" / "locust"))
    plain = start_api(database_url=url, pgoptions=FORCE_ANN, hnsw_iterative_scan="off", **HIGH)
    lost = figures(bench(plain.base_url, "rel_a2", qs, tmp_path / "plain" / "locust"))
    assert kept["empty_recall"] == 0 and kept["ok"] == REQUESTS, kept
    assert lost["empty_recall"] == REQUESTS, lost  # the control: without iterative scan the same path starves
    report("starvation_shared_partition", a2_nodes=300, crowd=CROWD,
           iterative_scan_empty=f"{kept['empty_recall']}/{kept['total']}", iterative_p95_ms=kept["p95_ms"],
           no_iterative_scan_empty=f"{lost['empty_recall']}/{lost['total']}")
