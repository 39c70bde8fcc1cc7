"""Locust 2.47.0 CSV files (`--csv PREFIX [--csv-full-history]`), parsed by header name with pandas.

Facts that shape the parsing (locust/stats.py, StatsCSV / StatsCSVFileWriter):
- `_stats.csv`: one row per (method, name) plus a final `Aggregated` row with an empty Type; cumulative over the run;
  percentile columns ("50%", ..., "100%") are Locust's *bucketed* nearest-rank values (2 significant digits), "N/A"
  when an entry has no requests.
- `_stats_history.csv`: appended every second. `Requests/s` / `Failures/s` are already ~10 s moving averages. The
  percentile columns are *cumulative* without `--csv-full-history` (only Aggregated rows are written then) and a
  ~10 s *sliding window* with it (one row per entry + Aggregated); during the first ~10 s there is no window yet and
  Locust writes 0.
- `_failures.csv`: Method, Name, Error, Occurrences (+ First Seen / Last Seen since 2.44.0).
- `_exceptions.csv`: Count, Message, Traceback, Nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.errors import MalformedArtifact

KEY_PERCENTILES = ("50%", "95%", "99%")
AGGREGATED = "Aggregated"
HISTORY_WINDOW_S = 10
# Rows in the first seconds of a full-history file carry 0 instead of a windowed percentile (no 10 s window yet).
WINDOW_WARMUP_S = 12

STATS_COLUMNS = ("Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Average Response Time",
                 "Min Response Time", "Max Response Time", "Average Content Size", "Requests/s", "Failures/s")
HISTORY_COLUMNS = ("Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "Total Request Count",
                   "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
                   "Total Min Response Time", "Total Max Response Time", "Total Average Content Size")
FAILURES_COLUMNS = ("Method", "Name", "Error", "Occurrences")
EXCEPTIONS_COLUMNS = ("Count", "Message", "Traceback", "Nodes")

_TEXT_COLUMNS = {"Type", "Name", "Method", "Error", "Message", "Traceback", "Nodes", "First Seen", "Last Seen"}
_NA = {"", "N/A", "NaN", "nan", "None"}


@dataclass
class LocustRun:
    """The four CSV files of one `--csv` prefix (None when a file is absent)."""

    prefix: str
    stats: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    failures: pd.DataFrame | None = None
    exceptions: pd.DataFrame | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def full_history(self) -> bool:
        """True when the history has per-entry rows, i.e. percentiles are ~10 s windows, not cumulative."""
        return self.history is not None and bool((self.history["Name"] != AGGREGATED).any())


    def entries(self) -> pd.DataFrame:
        """Per-endpoint rows of `_stats.csv` (the Aggregated row excluded)."""
        if self.stats is None:
            return pd.DataFrame()
        return self.stats[self.stats["Name"] != AGGREGATED]


    @property
    def duration_s(self) -> float | None:
        """Wall time covered by the history (first to last sample), seconds."""
        if self.history is None or self.history.empty:
            return None
        ts = self.history["Timestamp"]
        return float(ts.max() - ts.min())


def read_locust_run(directory: Path, prefix: str) -> LocustRun:
    """Read `<prefix>_{stats,stats_history,failures,exceptions}.csv` from `directory`; absent files are listed."""
    run = LocustRun(prefix)
    specs = (("stats", "_stats.csv", STATS_COLUMNS, True), ("history", "_stats_history.csv", HISTORY_COLUMNS, True),
             ("failures", "_failures.csv", FAILURES_COLUMNS, False),
             ("exceptions", "_exceptions.csv", EXCEPTIONS_COLUMNS, False))
    for attr, suffix, required, needs_percentiles in specs:
        path = directory / f"{prefix}{suffix}"
        if not path.is_file():
            run.missing.append(path.name)
            continue
        setattr(run, attr, read_csv(path, required, needs_percentiles=needs_percentiles))
    return run


def read_csv(path: Path, required: tuple[str, ...], *, needs_percentiles: bool = False) -> pd.DataFrame:
    """Read one Locust CSV, check its header by name and convert numeric columns (naming file/column/line on error)."""
    text_cols = {c: str for c in _TEXT_COLUMNS}
    try:  # fast path: the C parser infers numbers; only a column that comes back as text is checked value by value
        frame = pd.read_csv(path, dtype=text_cols, na_values=list(_NA), keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise MalformedArtifact(path, "empty file (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MalformedArtifact(path, f"not a readable CSV: {str(exc).splitlines()[0]}") from None
    columns = list(frame.columns)
    for name in required:
        if name not in columns:
            raise MalformedArtifact(path, f"missing column {name!r} (header: {', '.join(columns)[:160]})")
    if needs_percentiles:
        for name in KEY_PERCENTILES:
            if name not in columns:
                raise MalformedArtifact(path, f"missing column {name!r} (percentile columns are needed)")
    for name in columns:
        if name in _TEXT_COLUMNS:
            frame[name] = frame[name].fillna("")
        elif not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = _numeric(path, frame, name)
    return frame


def _numeric(path: Path, frame: pd.DataFrame, name: str) -> pd.Series:
    raw = frame[name].astype(str).str.strip()
    values = pd.to_numeric(raw.where(~raw.isin(_NA)), errors="coerce")
    bad = values.isna() & ~raw.isin(_NA)
    if bad.any():
        index = int(bad.to_numpy().nonzero()[0][0])
        raise MalformedArtifact(path, f"column {name!r} line {index + 2}: not a number: {raw.iloc[index]!r}")
    return values

