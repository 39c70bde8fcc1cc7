"""The connection pool and the per-request database timer behind `Server-Timing: db;dur=`.

Recall knobs (hnsw.ef_search, hnsw.iterative_scan, hnsw.max_scan_tuples, plan_cache_mode) are set once per pooled
connection in the pool's `configure` callback, not per request: zero extra round trips on the hot path.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

from memload.config import Settings
from memload.db import API_APPLICATION_NAME
from memload.errors import ConfigError

_db_ms: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("memload_db_ms", default=None)

ITERATIVE_SCAN_VALUES = ("off", "relaxed_order", "strict_order")


def start_timer() -> list[float]:
    """Begin accumulating database time for the current request (a one-element list, read after the request)."""
    acc = [0.0]
    _db_ms.set(acc)
    return acc


@asynccontextmanager
async def timed() -> AsyncIterator[None]:
    """Count the enclosed await as database time of the current request."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        acc = _db_ms.get()
        if acc is not None:
            acc[0] += (time.perf_counter() - t0) * 1000.0


async def fetchall(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    t0 = time.perf_counter()
    try:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()  # in pipeline mode this is the sync point that brings the rows
    finally:
        acc = _db_ms.get()
        if acc is not None:
            acc[0] += (time.perf_counter() - t0) * 1000.0


async def execute(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> int:
    t0 = time.perf_counter()
    try:
        cur = await conn.execute(sql, params)
        return cur.rowcount
    finally:
        acc = _db_ms.get()
        if acc is not None:
            acc[0] += (time.perf_counter() - t0) * 1000.0


async def executemany_returning(
    conn: psycopg.AsyncConnection, sql: str, rows: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """executemany with RETURNING: the returned rows of every statement, concatenated (one row: plain execute)."""
    t0 = time.perf_counter()
    try:
        out: list[tuple[Any, ...]] = []
        if len(rows) == 1:
            cur = await conn.execute(sql, rows[0])
            return await cur.fetchall()
        async with conn.cursor() as cur:
            await cur.executemany(sql, rows, returning=True)
            while True:
                out.extend(await cur.fetchall())
                if not cur.nextset():
                    break
        return out
    finally:
        acc = _db_ms.get()
        if acc is not None:
            acc[0] += (time.perf_counter() - t0) * 1000.0


def session_settings(s: Settings) -> list[tuple[str, str]]:
    """Session GUCs of every API connection (validated here so a typo fails at startup, naming the variable)."""
    if s.hnsw_iterative_scan not in ITERATIVE_SCAN_VALUES:
        raise ConfigError(
            f"HNSW_ITERATIVE_SCAN: expected one of {', '.join(ITERATIVE_SCAN_VALUES)}, got {s.hnsw_iterative_scan!r}"
        )
    if s.hnsw_ef_search < 1 or s.hnsw_ef_search > 1000:
        raise ConfigError(f"HNSW_EF_SEARCH: expected 1..1000, got {s.hnsw_ef_search}")
    if s.hnsw_max_scan_tuples < 1:
        raise ConfigError(f"HNSW_MAX_SCAN_TUPLES: expected >= 1, got {s.hnsw_max_scan_tuples}")
    return [
        ("hnsw.ef_search", str(s.hnsw_ef_search)),
        ("hnsw.iterative_scan", s.hnsw_iterative_scan),
        ("hnsw.max_scan_tuples", str(s.hnsw_max_scan_tuples)),
        # psycopg prepares statements after 5 runs; a generic plan cannot prune partitions at plan time and
        # estimates the ANN query as a seq scan + sort over every partition (measured: 490 ms vs 10 ms at 10^4).
        ("plan_cache_mode", "force_custom_plan"),
        ("application_name", API_APPLICATION_NAME),
    ]


def make_pool(url: str, s: Settings) -> AsyncConnectionPool:
    """An unopened pool of DB_POOL_MAX connections, each configured with the recall knobs and the vector type."""
    gucs = session_settings(s)
    if s.db_pool_max < 1:
        raise ConfigError(f"DB_POOL_MAX: expected >= 1, got {s.db_pool_max}")

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.set_autocommit(True)
        for name, value in gucs:
            await conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        await register_vector_async(conn)
        await conn.set_autocommit(False)

    return AsyncConnectionPool(
        url,
        min_size=min(s.db_pool_max, 4),
        max_size=s.db_pool_max,
        configure=configure,
        open=False,
        name="memload-api",
        timeout=10.0,
        kwargs={"connect_timeout": 5},
    )
