"""`memload check-indexes`: the seed's Index Checklist, plus server and pgvector versions."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from memload.errors import ExitCode
from scripts.common import settings_from_args

# name -> (table, access method)
REQUIRED_INDEXES: dict[str, tuple[str, str]] = {
    "memory_nodes_embedding_hnsw_idx": ("memory_nodes", "hnsw"),
    "memory_nodes_embedding_ready_hot_warm_hnsw_idx": ("memory_nodes", "hnsw"),
    "memory_edges_scope_src_type_idx": ("memory_edges", "btree"),
    "memory_edges_scope_dst_type_idx": ("memory_edges", "btree"),
}
# memload's own schema keeps the ready hot/warm HNSW index per partition (a seeded scope may hold it as halfvec):
# there the default partition's index stands for the parent's.
PER_PARTITION: dict[str, tuple[str, str]] = {
    "memory_nodes_embedding_ready_hot_warm_hnsw_idx": ("memory_nodes_default_ready_hot_warm_hnsw",
                                                       "memory_nodes_default"),
}


@dataclass(frozen=True)
class IndexState:
    name: str
    table: str
    expected_method: str
    method: str | None  # None = missing
    valid: bool

    @property
    def ok(self) -> bool:
        return self.method == self.expected_method and self.valid


def inspect_indexes(url: str) -> tuple[list[IndexState], dict[str, str]]:
    """The state of each required index, and {postgres, pgvector} versions."""
    from memload.db import connection

    states: list[IndexState] = []
    with connection(url) as conn:
        for name, (table, method) in REQUIRED_INDEXES.items():
            row = conn.execute(
                "SELECT am.amname, i.indisvalid, t.relname FROM pg_class c"
                " JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_am am ON am.oid = c.relam"
                " JOIN pg_class t ON t.oid = i.indrelid WHERE c.relname = %s",
                (name,),
            ).fetchone()
            expected_table = table
            if row is None and name in PER_PARTITION:
                part_index, expected_table = PER_PARTITION[name]
                row = conn.execute(
                    "SELECT am.amname, i.indisvalid, t.relname FROM pg_class c"
                    " JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_am am ON am.oid = c.relam"
                    " JOIN pg_class t ON t.oid = i.indrelid WHERE c.relname = %s",
                    (part_index,),
                ).fetchone()
            if row is None or row[2] != expected_table:
                states.append(IndexState(name, table, method, None, False))
            else:
                states.append(IndexState(name, table, method, row[0], bool(row[1])))
        pg = conn.execute("SHOW server_version").fetchone()[0]
        vec = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return states, {"postgres": pg, "pgvector": vec[0] if vec else "not installed"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-indexes", help="check the four required indexes exist, with their access method",
                       description="Checks the recall path's four indexes (two HNSW on memory_nodes, two btree on "
                                   "memory_edges) exist, are valid and use the expected access method; prints the "
                                   "PostgreSQL and pgvector versions. Exits 3 when one is missing or wrong.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scripts.embedded_db import resolve_database_url

    url = resolve_database_url(settings_from_args(args))
    states, versions = inspect_indexes(url)
    print(f"PostgreSQL {versions['postgres']}, pgvector {versions['pgvector']}")
    for s in states:
        if s.method is None:
            verdict = "MISSING"
        elif not s.ok:
            verdict = f"WRONG ({s.method}{'' if s.valid else ', invalid'}; expected {s.expected_method})"
        else:
            verdict = "present"
        print(f"  {s.name:<50} {s.table:<13} {s.expected_method:<6} {verdict}")
    missing = [s.name for s in states if not s.ok]
    if missing:
        print(f"missing or wrong: {', '.join(missing)}")
        return ExitCode.GATE_FAILED
    return ExitCode.OK
