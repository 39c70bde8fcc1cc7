"""Database connection helpers shared by every blocking component (never used inside Locust users)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from memload.errors import DatabaseUnavailable

CONNECT_TIMEOUT_S = 5
# The reference API's connections carry this application_name: CPU accounting tells its backends from others'.
API_APPLICATION_NAME = "memload-api"


def redact_url(url: str) -> str:
    """Hide the password of a database URL so it can be printed."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def connect(url: str, *, autocommit: bool = False, application_name: str = "memload") -> psycopg.Connection:
    """Open a psycopg connection, turning "server is not there" into one readable line."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, application_name=application_name
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to database {redact_url(url)}: {reason}") from None


def setting_bytes(conn: psycopg.Connection, name: str) -> int | None:
    """A server setting with a size unit (shared_buffers, work_mem...) in bytes; None when the server has none."""
    row = conn.execute("SELECT setting::bigint * pg_size_bytes(COALESCE(NULLIF(unit, ''), '1B'))"
                       " FROM pg_settings WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


@contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(url, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()

