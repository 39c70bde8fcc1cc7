"""The Aionis-shaped fixture database: a target schema that is not memload's own (plain shared tables, the target's
extra indexes and constraints, another scope's rows, an `associative_link` job per write), plus small helpers.

Registered for every test by `pytest_plugins` in tests/conftest.py:

    def test_x(aionis_db: str): ...            # URL of a fresh database with tests/fixtures/aionis/schema.sql applied

Helpers: `enqueue_writes` (the outbox rows an Aionis write leaves behind), `scope_counts` (to check a scope is
untouched), `index_definitions`, `stand_in_worker_command` (the external worker of tests/fixtures/aionis).
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.types.json import Jsonb

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "aionis"
SCHEMA_SQL = FIXTURE_DIR / "schema.sql"
EXPLAIN_SQL = FIXTURE_DIR / "explain_baseline.sql"
STAND_IN_WORKER = FIXTURE_DIR / "stand_in_worker.py"

OTHER_SCOPE = "default"  # the scope whose rows schema.sql inserts
COVER_INDEX = "memory_nodes_id_scope_cover_idx"
HNSW_INDEXES = ("memory_nodes_embedding_hnsw_idx", "memory_nodes_embedding_ready_hot_hnsw_idx",
                "memory_nodes_embedding_ready_hot_warm_hnsw_idx")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def apply_schema(url: str) -> None:
    """Apply the Aionis-shaped schema (and the other scope's rows) to the database at `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL.read_text())


@pytest.fixture
def aionis_db(server_url: str) -> Iterator[str]:
    """URL of a fresh Aionis-shaped database in the test server, dropped afterwards."""
    name = f"memload_aionis_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    try:
        apply_schema(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def enqueue_writes(url: str, scope: str, n: int, *, auto_embed: bool = True) -> list[str]:
    """What `n` Aionis writes of one event each leave behind: a commit and a pending node per write, an `embed_nodes`
    job (with `after_topic_cluster_event_ids`) when `auto_embed`, and an `associative_link` job. Returns node ids."""
    ids: list[str] = []
    with psycopg.connect(url) as conn:
        for i in range(n):
            cid, nid = str(uuid.uuid4()), str(uuid.uuid4())
            text = f"stand-in write {scope} #{i} {nid[:8]}"
            conn.execute(
                """INSERT INTO memory_commits (id, scope, input_sha256, actor, commit_hash)
                   VALUES (%s, %s, %s, 'api', %s)""", (cid, scope, _sha(text), _sha(cid)))
            conn.execute(
                """INSERT INTO memory_nodes (id, scope, type, text_summary, commit_id, embedding_status, memory_lane,
                                            client_id)
                   VALUES (%s, %s, 'event', %s, %s, %s, 'shared', %s)""",
                (nid, scope, text, cid, "pending" if auto_embed else "failed", f"stand_in_{nid}"))
            jobs = [("associative_link", {"node_ids": [nid]})]
            if auto_embed:
                jobs.insert(0, ("embed_nodes", {"nodes": [{"id": nid, "text": text}],
                                                "after_topic_cluster_event_ids": [nid]}))
            for event_type, payload in jobs:
                body = json.dumps(payload, sort_keys=True)
                conn.execute(
                    """INSERT INTO memory_outbox (scope, commit_id, event_type, payload, job_key, payload_sha256)
                       VALUES (%s, %s, %s, %s, %s, %s)""",
                    (scope, cid, event_type, Jsonb(payload), _sha(f"{scope}|{cid}|{event_type}|{body}"), _sha(body)))
            ids.append(nid)
    return ids


def scope_counts(url: str, scope: str) -> dict[str, object]:
    """Row counts of one scope (nodes, embedded nodes, edges, commits, outbox rows by type and state)."""
    with psycopg.connect(url) as conn:
        one = lambda sql: conn.execute(sql, (scope,)).fetchone()[0]  # noqa: E731
        outbox = conn.execute(
            """SELECT event_type, count(*) FILTER (WHERE published_at IS NULL), count(*) FROM memory_outbox
               WHERE scope = %s GROUP BY 1 ORDER BY 1""", (scope,)).fetchall()
        return {
            "nodes": one("SELECT count(*) FROM memory_nodes WHERE scope = %s"),
            "embedded": one("SELECT count(*) FROM memory_nodes WHERE scope = %s AND embedding IS NOT NULL"),
            "edges": one("SELECT count(*) FROM memory_edges WHERE scope = %s"),
            "commits": one("SELECT count(*) FROM memory_commits WHERE scope = %s"),
            "outbox": {t: {"unpublished": u, "total": n} for t, u, n in outbox},
        }


def index_definitions(url: str, table: str = "memory_nodes") -> dict[str, str]:
    """{index name: definition} of a table."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)))


def stand_in_worker_command(url: str, scope: str | None = None, *extra: str) -> list[str]:
    """argv of the stand-in external worker against `url` (all scopes when `scope` is None)."""
    argv = [sys.executable, str(STAND_IN_WORKER), "--database-url", url]
    if scope:
        argv += ["--scope", scope]
    return argv + list(extra)
