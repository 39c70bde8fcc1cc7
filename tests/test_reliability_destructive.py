"""Destructive jobs touch exactly the scope they name.

A database holds a crowd of neighbours built to catch sloppy matching: seeded scopes with their own partitions and
API-style scopes in the shared default partition, names that are LIKE wildcards of each other (`victim`, `victim_`,
`victim%`, `Victim`), the same scope name under another tenant, SQL metacharacters, and rows in every table (outbox,
rule defs, rule feedback, recall audit). Every `memload purge` / `memload seed --reset` run through the CLI is then
checked against a fingerprint of every row and partition of every other scope: equal, always. Purge is a dry run
without --apply; the source scope is refused (purge and seed --reset) unless explicitly allowed; a scope living in
the shared default partition is refused by `--mode partition` unless --allow-fallback-delete, and by
--fail-on-delete before anything is deleted; the matrix refuses any reset without PERF_OFFLINE_WINDOW=true.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memload.identity import scope_key
from seeding.schema import partition_name
from tests.support.cli import run_cli
from tests.support.reliability import report
from tests.support.seed import add_source_vector, seed

TABLES = ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox", "memory_rule_defs",
          "memory_rule_feedback", "memory_recall_audit")
SRC = "rel_src"
SEEDED = [("victim", "default"), ("victim_", "default"), ("victim", "t1")]  # own partitions
API_STYLE = ["victim%", "Victim", "victimx", "x'; DROP TABLE memory_nodes; --", "shared_target", "shared_nb",
             "rel_seedme"]  # rows in the default partitions


def add_api_style_rows(url: str, key: str) -> None:
    """What API writes plus feedback/audit leave for a scope: commit, nodes (one a rule), edge, outbox, side rows."""
    with psycopg.connect(url) as conn:
        cid = conn.execute("INSERT INTO memory_commits (scope, input_sha256, commit_hash) VALUES (%s, 'x', %s)"
                           " RETURNING id", (key, uuid.uuid4().hex)).fetchone()[0]
        ids = [uuid.uuid4() for _ in range(3)]
        for i, nid in enumerate(ids):
            conn.execute("INSERT INTO memory_nodes (id, scope, type, title, commit_id, memory_lane)"
                         " VALUES (%s, %s, %s, %s, %s, 'shared')", (nid, key, "rule" if i == 2 else "event",
                                                                      f"{key} #{i}", cid))
        conn.execute("INSERT INTO memory_edges (scope, type, src_id, dst_id, commit_id)"
                     " VALUES (%s, 'related_to', %s, %s, %s)", (key, ids[0], ids[1], cid))
        conn.execute("INSERT INTO memory_outbox (scope, commit_id, event_type, payload, job_key, payload_sha256)"
                     " VALUES (%s, %s, 'embed_nodes', '{}', %s, 'x')", (key, cid, uuid.uuid4().hex))
        conn.execute("INSERT INTO memory_rule_defs (scope, rule_node_id) VALUES (%s, %s)", (key, ids[2]))
        conn.execute("INSERT INTO memory_rule_feedback (scope, rule_node_id, outcome) VALUES (%s, %s, 'positive')",
                     (key, ids[2]))
        conn.execute("INSERT INTO memory_recall_audit (scope, endpoint, query_sha256, seed_count, node_count,"
                     " edge_count) VALUES (%s, 'recall', 'x', 1, 1, 0)", (key,))


def fingerprint(url: str) -> dict[str, Any]:
    """md5 of every row of every scope, per (table, scope), and the set of partitions."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for t in TABLES:
            for scope, digest, n in conn.execute(
                    f"SELECT scope, md5(string_agg(to_jsonb(x)::text, '|' ORDER BY to_jsonb(x)::text)), count(*)"
                    f" FROM {t} x GROUP BY scope"):
                out[f"{t}:{scope}"] = (digest, n)
        out["partitions"] = sorted(r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)", (list(TABLES),)))
    return out


def without(fp: dict[str, Any], key: str) -> dict[str, Any]:
    """The fingerprint minus everything of one scope key (its rows and its partitions)."""
    with_parts = dict(fp)
    parts = with_parts.pop("partitions")
    rest = {k: v for k, v in with_parts.items() if k.split(":", 1)[1] != key}
    own = {partition_name(t, key) for t in TABLES}
    rest["partitions"] = [p for p in parts if p not in own]
    return rest


def rows_of(fp: dict[str, Any], key: str) -> int:
    return sum(v[1] for k, v in fp.items() if k != "partitions" and k.split(":", 1)[1] == key)


@pytest.fixture
def crowd(fresh_db_url: str, tmp_path: Path) -> str:
    add_source_vector(fresh_db_url, SRC)
    for scope, tenant in SEEDED:
        seed(fresh_db_url, tmp_path, scope, source=SRC, tenant=tenant, events=100, topics=2, seed=5)
        with psycopg.connect(fresh_db_url) as conn:  # a side-table row for the seeded scope too
            conn.execute("INSERT INTO memory_recall_audit (scope, endpoint, query_sha256, seed_count, node_count,"
                         " edge_count) VALUES (%s, 'recall', 'x', 1, 1, 0)", (scope_key(scope, tenant),))
    for scope in API_STYLE:
        add_api_style_rows(fresh_db_url, scope)
    add_api_style_rows(fresh_db_url, scope_key("victim%", "t1"))
    return fresh_db_url


