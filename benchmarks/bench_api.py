"""Benchmark of the reference API: recall_text at concurrency 12 and write at concurrency 4.

    .venv/bin/python -m benchmarks.bench_api [--dataset seeder|copy|text] [--api-workers N] [--events 9900 --topics 100]
        [--compare-dir ../base-checkout --rounds 2 --recall-only]

1. Creates a throwaway database on the embedded server (or uses --database-url, which must be migrated) and a fresh
   scope of T topics + E events + 2E edges (the peer's perf-seed topology) in partitions of its own:
   - `--dataset seeder` (default): the kit's own seeder (`memload seed`, clustered vectors: each event near its
     topic's title embedding), the dataset every other kit measurement uses;
   - `--dataset copy`: the same seeder with every node the source's one vector (the seed document's SQL shape): all
     distances tie, seeds spread over many topics, stage 2 fills its edge budgets;
   - `--dataset text`: every node gets `fake_embed` of its own text. Those vectors are ~orthogonal to each other,
     the worst case for HNSW (a search visits far more of the graph) and for stage 2 (seeds spread over many topics).
2. Starts `memload api --workers N` on a free loopback port with rate limits raised far above the offered load (and,
   with --compare-dir, the API of another checkout on the same data: the cases then alternate between the two, round
   after round, so a before/after comparison shares one dataset and one stretch of machine noise).
3. Warms up, then runs the cases with threads of keep-alive http.client connections; latency = request sent to
   body read (client side) and the server's own Server-Timing total/db, nearest-rank percentiles.
4. Counts the CPU each request cost in the API, in PostgreSQL (the API's backends and the server's background
   processes only: other clients and other servers on a shared machine do not count) and in the load generator.
5. Prints one JSON document (stdout); progress on stderr. Everything it created is dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from memload import proc
from memload.client import (
    RECALL_TEXT,
    WRITE,
    json_headers,
    recall_text_body,
    write_body,
)
from memload.db import API_APPLICATION_NAME
from memload.errors import MemloadError
from memload.net import free_port
from scripts import stack
from scripts.pg_processes import CpuAccumulator, PgServer
from scripts.stack import ApiServer

REPO = Path(__file__).resolve().parents[1]
TARGETS_MS = {"recall_text": 60.0, "write": 15.0}


def log(msg: str) -> None:
    print(f"[bench-api] {msg}", file=sys.stderr, flush=True)


def pct(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile, as the peer's perf-benchmark: sorted[ceil(n*q) - 1]."""
    return sorted_ms[max(0, math.ceil(len(sorted_ms) * q) - 1)] if sorted_ms else float("nan")


# ------------------------------------------------------------------------------------------------------ seeding


def seed_with_seeder(url: str, base_url: str, scope: str, events: int, topics: int,
                     vectors: str = "clustered", precision: str | None = None) -> dict[str, Any]:
    """The kit's seeder (`memload seed` in process) into a new scope; its source vector is written through the API.
    vectors: clustered (the default dataset) or copy (every node the source's vector, as the seed document's SQL)."""
    from memload.config import Settings
    from scripts.matrix import ensure_source_vector
    from seeding.params import SeedParams, Tenancy
    from seeding.seed import run_seed

    settings = Settings.from_env()
    tenant = settings.memory_tenant_id
    ensure_source_vector(base_url, settings.memory_scope, tenant)
    params = SeedParams(target=Tenancy.resolve(scope, tenant, tenant, flags=("--scope", "--tenant-id")),
                        source=Tenancy.resolve(settings.memory_scope, tenant, tenant,
                                               flags=("--src-scope", "--src-tenant-id")),
                        events=events, topics=topics, seed=1, progress=False, vectors=vectors,
                        **({"precision": precision} if precision else {}))
    t0 = time.perf_counter()
    summary = run_seed(url, params, settings)
    totals = summary.get("totals_in_scope", {})
    return {"dataset": "seeder" if vectors == "clustered" else vectors, "nodes": totals.get("nodes"),
            "edges": totals.get("edges"), "vectors": params.vectors, "noise": params.noise,
            "precision": params.precision,
            "timings_ms": {"total": round((time.perf_counter() - t0) * 1000)}}


