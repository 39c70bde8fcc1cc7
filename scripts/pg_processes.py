"""The PostgreSQL server's processes on this machine, and the CPU they spend serving one client.

A benchmark prices a request in API CPU plus PostgreSQL CPU. The server's share is its postmaster's process tree
read from /proc, minus the backends that serve someone else (another database, a seeder, the meter itself): on a
shared machine their work must not be counted as the target's.
"""

from __future__ import annotations

from typing import Any

from memload import proc
from memload.db import connect
from memload.errors import MemloadError

_OTHER_BACKENDS_SQL = """
SELECT pid FROM pg_stat_activity
WHERE backend_type IN ('client backend', 'autovacuum worker', 'parallel worker', 'walsender')
  AND (pid = pg_backend_pid()
       OR datname IS DISTINCT FROM current_database()
       OR (%(app)s::text IS NOT NULL AND application_name IS DISTINCT FROM %(app)s::text))
"""


class PgServer:
    """The PostgreSQL server behind `url`, when it runs on this machine (`postmaster` is None otherwise).

    `client_app` is the application_name of the backends to count (memload's API sets `memload-api`); None counts
    every backend of the database except the meter's own, for a target whose connections memload does not name."""

    def __init__(self, url: str, *, meter_app: str, client_app: str | None) -> None:
        import psycopg

        self.conn: Any = None
        self.postmaster: int | None = None
        self.client_app = client_app
        self.error: str | None = None  # why the server could not be reached
        try:
            self.conn = connect(url, autocommit=True, application_name=meter_app)
            backend = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        except (MemloadError, psycopg.Error) as exc:
            self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return
        parent = proc.process_table().get(backend)
        self.postmaster = parent[1] if parent is not None else None

    def others(self) -> set[int]:
        """Backends whose CPU is not the client's."""
        if self.conn is None:
            return set()
        return {r[0] for r in self.conn.execute(_OTHER_BACKENDS_SQL, {"app": self.client_app}).fetchall()}

    def own_cpu(self) -> dict[int, float]:
        """pid -> own CPU seconds of every server process counted for the client (the server's background processes
        included). Own time only: the postmaster's reaped children include other clients' backends."""
        if self.postmaster is None:
            return {}
        own = proc.process_table(reaped=False)
        others = self.others()
        return {pid: own[pid][2] for pid in proc.descendants(own, self.postmaster) if pid in own and pid not in others}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class CpuAccumulator:
    """Cumulative CPU seconds of a changing set of processes: each sample adds what every process used since the
    previous one, so a backend that appears counts from its start, and one that exits keeps what it used."""

    def __init__(self, first: dict[int, float]) -> None:
        self.last = dict(first)
        self.total = 0.0

    def add(self, sample: dict[int, float]) -> float:
        self.total += sum(max(0.0, v - self.last.get(pid, 0.0)) for pid, v in sample.items())
        self.last = {**self.last, **sample}
        return self.total
