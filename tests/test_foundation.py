"""Foundation: migrations, required indexes, the embedded server, clear errors for a dead DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from memload.config import MIGRATIONS_DIR, Settings
from memload.errors import ExitCode, MigrationError
from scripts import embedded_db
from scripts.commands.check_indexes import REQUIRED_INDEXES, inspect_indexes
from scripts.migrate import migrate
from tests.support.cli import run_cli


def test_migrations_apply_on_empty_database_then_noop(empty_db_url: str) -> None:
    first = migrate(empty_db_url)
    assert first.applied == [p.name for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]
    second = migrate(empty_db_url)
    assert second.applied == []
    assert second.skipped == first.applied
    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT filename, length(sha256) FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == first.applied and all(r[1] == 64 for r in rows)


def test_changed_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    migrate(empty_db_url, mdir)
    (mdir / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
    with pytest.raises(MigrationError, match=r"0001_a\.sql changed after it was applied"):
        migrate(empty_db_url, mdir)


def test_failed_migration_rolls_back(empty_db_url: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_ok.sql").write_text("CREATE TABLE ok (x int);")
    (mdir / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        migrate(empty_db_url, mdir)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('ok') IS NOT NULL, to_regclass('half') IS NULL").fetchone() == (
            True, True)
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 1


def test_required_indexes_exist_with_the_right_method(db_url: str) -> None:
    states, versions = inspect_indexes(db_url)
    assert {s.name for s in states} == set(REQUIRED_INDEXES)
    for s in states:
        assert s.ok, s
    assert versions["pgvector"] >= "0.8.4"
    with psycopg.connect(db_url) as conn:
        # partitioned (parent) indexes: each partition of a scope gets its own HNSW graph
        kinds = dict(conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)", (list(REQUIRED_INDEXES),)).fetchall())
    assert set(kinds.values()) == {"I"}


def test_scope_partition_gets_its_own_hnsw_index(fresh_db_url: str) -> None:
    with psycopg.connect(fresh_db_url) as conn:
        assert conn.execute("SELECT memload_partition_ensure_scope('perf_x')").fetchone()[0] == 4
        assert conn.execute("SELECT memload_partition_ensure_scope('perf_x')").fetchone()[0] == 0
        idx = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = memload_partition_name('memory_nodes', 'perf_x')"
            " AND indexdef LIKE '%hnsw%'").fetchall()
    assert len(idx) == 2


def test_check_indexes_cli_reports_present_and_missing(fresh_db_url: str) -> None:
    ok = run_cli("check-indexes", env={"DATABASE_URL": fresh_db_url})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("present") == 4 and "pgvector 0.8" in ok.stdout
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX memory_edges_scope_dst_type_idx")
    bad = run_cli("check-indexes", env={"DATABASE_URL": fresh_db_url})
    assert bad.returncode == ExitCode.GATE_FAILED  # the checklist ran and failed, as a planner check
    assert "memory_edges_scope_dst_type_idx" in bad.stdout.splitlines()[-1]


def test_dead_database_url_gives_one_line_error() -> None:
    dead = "postgresql://nobody@127.0.0.1:1/nothing"
    proc = run_cli("migrate", env={"DATABASE_URL": dead})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to database" in lines[0] and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in proc.stderr


def test_embedded_db_start_stop_status(tmp_path: Path) -> None:
    env = {"MEMLOAD_HOME": str(tmp_path / "home"), "DATABASE_URL": ""}
    assert run_cli("db", "status", env=env).returncode == ExitCode.ERROR  # not running
    started = run_cli("db", "start", env=env, check=True).stdout.strip()
    assert started.startswith("postgresql://postgres@/memload?host=")
    again = run_cli("db", "start", env=env, check=True).stdout.strip()
    assert again == started  # one server, reused
    status = run_cli("db", "status", env=env)
    assert status.returncode == 0 and "running" in status.stdout
    psql = embedded_db.run_psql(started, "-Atc", "SELECT name FROM pg_available_extensions WHERE name='vector'")
    assert psql.stdout.strip() == "vector"
    assert run_cli("db", "stop", env=env, check=True).stdout.strip() == "stopped"
    assert run_cli("db", "status", env=env).returncode == ExitCode.ERROR
    assert embedded_db.status(Settings.from_env({"MEMLOAD_HOME": env["MEMLOAD_HOME"]})).running is False


def test_concurrent_starts_share_one_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"MEMLOAD_HOME": str(tmp_path / "home2"), "DATABASE_URL": ""}
    import os

    full = {**os.environ, **env}
    procs = [subprocess.Popen([sys.executable, "-m", "scripts.cli", "db", "start"], env=full, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    urls = {p.communicate(timeout=120)[0].strip() for p in procs}
    try:
        assert len(urls) == 1 and all(p.returncode == 0 for p in procs)
    finally:
        run_cli("db", "stop", env=env)