def seed(url: str, scope: str, events: int, topics: int) -> dict[str, Any]:
    """`--dataset text`: T topics + E events + 2E edges, each node its own text's fake_embed, loaded into the scope's
    own partitions (COPY, then ATTACH)."""
    import psycopg
    from pgvector.psycopg import register_vector

    from memload.embedder import fake_embed_many
    from memload.identity import sha256_hex

    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        name = dict(conn.execute(
            "SELECT t, memload_partition_name(t, %s) FROM unnest(ARRAY['memory_commits','memory_nodes',"
            "'memory_edges','memory_outbox']) t", (scope,)).fetchall())
        conn.execute(f'CREATE TABLE "{name["memory_commits"]}" PARTITION OF memory_commits FOR VALUES IN (%s)'
                     .replace("%s", _lit(scope)))
        conn.execute(f'CREATE TABLE "{name["memory_outbox"]}" PARTITION OF memory_outbox FOR VALUES IN (%s)'
                     .replace("%s", _lit(scope)))
        commit_id = conn.execute(
            "INSERT INTO memory_commits (scope, input_sha256, diff_json, actor, commit_hash) "
            "VALUES (%s, %s, %s::jsonb, 'job:perf_seed', %s) RETURNING id",
            (scope, sha256_hex(scope), json.dumps({"kind": "bench_api", "events": events, "topics": topics}),
             sha256_hex("bench:" + scope))).fetchone()[0]
        for table in ("memory_nodes", "memory_edges"):
            conn.execute(f'CREATE TABLE "{name[table]}" (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
        topic_ids = [uuid.uuid4() for _ in range(topics)]
        event_ids = [uuid.uuid4() for _ in range(events)]
        t_load = time.perf_counter()
        cols = ("id, scope, type, tier, title, text_summary, embedding, embedding_status, embedding_ready_at, "
                "embedding_model, memory_lane, salience, importance, confidence, commit_id")
        # Enum columns travel as text: in binary COPY an enum's wire format is its label.
        types = ["uuid", "text", "text", "text", "text", "text", "vector", "text", "timestamptz", "text", "text",
                 "float4", "float4", "float4", "uuid"]
        now = conn.execute("SELECT now()").fetchone()[0]
        with conn.cursor() as cur, cur.copy(f'COPY "{name["memory_nodes"]}" ({cols}) FROM STDIN (FORMAT BINARY)') \
                as copy:
            copy.set_types(types)
            batch = 2000
            for kind, ids, title_fmt, summary_fmt, sal, conf in (
                ("topic", topic_ids, "perf topic #{}", "synthetic perf topic #{}", 0.4, 0.9),
                ("event", event_ids, None, "synthetic perf event #{}", 0.5, 0.8),
            ):
                for start in range(0, len(ids), batch):
                    chunk = ids[start:start + batch]
                    texts = [(title_fmt or summary_fmt).format(start + i + 1) for i in range(len(chunk))]
                    vecs = fake_embed_many(texts).astype(np.float32)
                    for i, node_id in enumerate(chunk):
                        k = start + i + 1
                        copy.write_row((node_id, scope, kind, "hot", title_fmt.format(k) if title_fmt else None,
                                        summary_fmt.format(k), vecs[i], "ready", now, "perf:seed", "shared", sal,
                                        sal, conf, commit_id))
        with conn.cursor() as cur, cur.copy(
                f'COPY "{name["memory_edges"]}" (id, scope, type, src_id, dst_id, weight, confidence, decay_rate, '
                "commit_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "text", "text", "uuid", "uuid", "float4", "float4", "float4", "uuid"])
            for k, ev in enumerate(event_ids):
                top = topic_ids[k % topics]
                copy.write_row((uuid.uuid4(), scope, "part_of", ev, top, 0.75, 0.75, 0.01, commit_id))
                copy.write_row((uuid.uuid4(), scope, "derived_from", top, ev, 1.0, 1.0, 0.01, commit_id))
        t_attach = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        for table in ("memory_nodes", "memory_edges"):
            conn.execute(f'ALTER TABLE {table} ATTACH PARTITION "{name[table]}" FOR VALUES IN ({_lit(scope)})')
        t_analyze = time.perf_counter()
        conn.execute(f'ANALYZE "{name["memory_nodes"]}"')
        conn.execute(f'ANALYZE "{name["memory_edges"]}"')
        nodes = conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s", (scope,)).fetchone()[0]
        edges = conn.execute("SELECT count(*) FROM memory_edges WHERE scope = %s", (scope,)).fetchone()[0]
    end = time.perf_counter()
    return {"dataset": "text", "nodes": nodes, "edges": edges, "partitions": sorted(name.values()),
            "timings_ms": {"load": round((t_attach - t_load) * 1000), "attach_index": round((t_analyze - t_attach)
                                                                                             * 1000),
                           "total": round((end - t0) * 1000)}}


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------------------ cpu


METER_APP = "memload-bench-meter"


class CpuMeter:
    """CPU seconds spent during a case by the API's process tree, the database server's processes serving it (the
    API's backends and the server's own background processes; every process named postgres when the server is not
    local) and this benchmark (the load generator), read from /proc before and after. It shows where a request's CPU
    goes and how busy the cores were: on 2 cores, throughput is bounded by 2 s / (CPU per request)."""

    def __init__(self, api_pid: int, pg: PgServer | None = None) -> None:
        self.api_pid = api_pid
        self.pg = pg if pg is not None and pg.postmaster is not None else None
        self.pg_cpu = CpuAccumulator(self.pg.own_cpu()) if self.pg is not None else None
        self.before = self._sample()

    def _sample(self) -> dict[str, float]:
        table = proc.process_table()
        me = os.getpid()
        out = {"api": proc.tree_seconds(table, self.api_pid),  # the uvicorn supervisor and its worker processes
               "load_generator": table[me][2] if me in table else 0.0}
        if self.pg_cpu is None:
            out["postgres"] = sum(t[2] for t in table.values() if t[0] == "postgres")
        return out

    def result(self, requests: int, wall_s: float) -> dict[str, Any]:
        after = self._sample()
        used = {k: max(0.0, after[k] - self.before[k]) for k in after}
        if self.pg is not None and self.pg_cpu is not None:
            used["postgres"] = self.pg_cpu.add(self.pg.own_cpu())
        total = sum(used.values())
        per = {k: round(v * 1000 / requests, 2) for k, v in used.items()} if requests else {}
        per["total"] = round(total * 1000 / requests, 2) if requests else 0.0
        cpus = os.cpu_count() or 1
        return {"cpu_ms_per_request": per,
                "cpu_busy_fraction": round(total / (wall_s * cpus), 3) if wall_s else None,
                "cpu_bound_rps": round(cpus * 1000 / per["total"], 1) if per.get("total") else None}


def sql_floor(url: str, scope: str, query_text: str, limit: int, iterations: int) -> dict[str, Any]:
    """PostgreSQL CPU of the recall's bare SQL: the statements the API sends for one recall_text (stage 1 at the
    configured ef_search, stage 2, the node fetch, the audit row and COMMIT), on one connection configured as the
    API's pool configures it, without HTTP or the API's Python. Read from /proc for that one backend: the database's
    share of a recall that no change to the API can remove while the SQL and its plans stay as they are."""
    import psycopg
    from pgvector.psycopg import register_vector

    from memload import precision
    from memload.config import Settings
    from memload.embedder import fake_embed_many
    from memory_api import recall_sql as Q
    from memory_api.db import session_settings
    from memory_api.recall import edge_budgets, oversample, uuid_array

    settings = Settings.from_env()
    conn = psycopg.connect(url, application_name="memload-bench-floor")
    try:
        conn.autocommit = True
        for name, value in session_settings(settings):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        register_vector(conn)
        conn.autocommit = False
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        vec = fake_embed_many([query_text])[0].astype(np.float32)
        prec = precision.scope_precision(conn, scope)  # the statement the API sends for this scope
        stage1 = precision.follow(Q.STAGE1_SQL, prec).replace("%(q)s", "%(q)b")
        p1 = {"q": vec, "scope": scope, "oversample": oversample(limit), "limit": limit, "agent": None, "team": None}
        seed_ids = [r[0] for r in conn.execute(stage1, p1).fetchall()]
        edge_budget, hop1, hop2 = edge_budgets(100)
        p2 = {"seed_ids": uuid_array(seed_ids), "scope": scope, "min_w": 0.0, "min_c": 0.0, "hop1_budget": hop1,
              "hop2_budget": hop2, "edge_budget": edge_budget}
        edges = conn.execute(Q.STAGE2_HOP2_SQL, p2).fetchall()
        ids = list(dict.fromkeys([*seed_ids, *(x for e in edges for x in (e[2], e[3]))]))[:200]
        p3 = {"scope": scope, "ids": uuid_array(ids), "want_slots": False, "agent": None, "team": None}
        pa = {"scope": scope, "endpoint": "recall_text", "agent": None, "team": None, "query_sha256": "0" * 64,
              "seeds": len(seed_ids), "nodes": min(50, len(ids)), "edges": min(100, len(edges))}
        conn.commit()
        steps = {
            "stage1": lambda: conn.execute(stage1, p1).fetchall(),
            "stage2": lambda: conn.execute(Q.STAGE2_HOP2_SQL, p2).fetchall(),
            "node_fetch": lambda: conn.execute(Q.NODES_SQL, p3).fetchall(),
            "audit_commit": lambda: (conn.execute(Q.AUDIT_SQL, pa), conn.commit()),
        }
        used = dict.fromkeys(steps, 0.0)
        for i in range(iterations + 10):  # the first 10 warm the caches and psycopg's prepared statements
            for name, step in steps.items():
                before = proc.cpu_seconds(backend)
                step()
                if i >= 10:  # /proc counts clock ticks: per step a 0 or a tick, unbiased over many iterations
                    used[name] += proc.cpu_seconds(backend) - before
        conn.execute("DELETE FROM memory_recall_audit WHERE scope = %s AND query_sha256 = %s", (scope, "0" * 64))
        conn.commit()
    finally:
        conn.close()
    per = {k: round(v * 1000 / iterations, 2) for k, v in used.items()}
    return {"iterations": iterations, "seeds": len(seed_ids), "edges": len(edges), "nodes": len(ids),
            "ef_search": settings.hnsw_ef_search, "postgres_cpu_ms": {**per, "total": round(sum(per.values()), 2)}}


# ------------------------------------------------------------------------------------------------------ load


class Case:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lat_ms: list[float] = []
        self.server_total: list[float] = []
        self.server_db: list[float] = []
        self.status: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.wall_s = 0.0
        self.cpu: dict[str, Any] = {}

    def record(self, ms: float, status: str, timing: str | None) -> None:
        with self.lock:
            self.status[status] += 1
            if status == "200":
                self.lat_ms.append(ms)
                if timing:
                    parts = dict(p.strip().split(";dur=") for p in timing.split(","))
                    self.server_total.append(float(parts["total"]))
                    self.server_db.append(float(parts["db"]))

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.lat_ms)
        st, sd = sorted(self.server_total), sorted(self.server_db)
        total = sum(self.status.values())
        r = lambda x: round(x, 2)  # noqa: E731
        return {
            "total": total, "ok": self.status.get("200", 0), "by_status": dict(self.status),
            "rps": r(total / self.wall_s) if self.wall_s else None,
            "latency_ms": {"p50": r(pct(lat, 0.5)), "p95": r(pct(lat, 0.95)), "p99": r(pct(lat, 0.99)),
                           "max": r(lat[-1]) if lat else None, "mean": r(sum(lat) / len(lat)) if lat else None},
            "server_timing_ms": {"total_p50": r(pct(st, 0.5)), "total_p95": r(pct(st, 0.95)),
                                 "db_p50": r(pct(sd, 0.5)), "db_p95": r(pct(sd, 0.95))},
            **self.cpu,
        }


def run_case(case: Case, port: int, path: str, bodies: list[bytes], concurrency: int, timeout_s: float,
             deadline: float, api_pid: int | None = None, pg: PgServer | None = None) -> None:
    """`concurrency` threads share the body list (closed model, no pacing), each on one keep-alive connection."""
    next_i = iter(range(len(bodies)))
    it_lock = threading.Lock()
    headers = json_headers()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        while time.monotonic() < deadline:
            with it_lock:
                i = next(next_i, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[i], headers=headers)
                resp = conn.getresponse()
                resp.read()
                case.record((time.perf_counter() - t0) * 1000, str(resp.status), resp.getheader("server-timing"))
            except (OSError, http.client.HTTPException) as exc:
                case.record((time.perf_counter() - t0) * 1000, f"error:{type(exc).__name__}", None)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    meter = CpuMeter(api_pid, pg) if api_pid is not None else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + timeout_s))
    case.wall_s = time.perf_counter() - t0
    if meter is not None:
        case.cpu = meter.result(sum(case.status.values()), case.wall_s)


