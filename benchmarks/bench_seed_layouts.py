"""Seeding into the two layouts side by side: `python -m benchmarks.bench_seed_layouts [--events N]`.

The same seed (E events, E/100 topics, 2E edges, clustered vectors, one seed number) goes
* into an Aionis-shaped database (tests/fixtures/aionis/schema.sql: plain tables shared by every scope, three live
  HNSW indexes and the target's btree indexes, another scope's rows present): binary COPY into the live tables, every
  index maintained row by row, as `memload seed` does on such a server;
* into memload's own partitioned schema: load into standalone tables, build the indexes once, attach.
It prints both wall times, the phase split and rows/s (nodes + edges stored per second). Each database is created
for the run on the server of DATABASE_URL (else the embedded one) and dropped afterwards, so nobody's scopes are
touched. A developer benchmark that prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from memload.config import REPO_ROOT, Settings
from memload.embedder import fake_embed
from scripts.embedded_db import resolve_database_url
from scripts.migrate import migrate
from seeding.params import SeedParams, Tenancy
from seeding.seed import run_seed

AIONIS_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "aionis" / "schema.sql"
SOURCE_SCOPE = "default"  # the Aionis-shaped schema's own rows live there; memload's gets one vector there


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def _log(msg: str) -> None:
    print(f"[bench-seed-layouts] {msg}", file=sys.stderr, flush=True)


def _memload_db(url: str) -> None:
    from pgvector.psycopg import register_vector

    migrate(url)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        cid = conn.execute("INSERT INTO memory_commits (scope, input_sha256, commit_hash) VALUES (%s, 'x', 'h')"
                           " RETURNING id", (SOURCE_SCOPE,)).fetchone()[0]
        conn.execute("INSERT INTO memory_nodes (scope, type, embedding, embedding_status, commit_id)"
                     " VALUES (%s, 'event', %s::vector, 'ready', %s)",
                     (SOURCE_SCOPE, str(fake_embed("bench source anchor")), cid))


def _aionis_db(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(AIONIS_SCHEMA.read_text())


def _one(server: str, label: str, prepare: Any, params: SeedParams, home: Path, keep: bool) -> dict[str, Any]:
    name = f"memload_bench_layout_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(server, name)
    try:
        prepare(url)
        _log(f"{label}: seeding {params.events} events into database {name}")
        t0 = time.monotonic()
        out = run_seed(url, params, Settings.from_env(memload_home=home))
        out["wall_s"] = time.monotonic() - t0
        with psycopg.connect(url) as conn:
            out["db_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return out
    finally:
        if not keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events per seed (default 10^5)")
    ap.add_argument("--vectors", choices=("clustered", "copy"), default="clustered")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=("shared_table", "partitioned"), default=None, help="run one layout only")
    ap.add_argument("--keep", action="store_true", help="keep the two databases (default: dropped)")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    server = _with_db(resolve_database_url(settings), "postgres")
    home = settings.memload_home / "bench_seed_layouts"
    tenancy = Tenancy.resolve("perf_bench", "default", "default", flags=("--scope", "--tenant-id"))
    source = Tenancy.resolve(SOURCE_SCOPE, "default", "default", flags=("--src-scope", "--src-tenant-id"))
    params = SeedParams(target=tenancy, source=source, events=args.events, seed=args.seed, vectors=args.vectors,
                        query_set_out=home / "query_set.json", progress=sys.stderr.isatty()).validate()
    with psycopg.connect(server) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    cases = [("shared_table", _aionis_db), ("partitioned", _memload_db)]
    results = [(label, _one(server, label, prep, params, home, args.keep))
               for label, prep in cases if args.only in (None, label)]
    topics, events = params.topic_count, params.events
    rows = topics + 3 * events
    print(f"seed layouts: {events} events, {topics} topics, {2 * events} edges ({rows} rows), vectors={args.vectors}, "
          f"PostgreSQL {pg}, {settings.memload_home}")
    print(f"{'layout':<14} {'wall_s':>8} {'load_s':>8} {'index_s':>8} {'attach_s':>8} {'analyze_s':>9} "
          f"{'rows/s':>8} {'events/s':>8} {'db_MB':>7}  unknown_indexes")
    for label, out in results:
        t = out["timings_s"]
        print(f"{label:<14} {out['wall_s']:>8.1f} {t.get('load', 0):>8.1f} {t.get('index', 0):>8.1f} "
              f"{t.get('attach', 0):>8.1f} {t.get('analyze', 0):>9.1f} {rows / out['wall_s']:>8.0f} "
              f"{events / out['wall_s']:>8.0f} {out['db_bytes'] / 2**20:>7.0f}  {len(out['unknown_indexes'])}")
    if len(results) == 2:
        shared, parts = results[0][1]["wall_s"], results[1][1]["wall_s"]
        print(f"shared_table / partitioned wall time: {shared / parts:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
