"""Seed at scale, per index precision: `python -m benchmarks.bench_seed_scale [--scales 100000 300000 1000000]
[--precisions vector halfvec]`.

For each scale × precision: `memload seed`'s own code path (clustered vectors, the build sized by seeding.build_sizing)
into a scratch database of its own (created on the server of DATABASE_URL, else the embedded one, sized first so
its shared_buffers leaves the largest row's HNSW build its memory; dropped after the row), then ann-check's
recall@10 (the recall path's, and the bare index's LIMIT 10) against exact search (numpy ground truth over every
vector, 200 queries). It prints one table: load s, index s (all indexes) and HNSW s with the server's CPU seconds
for the HNSW build, the ready index's size, both recalls, the build plan (maintenance_work_mem, workers, whether the
graph spilled to disk) and the 1-minute load average before and after (a shared machine inflates wall times; CPU
seconds much less). Each finished row is also appended to --jsonl-out as it completes, so a long run can be
watched. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg

from memload.config import Settings
from memload.db import connect
from memload.embedder import fake_embed
from memload.precision import PRECISIONS
from scripts.embedded_db import Dataset, resolve_database_url, size_for
from scripts.migrate import migrate
from seeding.ann_check import HnswSettings, run_ann_check
from seeding.params import SeedParams, Tenancy, default_topics
from seeding.seed import run_seed

SCALES = (100_000, 300_000, 1_000_000)


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def _log(msg: str) -> None:
    print(f"[bench-seed-scale] {msg}", file=sys.stderr, flush=True)


def _tenancy(scope: str) -> Tenancy:
    return Tenancy.resolve(scope, "default", "default", flags=("--scope", "--tenant-id"))


def _add_source(url: str) -> None:
    from pgvector.psycopg import register_vector

    vec = np.asarray(fake_embed("bench source anchor"), dtype=np.float32)
    with connect(url) as conn:
        register_vector(conn)
        cid = conn.execute("INSERT INTO memory_commits (scope, input_sha256, commit_hash) VALUES ('src', 'x', 'h')"
                           " RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO memory_nodes (scope, type, embedding, embedding_status, commit_id)"
                     " VALUES ('src', 'event', %s, 'ready', %s)", (vec, cid))


def one(server: str, settings: Settings, events: int, precision: str, queries: int) -> dict[str, Any]:
    name = f"memload_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(server, name)
    load_before = os.getloadavg()[0]
    try:
        migrate(url)
        _add_source(url)
        params = SeedParams(target=_tenancy("scale"), source=_tenancy("src"), events=events, seed=42,
                            precision=precision, query_set_out=Path(f"/tmp/{name}_query_set.json")).validate()
        _log(f"{events:,} events, {precision}: seed")
        seed = run_seed(url, params, settings)
        _log(f"{events:,} events, {precision}: ann-check ({queries} queries, numpy exact)")
        hnsw = HnswSettings(settings.hnsw_ef_search, settings.hnsw_iterative_scan, settings.hnsw_max_scan_tuples)
        ann = run_ann_check(url, _tenancy("scale"), hnsw, queries=queries, k=10, seed=1, exact="numpy")
    finally:
        with psycopg.connect(server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    b = seed["index_build"]
    return {"events": events, "precision": seed["precision"], "load_s": seed["timings_s"]["load"],
            "index_s": seed["timings_s"]["index"], "hnsw_s": b["hnsw_seconds"], "hnsw_cpu_s": b["hnsw_cpu_s"],
            "index_mb": b["index_mb"], "recall_at_10": ann["recall_at_k"],
            "index_recall_at_10": ann["index_recall_at_k"], "index_used": ann["index_used"],
            "seed_s": round(seed["elapsed_ms"] / 1000, 1), "maintenance_work_mem": b["maintenance_work_mem"],
            "parallel_workers": b["parallel_workers"], "estimated_graph_mb": b["estimated_graph_mb"],
            "spilled_at_tuples": b["spilled_at_tuples"], "load_avg_before": round(load_before, 2),
            "load_avg_after": round(os.getloadavg()[0], 2), "reason": b["reason"]}


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'events':>9} {'precision':>9} {'load s':>7} {'index s':>8} {'hnsw s':>7} {'hnsw cpu s':>10} "
            f"{'index MB':>8} {'recall@10':>9} {'index r@10':>10} {'seed s':>7} {'mwm':>8} {'w':>2} {'spill':>7} "
            f"{'load avg':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        spill = "-" if r["spilled_at_tuples"] is None else f"{r['spilled_at_tuples']:,}"
        cpu = "?" if r["hnsw_cpu_s"] is None else f"{r['hnsw_cpu_s']:.0f}"
        lines.append(f"{r['events']:>9,} {r['precision']:>9} {r['load_s']:>7.1f} {r['index_s']:>8.1f} "
                     f"{r['hnsw_s']:>7.1f} {cpu:>10} {r['index_mb']:>8.0f} {r['recall_at_10']:>9.4f} "
                     f"{r['index_recall_at_10']:>10.4f} "
                     f"{r['seed_s']:>7.1f} {r['maintenance_work_mem']:>8} {r['parallel_workers']:>2} {spill:>7} "
                     f"{r['load_avg_before']:>5.1f}/{r['load_avg_after']:<5.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=list(SCALES), help="events per seed")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--queries", type=int, default=200, help="ann-check queries per row")
    ap.add_argument("--jsonl-out", default=None, help="append each finished row here as one JSON line")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    if not settings.database_url:  # the embedded server: shared_buffers leaves the largest build its memory
        largest = max((Dataset(e + default_topics(e), p) for e in args.scales for p in args.precisions),
                      key=lambda d: d.build_mb)
        _log(size_for(settings, largest, replace=True))
    server = _with_db(resolve_database_url(settings), "postgres")
    rows: list[dict[str, Any]] = []
    for events in args.scales:
        for precision in args.precisions:
            t0 = time.monotonic()
            rows.append(one(server, settings, events, precision, args.queries))
            _log(f"row done in {time.monotonic() - t0:.0f}s: {json.dumps(rows[-1])}")
            if args.jsonl_out:
                with open(args.jsonl_out, "a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
