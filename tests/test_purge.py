"""`memload purge` on the real server: dry run, partition drop, delete batches, refusals, other scopes untouched."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from memload.errors import ConfigError, ExitCode
from seeding.params import Tenancy
from seeding.purge import run_purge
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.seed import add_source_vector, seed, snapshot


def tenancy(scope: str) -> Tenancy:
    return Tenancy.resolve(scope, "default", "default", flags=("--scope", "--tenant-id"))


def purge(url: str, scope: str, **kw: object) -> dict:
    opts = {"mode": "auto", "batch_size": 5000, "apply": False, "allow_fallback_delete": False,
            "fail_on_delete": False, **kw}
    return run_purge(url, tenancy(scope), **opts)  # type: ignore[arg-type]


def add_side_rows(url: str, key: str) -> None:
    """A rule node with its rule_def, a rule feedback, a recall audit row and an outbox row for the scope."""
    with psycopg.connect(url) as conn:
        cid = conn.execute("SELECT id FROM memory_commits WHERE scope = %s LIMIT 1", (key,)).fetchone()[0]
        rid = uuid.uuid4()
        conn.execute("INSERT INTO memory_nodes (id, scope, type, title, commit_id, memory_lane)"
                     " VALUES (%s, %s, 'rule', 'r', %s, 'shared')", (rid, key, cid))
        conn.execute("INSERT INTO memory_rule_defs (scope, rule_node_id) VALUES (%s, %s)", (key, rid))
        conn.execute("INSERT INTO memory_rule_feedback (scope, rule_node_id, outcome) VALUES (%s, %s, 'positive')",
                     (key, rid))
        conn.execute("INSERT INTO memory_recall_audit (scope, endpoint, query_sha256, seed_count, node_count,"
                     " edge_count) VALUES (%s, 'recall_text', 'x', 1, 1, 0)", (key,))
        conn.execute("INSERT INTO memory_outbox (scope, commit_id, event_type, payload, job_key, payload_sha256)"
                     " VALUES (%s, %s, 'embed_nodes', '{}', %s, 'x')", (key, cid, uuid.uuid4().hex))


@pytest.fixture
def url(fresh_db_url: str) -> str:
    add_source_vector(fresh_db_url, "src")
    return fresh_db_url


def test_dry_run_reports_and_changes_nothing(url: str, tmp_path: Path) -> None:
    seed(url, tmp_path, "a", events=200, seed=1)
    add_side_rows(url, "a")
    before = snapshot(url, "a")
    out = purge(url, "a")
    assert out["ok"] and out["apply"] is False
    tables = {t["table"]: t for t in out["tables"]}
    assert [t["table"] for t in out["tables"]] == [
        "memory_outbox", "memory_rule_feedback", "memory_rule_defs", "memory_recall_audit", "memory_edges",
        "memory_nodes", "memory_commits"]
    assert tables["memory_nodes"]["strategy"] == "partition_drop" and tables["memory_nodes"]["candidate_rows"] == 251
    assert tables["memory_nodes"]["partitions"] == [partition_name("memory_nodes", "a")]
    assert tables["memory_rule_defs"]["strategy"] == "delete" and tables["memory_rule_defs"]["candidate_rows"] == 1
    assert all(t["note"] == "dry_run" and not t["applied"] for t in out["tables"])
    assert out["totals"]["deleted_rows"] == 0
    assert snapshot(url, "a") == before


def test_partition_purge_drops_everything_of_a_and_nothing_of_b(url: str, tmp_path: Path) -> None:
    seed(url, tmp_path, "a", events=300, seed=1)
    seed(url, tmp_path, "a", events=100, seed=1)  # a second commit chained to the first
    add_side_rows(url, "a")
    seed(url, tmp_path, "b", events=200, seed=1)
    add_side_rows(url, "b")
    before_b = snapshot(url, "b")
    proc = run_cli("purge", "--scope", "a", "--mode", "partition", "--apply", "--fail-on-delete",
                   env={"DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["totals"]["partition_drop_tables"] == 4 and out["totals"]["delete_strategy_tables"] == 0
    assert out["totals"]["deleted_rows"] == out["totals"]["candidate_rows"] > 1000
    assert out["elapsed_ms"] < 5000
    after_a = snapshot(url, "a")
    assert not any(v for k, v in after_a.items() if k.endswith(("_partition", "_rows"))), after_a
    assert snapshot(url, "b") == before_b
    again = purge(url, "a", mode="partition", apply=True, fail_on_delete=True)  # nothing left: a no-op, not an error
    assert again["ok"] and all(t["strategy"] == "none" for t in again["tables"])


def test_partition_mode_refuses_rows_outside_partitions_unless_fallback(url: str) -> None:
    add_source_vector(url, "api", "written through the api")  # default partitions only
    before = snapshot(url, "api")
    with pytest.raises(ConfigError, match="--mode partition: memory_nodes holds 1 rows"):
        purge(url, "api", mode="partition", apply=True)
    assert snapshot(url, "api") == before
    proc = run_cli("purge", "--scope", "api", "--mode", "partition", "--apply", env={"DATABASE_URL": url})
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip().splitlines()[-1].startswith("memload: error: --mode partition")
    out = purge(url, "api", mode="partition", apply=True, allow_fallback_delete=True)
    assert out["ok"] and {t["table"]: t["strategy"] for t in out["tables"]}["memory_nodes"] == "delete"
    assert snapshot(url, "api")["memory_nodes_rows"] == 0 and snapshot(url, "api")["memory_commits_rows"] == 0


def test_fail_on_delete_refuses_before_deleting(url: str) -> None:
    add_source_vector(url, "api", "written through the api")
    before = snapshot(url, "api")
    proc = run_cli("purge", "--scope", "api", "--apply", "--fail-on-delete", env={"DATABASE_URL": url})
    assert proc.returncode == ExitCode.REFUSED
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["error"] == "delete_strategy_detected"
    assert out["totals"]["deleted_rows"] == 0 and not any(t["applied"] for t in out["tables"])
    assert "--fail-on-delete" in proc.stderr.strip().splitlines()[-1]
    assert snapshot(url, "api") == before


def test_delete_mode_batches_and_leaves_other_scopes(url: str, tmp_path: Path) -> None:
    seed(url, tmp_path, "a", events=300, seed=1)
    seed(url, tmp_path, "a", events=100, seed=2)
    add_side_rows(url, "a")
    add_source_vector(url, "c", "scope c in the default partition")
    before_c, before_src = snapshot(url, "c"), snapshot(url, "src")
    out = purge(url, "a", mode="delete", batch_size=100, apply=True)
    tables = {t["table"]: t for t in out["tables"]}
    assert tables["memory_nodes"]["strategy"] == "delete" and tables["memory_nodes"]["deleted_rows"] == 501
    assert tables["memory_nodes"]["deleted_batches"] == 6
    assert tables["memory_edges"]["deleted_rows"] == 800 and tables["memory_edges"]["deleted_batches"] == 8
    assert tables["memory_commits"]["deleted_rows"] == 2  # a parent_id chain, deleted in one statement
    after = snapshot(url, "a")
    assert after["memory_nodes_partition"]  # delete mode keeps the (now empty) partitions
    assert not any(v for k, v in after.items() if k.endswith("_rows")), after
    assert snapshot(url, "c") == before_c and snapshot(url, "src") == before_src


def test_purge_needs_a_scope(url: str) -> None:
    proc = run_cli("purge", env={"DATABASE_URL": url})
    assert proc.returncode == ExitCode.USAGE and "--scope" in proc.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------------------------------- --list
def partition_bytes(url: str, key: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t.removeprefix("memory_"): conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                                                        (partition_name(t, key),)).fetchone()[0]
                for t in ("memory_nodes", "memory_edges", "memory_commits", "memory_outbox")}


def test_list_shows_rows_and_sizes_and_purges_nothing(url: str, tmp_path: Path) -> None:
    kit = "perf_d_200_20260101_000000"  # the matrix's isolated naming: <SCOPE_PREFIX>_<scale>_<tag>
    seed(url, tmp_path, kit, events=200, seed=1)
    add_side_rows(url, kit)
    before_kit, before_src = snapshot(url, kit), snapshot(url, "src")
    sizes_before = partition_bytes(url, kit)
    proc = run_cli("purge", "--list", env={"DATABASE_URL": url, "SCOPE_PREFIX": "perf_d"})
    sizes_after = partition_bytes(url, kit)  # autovacuum may add a partition's free-space/visibility maps meanwhile
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    scopes = {s["scope_key"]: s for s in out["scopes"]}
    assert out["layout"] == "partitioned" and set(scopes) == {kit, "src"}
    k = scopes[kit]
    assert k["rows"] == {"nodes": 251, "edges": 400, "commits": 1, "outbox": 1} and k["kit_scope"] is True
    assert k["size_source"] == "partitions"
    assert set(k["partitions"]) == set(sizes_before)
    assert all(sizes_before[t] <= k["partitions"][t] <= sizes_after[t] for t in sizes_before), k["partitions"]
    assert k["size_bytes"] == sum(k["partitions"].values()) > 0
    s = scopes["src"]
    assert s["rows"] == {"nodes": 1, "edges": 0, "commits": 1, "outbox": 0} and s["kit_scope"] is False
    assert s["size_source"] == "share_of_shared_table" and s["size_bytes"] > 0 and s["partitions"] == {}
    assert out["scopes"][0]["scope_key"] == kit  # biggest first
    assert out["totals"] == {"scopes": 2, "kit_scopes": 1, "size_bytes": k["size_bytes"] + s["size_bytes"]}
    assert kit in proc.stderr and "[kit scope]" in proc.stderr
    assert snapshot(url, kit) == before_kit and snapshot(url, "src") == before_src
    refused = run_cli("purge", "--list", "--apply", env={"DATABASE_URL": url})
    assert refused.returncode == ExitCode.USAGE and "--list" in refused.stderr.strip().splitlines()[-1]
    assert snapshot(url, kit) == before_kit


def test_list_on_a_shared_table_estimates_each_scope(aionis_db: str) -> None:
    proc = run_cli("purge", "--list", "--scope", "default", env={"DATABASE_URL": aionis_db})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["layout"] == "shared_table" and [s["scope_key"] for s in out["scopes"]] == ["default"]
    entry = out["scopes"][0]
    assert entry["rows"] == {"nodes": 8, "edges": 12, "commits": 1, "outbox": 5}
    assert entry["size_source"] == "share_of_shared_table" and entry["size_bytes"] > 0 and entry["partitions"] == {}
