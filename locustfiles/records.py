"""Per-request records: one CSV row per measured request, `<csv prefix>_requests.csv`.

Columns `t_s,endpoint,latency_ms,status,category,server_ms,db_ms`: the request's start (Unix epoch seconds; the
intended start in the open model, from which its latency is measured), the endpoint (`recall_text`, `recall`,
`write`), the exact latency, the HTTP status (0 = transport error), the outcome category, and the server's own
total and database time from its `Server-Timing` header (empty when it sends none). Warm-up and preflight requests
are not measured and have no row. Rows are what the plots over time and the statistical comparison are built from,
so every request the JSON counts has exactly one row.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import IO, Any

from locustfiles.validation import (
    CLIENT_4XX,
    EMPTY_RECALL,
    INVALID_BODY,
    OK,
    RATE_LIMITED,
    SERVER_5XX,
    TRANSPORT,
)

SUFFIX = "_requests.csv"
HEADER = ("t_s", "endpoint", "latency_ms", "status", "category", "server_ms", "db_ms")
# validation category -> record category; a 2xx whose body breaks the contract is the server's fault: `5xx`
# (its real status stays in the `status` column)
CATEGORY = {OK: "ok", RATE_LIMITED: "429", CLIENT_4XX: "4xx", SERVER_5XX: "5xx", TRANSPORT: "transport",
            EMPTY_RECALL: "empty_recall", INVALID_BODY: "5xx"}
# Server-Timing metric names read as total server time / database time ("app" and "db" spellings seen in the wild)
TOTAL_NAMES = ("total", "app", "server")
DB_NAMES = ("db", "database", "sql")

Row = tuple[float, str, float, int, str, "float | None", "float | None"]


# one metric's `dur` parameter: `name[;param...];dur=<ms>`, within one comma-separated metric
_findall = re.compile(r'(?:^|,)\s*([^\s,;]+)[^,]*?;\s*dur\s*=\s*"?([^",;\s]+)', re.IGNORECASE).findall


def parse_server_timing(value: str | None) -> tuple[float | None, float | None]:
    """(total ms, db ms) from a `Server-Timing` header value such as `total;dur=12.3, db;dur=4.5` (one regex pass:
    this runs for every response)."""
    if not value:
        return None, None
    durs: dict[str, str] = {}
    for name, raw in _findall(value):
        durs.setdefault(name.lower(), raw)
    return _first_float(durs, TOTAL_NAMES), _first_float(durs, DB_NAMES)


def _first_float(durs: dict[str, str], names: tuple[str, ...]) -> float | None:
    for n in names:
        raw = durs.get(n)
        if raw is not None:
            try:
                return float(raw)
            except ValueError:
                return None
    return None


def records_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}{SUFFIX}")


class RecordsWriter:
    """Appends rows to `<prefix>_requests.csv` (master or local runner; workers ship their rows to it)."""

    def __init__(self, prefix: str | Path) -> None:
        self.path = records_path(prefix)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(self.path, "w", newline="")
        self._w = csv.writer(self._fh)
        self._w.writerow(HEADER)
        self.rows = 0

    def write(self, rows: list[Any]) -> None:
        if self._fh is None or not rows:
            return
        self._fh.write("".join(map(_line, rows)))
        self.rows += len(rows)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _line(r: Any) -> str:
    """One CSV line, as csv.writer ends it (endpoint and category are fixed identifiers: nothing to quote)."""
    t, endpoint, latency, status, category, server_ms, db_ms = r
    return (f"{t:.3f},{endpoint},{latency:.4f},{status:d},{category},"
            f"{'' if server_ms is None else f'{server_ms:.3f}'},{'' if db_ms is None else f'{db_ms:.3f}'}\r\n")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a records file, typed (server_ms / db_ms None when empty)."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out.append({"t_s": float(row["t_s"]), "endpoint": row["endpoint"], "latency_ms": float(row["latency_ms"]),
                        "status": int(row["status"]), "category": row["category"],
                        "server_ms": float(row["server_ms"]) if row["server_ms"] else None,
                        "db_ms": float(row["db_ms"]) if row["db_ms"] else None})
    return out
