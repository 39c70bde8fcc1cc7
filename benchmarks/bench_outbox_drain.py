"""Worker throughput benchmark: drain a backlog of N `embed_nodes` nodes and print nodes/s.

    .venv/bin/python -m benchmarks.bench_outbox_drain --nodes 5000 --nodes-per-row 1 --nodes-per-row 20

Each case runs on a scratch database created on the same server (embedded unless DATABASE_URL is set), migrated,
filled with pending event nodes + outbox rows written directly with SQL (exactly what the API writes), drained by
`--workers` in-process `OutboxWorker` loops (threads, one connection each, as `memload worker --concurrency N`;
default one per CPU), and dropped. JSON results go to stdout, a summary to stderr.

The backlog helpers are also used by tests/test_worker.py, so the tests and the benchmark build the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb

from memload import contract as C
from memload.identity import sha256_hex


# ------------------------------------------------------------------------------------------------ backlog helpers
def create_commit(conn: psycopg.Connection, scope: str, *, note: str = "") -> str:
    """A commit row for test/bench rows to hang on (nodes and outbox rows need one)."""
    chash = sha256_hex(f"bench:{scope}:{note}:{uuid.uuid4()}")
    row = conn.execute(
        "INSERT INTO memory_commits (scope, input_sha256, diff_json, actor, commit_hash)"
        " VALUES (%s, %s, '{}'::jsonb, 'bench', %s) RETURNING id::text", (scope, sha256_hex(note), chash)).fetchone()
    return row[0]


def insert_pending_nodes(conn: psycopg.Connection, scope: str, commit_id: str, texts: Sequence[str], *,
                         node_type: str = "event", lane: str = "shared") -> list[str]:
    """Pending nodes (no vector) with `text_summary` = text, as the API stores auto-embed nodes. Returns ids."""
    ids = [uuid.uuid4() for _ in texts]
    with conn.cursor().copy(
        "COPY memory_nodes (id, scope, type, text_summary, commit_id, embedding_status, memory_lane)"
        " FROM STDIN"
    ) as cp:
        for nid, text in zip(ids, texts, strict=True):
            cp.write_row((nid, scope, node_type, text, commit_id, "pending", lane))
    return [str(i) for i in ids]


def enqueue(conn: psycopg.Connection, scope: str, commit_id: str, event_type: str, payload: dict[str, Any]) -> int:
    """An outbox row with the API's job_key / payload_sha256. Returns its id."""
    from memory_api.worker import job_key

    key, psha = job_key(scope, commit_id, event_type, payload)
    row = conn.execute(
        "INSERT INTO memory_outbox (scope, commit_id, event_type, job_key, payload_sha256, payload)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id", (scope, commit_id, event_type, key, psha, Jsonb(payload)),
    ).fetchone()
    return int(row[0])


@dataclass
class Backlog:
    scope: str
    commit_id: str
    node_ids: list[str]
    texts: list[str]
    outbox_ids: list[int]


def build_embed_backlog(conn: psycopg.Connection, scope: str, n_nodes: int, nodes_per_row: int, *,
                        cluster: bool = False, force_reembed: bool = False, tag: str = "") -> Backlog:
    """`n_nodes` pending event nodes in `ceil(n/nodes_per_row)` embed_nodes rows of one commit.

    With `cluster`, each row also asks for a topic_cluster job of its events once embedded (the API's
    `after_topic_cluster_event_ids`).
    """
    tag = tag or secrets.token_hex(3)
    commit_id = create_commit(conn, scope, note=tag)
    texts = [f"bench backlog {tag} event #{i}" for i in range(n_nodes)]
    node_ids = insert_pending_nodes(conn, scope, commit_id, texts)
    outbox_ids: list[int] = []
    for start in range(0, n_nodes, nodes_per_row):
        chunk = list(zip(node_ids[start:start + nodes_per_row], texts[start:start + nodes_per_row], strict=True))
        payload: dict[str, Any] = {"nodes": [{"id": i, "text": t} for i, t in chunk]}
        if force_reembed:
            payload["force_reembed"] = True
        if cluster:
            payload["after_topic_cluster_event_ids"] = [i for i, _ in chunk]
        outbox_ids.append(enqueue(conn, scope, commit_id, C.OUTBOX_EMBED_NODES, payload))
    return Backlog(scope, commit_id, node_ids, texts, outbox_ids)


