"""Human progress on stderr: log lines, a tqdm bar for the COPY, a poller of pg_stat_progress_create_index.

An HNSW build at 10^5 × 1536-d takes minutes on a small box, inside one statement; the only way to show it moving
is to watch the backend from a second connection (as ann-benchmarks does).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

PREFIX = "[memload seed]"


def log(message: str, prefix: str = PREFIX) -> None:
    print(f"{prefix} {message}", file=sys.stderr, flush=True)


def bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr (rows); refreshes every 10 s when stderr is not a terminal, so logs stay short."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=f"{PREFIX} {desc}", unit="rows", unit_scale=True, file=sys.stderr,
                disable=not enabled, mininterval=0.5 if tty else 10.0, dynamic_ncols=tty, leave=True)


class IndexProgress:
    """Context manager: while an index builds on backend `pid`, print its phase and tuples done every few seconds."""

    def __init__(self, url: str, pid: int, label: str, total: int, *, enabled: bool, every_s: float = 5.0) -> None:
        self.url, self.pid, self.label, self.total = url, pid, label, total
        self.enabled, self.every_s = enabled, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def __enter__(self) -> IndexProgress:
        self.started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="index-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.enabled and exc[0] is None:
            log(f"index {self.label}: done in {time.monotonic() - self.started:.1f}s")

    def _run(self) -> None:
        from memload.db import connect

        try:
            conn = connect(self.url, autocommit=True, application_name="memload-seed-progress")
        except Exception:  # progress is best effort; the build itself reports errors
            return
        try:
            while not self._stop.wait(self.every_s):
                row = conn.execute(
                    "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index WHERE pid = %s",
                    (self.pid,)).fetchone()
                if row is None:
                    continue
                phase, done, total = row[0], int(row[1] or 0), int(row[2] or 0) or self.total
                pct = f" {100.0 * done / total:5.1f}%" if total else ""
                elapsed = time.monotonic() - self.started
                rate = f", {done / elapsed:,.0f} tuples/s" if done and elapsed > 0 else ""
                log(f"index {self.label}: {phase} {done:,}/{total:,}{pct} after {elapsed:.0f}s{rate}")
        except Exception:
            return
        finally:
            conn.close()


class CopyProgress:
    """Context manager: a bar driven by the server's own count of rows a COPY has stored on backend `pid`
    (pg_stat_progress_copy.tuples_processed), polled from a second connection.

    Into live tables every row goes through the table's indexes (HNSW ones included) as it arrives, so the rows the
    client has sent run ahead of the rows stored by whatever the socket buffers hold; the server's count is the honest
    one. `advance(n)` (rows handed to COPY) moves the bar only when no second connection could be opened."""

    def __init__(self, url: str, pid: int, total: int, desc: str, *, enabled: bool, every_s: float = 1.0) -> None:
        self.url, self.pid, self.total, self.desc = url, pid, total, desc
        self.enabled, self.every_s = enabled, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._bar: Any = None

    def __enter__(self) -> CopyProgress:
        self._bar = bar(self.total, self.desc, self.enabled)
        self._bar.__enter__()
        if self.enabled:
            from memload.db import connect

            try:
                self._conn = connect(self.url, autocommit=True, application_name="memload-seed-progress")
            except Exception:  # progress is best effort: fall back to the client's count
                self._conn = None
            if self._conn is not None:
                self._thread = threading.Thread(target=self._run, name="copy-progress", daemon=True)
                self._thread.start()
        return self

    def advance(self, n: int) -> None:
        if self._conn is None and self._bar is not None:
            self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        if exc[0] is None and self._bar is not None:  # COPY returned: every row is stored
            self._bar.update(self.total - self._bar.n)
        self._bar.__exit__(*exc)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every_s):
                row = self._conn.execute("SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = %s",
                                         (self.pid,)).fetchone()
                if row is not None:
                    done = min(int(row[0] or 0), self.total)
                    if done > self._bar.n:
                        self._bar.update(done - self._bar.n)
        except Exception:
            return
