"""What the target database looks like, read from its catalog: memload's partitioned layout or a shared plain table.

memload's own schema partitions the four scope tables by scope, so a seed can be built as standalone tables and
attached. Another server's schema (an Aionis server's, for one) keeps every scope in one plain table with its own
indexes and constraints: there a seed can only be COPYed into the live tables. The seeder must know which one it
faces before it touches anything, must fill every NOT NULL column it knows, and must refuse (one line, naming the
column) a NOT NULL column it does not know and the target gives no default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import psycopg

from memload.config import REPO_ROOT
from memload.errors import MemloadError
from seeding.schema import PARTITIONED_PURGE_ORDER, table_kind

PARTITIONED = "partitioned"
SHARED_TABLE = "shared_table"
COMMAND = "command"
LAYOUTS = (PARTITIONED, SHARED_TABLE, COMMAND)

# The tables a seed writes, and the columns the seeder can fill in each (by COPY or INSERT).
SEEDED_TABLES = ("memory_commits", "memory_nodes", "memory_edges")
MIGRATIONS_DIR = REPO_ROOT / "sql" / "migrations"
_INDEX_NAME_RE = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_CONSTRAINT_RE = re.compile(r"CONSTRAINT\s+(\w+)\s+(?:PRIMARY\s+KEY|UNIQUE)", re.IGNORECASE)
_HINT = "seed with the target's own seeder instead: --command / SEED_COMMAND"


class LayoutError(MemloadError):
    """The target's tables cannot take a memload seed (missing table, an unknown required column)."""


@dataclass(frozen=True)
class Column:
    name: str
    not_null: bool
    has_default: bool  # a DEFAULT, an identity or a generated column: PostgreSQL fills it


@dataclass
class Layout:
    """The target as the seeder sees it."""

    kind: str  # PARTITIONED | SHARED_TABLE
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)  # table -> column -> Column
    unknown_indexes: list[str] = field(default_factory=list)

    def present(self, table: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """The columns of `wanted` that `table` has (in `wanted`'s order)."""
        have = self.columns.get(table, {})
        return tuple(c for c in wanted if c in have)


def detect(conn: psycopg.Connection) -> Layout:
    """PARTITIONED when all four scope tables are partitioned (memload's schema), SHARED_TABLE otherwise."""
    kinds = {t: table_kind(conn, t) for t in PARTITIONED_PURGE_ORDER}
    missing = [t for t in SEEDED_TABLES if kinds[t] is None]
    if missing:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        raise LayoutError(
            f"seed (layout): table {missing[0]} not found in schema {schema!r}; point DATABASE_URL at the target's "
            "database (memload's own schema: `memload db migrate`)")
    kind = PARTITIONED if all(k == "p" for k in kinds.values()) else SHARED_TABLE
    layout = Layout(kind, {t: columns(conn, t) for t in SEEDED_TABLES})
    layout.unknown_indexes = unknown_indexes(conn)
    return layout


def columns(conn: psycopg.Connection, table: str) -> dict[str, Column]:
    rows = conn.execute(
        "SELECT a.attname, a.attnotnull, (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '')"
        " FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum", (table,)).fetchall()
    return {r[0]: Column(r[0], bool(r[1]), bool(r[2])) for r in rows}


def check_columns(layout: Layout, table: str, filled: tuple[str, ...], required: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of `filled` that `table` has. Raises LayoutError (one line) when a column of `required` is
    missing, or when the table has a NOT NULL column with no default that the seeder does not fill."""
    have = layout.columns.get(table, {})
    for name in required:
        if name not in have:
            raise LayoutError(f"seed (layout): {table}.{name} does not exist in the target; memload cannot seed "
                              f"this schema; {_HINT}")
    for col in have.values():
        if col.not_null and not col.has_default and col.name not in filled:
            raise LayoutError(f"seed (layout): {table}.{col.name} is NOT NULL with no default and memload does not "
                              f"know what to put there; give it a DEFAULT, or {_HINT}")
    return layout.present(table, filled)


@lru_cache(maxsize=1)
def known_index_names() -> frozenset[str]:
    """Index and key names memload's own migrations create."""
    names: set[str] = set()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        text = path.read_text()
        names.update(_INDEX_NAME_RE.findall(text))
        names.update(_CONSTRAINT_RE.findall(text))
    return frozenset(names)


def unknown_indexes(conn: psycopg.Connection) -> list[str]:
    """Indexes on the seeded tables (parents only, not partitions) that memload's schema does not define."""
    rows = conn.execute(
        "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " WHERE i.indrelid = ANY (%s::regclass[]) ORDER BY 1", (list(SEEDED_TABLES),)).fetchall()
    known = known_index_names()
    return [r[0] for r in rows if r[0] not in known]
