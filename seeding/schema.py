"""SQLAlchemy Core view of the memory tables the seeder and the purge touch, plus partition catalog helpers.

The tables are declared (not reflected): reflection of partitioned tables costs a catalog round trip per table on
every run, and the seeder needs only the columns the migration defines. `sql/migrations/0001_schema.sql` stays the
single source of truth for DDL; these declarations are only used to build statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import REAL as Real
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import ENUM, JSONB, TIMESTAMP, UUID

from memload.embedder import EMBEDDING_DIM

metadata = MetaData()


def _enum(name: str, *values: str) -> ENUM:
    return ENUM(*values, name=name, create_type=False)


NODE_TYPE = _enum("memory_node_type", "event", "entity", "topic", "rule", "evidence", "concept", "procedure",
                  "self_model")
EDGE_TYPE = _enum("memory_edge_type", "part_of", "related_to", "derived_from")
TIER = _enum("memory_tier", "hot", "warm", "cold", "archive")
EMBEDDING_STATUS = _enum("memory_embedding_status", "pending", "ready", "failed")
LANE = _enum("memory_lane", "private", "shared")
TSTZ = TIMESTAMP(timezone=True)

commits = Table(
    "memory_commits", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("parent_id", UUID(as_uuid=True)),
    Column("input_sha256", Text, nullable=False),
    Column("diff_json", JSONB, nullable=False),
    Column("actor", Text, nullable=False),
    Column("model_version", Text),
    Column("prompt_version", Text),
    Column("created_at", TSTZ),
    Column("commit_hash", Text, nullable=False),
)

nodes = Table(
    "memory_nodes", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("type", NODE_TYPE, nullable=False),
    Column("tier", TIER),
    Column("title", Text),
    Column("text_summary", Text),
    Column("slots", JSONB),
    Column("embedding", VECTOR(EMBEDDING_DIM)),
    Column("salience", Real),
    Column("importance", Real),
    Column("confidence", Real),
    Column("created_at", TSTZ),
    Column("commit_id", UUID(as_uuid=True), nullable=False),
    Column("embedding_status", EMBEDDING_STATUS),
    Column("embedding_ready_at", TSTZ),
    Column("client_id", Text),
    Column("embedding_model", Text),
    Column("memory_lane", LANE),
)

edges = Table(
    "memory_edges", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("type", EDGE_TYPE, nullable=False),
    Column("src_id", UUID(as_uuid=True), nullable=False),
    Column("dst_id", UUID(as_uuid=True), nullable=False),
    Column("weight", Real),
    Column("confidence", Real),
    Column("decay_rate", Real),
    Column("created_at", TSTZ),
    Column("commit_id", UUID(as_uuid=True), nullable=False),
)

outbox = Table(
    "memory_outbox", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("commit_id", UUID(as_uuid=True), nullable=False),
    Column("attempts", Integer),
)

# Tables partitioned by scope, in FK-safe purge order (children first). Commits come last: everything references them.
PARTITIONED_PURGE_ORDER = ("memory_outbox", "memory_edges", "memory_nodes", "memory_commits")
# Non-partitioned tables holding per-scope rows; purged with DELETE (rule_defs references nodes, so before them).
SIDE_TABLES = ("memory_rule_feedback", "memory_rule_defs", "memory_recall_audit")
# The full purge order: outbox → rule_feedback → rule_defs → recall_audit → edges → nodes → commits (peer order).
PURGE_ORDER = ("memory_outbox", *SIDE_TABLES, "memory_edges", "memory_nodes", "memory_commits")

IDENT_MAX = 63


def partition_name(table: str, scope_key: str) -> str:
    """Same as SQL memload_partition_name(): <table>_p_<md5(scope_key)[:16]> (the Aionis kit's naming)."""
    import hashlib

    return f"{table}_p_{hashlib.md5(scope_key.encode('utf-8')).hexdigest()[:16]}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scope_partitions(conn: psycopg.Connection, table: str, scope_key: str) -> list[str]:
    """Partitions of `table` bound to exactly this scope key (normally zero or one)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE p.relname = %s AND n.nspname = current_schema()"
        " AND pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (%%L)', %s::text) ORDER BY 1",
        (table, scope_key),
    ).fetchall()
    return [r[0] for r in rows]


def table_kind(conn: psycopg.Connection, table: str) -> str | None:
    """'p' (partitioned), 'r' (plain) or None (missing) for a table of the current schema."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = %s AND n.nspname = current_schema() AND c.relkind IN ('r', 'p')",
        (table,),
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class ParentIndex:
    """One index of a partitioned parent, as DDL to recreate on a standalone table that ATTACH will adopt."""

    name: str
    method: str
    constraint_def: str | None  # "PRIMARY KEY (scope, id)" when the index backs a constraint
    index_def: str  # pg_get_indexdef() of the parent index
    predicate: str | None = None  # WHERE clause of a partial index (pg_get_expr of indpred)

    @property
    def is_vector(self) -> bool:
        return self.method in ("hnsw", "ivfflat")


def parent_indexes(conn: psycopg.Connection, table: str) -> list[ParentIndex]:
    """Indexes of a partitioned parent (constraint indexes first, vector indexes last: the slow ones)."""
    rows = conn.execute(
        "SELECT ic.relname, am.amname, pg_get_constraintdef(con.oid), pg_get_indexdef(i.indexrelid),"
        " pg_get_expr(i.indpred, i.indrelid)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam"
        " LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid"
        " WHERE i.indrelid = %s::regclass ORDER BY (con.oid IS NULL), (am.amname IN ('hnsw', 'ivfflat')), 1",
        (table,),
    ).fetchall()
    return [ParentIndex(r[0], r[1], r[2], r[3], r[4]) for r in rows]


_INDEXDEF_RE = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON ONLY \S+ USING ")


def index_ddl_for(idx: ParentIndex, target: str, index_name: str) -> str:
    """DDL building `idx`'s twin on table `target`: same columns/opclass/WITH/WHERE, so ATTACH adopts it."""
    if idx.constraint_def is not None:
        return (f"ALTER TABLE {quote_ident(target)} ADD CONSTRAINT {quote_ident(index_name)} "
                f"{idx.constraint_def}")
    m = _INDEXDEF_RE.match(idx.index_def)
    if m is None:
        raise ValueError(f"unexpected index definition for {idx.name}: {idx.index_def}")
    unique = m.group(1) or ""
    return f"CREATE {unique}INDEX {quote_ident(index_name)} ON {quote_ident(target)} USING " + idx.index_def[m.end():]


def child_index_name(partition: str, parent_table: str, parent_index: str, token: str) -> str:
    """<partition>_<what the parent index is about>_<token>, cut to PostgreSQL's 63-byte identifiers."""
    what = parent_index[len(parent_table) + 1:] if parent_index.startswith(parent_table + "_") else parent_index
    tail = f"_{token}"
    room = IDENT_MAX - len(partition) - 1 - len(tail)
    return f"{partition}_{what[:max(room, 1)]}{tail}"
