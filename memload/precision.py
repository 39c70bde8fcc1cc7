"""Precision of a scope's ANN index: `vector` (float32, 4 bytes a dimension) or `halfvec` (float16, 2 bytes).

On memload's partitioned layout the ready hot/warm HNSW index belongs to each scope's partition, so a seeded scope
can carry a halfvec index (`(embedding::halfvec(1536)) halfvec_cosine_ops`): half the graph, a faster build and
faster distances, the heap keeping its float32 vectors. A query uses an expression index only when its ORDER BY is
the index's expression, so every k-NN query (the API's stage 1, ann-check, explain) takes the ordering expression from
here, and learns the scope's precision from the catalog (`scope_precision`, one query, cacheable per scope).
A scope without a partition of its own (the default partition, a shared plain table) is `vector`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from memload.embedder import EMBEDDING_DIM

VECTOR, HALFVEC = "vector", "halfvec"
PRECISIONS = (VECTOR, HALFVEC)
OPCLASS = {VECTOR: "vector_cosine_ops", HALFVEC: "halfvec_cosine_ops"}
# Bytes a vector takes in pgvector (varlena header + dim + unused, then the elements).
ELEMENT_BYTES = {VECTOR: 4, HALFVEC: 2}
# SQL function (sql/migrations) that builds a partition's ready hot/warm HNSW index in a precision: its one home.
INDEX_FUNCTION = "memload_ready_hnsw_index"


def check(value: str, flag: str) -> str:
    """The precision, or a one-line ConfigError naming `flag`."""
    if value not in PRECISIONS:
        from memload.errors import ConfigError

        raise ConfigError(f"{flag}: expected one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def order_expr(precision: str, column: str = "embedding") -> str:
    """The expression an index of this precision is built on (and a k-NN ORDER BY must repeat)."""
    return column if precision == VECTOR else f"{column}::halfvec({EMBEDDING_DIM})"


def query_cast(precision: str) -> str:
    """The cast of the query vector parameter that matches the index's operator class."""
    return f"::{precision}({EMBEDDING_DIM})"


def distance_sql(precision: str, column: str = "embedding", param: str = "%(q)s") -> str:
    """`<expr> <=> <param>::<type>(1536)`: the ordering an HNSW index of this precision serves."""
    return f"{order_expr(precision, column)} <=> {param}{query_cast(precision)}"


def nodes_partition(scope_key: str) -> str:
    """memory_nodes' partition of a scope (same as SQL memload_partition_name)."""
    return f"memory_nodes_p_{hashlib.md5(scope_key.encode('utf-8')).hexdigest()[:16]}"


PRECISION_SQL = (
    "SELECT oc.opcname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
    " JOIN pg_am am ON am.oid = ic.relam JOIN pg_opclass oc ON oc.oid = i.indclass[0]"
    " WHERE i.indrelid = to_regclass(%(part)s) AND am.amname = 'hnsw'"
    " ORDER BY (oc.opcname = 'halfvec_cosine_ops') DESC LIMIT 1"
)


def scope_precision(conn: Any, scope_key: str) -> str:
    """`halfvec` when the scope's own nodes partition has a halfvec HNSW index over its ready vectors, else `vector`.

    `conn` is a psycopg connection (sync). One catalog query; callers cache the answer per scope."""
    row = conn.execute(PRECISION_SQL, {"part": nodes_partition(scope_key)}).fetchone()
    return from_opclass(None if row is None else row[0])


def from_opclass(opclass: str | None) -> str:
    """The precision PRECISION_SQL's answer (an operator class name, or no row) stands for."""
    return HALFVEC if opclass == OPCLASS[HALFVEC] else VECTOR


def follow(statement: str, precision: str, column: str = "n.embedding") -> str:
    """`statement` with its k-NN `ORDER BY <column> <=> %(q)s::vector(1536)` rewritten to the expression an index of
    `precision` is built on; the distance the statement selects stays the float32 one (same figures either way)."""
    if precision == VECTOR:
        return statement
    old = f"ORDER BY {distance_sql(VECTOR, column)}"
    if old not in statement:
        raise ValueError(f"no k-NN ORDER BY on {column} in the statement")
    return statement.replace(old, f"ORDER BY {distance_sql(precision, column)}")
