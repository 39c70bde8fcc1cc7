"""Seeding at scale: the index precision (catalog, ann-check, planner), the build's sizing in the seed JSON, pgvector's
spill notice, refusals naming the flag, and the embedded server's memory settings from the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memload.config import Settings
from memload.errors import ExitCode
from memload.precision import HALFVEC, VECTOR, distance_sql, scope_precision
from scripts import embedded_db
from seeding.ann_check import HnswSettings, run_ann_check
from seeding.build_sizing import estimated_graph_bytes, plan_build
from seeding.params import Tenancy
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.seed import add_source_vector, seed

SRC = "tscale_src"


@pytest.fixture(scope="module")
def src_url(db_url: str) -> str:
    add_source_vector(db_url, SRC)
    return db_url


def ready_index(url: str, scope_key: str) -> tuple[str, str]:
    """(name, definition) of the scope partition's ready hot/warm HNSW index."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = to_regclass(%s) AND am.amname = 'hnsw'"
            " AND c.relname LIKE '%%ready_hot_warm%%'", (partition_name("memory_nodes", scope_key),)).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0], rows[0][1]


def tenancy(scope: str) -> Tenancy:
    return Tenancy.resolve(scope, "default", "default", flags=("--scope", "--tenant-id"))


@pytest.mark.parametrize("prec", [HALFVEC, VECTOR])
def test_precision_is_the_index_in_the_catalog_and_ann_check_scans_it(src_url: str, tmp_path: Path,
                                                                      prec: str) -> None:
    scope = f"tscale_{prec}"
    out = seed(src_url, tmp_path, scope, source=SRC, events=3000, seed=3, precision=prec)  # planner: index
    assert out["precision"] == prec
    name, ddl = ready_index(src_url, scope)
    if prec == HALFVEC:
        assert "((embedding)::halfvec(1536)) halfvec_cosine_ops" in ddl, ddl
    else:
        assert "(embedding vector_cosine_ops)" in ddl and "halfvec" not in ddl, ddl
    assert "WHERE ((embedding IS NOT NULL)" in ddl  # the same partial predicate as the recall path's filter
    with psycopg.connect(src_url) as conn:
        assert scope_precision(conn, scope) == prec
    s = Settings.from_env()
    ann = run_ann_check(src_url, tenancy(scope), HnswSettings(s.hnsw_ef_search, s.hnsw_iterative_scan,
                                                             s.hnsw_max_scan_tuples), queries=40, exact="numpy")
    assert ann["precision"] == prec and ann["index_used"] == name
    assert ann["recall_at_k"] >= 0.95


def test_planner_uses_the_halfvec_index_only_with_its_expression(src_url: str, tmp_path: Path) -> None:
    scope = "tscale_plan"
    seed(src_url, tmp_path, scope, source=SRC, events=1000, seed=4, precision=HALFVEC)
    name, _ = ready_index(src_url, scope)
    q = "[" + ",".join(["0.01"] * 1536) + "]"
    base = ("EXPLAIN SELECT id FROM memory_nodes WHERE scope = %(scope)s AND embedding IS NOT NULL"
            " AND embedding_status = 'ready' AND tier IN ('hot', 'warm') ORDER BY {order} LIMIT 10")
    with psycopg.connect(src_url) as conn:
        plans = {p: "\n".join(r[0] for r in conn.execute(base.format(order=distance_sql(p)),
                                                         {"scope": scope, "q": q}))
                 for p in (HALFVEC, VECTOR)}
    assert f"Index Scan using {name}" in plans[HALFVEC], plans[HALFVEC]
    assert name not in plans[VECTOR]  # the float32 ordering cannot use a halfvec index: why everyone must follow


