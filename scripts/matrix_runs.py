"""Disk hygiene of `memload matrix`: a registry of the isolated scopes each run created, and which ones to purge.

Every isolated run seeds new scopes (`<SCOPE_PREFIX>_<scale>_<MATRIX_TAG>`, 1.6 GB at 10^5 events) that nothing
else ever removes. The matrix records the scopes it creates in `MEMLOAD_HOME/matrix_runs.json`, one entry per run
and database, and keeps only the last KEEP_RUNS runs' scopes of the database it runs against. Only scopes recorded
here are ever purged, and only if their name is still exactly the isolated name that run gave them: a fixed scope,
the source scope, or anything the kit did not create is never touched.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGISTRY_NAME = "matrix_runs.json"
MAX_ENTRIES = 500  # entries of databases that no longer exist would otherwise pile up forever


@dataclass(frozen=True)
class RunEntry:
    matrix_tag: str
    created_at: float
    database: str  # identity of the database (cluster system identifier + database name)
    tenant_id: str
    scope_prefix: str
    scales: list[int]
    out_dir: str

    def scopes(self) -> list[str]:
        return [isolated_scope(self.scope_prefix, scale, self.matrix_tag) for scale in self.scales]


def isolated_scope(prefix: str, scale: int, tag: str) -> str:
    """The one scope name the matrix gives an isolated run at `scale` (matrix_config.MatrixConfig.scope_for)."""
    return f"{prefix}_{scale}_{tag}"


def registry_path(home: Path) -> Path:
    return home / REGISTRY_NAME


def load(home: Path) -> list[RunEntry]:
    path = registry_path(home)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError:
        return []  # a damaged registry loses track of old scopes; it never makes us purge a wrong one
    out: list[RunEntry] = []
    for item in raw.get("runs", []) if isinstance(raw, dict) else []:
        try:
            out.append(RunEntry(str(item["matrix_tag"]), float(item["created_at"]), str(item["database"]),
                                str(item["tenant_id"]), str(item["scope_prefix"]),
                                [int(s) for s in item["scales"]], str(item.get("out_dir", ""))))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def save(home: Path, entries: list[RunEntry]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    entries = sorted(entries, key=lambda e: e.created_at)[-MAX_ENTRIES:]
    payload: dict[str, Any] = {"runs": [e.__dict__ for e in entries]}
    tmp = registry_path(home).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(registry_path(home))


def record(home: Path, entry: RunEntry) -> None:
    """Add (or replace) the entry of this run."""
    entries = [e for e in load(home) if not (e.matrix_tag == entry.matrix_tag and e.database == entry.database)]
    save(home, [*entries, entry])


def forget(home: Path, entry: RunEntry) -> None:
    save(home, [e for e in load(home) if not (e.matrix_tag == entry.matrix_tag and e.database == entry.database)])


def to_purge(entries: list[RunEntry], *, database: str, current_tag: str, keep_runs: int) -> list[RunEntry]:
    """The runs of `database` older than the last `keep_runs` (the current run counts as one); 0 keeps all."""
    if keep_runs <= 0:
        return []
    mine = sorted((e for e in entries if e.database == database), key=lambda e: e.created_at)
    others = [e for e in mine if e.matrix_tag != current_tag]
    keep_previous = keep_runs - 1 if any(e.matrix_tag == current_tag for e in mine) else keep_runs
    return others[:max(0, len(others) - keep_previous)]


def new_entry(*, matrix_tag: str, database: str, tenant_id: str, scope_prefix: str, scales: list[int],
              out_dir: Path) -> RunEntry:
    return RunEntry(matrix_tag, time.time(), database, tenant_id, scope_prefix, list(scales), str(out_dir))


def database_identity(url: str) -> str:
    """Which database `url` is, stable across URL spellings: the cluster's system identifier and the database name."""
    from memload.db import connection, redact_url

    with connection(url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        try:
            ident = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        except Exception:  # pg_control_system() may be revoked for this role: fall back to the URL
            conn.rollback()
            return f"{redact_url(url)}#{name}"
    return f"{ident}/{name}"


@dataclass(frozen=True)
class ScopeFootprint:
    partitions: int  # partitions of its own, over the partitioned tables
    bytes: int  # their on-disk size (tables + indexes + TOAST): what dropping them frees
    shared_rows: int  # memory_nodes rows of the scope outside any partition of its own (a shared-table layout)


def scope_footprint(url: str, scope_key: str) -> ScopeFootprint:
    from memload.db import connection
    from seeding.schema import PARTITIONED_PURGE_ORDER, quote_ident, scope_partitions, table_kind

    parts = size = 0
    with connection(url) as conn:
        for table in PARTITIONED_PURGE_ORDER:
            if table_kind(conn, table) != "p":
                continue
            for part in scope_partitions(conn, table, scope_key):
                row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (quote_ident(part),)).fetchone()
                parts, size = parts + 1, size + int(row[0])
        own = scope_partitions(conn, "memory_nodes", scope_key) if table_kind(conn, "memory_nodes") == "p" else []
        shared = 0
        if table_kind(conn, "memory_nodes") is not None:
            where = "scope = %s" + (" AND tableoid <> ALL(%s::regclass[])" if own else "")
            params: tuple[Any, ...] = (scope_key, [quote_ident(p) for p in own]) if own else (scope_key,)
            shared = int(conn.execute(f"SELECT count(*) FROM memory_nodes WHERE {where}", params).fetchone()[0])
    return ScopeFootprint(parts, size, shared)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
