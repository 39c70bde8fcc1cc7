"""The embedded server's memory, sized from the machine and the largest scope planned on it.

shared_buffers holds a scope's hot set when RAM allows it beside the scope's HNSW build; the build counts the
shared_buffers still to fill as taken; a seed only raises the recorded scope, a run replaces it; a running server
is restarted to apply a new size only when no other client is connected and the user's memload.conf does not set
shared_buffers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import psycopg
import pytest

from memload.config import Settings
from memload.db import setting_bytes
from memload.precision import HALFVEC, VECTOR
from scripts import embedded_db
from scripts.embedded_db import Dataset, ServerSizing
from seeding.build_sizing import MiB, estimated_graph_bytes, estimated_hot_set_bytes, plan_build
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.seed import add_source_vector, seed

MB = 24_000  # a machine of 24,000 MB: reserve 3,600 MB (15 %), RAM/4 = 6,000 MB


def test_a_scope_larger_than_the_machine_pool_gets_shared_buffers_to_hold_it() -> None:
    ds = Dataset(1_010_000, HALFVEC)
    assert ds.hot_set_mb == math.ceil(1_010_000 * 13_770 / MiB) == 13_264
    assert ds.build_mb == math.ceil(estimated_graph_bytes(1_010_000, 1536, HALFVEC) / MiB * 1.15) == 4_715
    sizing = ServerSizing(MB, 2, ds)
    # hot set × 1.05 = 13,928 MB does not fit under 24,000 − 4,715 − 3,600 − 2,048 = 13,637 MB; that still holds it
    assert sizing.shared_buffers_mb == 13_637 >= ds.hot_set_mb
    assert "which it holds" in sizing.pool_reason and "4715MB HNSW build" in sizing.pool_reason
    s = sizing.settings()
    assert s["shared_buffers"] == "13637MB" and s["work_mem"] == f"{(MB - 13_637) // 600}MB"
    assert int(s["effective_cache_size"][:-2]) >= 13_637
    conf = sizing.conf_text()
    assert "1,010,000 nodes" in conf and "shared_buffers = '13637MB'" in conf


def test_a_scope_the_machine_pool_holds_keeps_it() -> None:
    sizing = ServerSizing(MB, 2, Dataset(101_000, HALFVEC))
    assert sizing.shared_buffers_mb == 6_000 == ServerSizing(MB, 2).shared_buffers_mb
    assert sizing.pool_reason.startswith("RAM/4 (<= 8GB) = 6000MB") and "which fits" in sizing.pool_reason


def test_a_float32_scope_gets_what_ram_leaves_beside_its_larger_build() -> None:
    ds = Dataset(1_010_000, VECTOR)
    sizing = ServerSizing(MB, 2, ds)
    assert ds.build_mb > 2 * Dataset(1_010_000, HALFVEC).build_mb * 0.8
    assert sizing.shared_buffers_mb == MB - ds.build_mb - 3_600 - 2_048 < ds.hot_set_mb
    assert "more than RAM allows" in sizing.pool_reason


def test_a_small_machine_keeps_its_pool_for_the_build() -> None:
    sizing = ServerSizing(8_000, 2, Dataset(1_010_000, HALFVEC))  # 8,000 − 4,715 − 2,048 − 2,048 < RAM/4
    assert sizing.shared_buffers_mb == 2_000
    assert "RAM leaves no more beside its 4715MB HNSW build" in sizing.pool_reason


def test_the_build_counts_shared_buffers_still_to_fill_as_taken() -> None:
    n = 1_010_000
    free = plan_build(n, 1536, HALFVEC, requested_mem="auto", requested_workers=None, local=True, avail_mb=20_000,
                      mem_total_mb=MB, cores=2)
    assert free.maintenance_work_mem == "4715MB" and "fits" in free.reason and free.unfilled_pool_mb == 0
    pool = plan_build(n, 1536, HALFVEC, requested_mem="auto", requested_workers=None, local=True, avail_mb=20_000,
                      mem_total_mb=MB, cores=2, pool_mb=13_000)
    assert pool.maintenance_work_mem == f"{20_000 - 13_000 - 3_600}MB" and "does not fit" in pool.reason
    assert "13000 MB of shared_buffers still to fill" in pool.reason and pool.as_json()["unfilled_pool_mb"] == 13_000
    both = plan_build(n, 1536, HALFVEC, requested_mem="auto", requested_workers=None, local=True, avail_mb=20_000,
                      mem_total_mb=MB, cores=2, pool_mb=20_000 - 3_600 - 4_715)
    assert both.maintenance_work_mem == "4715MB" and "fits" in both.reason  # exactly enough is enough


def test_the_hot_set_estimate_follows_a_seeded_scope(db_url: str, tmp_path: Path) -> None:
    """The per-node sizes are measured at 10^6; a seeded scope's own relations must still match them (a layout
    change that makes them stale fails here)."""
    add_source_vector(db_url, "tsizing_src")
    scope = "tsizing_hot"
    seed(db_url, tmp_path, scope, source="tsizing_src", events=5000, seed=11, precision=HALFVEC)
    with psycopg.connect(db_url) as conn:
        nodes, size = conn.execute(
            "SELECT (SELECT count(*) FROM memory_nodes WHERE scope = %s),"
            " pg_total_relation_size(%s::regclass) + pg_total_relation_size(%s::regclass)",
            (scope, partition_name("memory_nodes", scope), partition_name("memory_edges", scope))).fetchone()
    estimate = estimated_hot_set_bytes(nodes, HALFVEC)
    assert 0.8 <= size / estimate <= 1.25, (size, estimate)


def _dataset_that_raises_the_pool() -> Dataset:
    for n in (50_000, 200_000, 500_000, 1_000_000, 2_000_000):
        ds = Dataset(n, HALFVEC)
        sizing = embedded_db.machine_sizing(ds)
        if sizing.shared_buffers_mb > sizing.machine_pool_mb:
            return ds
    pytest.fail(f"this machine ({embedded_db.machine_sizing().mem_mb} MB) leaves no scope a larger shared_buffers")


def _live_pool_mb(url: str) -> int:
    with psycopg.connect(url) as conn:
        return (setting_bytes(conn, "shared_buffers") or 0) // MiB


def test_a_running_server_is_resized_only_when_nobody_else_uses_it(tmp_path: Path) -> None:
    settings = Settings.from_env({"MEMLOAD_HOME": str(tmp_path / "home"), "DATABASE_URL": ""})
    big = _dataset_that_raises_the_pool()
    want = embedded_db.machine_sizing(big).shared_buffers_mb
    url = embedded_db.start(settings)
    try:
        base = _live_pool_mb(url)
        assert base == embedded_db.machine_sizing().shared_buffers_mb < want
        pid = embedded_db.status(settings).pid
        with psycopg.connect(url):  # another client: its work is not cut off
            said = embedded_db.size_for(settings, big)
            assert said.startswith("embedded server NOT restarted: 1 other client(s)"), said
        assert _live_pool_mb(url) == base and embedded_db.status(settings).pid == pid
        recorded = json.loads((settings.memload_home / embedded_db.DATASET_FILE).read_text())
        assert recorded["nodes"] == big.nodes and recorded["precision"] == HALFVEC

        said = embedded_db.size_for(settings, big)
        assert said.startswith(f"embedded server restarted: shared_buffers {want}MB"), said
        url = embedded_db.status(settings).url
        assert _live_pool_mb(url) == want and embedded_db.status(settings).pid != pid

        said = embedded_db.size_for(settings, Dataset(1_000, HALFVEC))  # a smaller scope: the larger one stays
        assert said.startswith(f"embedded server already sized: shared_buffers {want}MB"), said
        assert embedded_db.planned_dataset(settings) == big

        embedded_db.stop(settings)  # a later start keeps the recorded size
        url = embedded_db.start(settings)
        assert _live_pool_mb(url) == want

        small = Dataset(1_000, HALFVEC)  # a run that declares a small scope: the pool goes back to the machine's
        said = embedded_db.size_for(settings, small, replace=True)
        assert said.startswith(f"embedded server restarted: shared_buffers RAM/4 (<= 8GB) = {base}MB"), said
        url = embedded_db.status(settings).url
        assert _live_pool_mb(url) == base and embedded_db.planned_dataset(settings) == small

        (settings.pgdata / embedded_db.USER_CONF).write_text("shared_buffers = '256MB'\n")
        embedded_db.stop(settings)
        url = embedded_db.start(settings)
        said = embedded_db.size_for(settings, big)
        assert said.startswith("embedded server keeps shared_buffers 256MB from memload.conf"), said
        assert _live_pool_mb(url) == 256

        assert embedded_db.size_for(settings, None).startswith("embedded server keeps")
        assert embedded_db.planned_dataset(settings) is None
        assert not (settings.memload_home / embedded_db.DATASET_FILE).exists()
    finally:
        embedded_db.stop(settings)


def test_a_stopped_server_is_sized_at_its_next_start(tmp_path: Path) -> None:
    settings = Settings.from_env({"MEMLOAD_HOME": str(tmp_path / "home"), "DATABASE_URL": ""})
    big = _dataset_that_raises_the_pool()
    said = embedded_db.size_for(settings, big)
    assert said.startswith("embedded server sized at its next start"), said
    status = run_cli("db", "status", env={"MEMLOAD_HOME": str(settings.memload_home), "DATABASE_URL": ""})
    assert f"embedded shared_buffers: {embedded_db.machine_sizing(big).shared_buffers_mb}MB" in status.stdout
    try:
        url = embedded_db.start(settings)
        assert _live_pool_mb(url) == embedded_db.machine_sizing(big).shared_buffers_mb
        assert f"{big.nodes:,} nodes" in (settings.pgdata / embedded_db.AUTO_CONF).read_text()
    finally:
        embedded_db.stop(settings)


def test_a_corrupt_dataset_record_is_refused_by_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / embedded_db.DATASET_FILE).write_text(json.dumps({"nodes": 10, "precision": "float16"}))
    proc = run_cli("db", "start", env={"MEMLOAD_HOME": str(home), "DATABASE_URL": ""})
    try:
        assert proc.returncode != 0 and embedded_db.DATASET_FILE in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        embedded_db.stop(Settings.from_env({"MEMLOAD_HOME": str(home), "DATABASE_URL": ""}))