def test_build_sizing_is_recorded_in_the_seed_json(src_url: str, tmp_path: Path) -> None:
    auto = seed(src_url, tmp_path, "tscale_auto", source=SRC, events=1000, seed=5)
    b = auto["index_build"]
    assert set(b) >= {"maintenance_work_mem", "parallel_workers", "estimated_graph_mb", "available_mb", "reason",
                      "hnsw_seconds", "hnsw_cpu_s", "spilled_at_tuples", "index_mb"}
    assert b["maintenance_work_mem"].endswith("MB") and int(b["maintenance_work_mem"][:-2]) >= 64
    assert b["estimated_graph_mb"] == -(-estimated_graph_bytes(1010, 1536, HALFVEC) // (1024 * 1024))
    assert "fits" in b["reason"] and b["spilled_at_tuples"] is None and b["index_mb"] > 0
    asked = seed(src_url, tmp_path, "tscale_asked", source=SRC, events=1000, seed=5, maintenance_work_mem="256MB",
                 parallel_workers=0)
    assert asked["index_build"]["maintenance_work_mem"] == "256MB" and asked["index_build"]["parallel_workers"] == 0
    assert "as asked" in asked["index_build"]["reason"]


def test_a_graph_past_the_budget_is_reported(src_url: str, tmp_path: Path) -> None:
    out = seed(src_url, tmp_path, "tscale_spill", source=SRC, events=2000, seed=6, maintenance_work_mem="1MB",
               precision=VECTOR, parallel_workers=0)
    spilled = out["index_build"]["spilled_at_tuples"]
    assert spilled is not None and 0 < spilled < 2000
    assert any("outgrew maintenance_work_mem" in w for w in out["warnings"])


def test_plan_build_caps_by_available_memory_and_keeps_remote_servers_at_the_default() -> None:
    n = 1_010_000
    fits = plan_build(n, 1536, HALFVEC, requested_mem="auto", requested_workers=None, local=True, avail_mb=20_000,
                      mem_total_mb=24_000, cores=2)
    assert fits.parallel_workers == 1 and "fits" in fits.reason
    assert int(fits.maintenance_work_mem[:-2]) > fits.estimated_graph_mb
    capped = plan_build(n, 1536, VECTOR, requested_mem="auto", requested_workers=None, local=True, avail_mb=6_000,
                        mem_total_mb=24_000, cores=2)
    assert capped.maintenance_work_mem == f"{6_000 - 3_600}MB" and "does not fit" in capped.reason
    remote = plan_build(n, 1536, VECTOR, requested_mem="auto", requested_workers=None, local=False, cores=4)
    assert remote.maintenance_work_mem == "2048MB" and remote.parallel_workers == 3 and "remote" in remote.reason
    assert estimated_graph_bytes(n, 1536, HALFVEC) < 0.6 * estimated_graph_bytes(n, 1536, VECTOR)


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--precision", "float16"], {}, "--precision"),
    ([], {"MEMLOAD_SEED_PRECISION": "half"}, "MEMLOAD_SEED_PRECISION"),
    (["--maintenance-work-mem", "2G"], {}, "--maintenance-work-mem"),
])
def test_bad_precision_and_memory_refused_naming_the_flag(src_url: str, tmp_path: Path, args: list[str],
                                                          env: dict[str, str], named: str) -> None:
    proc = run_cli("seed", "--scope", "tscale_bad", "--src-scope", SRC, "--events", "100", *args,
                   env={"DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path), **env})
    assert proc.returncode in (2, ExitCode.USAGE), proc.stderr
    assert named in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    with psycopg.connect(src_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'tscale_bad'").fetchone()[0] == 0


def test_cli_precision_in_the_json(src_url: str, tmp_path: Path) -> None:
    proc = run_cli("seed", "--scope", "tscale_cli", "--src-scope", SRC, "--events", "100", "--precision", "vector",
                   env={"DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["precision"] == VECTOR and "reason" in doc["index_build"]


def test_new_partitions_and_the_default_one_get_the_float32_ready_index(src_url: str) -> None:
    with psycopg.connect(src_url) as conn:
        conn.execute("SELECT memload_partition_ensure_scope('tscale_api_scope')")
        assert scope_precision(conn, "tscale_api_scope") == VECTOR
        ddl = conn.execute("SELECT pg_get_indexdef('memory_nodes_default_ready_hot_warm_hnsw'::regclass)"
                           ).fetchone()[0]
        conn.rollback()
    assert "vector_cosine_ops" in ddl and "ready" in ddl


def test_embedded_server_settings_from_the_machine(tmp_path: Path) -> None:
    sizing = embedded_db.ServerSizing(mem_mb=24_000, cores=2)
    assert sizing.settings() == {"shared_buffers": "6000MB", "effective_cache_size": "16000MB", "work_mem": "30MB",
                                 "maintenance_work_mem": "1500MB", "max_parallel_maintenance_workers": "1"}
    small = embedded_db.ServerSizing(mem_mb=2_000, cores=1).settings()
    assert small["shared_buffers"] == "500MB" and small["work_mem"] == "4MB"
    (tmp_path / "postgresql.conf").write_text("port = 5432\ninclude_if_exists = 'memload.conf'\n")
    (tmp_path / "memload.conf").write_text(embedded_db._OLD_SERVER_CONF)
    embedded_db.write_conf(tmp_path, sizing)
    main = (tmp_path / "postgresql.conf").read_text()
    assert main.index("'memload.auto.conf'") < main.index("'memload.conf'")  # the user's file overrides
    assert "shared_buffers = '6000MB'" in (tmp_path / "memload.auto.conf").read_text()
    assert "shared_buffers" not in (tmp_path / "memload.conf").read_text()  # memload's old fixed file retired
    (tmp_path / "memload.conf").write_text("shared_buffers = '3GB'\n")
    embedded_db.write_conf(tmp_path, sizing)
    assert (tmp_path / "memload.conf").read_text() == "shared_buffers = '3GB'\n"  # a user's file is kept
    assert (tmp_path / "postgresql.conf").read_text().count("memload.auto.conf") == 1


def test_explain_follows_a_halfvec_scope(src_url: str, tmp_path: Path) -> None:
    scope = "tscale_explain"
    seed(src_url, tmp_path, scope, source=SRC, events=5000, seed=7, precision=HALFVEC)  # HNSW enforced from 5,000
    name, _ = ready_index(src_url, scope)
    proc = run_cli("explain", "--scope", scope, "--lim", "10",
                   env={"DATABASE_URL": src_url, "MEMLOAD_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    s1 = doc["stages"]["stage1"]
    assert doc["settings"]["index_precision"] == HALFVEC and s1["uses_hnsw"] is True, proc.stderr
    assert doc["ok"] is True and doc["enforced"] is True
    assert [u["index"] for u in s1["index_scans"] if u["method"] == "hnsw"] == [name]
    assert "halfvec" in s1["statement"]


def _index_pages_read(url: str, index_name: str) -> int:
    """Buffer reads of an index (pgvector's HNSW scans do not count in idx_scan; their page reads count here)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT idx_blks_hit + idx_blks_read FROM pg_statio_user_indexes WHERE indexrelname = %s",
                           (index_name,)).fetchone()
    return int(row[0]) if row else 0


def test_api_recall_follows_a_halfvec_scope(src_url: str, tmp_path: Path, start_api) -> None:
    """The API's stage 1 orders a halfvec scope by the halfvec expression: its ready index serves the recall (with the
    float32 ordering PostgreSQL would read every vector of the scope)."""
    import asyncio
    import time
    import urllib.request

    from memload import contract as C
    from memory_api import recall as R

    scope = "tscale_api"
    seed(src_url, tmp_path, scope, source=SRC, events=1000, seed=5, precision=HALFVEC)
    name, _ = ready_index(src_url, scope)

    async def statement_and_plan() -> tuple[str, str]:
        async with await psycopg.AsyncConnection.connect(src_url, autocommit=True) as conn:
            prec = await R.scope_precision(conn, scope)
            q = "[" + ",".join(["0.01"] * 1536) + "]"
            sql = R._STAGE1_BY_PRECISION[prec].replace("%(q)b", "%(q)s")
            cur = await conn.execute("EXPLAIN " + sql, {"q": q, "scope": scope, "oversample": 50, "limit": 10,
                                                         "agent": None, "team": None})
            return prec, "\n".join(r[0] for r in await cur.fetchall())

    prec, plan = asyncio.run(statement_and_plan())
    assert prec == HALFVEC and f"Index Scan using {name}" in plan, plan

    before = _index_pages_read(src_url, name)
    api = start_api(src_url)
    body = json.dumps({"scope": scope, "query_text": "perf topic #3", "limit": 10}).encode()
    req = urllib.request.Request(api.base_url + C.RECALL_TEXT, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and json.loads(r.read())["seeds"]
    deadline = time.monotonic() + 60  # a backend's index statistics reach the views when it next flushes them
    while _index_pages_read(src_url, name) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _index_pages_read(src_url, name) > before, "the API's recall did not scan the scope's halfvec index"