# ------------------------------------------------------------------------------------------------------ main



def start_api(url: str, port: int, workers: int = 1, checkout: Path = REPO) -> ApiServer:
    """`memload api` of `checkout` (this repository, or another revision's worktree to compare against) with rate
    limits far above the offered load, started the stack's way."""
    big = "1000000"
    env = {"RECALL_RATE_LIMIT_RPS": big, "RECALL_RATE_LIMIT_BURST": big,
           "WRITE_RATE_LIMIT_RPS": big, "WRITE_RATE_LIMIT_BURST": big, "TENANT_RECALL_RPS": big,
           "TENANT_RECALL_BURST": big, "TENANT_WRITE_RPS": big, "TENANT_WRITE_BURST": big,
           "RECALL_TEXT_EMBED_RATE_LIMIT_RPS": big, "RECALL_TEXT_EMBED_RATE_LIMIT_BURST": big,
           "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_RPS": big, "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_BURST": big,
           "MEMLOAD_API_LOG_LEVEL": "WARNING"}
    try:
        return stack.start_api(url, port=port, workers=workers, checkout=checkout, env=env, startup_timeout_s=30)
    except MemloadError as exc:
        raise SystemExit(f"bench-api: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                    help="a migrated database to use (default: a throwaway database on the embedded server)")
    ap.add_argument("--precision", choices=("vector", "halfvec"), default=None,
                    help="the seeded scope's HNSW index precision (default: the seeder's); vector to compare with a "
                         "revision whose recall predates halfvec indexes")
    ap.add_argument("--dataset", choices=("seeder", "copy", "text"), default="seeder",
                    help="seeder: the kit's clustered dataset (default); copy: the seeder with every node the same "
                         "copied vector; text: each node embeds its own text (worst case for HNSW)")
    ap.add_argument("--api-workers", type=int, default=os.cpu_count() or 1,
                    help="uvicorn worker processes of the API (default: one per CPU; one Python process cannot use "
                         "the second core)")
    ap.add_argument("--compare-dir", type=Path, default=None,
                    help="also start the API of another checkout (e.g. a git worktree of the base revision) and run "
                         "every case against both, alternating, on the same data")
    ap.add_argument("--rounds", type=int, default=1, help="times each case runs per API (alternating with "
                                                          "--compare-dir)")
    ap.add_argument("--recall-only", action="store_true", help="skip the write case")
    ap.add_argument("--scope", default=None,
                    help="measure this already seeded scope of --database-url (not seeded, not purged; the recall "
                         "audit rows the run adds are deleted; with --recall-only nothing is written to it) instead "
                         "of seeding a new one")
    ap.add_argument("--sql-floor", type=int, default=300, metavar="N",
                    help="also measure the PostgreSQL CPU of the recall's bare SQL over N recalls (0: skip)")
    ap.add_argument("--events", type=int, default=9900)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--recall-requests", type=int, default=600)
    ap.add_argument("--recall-concurrency", type=int, default=12)
    ap.add_argument("--write-requests", type=int, default=300)
    ap.add_argument("--write-concurrency", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=120.0, help="hard bound on each case's duration")
    args = ap.parse_args(argv)
    for name in ("events", "topics", "recall_requests", "write_requests"):
        if not 1 <= getattr(args, name) <= 1_000_000:
            ap.error(f"--{name.replace('_', '-')}: expected 1..1000000")
    if not 1 <= args.api_workers <= 16:
        ap.error("--api-workers: expected 1..16")
    if not (1 <= args.recall_concurrency <= 64 and 1 <= args.write_concurrency <= 64):
        ap.error("--recall-concurrency/--write-concurrency: expected 1..64")
    if not 1 <= args.rounds <= 20:
        ap.error("--rounds: expected 1..20")
    if args.scope is not None and not args.database_url:
        ap.error("--scope: needs --database-url (the database that holds the seeded scope)")
    if not 0 <= args.sql_floor <= 100_000:
        ap.error("--sql-floor: expected 0..100000")
    if args.compare_dir is not None and not (args.compare_dir / "memory_api" / "recall.py").is_file():
        ap.error(f"--compare-dir: {args.compare_dir} is not a memload checkout (no memory_api/recall.py)")

    import psycopg

    from memload.config import Settings
    from scripts import embedded_db
    from scripts.migrate import migrate

    scope = args.scope or f"bench_api_{uuid.uuid4().hex[:8]}"
    audit_before = 0
    throwaway = None
    url = args.database_url
    admin = None
    if not url:
        server = embedded_db.resolve_database_url(Settings.from_env())
        admin = server.replace("/memload?", "/postgres?")
        throwaway = f"memload_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{throwaway}"')
        url = server.replace("/memload?", f"/{throwaway}?")
        migrate(url)
    apis: dict[str, tuple[ApiServer, int]] = {}
    pg: PgServer | None = None
    try:
        port = free_port()
        if args.scope is not None:
            with psycopg.connect(url) as conn:
                audit_before = conn.execute("SELECT coalesce(max(id), 0) FROM memory_recall_audit").fetchone()[0]
                n_nodes, n_edges = conn.execute(
                    "SELECT (SELECT count(*) FROM memory_nodes WHERE scope = %(s)s),"
                    " (SELECT count(*) FROM memory_edges WHERE scope = %(s)s)", {"s": scope}).fetchone()
            if not n_nodes:
                raise SystemExit(f"bench-api: --scope: {scope!r} has no nodes in this database")
            seeded = {"dataset": "existing scope", "nodes": n_nodes, "edges": n_edges, "timings_ms": {"total": 0}}
            apis["this"] = (start_api(url, port, args.api_workers), port)
        elif args.dataset == "text":
            log(f"seeding {args.topics} topics + {args.events} events into scope {scope} (own partitions, text)")
            seeded = seed(url, scope, args.events, args.topics)
            apis["this"] = (start_api(url, port, args.api_workers), port)
        else:
            log(f"seeding {args.topics} topics + {args.events} events into scope {scope} (own partitions, dataset "
                f"{args.dataset})")
            apis["this"] = (start_api(url, port, args.api_workers), port)
            seeded = seed_with_seeder(url, f"http://127.0.0.1:{port}", scope, args.events, args.topics,
                                      "clustered" if args.dataset == "seeder" else "copy", args.precision)
        took = "" if args.scope else f" in {seeded['timings_ms']['total']} ms"
        log(f"{'existing scope:' if args.scope else 'seeded'} {seeded['nodes']} nodes / {seeded['edges']} edges{took}")
        if args.compare_dir is not None:
            port2 = free_port()
            apis["compare"] = (start_api(url, port2, args.api_workers, args.compare_dir.resolve()), port2)
        pg = PgServer(url, meter_app=METER_APP, client_app=API_APPLICATION_NAME)
        floor = None
        if args.sql_floor and pg.postmaster is not None:
            log(f"SQL floor: the recall's bare statements x{args.sql_floor} on one connection")
            floor = sql_floor(url, scope, "memory graph perf", 20, args.sql_floor)
            log(f"SQL floor: PostgreSQL CPU per recall {floor['postgres_cpu_ms']} ms (seeds {floor['seeds']}, edges "
                f"{floor['edges']}, nodes {floor['nodes']}, ef_search {floor['ef_search']})")
        run_tag = f"{int(time.time() * 1000)}_{uuid.uuid4().hex[:6]}"
        tenant = Settings.from_env().memory_tenant_id  # the API's default tenant: the scope is stored as named
        recall_body = recall_text_body(tenant, scope, "memory graph perf", 20)
        for label, (_, api_port) in apis.items():
            run_case(Case("warmup"), api_port, RECALL_TEXT, [recall_body] * args.warmup, 1, 15,
                     time.monotonic() + 60)
            if args.recall_only:
                continue  # no write at all: an existing --scope is left unchanged
            writes_warm = [write_body(tenant, scope, f"warm_{run_tag}_{label}", i, False) for i in range(args.warmup)]
            run_case(Case("warmup"), api_port, WRITE, writes_warm, 1, 15, time.monotonic() + 60)

        load_at_start = round(os.getloadavg()[0], 2)
        api_settings = Settings.from_env()
        rounds: list[dict[str, Any]] = []
        cases: dict[str, Case] = {}
        for r in range(args.rounds):
            for label, (proc, api_port) in apis.items():
                tag = f"{run_tag}_{r}_{label}"
                if len(apis) > 1 or args.rounds > 1:
                    log(f"round {r + 1}/{args.rounds}, API {label}")
                cases = _run_cases(args, tenant, scope, recall_body, tag, proc, api_port, pg)
                rounds.append({"round": r + 1, "api": label, "cases": {n: c.summary() for n, c in cases.items()}})
        this_cases = [x for x in rounds if x["api"] == "this"][-1]["cases"]
        out = {
            "ok": all(c["ok"] == c["total"] for x in rounds for c in x["cases"].values()),
            "scope": scope, "seed": seeded,
            "params": {k: getattr(args, k) for k in ("dataset", "api_workers", "events", "topics", "recall_requests",
                                                     "recall_concurrency", "write_requests", "write_concurrency",
                                                     "warmup", "rounds")},
            "host": {"cpus": os.cpu_count(), "loadavg_1m_at_start": load_at_start,
                     "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
                     "postgres_cpu_counted": "the API's backends and the server's background processes"
                     if pg.postmaster else "every postgres process"},
            "api_settings": {k: getattr(api_settings, k) for k in ("hnsw_ef_search", "hnsw_iterative_scan",
                                                                   "hnsw_max_scan_tuples", "db_pool_max")},
            "cases": this_cases,
            "sql_floor": floor,
        }
        if len(rounds) > 1:
            out["compare_dir"] = str(args.compare_dir) if args.compare_dir else None
            out["rounds"] = rounds
        out["targets_p95_ms"] = {k: v for k, v in TARGETS_MS.items() if k in this_cases}
        out["meets_targets"] = {k: this_cases[k]["latency_ms"]["p95"] <= v for k, v in out["targets_p95_ms"].items()}
        for x in rounds:
            for name, c in x["cases"].items():
                cpu = c.get("cpu_ms_per_request") or {}
                who = f"[{x['api']} r{x['round']}] " if len(rounds) > 1 else ""
                log(f"{who}{name}: p50/p95 {c['latency_ms']['p50']}/{c['latency_ms']['p95']} ms at {c['rps']} req/s; "
                    f"CPU per request {cpu.get('total')} ms (api {cpu.get('api')}, postgres {cpu.get('postgres')}, "
                    f"load generator {cpu.get('load_generator')}); cores {c.get('cpu_busy_fraction')} busy; "
                    f"CPU-bound ceiling {c.get('cpu_bound_rps')} req/s")
        print(json.dumps(out, indent=2))
        return 0 if out["ok"] else 1
    finally:
        if pg is not None:
            pg.close()
        for api, _ in apis.values():
            api.stop()
        if throwaway and admin:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{throwaway}" WITH (FORCE)')
        elif args.scope is not None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM memory_recall_audit WHERE id > %s AND scope = %s", (audit_before, scope))
        elif url:
            _drop_scope(url, scope)


def _run_cases(args: argparse.Namespace, tenant: str, scope: str, recall_body: bytes, tag: str,
               proc: ApiServer, port: int, pg: PgServer) -> dict[str, Case]:
    """recall_text at c=N (constant query), at c=1, with distinct queries, then writes (unless --recall-only)."""
    cases: dict[str, Case] = {}
    log(f"recall_text x{args.recall_requests} at concurrency {args.recall_concurrency} (constant query)")
    cases["recall_text"] = Case("recall_text")
    run_case(cases["recall_text"], port, RECALL_TEXT, [recall_body] * args.recall_requests,
             args.recall_concurrency, 15, time.monotonic() + args.max_seconds, proc.pid, pg)
    log("recall_text at concurrency 1 (service time without queueing)")
    cases["recall_text_c1"] = Case("recall_text_c1")
    run_case(cases["recall_text_c1"], port, RECALL_TEXT,
             [recall_body] * max(1, args.recall_requests // 4), 1, 15, time.monotonic() + args.max_seconds,
             proc.pid, pg)
    log("recall_text with distinct queries (every request misses the embedding cache)")
    distinct = [recall_text_body.__wrapped__(tenant, scope, f"perf topic #{i % args.topics + 1} q{i} {tag}", 20)
                for i in range(args.recall_requests)]  # (not through the body cache: each is sent once)
    cases["recall_text_distinct"] = Case("recall_text_distinct")
    run_case(cases["recall_text_distinct"], port, RECALL_TEXT, distinct, args.recall_concurrency, 15,
             time.monotonic() + args.max_seconds, proc.pid, pg)
    if args.recall_only:
        return cases
    log(f"write x{args.write_requests} at concurrency {args.write_concurrency}")
    writes = [write_body(tenant, scope, tag, i, False) for i in range(args.write_requests)]
    cases["write"] = Case("write")
    run_case(cases["write"], port, WRITE, writes, args.write_concurrency, 15,
             time.monotonic() + args.max_seconds, proc.pid, pg)
    return cases


def _drop_scope(url: str, scope: str) -> None:
    """Remove the scope from a database the benchmark did not create: the kit's purge (partitions detached, then
    dropped), plus its recall audit rows."""
    import psycopg

    from memload.config import Settings
    from seeding.params import Tenancy
    from seeding.purge import run_purge

    tenant = Settings.from_env().memory_tenant_id
    run_purge(url, Tenancy.resolve(scope, tenant, tenant, flags=("--scope", "--tenant-id")), mode="auto",
              batch_size=5000, apply=True, allow_fallback_delete=True, fail_on_delete=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM memory_recall_audit WHERE scope = %s", (scope,))

if __name__ == "__main__":
    sys.exit(main())
