"""`memload purge --list`: every scope in the database, its rows and what it takes on disk. Read-only.

A seeded 10^5 scope takes about 1.6 GB; the embedded database fills a disk after a few runs unless someone purges.
This is the list to decide from. Where a scope has partitions of its own (memload's layout) its size is theirs
(heap, TOAST and indexes: pg_total_relation_size). Rows that share a table with other scopes (the default
partition, or a plain table as an Aionis server has) are given their share of that table's total size, rows over
rows: an estimate, marked so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from seeding.schema import PARTITIONED_PURGE_ORDER, quote_ident, table_kind

SHORT = {"memory_nodes": "nodes", "memory_edges": "edges", "memory_commits": "commits", "memory_outbox": "outbox"}
_BOUND_RE = re.compile(r"^FOR VALUES IN \('((?:[^']|'')*)'\)$")
_TENANT_KEY_RE = re.compile(r"^tenant:(.+?)::scope:(.*)$")


@dataclass
class ScopeEntry:
    scope_key: str
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHORT.values(), 0))
    partition_bytes: dict[str, int] = field(default_factory=dict)  # table -> bytes of the scope's own partition
    shared_bytes: int = 0  # share of shared tables (estimate)

    @property
    def size_bytes(self) -> int:
        return sum(self.partition_bytes.values()) + self.shared_bytes

    @property
    def size_source(self) -> str:
        if self.partition_bytes and self.shared_bytes:
            return "mixed"
        return "partitions" if self.partition_bytes else "share_of_shared_table"


def kit_scope_re(prefix: str | None = None) -> re.Pattern[str]:
    """The matrix's isolated scopes: <SCOPE_PREFIX>_<scale>_<tag>."""
    p = prefix or os.environ.get("SCOPE_PREFIX") or "perf_d"
    return re.compile(rf"^{re.escape(p)}_[0-9]+_.+$")


def split_key(scope_key: str, default_tenant: str) -> tuple[str, str]:
    m = _TENANT_KEY_RE.match(scope_key)
    return (m.group(1), m.group(2)) if m else (default_tenant, scope_key)


def _partitions(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, int]]:
    """scope key -> (partition name, total bytes) for the list partitions of one partitioned table."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), pg_total_relation_size(c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (table,)).fetchall()
    out = {}
    for name, bound, size in rows:
        m = _BOUND_RE.match(bound or "")
        if m:
            out[m.group(1).replace("''", "'")] = (name, int(size))
    return out


def list_scopes(conn: psycopg.Connection, *, default_tenant: str = "default", only: str | None = None,
                prefix: str | None = None) -> dict[str, Any]:
    """The inventory (JSON-ready): one entry per scope key found in the four scope tables, biggest first."""
    entries: dict[str, ScopeEntry] = {}
    kinds: dict[str, str | None] = {}
    for table in PARTITIONED_PURGE_ORDER:
        kinds[table] = kind = table_kind(conn, table)
        if kind is None:
            continue
        own = _partitions(conn, table) if kind == "p" else {}
        leaf_rows: dict[str, int] = {}
        per_leaf: list[tuple[str, str, int]] = []
        for key, leaf, n in conn.execute(
                f"SELECT scope, tableoid::regclass::text, count(*) FROM {quote_ident(table)}"
                f"{' WHERE scope = %s' if only else ''} GROUP BY 1, 2", (only,) if only else ()).fetchall():
            per_leaf.append((key, leaf, int(n)))
        own_names = {name for name, _ in own.values()}
        shared_leaves = {leaf for _, leaf, _ in per_leaf if leaf.strip('"') not in own_names}
        for leaf in shared_leaves:
            leaf_rows[leaf] = int(conn.execute(f"SELECT count(*) FROM {leaf}").fetchone()[0]) if only else sum(
                n for _, lf, n in per_leaf if lf == leaf)
        leaf_bytes = {leaf: int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (leaf,)).fetchone()[0])
                      for leaf in shared_leaves}
        for key, leaf, n in per_leaf:
            e = entries.setdefault(key, ScopeEntry(key))
            e.rows[SHORT[table]] += n
            if leaf in shared_leaves and leaf_rows[leaf]:
                e.shared_bytes += round(leaf_bytes[leaf] * n / leaf_rows[leaf])
        for key, (_name, size) in own.items():
            if only and key != only:
                continue
            entries.setdefault(key, ScopeEntry(key)).partition_bytes[table] = size
    kit = kit_scope_re(prefix)
    scopes = []
    for e in sorted(entries.values(), key=lambda x: (-x.size_bytes, x.scope_key)):
        tenant, scope = split_key(e.scope_key, default_tenant)
        scopes.append({
            "scope_key": e.scope_key, "tenant_id": tenant, "scope": scope, "kit_scope": bool(kit.match(scope)),
            "rows": e.rows, "size_bytes": e.size_bytes, "size_source": e.size_source,
            "partitions": {SHORT[t]: b for t, b in e.partition_bytes.items()},
        })
    layout = "partitioned" if all(k == "p" for k in kinds.values()) else "shared_table"
    return {"ok": True, "layout": layout, "scopes": scopes,
            "totals": {"scopes": len(scopes), "kit_scopes": sum(s["kit_scope"] for s in scopes),
                       "size_bytes": sum(s["size_bytes"] for s in scopes)}}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def table_text(inventory: dict[str, Any]) -> str:
    """A human table of the inventory (for stderr)."""
    head = f"{'scope_key':<40} {'nodes':>9} {'edges':>9} {'commits':>7} {'outbox':>7} {'size':>10}  where"
    lines = [head]
    for s in inventory["scopes"]:
        r = s["rows"]
        where = {"partitions": "own partitions", "share_of_shared_table": "shared table (estimate)",
                 "mixed": "partitions + shared (estimate)"}[s["size_source"]]
        lines.append(f"{s['scope_key'][:40]:<40} {r['nodes']:>9} {r['edges']:>9} {r['commits']:>7} {r['outbox']:>7} "
                     f"{human_size(s['size_bytes']):>10}  {where}{'  [kit scope]' if s['kit_scope'] else ''}")
    t = inventory["totals"]
    lines.append(f"{t['scopes']} scope(s), {t['kit_scopes']} of them the matrix's isolated scopes; "
                 f"{human_size(t['size_bytes'])} in all ({inventory['layout']} layout)")
    return "\n".join(lines)
