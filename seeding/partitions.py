"""Load-then-index-then-attach: a scope's nodes/edges partition is built as a standalone table first.

The table is created `LIKE` the parent (defaults and CHECK constraints) plus `CHECK (scope = key)`, bulk-loaded with
no index at all, then given twins of every parent index (same columns, opclass, WITH and WHERE, so `ATTACH
PARTITION` adopts them instead of building them again) and finally attached. The CHECK lets ATTACH skip its scan of
the new partition. All of it runs inside the seed's transaction, so a failure or a kill leaves nothing behind.

ATTACH validates the new partition's foreign keys with one anti-join of it against the whole referenced parent (every
scope), planned without parallel workers. The planner can pick a merge anti join on `scope` alone with `id` left
as a join filter; a partition holds a single scope, so every edge is then compared with every node of the scope:
quadratic, 2·10^5 edges × 10^5 nodes took 420 s. Merge joins are off while attaching, which leaves the hash anti
join (one pass over each side, in maintenance_work_mem: ATTACH raises work_mem to it for this check).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from seeding.schema import (
    ParentIndex,
    child_index_name,
    index_ddl_for,
    parent_indexes,
    partition_name,
    quote_ident,
    quote_literal,
)


@dataclass
class StandaloneTable:
    parent: str
    scope_key: str
    token: str  # distinguishes this build's relation names from a partition of the scope that still exists
    index_seconds: dict[str, float] = field(default_factory=dict)
    attach_seconds: float | None = None
    left_to_attach: list[str] = field(default_factory=list)  # parent indexes ATTACH builds (no twin could be made)

    @property
    def final_name(self) -> str:
        return partition_name(self.parent, self.scope_key)

    @property
    def build_name(self) -> str:
        return f"{self.final_name}_b{self.token}"

    @property
    def check_name(self) -> str:
        return f"{self.build_name}_scope_ck"

    def create(self, conn: psycopg.Connection) -> None:
        b = quote_ident(self.build_name)
        conn.execute(f"CREATE TABLE {b} (LIKE {quote_ident(self.parent)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        conn.execute(f"ALTER TABLE {b} ADD CONSTRAINT {quote_ident(self.check_name)} "
                     f"CHECK (scope = {quote_literal(self.scope_key)})")

    def indexes(self, conn: psycopg.Connection) -> list[ParentIndex]:
        return parent_indexes(conn, self.parent)

    def build_index(self, conn: psycopg.Connection, idx: ParentIndex, ordinal: int) -> float:
        name = child_index_name(self.final_name, self.parent, idx.name, f"{self.token}{ordinal}")
        try:
            ddl = index_ddl_for(idx, self.build_name, name)
        except ValueError:  # a definition this code cannot twin: ATTACH builds that index itself (slower, correct)
            self.left_to_attach.append(idx.name)
            return 0.0
        t0 = time.monotonic()
        if idx.is_vector and idx.predicate and not self._any_row(conn, idx.predicate):
            # An empty partial vector index (the general HNSW index: seeded rows are all ready and hot) built with
            # the parallel settings still sets up a maintenance_work_mem-sized shared graph: ~2 s for nothing.
            workers = conn.execute("SELECT current_setting('max_parallel_maintenance_workers')").fetchone()[0]
            conn.execute("SET LOCAL max_parallel_maintenance_workers = 0")
            conn.execute(ddl)
            conn.execute(f"SET LOCAL max_parallel_maintenance_workers = {int(workers)}")
        else:
            conn.execute(ddl)
        took = time.monotonic() - t0
        self.index_seconds[idx.name] = round(took, 3)
        return took

    def _any_row(self, conn: psycopg.Connection, predicate: str) -> bool:
        return bool(conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quote_ident(self.build_name)} WHERE {predicate})"
                                 ).fetchone()[0])

    def build_indexes(self, conn: psycopg.Connection, around: Callable[[ParentIndex], object] | None = None) -> None:
        """Every parent index, in parent_indexes() order; `around(idx)` may return a context manager (progress)."""
        for i, idx in enumerate(self.indexes(conn)):
            cm = around(idx) if around is not None else None
            if cm is None:
                self.build_index(conn, idx, i)
            else:
                with cm:  # type: ignore[attr-defined]
                    self.build_index(conn, idx, i)

    def attach(self, conn: psycopg.Connection) -> None:
        """Rename to the scope's partition name, attach, drop the now redundant CHECK."""
        final = quote_ident(self.final_name)
        t0 = time.monotonic()
        conn.execute(f"ALTER TABLE {quote_ident(self.build_name)} RENAME TO {final}")
        merge = conn.execute("SELECT current_setting('enable_mergejoin')").fetchone()[0]
        conn.execute("SET LOCAL enable_mergejoin = off")  # the foreign-key check's plan: see the module docstring
        conn.execute(f"ALTER TABLE {quote_ident(self.parent)} ATTACH PARTITION {final} "
                     f"FOR VALUES IN ({quote_literal(self.scope_key)})")
        conn.execute(f"SET LOCAL enable_mergejoin = {'on' if merge == 'on' else 'off'}")
        conn.execute(f"ALTER TABLE {final} DROP CONSTRAINT {quote_ident(self.check_name)}")
        self.attach_seconds = round(time.monotonic() - t0, 3)


def create_empty_partition(conn: psycopg.Connection, parent: str, scope_key: str) -> str:
    name = partition_name(parent, scope_key)
    conn.execute(f"CREATE TABLE {quote_ident(name)} PARTITION OF {quote_ident(parent)} "
                 f"FOR VALUES IN ({quote_literal(scope_key)})")
    return name


def unattached_index_count(conn: psycopg.Connection, parent: str, partition: str) -> int:
    """Parent indexes with no child on `partition` (0 after a successful ATTACH: every twin was adopted)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_index pi WHERE pi.indrelid = %s::regclass AND NOT EXISTS ("
        " SELECT 1 FROM pg_inherits inh JOIN pg_index ci ON ci.indexrelid = inh.inhrelid"
        " WHERE inh.inhparent = pi.indexrelid AND ci.indrelid = %s::regclass)",
        (parent, partition)).fetchone()
    return int(row[0])