def purge(url: str, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    r = run_cli("purge", *args, env={"DATABASE_URL": url, "MEMLOAD_PURGE_SRC_SCOPE": SRC}, in_process=True)
    rc, out, err = r.returncode, r.stdout, r.stderr
    doc = json.loads(out) if out.strip() else None
    return rc, doc, err.strip().splitlines()[-1] if err.strip() else ""


def test_purge_touches_only_the_named_scope_and_needs_apply(crowd: str) -> None:
    url = crowd
    steps = 0
    fp = fingerprint(url)
    assert rows_of(fp, "victim") > 300 and rows_of(fp, "victim_") > 300 and rows_of(fp, "tenant:t1::scope:victim")

    # dry runs (every mode): nothing anywhere changes, the plan shows what would go
    for mode in ("auto", "partition", "delete"):
        rc, doc, _ = purge(url, "--scope", "victim", "--mode", mode)
        steps += 1
        assert rc == 0 and doc["apply"] is False and doc["totals"]["candidate_rows"] == rows_of(fp, "victim")
        assert doc["totals"]["deleted_rows"] == 0 and fingerprint(url) == fp

    # each purge removes exactly its scope key: partition drop, delete in the default partition, tenant keys,
    # LIKE wildcards and SQL metacharacters taken literally
    for scope, tenant, mode in (("victim", "default", "partition"), ("victim%", "default", "auto"),
                                ("victim", "t1", "auto"), ("x'; DROP TABLE memory_nodes; --", "default", "delete"),
                                ("Victim", "default", "delete")):
        key = scope_key(scope, tenant)
        before = fingerprint(url)
        assert rows_of(before, key) > 0
        rc, doc, err = purge(url, "--scope", scope, "--tenant-id", tenant, "--mode", mode, "--apply")
        steps += 1
        assert rc == 0, err
        assert doc["apply"] is True and doc["scope_key"] == key and doc["totals"]["deleted_rows"] == rows_of(before,
                                                                                                              key)
        after = fingerprint(url)
        assert rows_of(after, key) == 0
        assert without(after, key) == without(before, key), f"purging {key!r} changed another scope"

    # a scope in the shared default partition: --mode partition refuses without the fallback guard, and
    # --fail-on-delete refuses before deleting anything
    before = fingerprint(url)
    for args, expect in ((["--mode", "partition"], "--allow-fallback-delete"),
                         (["--mode", "auto", "--fail-on-delete"], "--fail-on-delete")):
        rc, _, err = purge(url, "--scope", "shared_target", "--apply", *args)
        steps += 1
        assert rc != 0 and expect in err and "Traceback" not in err, err
        assert fingerprint(url) == before
    rc, doc, err = purge(url, "--scope", "shared_target", "--mode", "partition", "--allow-fallback-delete", "--apply")
    steps += 1
    assert rc == 0, err
    after = fingerprint(url)
    assert rows_of(after, "shared_target") == 0 and rows_of(after, "shared_nb") == rows_of(before, "shared_nb")
    assert without(after, "shared_target") == without(before, "shared_target")

    # the source scope is refused, dry run or not
    before = fingerprint(url)
    for extra in ([], ["--apply"]):
        rc, _, err = purge(url, "--scope", SRC, *extra)
        steps += 1
        assert rc == 5 and "--allow-source-scope" in err, err
    assert fingerprint(url) == before
    rc, _, err = purge(url, "--scope", SRC, "--apply", "--allow-source-scope")
    steps += 1
    assert rc == 0 and rows_of(fingerprint(url), SRC) == 0
    assert without(fingerprint(url), SRC) == without(before, SRC)
    report("destructive_purge", cli_runs=steps, other_scopes_changed=0,
           scopes_left=len({k.split(":", 1)[1] for k in fingerprint(url) if k != "partitions"}))


def test_seed_reset_touches_only_its_scope_and_refuses_the_source(crowd: str, tmp_path: Path) -> None:
    url = crowd
    env = {"DATABASE_URL": url, "MEMLOAD_HOME": str(tmp_path / "home")}
    before = fingerprint(url)
    r = run_cli("seed", "--scope", SRC, "--src-scope", SRC, "--reset", "--events", "100", env=env, in_process=True)
    rc, err = r.returncode, r.stderr
    assert rc == 5 and "--allow-reset-active-scope" in err.strip().splitlines()[-1]
    assert fingerprint(url) == before

    # reset of a seeded scope (own partitions) and of a scope in the default partition (moved to partitions)
    for scope in ("victim_", "rel_seedme"):
        before = fingerprint(url)
        r = run_cli("seed", "--scope", scope, "--src-scope", SRC, "--reset", "--events", "100", "--topics", "2",
                    "--seed", "9", "--no-progress", env=env, in_process=True)
        rc, out, err = r.returncode, r.stdout, r.stderr
        assert rc == 0, err
        summary = json.loads(out)
        assert summary["reset"] is True and summary["totals_in_scope"] == {"nodes": 102, "edges": 200}
        after = fingerprint(url)
        assert without(after, scope) == without(before, scope), f"seed --reset {scope!r} changed another scope"
        with psycopg.connect(url) as conn:
            leaves = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM memory_nodes WHERE scope = %s",
                                  (scope,)).fetchall()
        assert len(leaves) == 1 and leaves[0][0] != "memory_nodes_default"
    report("destructive_seed_reset", resets=2, refusals=1, other_scopes_changed=0)


def test_matrix_refuses_a_reset_outside_an_offline_window(tmp_path: Path) -> None:
    env = {"SCOPE_STRATEGY": "fixed", "RESET_MODE": "always", "SCALES": "1000", "OUT_DIR": str(tmp_path / "out"),
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    proc = run_cli("matrix", env=env, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "PERF_OFFLINE_WINDOW" in last and "nothing was touched" in last, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))