# ------------------------------------------------------------------------------------------------ scratch database
def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A migrated database of its own on the server of `server_url`, dropped afterwards."""
    from scripts.migrate import migrate

    admin = _with_database(server_url, "postgres")
    name = f"memload_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------------------------------ the benchmark
def drain(url: str, config: Any, *, workers: int = 1, max_batches: int = 100_000) -> dict[str, Any]:
    """Run `workers` in-process workers (threads, one connection each) until their batches claim nothing."""
    import threading

    from memory_api.worker import OutboxWorker

    batches: list[float] = []
    totals = {"claimed": 0, "processed": 0, "published": 0, "nodes_embedded": 0, "topic_cluster_runs": 0,
              "errors": 0}
    lock = threading.Lock()
    pool = [OutboxWorker(url, config) for _ in range(workers)]
    for w in pool:
        w.connect()

    def loop(worker: OutboxWorker) -> None:
        for _ in range(max_batches):
            stats = worker.run_batch()
            if stats.claimed == 0:
                return
            with lock:
                batches.append(stats.elapsed_ms)
                for k in totals:
                    totals[k] += getattr(stats, k)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(w,)) for w in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.perf_counter() - t0
    for w in pool:
        w.close()
    batches.sort()
    return {
        **totals,
        "workers": workers,
        "batches": len(batches),
        "wall_s": round(wall_s, 3),
        "nodes_per_sec": round(totals["nodes_embedded"] / wall_s, 1) if wall_s > 0 else 0.0,
        "rows_per_sec": round(totals["processed"] / wall_s, 1) if wall_s > 0 else 0.0,
        "batch_ms_p50": round(batches[len(batches) // 2], 2) if batches else 0.0,
        "batch_ms_max": round(batches[-1], 2) if batches else 0.0,
    }


def run_case(server_url: str, *, nodes: int, nodes_per_row: int, batch_size: int, embed_batch_rows: int,
             cluster: bool, workers: int = 1, without_hnsw: bool = False, embed_batch_nodes: int = 500
             ) -> dict[str, Any]:
    from memory_api.worker import WorkerConfig

    with scratch_database(server_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            if without_hnsw:  # diagnostic: the worker's own cost, without pgvector's per-row HNSW maintenance
                conn.execute("DROP INDEX IF EXISTS memory_nodes_default_ready_hot_warm_hnsw")  # per partition
            t0 = time.perf_counter()
            backlog = build_embed_backlog(conn, "default", nodes, nodes_per_row, cluster=cluster)
            build_s = time.perf_counter() - t0
        config = WorkerConfig(batch_size=batch_size, embed_batch_rows=embed_batch_rows,
                              embed_batch_nodes=embed_batch_nodes)
        result = drain(url, config, workers=workers)
        with psycopg.connect(url) as conn:
            ready = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'default' AND type = 'event'"
                                 " AND embedding_status = 'ready'").fetchone()[0]
            left = conn.execute("SELECT count(*) FROM memory_outbox WHERE published_at IS NULL").fetchone()[0]
    return {"nodes": nodes, "nodes_per_row": nodes_per_row, "rows": len(backlog.outbox_ids),
            "hnsw_index": not without_hnsw,
            "batch_size": batch_size, "embed_batch_rows": embed_batch_rows, "embed_batch_nodes": embed_batch_nodes,
            "cluster": cluster,
            "backlog_build_s": round(build_s, 3), "ready_after": ready, "unpublished_after": left, **result}


def main(argv: list[str] | None = None) -> int:
    from memload.config import Settings
    from scripts.embedded_db import resolve_database_url
    from scripts.options import add_option, add_switch, bounded_int

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_outbox_drain", description=__doc__.splitlines()[0])
    add_option(p, "--nodes", env="BENCH_WORKER_NODES", type=bounded_int(1, 200_000), default=5000,
               help="pending nodes in the backlog")
    p.add_argument("--nodes-per-row", type=bounded_int(1, 1000), action="append",
                   help="nodes per embed_nodes row; repeat for several cases (default: 1 and 20)")
    add_option(p, "--batch-size", env="OUTBOX_BATCH_SIZE", type=bounded_int(1, 200), default=20,
               help="rows per claim (contract LIMIT)")
    add_option(p, "--embed-batch-rows", env="OUTBOX_EMBED_BATCH_ROWS", type=bounded_int(1, 1000), default=200,
               help="max embed_nodes rows per claim (each case also runs with it equal to --batch-size)")
    add_option(p, "--embed-batch-nodes", env="OUTBOX_EMBED_BATCH_NODES", type=bounded_int(1, 100_000), default=500,
               help="node budget of one embed claim")
    add_option(p, "--workers", env="BENCH_WORKER_WORKERS", type=bounded_int(1, 8), default=os.cpu_count() or 1,
               help="concurrent worker loops (threads, one connection each; SKIP LOCKED splits the work), as "
                    "`memload worker --concurrency N`; default: one per CPU, since each embedded node is one HNSW "
                    "insert in a backend")
    add_switch(p, "--without-hnsw", env="BENCH_WORKER_WITHOUT_HNSW", default=False,
               help="diagnostic: drop the recall HNSW index in the scratch database, to separate the worker's own "
                    "cost from pgvector's index maintenance (each embedded node is one HNSW insert)")
    add_switch(p, "--cluster", env="BENCH_WORKER_CLUSTER", default=False,
               help="also run the topic_cluster jobs that embedding enqueues (drain time includes them)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    server = resolve_database_url(settings)
    results = []
    for npr in args.nodes_per_row or [1, 20]:
        for ebr in sorted({args.batch_size, args.embed_batch_rows}):
            r = run_case(server, nodes=args.nodes, nodes_per_row=npr, batch_size=args.batch_size,
                         embed_batch_rows=ebr, cluster=args.cluster, workers=args.workers,
                         without_hnsw=args.without_hnsw, embed_batch_nodes=args.embed_batch_nodes)
            results.append(r)
            print(f"[bench-worker] {r['nodes']} nodes, {r['nodes_per_row']}/row ({r['rows']} rows), "
                  f"{r['workers']} worker(s), hnsw index {'on' if r['hnsw_index'] else 'OFF'}, claim "
                  f"<= {r['embed_batch_rows']} embed rows/{r['embed_batch_nodes']} nodes: "
                  f"{r['nodes_per_sec']} nodes/s, {r['rows_per_sec']} rows/s, "
                  f"{r['batches']} batches in {r['wall_s']} s (batch p50 {r['batch_ms_p50']} ms)",
                  file=sys.stderr, flush=True)
    print(json.dumps({"ok": all(r["unpublished_after"] == 0 for r in results), "cases": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
