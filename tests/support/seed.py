"""Seeding helpers for tests on the real server: a source vector to seed from, `run_seed` with test defaults, and a
snapshot of everything a seed or purge could change about one scope (so a refusal can be shown to change nothing).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from memload.config import Settings
from memload.embedder import fake_embed
from memload.identity import sha256_hex
from seeding.params import SeedParams, Tenancy
from seeding.schema import partition_name
from seeding.seed import run_seed

SOURCE_TEXT = "memload source anchor"


def add_source_vector(url: str, scope_key: str, text: str = SOURCE_TEXT) -> np.ndarray:
    """One commit + one READY hot node with fake_embed(text), as an API write with a client vector would leave."""
    vec = np.asarray(fake_embed(text), dtype=np.float32)
    cid = uuid.uuid4()
    with psycopg.connect(url) as conn:
        register_vector(conn)
        conn.execute("INSERT INTO memory_commits (id, scope, input_sha256, commit_hash, actor)"
                     " VALUES (%s, %s, %s, %s, 'test')", (cid, scope_key, sha256_hex(text), uuid.uuid4().hex))
        conn.execute("INSERT INTO memory_nodes (scope, type, text_summary, embedding, embedding_status, commit_id,"
                     " memory_lane) VALUES (%s, 'event', %s, %s, 'ready', %s, 'shared')",
                     (scope_key, text, vec, cid))
    return vec


def params(scope: str, *, source: str = "src", tenant: str = "default", **kw: Any) -> SeedParams:
    kw.setdefault("progress", False)
    return SeedParams(target=Tenancy.resolve(scope, tenant, "default", flags=("--scope", "--tenant-id")),
                      source=Tenancy.resolve(source, "default", "default", flags=("--src-scope", "--src-tenant-id")),
                      **kw)


def seed(url: str, tmp_path: Path, scope: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("query_set_out", tmp_path / f"qs_{scope}.json")
    return run_seed(url, params(scope, **kw), Settings.from_env(memload_home=tmp_path / "home"))


def snapshot(url: str, key: str) -> dict[str, Any]:
    """Everything a seed or purge could change about one scope."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for t in ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox"):
            out[t + "_partition"] = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                                 (partition_name(t, key),)).fetchone()[0]
            out[t + "_rows"] = conn.execute(f"SELECT count(*) FROM {t} WHERE scope = %s", (key,)).fetchone()[0]
        for t in ("memory_rule_defs", "memory_rule_feedback", "memory_recall_audit"):
            out[t + "_rows"] = conn.execute(f"SELECT count(*) FROM {t} WHERE scope = %s", (key,)).fetchone()[0]
        out["nodes_md5"] = conn.execute(
            "SELECT md5(string_agg(id::text || coalesce(embedding::text, ''), ',' ORDER BY id)) FROM memory_nodes"
            " WHERE scope = %s", (key,)).fetchone()[0]
        out["edges_md5"] = conn.execute(
            "SELECT md5(string_agg(id::text || src_id::text || dst_id::text, ',' ORDER BY id)) FROM memory_edges"
            " WHERE scope = %s", (key,)).fetchone()[0]
        out["commits"] = conn.execute("SELECT id, commit_hash FROM memory_commits WHERE scope = %s ORDER BY id",
                                      (key,)).fetchall()
    return out
