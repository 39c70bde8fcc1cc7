"""Exact latencies and outcome counts per endpoint, mergeable across Locust workers.

Every request event carries the unrounded float latency; successes go into an HdrHistogram per endpoint
(1 us .. 60 s, 3 significant digits, i.e. <= 0.1 % relative error, where Locust rounds to ~2 digits: 1 ms below
100 ms, 10 ms below 1 s, 100 ms below 10 s), with exact min/max/sum kept beside it. The request path only appends
to a list; the list is folded into the histogram in vectorised batches. 429s and failures are counted apart and
never enter the latency figures.

A process records into a `Recorder`; `take_delta()` hands over what was recorded since the last call. Workers
send it with `report_to_master` (histograms base64-encoded); the master (or the local runner) merges deltas into
an `Aggregate`, which renders `<prefix>_exact.json` and the per-case summary.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from locustfiles.validation import CATEGORIES, OK, TRANSPORT, Verdict

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = ("50", "66", "75", "90", "95", "99", "99.9")
MAX_CDF_POINTS = 400
PENDING_MAX = 4096


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_many(hist: HdrHistogram, values_us: list[int]) -> None:
    """Add integer microsecond values to `hist` in one vectorised step (same counts as `record_value` per value).

    `record_value` costs several microseconds of pure Python per call, too much on the request path of a load
    generator; the request path only appends to a list and this folds the list in. It relies on hdrh's
    (pinned, 0.10.8) internals; anything unexpected falls back to `record_value`."""
    if not values_us:
        return
    try:
        counts = np.ctypeslib.as_array(hist.counts)
        v = np.asarray(values_us, dtype=np.int64)
        _, exp = np.frexp((v | hist.sub_bucket_mask).astype(np.float64))  # exp = bit length (exact below 2^53)
        bucket = exp.astype(np.int64) - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
        sub = v >> (bucket + hist.unit_magnitude)
        idx = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (sub - hist.sub_bucket_half_count)
        if idx.min() < 0 or idx.max() >= hist.counts_len or counts.shape[0] < hist.counts_len:
            raise ValueError("index out of range")
        np.add.at(counts, idx, 1)
        hist.total_count += len(values_us)
        hist.min_value = min(hist.min_value, int(v.min()))
        hist.max_value = max(hist.max_value, int(v.max()))
    except (AttributeError, TypeError, ValueError):
        for value in values_us:
            hist.record_value(value)


@dataclass
class CaseStats:
    """Everything counted for one endpoint (`recall_text`, `recall`, `write`)."""

    hist: HdrHistogram = field(default_factory=new_histogram)
    ok: int = 0
    sum_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_start: float = math.inf  # epoch s: first token taken (before its pace) or first send
    last_end: float = 0.0  # epoch s: end of the last response
    intended: int = 0  # open model: slots claimed (sent) ...
    dropped: int = 0  # ... and skipped
    late: int = 0
    lag_sum_ms: float = 0.0
    lag_max_ms: float = 0.0
    pending_us: list[int] = field(default_factory=list)  # successes not yet folded into `hist`

    def record(self, verdict: Verdict, latency_ms: float, start: float, end: float) -> None:
        """One finished request (hot path of the load generator: plain comparisons, no histogram call)."""
        self.total += 1
        self.by_status[verdict.status_key] += 1
        if start < self.first_start:
            self.first_start = start
        if end > self.last_end:
            self.last_end = end
        if verdict.category == OK:
            self.ok += 1
            self.sum_ms += latency_ms
            if latency_ms < self.min_ms:
                self.min_ms = latency_ms
            if latency_ms > self.max_ms:
                self.max_ms = latency_ms
            us = int(latency_ms * 1000.0 + 0.5)
            pending = self.pending_us
            pending.append(LOWEST_US if us < LOWEST_US else HIGHEST_US if us > HIGHEST_US else us)
            if len(pending) >= PENDING_MAX:
                self.flush()
        else:
            self.errors[verdict.category] += 1

    def flush(self) -> HdrHistogram:
        """Fold pending values into the histogram; returns it."""
        if self.pending_us:
            pending, self.pending_us = self.pending_us, []
            record_many(self.hist, pending)
        return self.hist

    def merge(self, other: CaseStats) -> None:
        self.flush().add(other.flush())
        for name in ("ok", "sum_ms", "total", "intended", "dropped", "late", "lag_sum_ms"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)
        self.lag_max_ms = max(self.lag_max_ms, other.lag_max_ms)
        self.first_start = min(self.first_start, other.first_start)
        self.last_end = max(self.last_end, other.last_end)
        self.by_status.update(other.by_status)
        self.errors.update(other.errors)

    # --- wire format (worker -> master) ---
    def to_wire(self) -> dict[str, Any]:
        return {
            "hist": self.flush().encode().decode("ascii") if self.ok else "",
            "ok": self.ok, "sum_ms": self.sum_ms, "min_ms": _finite(self.min_ms), "max_ms": self.max_ms,
            "total": self.total, "by_status": dict(self.by_status), "errors": dict(self.errors),
            "first_start": _finite(self.first_start), "last_end": self.last_end,
            "intended": self.intended, "dropped": self.dropped, "late": self.late,
            "lag_sum_ms": self.lag_sum_ms, "lag_max_ms": self.lag_max_ms,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CaseStats:
        hist = HdrHistogram.decode(d["hist"].encode("ascii")) if d.get("hist") else new_histogram()
        return cls(
            hist=hist, ok=int(d["ok"]), sum_ms=float(d["sum_ms"]),
            min_ms=math.inf if d.get("min_ms") is None else float(d["min_ms"]), max_ms=float(d["max_ms"]),
            total=int(d["total"]), by_status=Counter(d.get("by_status", {})), errors=Counter(d.get("errors", {})),
            first_start=math.inf if d.get("first_start") is None else float(d["first_start"]),
            last_end=float(d["last_end"]), intended=int(d.get("intended", 0)), dropped=int(d.get("dropped", 0)),
            late=int(d.get("late", 0)), lag_sum_ms=float(d.get("lag_sum_ms", 0.0)),
            lag_max_ms=float(d.get("lag_max_ms", 0.0)),
        )

    # --- rendering ---
    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile (the Aionis kit's `sorted[ceil(n*q)-1]`) at histogram resolution, clamped."""
        n = self.flush().get_total_count()
        if n == 0:
            return None
        if q >= 1.0:
            return self.max_ms
        rank = max(1, math.ceil(n * q))
        seen = 0
        for item in self.hist.get_recorded_iterator():
            seen += item.count_at_value_iterated_to
            if seen >= rank:
                lo = self.hist.get_lowest_equivalent_value(item.value_iterated_to)
                hi = self.hist.get_highest_equivalent_value(item.value_iterated_to)
                return min(self.max_ms, max(self.min_ms, (lo + hi) / 2000.0))
        return self.max_ms

    def cdf(self) -> list[list[float]]:
        """[[ms, fraction <= ms], ...] over the recorded buckets, thinned to at most MAX_CDF_POINTS."""
        n = self.flush().get_total_count()
        if n == 0:
            return []
        points: list[list[float]] = []
        seen = 0
        for item in self.hist.get_recorded_iterator():
            seen += item.count_at_value_iterated_to
            hi = min(self.max_ms, self.hist.get_highest_equivalent_value(item.value_iterated_to) / 1000.0)
            points.append([round(hi, 4), round(seen / n, 6)])
        if len(points) > MAX_CDF_POINTS:
            step = len(points) / MAX_CDF_POINTS
            keep = {min(len(points) - 1, int(i * step)) for i in range(MAX_CDF_POINTS)} | {len(points) - 1}
            points = [p for i, p in enumerate(points) if i in keep]
        return points

    def latency_summary(self) -> dict[str, float | None]:
        """The Aionis kit's latency_ms block (successful requests only)."""
        if self.ok == 0:
            return {"min": None, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
        return {
            "min": _r(self.min_ms), "p50": _r(self.percentile_ms(0.50)), "p95": _r(self.percentile_ms(0.95)),
            "p99": _r(self.percentile_ms(0.99)), "max": _r(self.max_ms), "mean": _r(self.sum_ms / self.ok),
        }

    def exact_entry(self) -> dict[str, Any]:
        return {
            "count": self.ok,
            "min_ms": _r(self.min_ms) if self.ok else None,
            "max_ms": _r(self.max_ms) if self.ok else None,
            "mean_ms": _r(self.sum_ms / self.ok) if self.ok else None,
            "percentiles_ms": {p: _r(self.percentile_ms(float(p) / 100.0)) for p in PERCENTILES},
            "cdf": self.cdf(),
        }

    @property
    def wall_s(self) -> float:
        if self.total == 0 or not math.isfinite(self.first_start):
            return 0.0
        return max(0.0, self.last_end - self.first_start)

    def summary(self) -> dict[str, Any]:
        wall = self.wall_s
        transport = self.errors.get(TRANSPORT, 0)
        sent = self.intended
        return {
            "total": self.total, "ok": self.ok, "failed": self.total - self.ok,
            "rps": round(self.total / wall, 3) if wall > 0 else 0.0,
            "ok_rps": round(self.ok / wall, 3) if wall > 0 else 0.0,
            "wall_s": round(wall, 4),
            "latency_ms": self.latency_summary(),
            "by_status": dict(sorted(self.by_status.items())),
            "transport_error_count": transport,
            "transport_error_rate": round(transport / self.total, 6) if self.total else 0.0,
            "errors": {c: self.errors.get(c, 0) for c in CATEGORIES},
            "open_model": {
                "intended": sent + self.dropped, "late": self.late, "dropped": self.dropped,
                "lag_ms_mean": round(self.lag_sum_ms / sent, 3) if sent else 0.0,
                "lag_ms_max": round(self.lag_max_ms, 3),
            },
            "first_start": _finite(self.first_start), "last_end": self.last_end or None,
        }


class Recorder:
    """What one process recorded since the last `take_delta()`."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseStats] = {}
        self.pacing_rows: list[tuple[int, str, float, int, int]] = []
        self.pacing_state: dict[str, dict[str, Any]] = {}
        self.rows: list[tuple[Any, ...]] = []  # per-request records (see locustfiles.records)

    def case(self, endpoint: str) -> CaseStats:
        cs = self.cases.get(endpoint)
        if cs is None:
            cs = self.cases[endpoint] = CaseStats()
        return cs

    def mark_start(self, endpoint: str, when: float) -> None:
        cs = self.cases.get(endpoint) or self.case(endpoint)
        if when < cs.first_start:
            cs.first_start = when

    def take_delta(self) -> dict[str, Any]:
        delta = {"cases": self.cases, "pacing_rows": self.pacing_rows, "pacing_state": dict(self.pacing_state),
                 "rows": self.rows}
        self.cases = {}
        self.pacing_rows = []
        self.rows = []
        return delta

    @staticmethod
    def delta_to_wire(delta: dict[str, Any]) -> dict[str, Any]:
        return {"cases": {k: v.to_wire() for k, v in delta["cases"].items()},
                "pacing_rows": [list(r) for r in delta["pacing_rows"]], "pacing_state": delta["pacing_state"],
                "rows": [list(r) for r in delta.get("rows", ())]}

    @staticmethod
    def delta_from_wire(wire: dict[str, Any]) -> dict[str, Any]:
        return {"cases": {k: CaseStats.from_wire(v) for k, v in wire.get("cases", {}).items()},
                "pacing_rows": [tuple(r) for r in wire.get("pacing_rows", [])],
                "pacing_state": wire.get("pacing_state", {}),
                "rows": [tuple(r) for r in wire.get("rows", [])]}


class Aggregate:
    """The merged view (master or local runner): totals, per-source totals, pacing timeline and states."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseStats] = {}
        self.per_source: dict[str, dict[str, Counter[str]]] = {}  # source -> endpoint -> {total, ok}
        self.pacing_rows: dict[tuple[int, str], list[float]] = {}
        self.pacing_state: dict[str, dict[str, dict[str, Any]]] = {}  # class -> source -> state
        self.records: Any = None  # a locustfiles.records.RecordsWriter, when the run has a CSV prefix
        self.record_count = 0

    def merge(self, source: str, delta: dict[str, Any]) -> None:
        rows = delta.get("rows")
        if rows:
            self.record_count += len(rows)
            if self.records is not None:
                self.records.write(rows)
        for endpoint, cs in delta["cases"].items():
            mine = self.cases.get(endpoint)
            if mine is None:
                mine = self.cases[endpoint] = CaseStats()
            mine.merge(cs)
            if cs.total:
                counts = self.per_source.setdefault(source, {}).setdefault(endpoint, Counter())
                counts["total"] += cs.total
                counts["ok"] += cs.ok
        for ts, cls, pace, c429, cok in delta["pacing_rows"]:
            row = self.pacing_rows.get((int(ts), cls))
            if row is None:
                self.pacing_rows[(int(ts), cls)] = [float(pace), int(c429), int(cok)]
            else:
                row[0] = max(row[0], float(pace))
                row[1] += int(c429)
                row[2] += int(cok)
        for cls, state in delta["pacing_state"].items():
            self.pacing_state.setdefault(cls, {})[source] = state

    def pacing_summary(self) -> dict[str, dict[str, Any]]:
        """Per endpoint class: final/max pace (max over processes), 429 and success counts (sums), history."""
        out: dict[str, dict[str, Any]] = {}
        for cls, by_source in sorted(self.pacing_state.items()):
            states = list(by_source.values())
            out[cls] = {
                "final_pace_ms": max(s["pace_ms"] for s in states),
                "max_pace_ms": max(s["max_pace_ms"] for s in states),
                "count_429": sum(s["count_429"] for s in states),
                "count_ok": sum(s["count_ok"] for s in states),
                "episodes": sum(s.get("episodes", 0) for s in states),
                "adaptive": states[0].get("adaptive"),
                "history": [{"timestamp": ts, "pace_ms": v[0], "count_429": v[1], "count_ok": v[2]}
                            for (ts, c), v in sorted(self.pacing_rows.items()) if c == cls],
            }
        return out

    def pacing_csv_rows(self) -> list[tuple[int, str, float, int, int]]:
        return [(ts, cls, v[0], int(v[1]), int(v[2])) for (ts, cls), v in sorted(self.pacing_rows.items())]

    def exact_document(self, latency_from: str) -> dict[str, Any]:
        return {"endpoints": {name: cs.exact_entry() for name, cs in sorted(self.cases.items())},
                "latency_from": latency_from}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 4)
