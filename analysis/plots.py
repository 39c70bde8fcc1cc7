"""PNG plots of a run: every axis has a unit, every title says its data source.

matplotlib's Agg canvas is used directly (no pyplot): no global figure state, no display, safe in any process.

Each function draws one file and returns a `Plot` (path + caption) or a `Skipped` note saying which input was
missing, so the report can link what exists and say what does not.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.artifacts import KNOWN_ENDPOINTS as KNOWN_ORDER
from analysis.artifacts import WorkerBaseline, endpoint_key, status_suffix
from analysis.figures import Plot, Skipped
from analysis.locust_csv import AGGREGATED, WINDOW_WARMUP_S, LocustRun
from analysis.metrics import ScaleMetrics, split_by_status
from analysis.rules import SloTargets

DPI = 100
MAX_POINTS = 900  # per drawn line (≈ plot width in pixels)
COLORS = {"p50": "#1f77b4", "p95": "#ff7f0e", "p99": "#d62728"}
STATUS_COLORS = {"2xx": "#2ca02c", "429": "#ff7f0e", "other 4xx": "#bcbd22", "5xx": "#d62728",
                 "transport": "#9467bd", "empty recall": "#7f7f7f", "invalid body": "#8c564b", "other": "#17becf"}


def _figure(rows: int = 1, height: float = 3.2, width: float = 10.0) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, max(2.6, height * rows)), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _layout(fig: Figure, rows: int = 1, *, twin: bool = False, suptitle: bool = False, left_in: float = 0.8) -> None:
    """Fixed margins in inches (a constrained/tight layout pass costs more than drawing the data)."""
    w, h = fig.get_size_inches()
    top_in, bottom_in, gap_in = (0.75 if suptitle else 0.4), 0.55, 0.8
    axes_h = (h - top_in - bottom_in - gap_in * (rows - 1)) / rows
    fig.subplots_adjust(left=left_in / w, right=1 - (0.85 if twin else 0.25) / w, top=1 - top_in / h,
                        bottom=bottom_in / h, hspace=gap_in / max(axes_h, 0.1))


def _save(fig: Figure, path: Path) -> Path:
    """PNG with fast zlib and unhinted glyphs (text rendering is most of a plot's cost; both ~20 % faster, and at
    100 dpi indistinguishable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"text.hinting": "no_hinting"}):
        fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})
    return path


def _decimate(x: np.ndarray, y: np.ndarray, how: str = "max") -> tuple[np.ndarray, np.ndarray, int]:
    """At most MAX_POINTS per line: bins of k consecutive samples reduced by max (tails stay visible) or mean.

    A one-hour history has 3600 samples per line, several times the plot's pixel width; drawing them all costs more
    than the rest of the report and shows nothing more. Returns (x of each bin start, reduced y, k)."""
    n = len(y)
    if n <= MAX_POINTS:
        return x, y, 1
    k = -(-n // MAX_POINTS)
    pad = (-n) % k
    yy = np.concatenate([y.astype(float), np.full(pad, np.nan)]).reshape(-1, k)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        red = np.nanmax(yy, axis=1) if how == "max" else np.nanmean(yy, axis=1)
    return x[::k], red, k


def _elapsed(ts: pd.Series, start: float) -> tuple[np.ndarray, str, float]:
    """Elapsed time since `start` in seconds or minutes (minutes when the run is longer than 15 min)."""
    seconds = ts.to_numpy(dtype=float) - start
    if seconds.size and seconds.max() > 900:
        return seconds / 60.0, "elapsed time (min)", 60.0
    return seconds, "elapsed time (s)", 1.0


def _history_entries(run: LocustRun, *, with_status_rows: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """Per-endpoint history frames (full history), else the Aggregated one. `with_status_rows=False` leaves out the
    suite's `<endpoint> [429]` rows (their latencies are 429 responses, not service times)."""
    hist = run.history
    assert hist is not None
    groups: list[tuple[str, pd.DataFrame]] = []
    if run.full_history:
        for name, frame in hist[hist["Name"] != AGGREGATED].groupby("Name", sort=False):
            suffix = status_suffix(str(name))
            if suffix is not None and not with_status_rows:
                continue
            if frame["Total Request Count"].max() > 0:
                label = endpoint_key(str(name)) + (f" [{suffix}]" if suffix else "")
                groups.append((label, frame))
    if not groups:
        groups.append((AGGREGATED, hist[hist["Name"] == AGGREGATED]))
    return groups


def _prefix(sm: ScaleMetrics) -> str:
    return sm.files.csv_prefix or f"locust_{sm.scale}"


def _history_has_latency(frame: pd.DataFrame, start: float, windowed: bool) -> bool:
    values = frame["95%"].to_numpy(dtype=float)
    if windowed:
        warm = (frame["Timestamp"].to_numpy(dtype=float) - start) < WINDOW_WARMUP_S
        values = values[~(warm & (values == 0))]
    return bool(np.isfinite(values).any() and (np.nan_to_num(values) > 0).any())


WINDOW_S = 1.0


def _windows(records: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Records with `w` = index of the 1-second window their request started in (0 = the scale's first request)."""
    start = float(records["t_s"].min())
    frame = records.assign(w=np.floor((records["t_s"].to_numpy(dtype=float) - start) / WINDOW_S).astype(int))
    return frame, start


def _window_axis(ax, n_windows: int) -> None:
    ax.set_xlim(0, max(n_windows, 1) * WINDOW_S)
    ax.set_xlabel("elapsed time since the first measured request (s; 1-second windows)")


def _endpoints_in(frame: pd.DataFrame) -> list[str]:
    present = {str(n) for n in frame["endpoint"].unique()}
    return [n for n in KNOWN_ORDER if n in present] + sorted(present - set(KNOWN_ORDER))


def _window_quantiles(w: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-rank p50/p95/p99 per window, vectorised: sort by (window, latency), then index each window's slice
    at ceil(n·q) − 1. Returns (windows, counts, [n_windows × 3] quantiles)."""
    order = np.lexsort((lat, w))
    w_sorted, lat_sorted = w[order], lat[order]
    ws, first, counts = np.unique(w_sorted, return_index=True, return_counts=True)
    qs = np.stack([lat_sorted[first + np.maximum(np.ceil(counts * q).astype(int) - 1, 0)] for q in (.5, .95, .99)],
                  axis=1)
    return ws.astype(float), counts, qs


def latency_over_time(sm: ScaleMetrics, path: Path) -> Plot | Skipped:
    """p50/p95/p99 of successful requests per 1-second window and endpoint, from the exact per-request records;
    Locust's history CSV only when the run has no records file."""
    key, title = f"latency_time_{sm.scale}", f"p50/p95/p99 over time — scale {sm.scale}"
    if sm.records is None:
        return _latency_from_history(sm, path, key, title)
    frame, _ = _windows(sm.records)
    ok = frame[frame["category"] == "ok"]
    if ok.empty:
        return Skipped(key, title, f"{sm.files.requests.name if sm.files.requests else 'the records file'} has no "
                                   "successful request, so there is no latency to draw")
    names = _endpoints_in(ok)
    n_windows = int(frame["w"].max()) + 1
    fig, axes = _figure(len(names), height=3.0)
    binned = 1
    for ax, name in zip(axes, names, strict=True):
        part = ok[ok["endpoint"] == name]
        ws, counts, qs = _window_quantiles(part["w"].to_numpy(), part["latency_ms"].to_numpy(dtype=float))
        x = ws * WINDOW_S + WINDOW_S / 2
        marker = "o" if len(ws) <= 60 else None
        for i, label in enumerate(("p50", "p95", "p99")):
            xd, yd, binned = _decimate(x, qs[:, i], "max")
            ax.plot(xd, yd, label=label, color=COLORS[label], linewidth=1.2, marker=marker, markersize=4)
        ax.set_title(f"{name}: {len(part):,} successful requests, median {int(np.median(counts))} per window "
                     "(exact per-request records)", fontsize=10)
        ax.set_ylabel("latency (ms)")
        _window_axis(ax, n_windows)
        ax.set_ylim(bottom=0, top=max(float(np.nanmax(qs)) * 1.15, 0.01))
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Latency per 1-second window — scale {sm.scale}", fontsize=11)
    _layout(fig, len(names), suptitle=True)
    few = int((ok.groupby(["endpoint", "w"]).size() < 100).sum())
    caption = (f"From `{sm.files.requests.name if sm.files.requests else 'requests.csv'}`: nearest-rank p50/p95/p99 "
               "of the successful requests that started in each 1-second window (exact, unrounded)."
               + (f" {few} window(s) hold fewer than 100 requests: their p99 is close to their maximum." if few else "")
               + (f" Drawn as the max of each {binned} consecutive windows." if binned > 1 else ""))
    return Plot(key, title, _save(fig, path), caption)


def rps_over_time(sm: ScaleMetrics, path: Path) -> Plot | Skipped:
    """Requests/s and failures/s per 1-second window and endpoint from the records (a window at the edge of an
    endpoint's activity is divided by the part of it the endpoint was running, so short runs are not diluted)."""
    key, title = f"rps_time_{sm.scale}", f"RPS and failures over time — scale {sm.scale}"
    if sm.records is None:
        return _rps_from_history(sm, path, key, title)
    frame, start = _windows(sm.records)
    if frame.empty:
        return Skipped(key, title, f"{sm.files.requests.name if sm.files.requests else 'the records file'} has no "
                                   "rows")
    names = _endpoints_in(frame)
    n_windows = int(frame["w"].max()) + 1
    fig, (ax,) = _figure(1, height=3.8)
    binned, any_fail = 1, False
    for i, name in enumerate(names):
        part = frame[frame["endpoint"] == name]
        t0 = float(part["t_s"].min()) - start
        t1 = float((part["t_s"] + part["latency_ms"] / 1000.0).max()) - start
        ws = np.arange(int(part["w"].min()), int(part["w"].max()) + 1)
        lo, hi = np.maximum(ws * WINDOW_S, t0), np.minimum((ws + 1) * WINDOW_S, max(t1, t0 + 0.05))
        width = np.clip(hi - lo, 0.05, WINDOW_S)
        total = part.groupby("w").size().reindex(ws, fill_value=0).to_numpy(dtype=float)
        fails = part[part["category"] != "ok"].groupby("w").size().reindex(ws, fill_value=0).to_numpy(dtype=float)
        x = ws * WINDOW_S + WINDOW_S / 2
        marker = "o" if len(ws) <= 60 else None
        xd, rps, binned = _decimate(x, total / width, "mean")
        ax.plot(xd, rps, color=f"C{i}", linewidth=1.2, marker=marker, markersize=4,
                label=f"{name} requests/s ({len(part):,} requests)")
        if fails.sum() > 0:
            any_fail = True
            xd, fd, _ = _decimate(x, fails / width, "max")
            ax.plot(xd, fd, color=f"C{i}", linestyle="--", linewidth=1.0, marker="x" if marker else None,
                    markersize=4, label=f"{name} failures/s ({int(fails.sum()):,} failed)")
    ax.set_title(f"Throughput and failures per 1-second window — scale {sm.scale} (exact per-request records)",
                 fontsize=10)
    _window_axis(ax, n_windows)
    ax.set_ylabel("requests per second (req/s)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15 or 1)
    ax.legend(loc="best", fontsize=8)
    _layout(fig)
    caption = (f"From `{sm.files.requests.name if sm.files.requests else 'requests.csv'}`: requests that started in "
               "each 1-second window per endpoint; failures/s (dashed) counts every non-ok category (429, 4xx, 5xx, "
               "transport, empty recall)." + ("" if any_fail else " No request failed.")
               + (f" Drawn as the mean (failures: max) of each {binned} consecutive windows." if binned > 1 else ""))
    return Plot(key, title, _save(fig, path), caption)


def _latency_from_history(sm: ScaleMetrics, path: Path, key: str, title: str) -> Plot | Skipped:
    run = sm.locust
    if run is None or run.history is None or run.history.empty:
        return Skipped(key, title, f"no request records and no {_prefix(sm)}_stats_history.csv")
    groups = _history_entries(run, with_status_rows=False)
    windowed = run.full_history
    start = float(run.history["Timestamp"].min())
    if not any(_history_has_latency(frame, start, windowed) for _, frame in groups):
        return Skipped(key, title, f"{_prefix(sm)}_stats_history.csv has no non-zero percentile (the run was shorter "
                                   "than Locust's ~10 s window) and there are no request records")
    fig, axes = _figure(len(groups))
    kind = "~10 s sliding window" if windowed else "cumulative since start"
    binned = 1
    for ax, (name, frame) in zip(axes, groups, strict=True):
        x, xlabel, _ = _elapsed(frame["Timestamp"], start)
        warm = (frame["Timestamp"].to_numpy(dtype=float) - start) < WINDOW_WARMUP_S
        for col, label in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
            y = frame[col].to_numpy(dtype=float).copy()
            if windowed:
                y[warm & (y == 0)] = np.nan  # Locust writes 0 before the first 10 s window exists
            xd, yd, binned = _decimate(x, y, "max")
            ax.plot(xd, yd, label=label, color=COLORS[label], linewidth=1.1)
        ax.set_title(f"{name}: response-time percentiles ({kind}; Locust buckets)", fontsize=10)
        ax.set_ylabel("latency (ms)")
        ax.set_xlabel(xlabel)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Latency over time — scale {sm.scale}", fontsize=11)
    _layout(fig, len(groups), suptitle=True)
    caption = (f"Locust `_stats_history.csv` percentiles ({kind}), bucketed to 2 significant digits; "
               + ("per-endpoint rows (`--csv-full-history`)." if windowed else "Aggregated rows only.")
               + (f" Drawn as the max of each {binned} consecutive samples." if binned > 1 else ""))
    return Plot(key, title, _save(fig, path), caption)


def _rps_from_history(sm: ScaleMetrics, path: Path, key: str, title: str) -> Plot | Skipped:
    run = sm.locust
    if run is None or run.history is None or run.history.empty:
        return Skipped(key, title, f"no request records and no {_prefix(sm)}_stats_history.csv")
    if not (run.history["Requests/s"].fillna(0) > 0).any():
        return Skipped(key, title, f"{_prefix(sm)}_stats_history.csv shows 0 req/s in every row (its ~10 s moving "
                                   f"average never filled in a {run.duration_s or 0:.0f} s run) and there are no "
                                   "request records")
    start = float(run.history["Timestamp"].min())
    fig, (ax,) = _figure(1, height=3.8)
    ax2 = ax.twinx()
    xlabel, binned = "elapsed time (s)", 1
    for i, (name, frame) in enumerate(_history_entries(run)):
        x, xlabel, _ = _elapsed(frame["Timestamp"], start)
        color = f"C{i}"
        xd, rps, binned = _decimate(x, frame["Requests/s"].to_numpy(dtype=float), "mean")
        ax.plot(xd, rps, color=color, linewidth=1.1, label=f"{name} requests/s")
        fails = frame["Failures/s"].to_numpy(dtype=float)
        if np.nansum(fails) > 0:
            xd, fd, _ = _decimate(x, fails, "max")
            ax.plot(xd, fd, color=color, linestyle="--", linewidth=1.0, label=f"{name} failures/s")
    agg = run.history[run.history["Name"] == AGGREGATED]
    if not agg.empty:
        x, xlabel, _ = _elapsed(agg["Timestamp"], start)
        xd, users, _ = _decimate(x, agg["User Count"].to_numpy(dtype=float), "max")
        ax2.step(xd, users, where="post", color="#555555", alpha=0.5, linewidth=0.9, label="users")
    ax.set_title(f"Throughput and failures over time — scale {sm.scale} (Locust ~10 s moving average)", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests per second (req/s)")
    ax2.set_ylabel("concurrent users")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1 or 1)
    ax2.set_ylim(0, ax2.get_ylim()[1] * 1.15 or 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    _layout(fig, twin=True)
    caption = ("Locust `Requests/s` / `Failures/s` (already a ~10 s moving average of per-second counts) per endpoint; "
               "dashed = failures/s (drawn when non-zero); grey = users."
               + (f" Drawn as the mean (failures: max) of each {binned} consecutive samples." if binned > 1 else ""))
    return Plot(key, title, _save(fig, path), caption)


def status_breakdown(scales: list[ScaleMetrics], path: Path) -> Plot | Skipped:
    key, title = "status_codes", "Status-code breakdown per scale and endpoint"
    rows: list[tuple[str, dict[str, int]]] = []
    for sm in scales:
        for ep in sm.endpoints.values():
            if not ep.requests:
                continue
            if ep.by_status:
                split = split_by_status(ep.by_status)
                ok = sum(v for k, v in ep.by_status.items() if k.isdigit() and 200 <= int(k) < 300)
            else:
                split, ok = dict(ep.errors), ep.ok or 0
            counts = {"2xx": ok, "429": split.get("rate_limited_429", 0), "other 4xx": split.get("client_4xx", 0),
                      "5xx": split.get("server_5xx", 0), "transport": split.get("transport", 0),
                      "empty recall": split.get("empty_recall", 0), "invalid body": split.get("invalid_body", 0),
                      "other": split.get("other", 0)}
            rows.append((f"{sm.scale} · {ep.name}", counts))
    if not rows:
        return Skipped(key, title, "no benchmark JSON or Locust stats with requests")
    fig = Figure(figsize=(10.0, 0.42 * len(rows) + 1.45), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, axis="x", alpha=0.3)
    labels = [r[0] for r in rows]
    left = np.zeros(len(rows))
    totals = np.array([sum(r[1].values()) or 1 for r in rows], dtype=float)
    for cat, color in STATUS_COLORS.items():
        values = np.array([r[1][cat] for r in rows], dtype=float)
        if values.sum() == 0:
            continue
        share = 100.0 * values / totals
        ax.barh(labels, share, left=left, color=color, label=cat, height=0.7)
        for i, (v, sh) in enumerate(zip(values, share, strict=True)):
            if v and sh >= 8:
                ax.text(left[i] + sh / 2, i, f"{int(v):,}", ha="center", va="center", fontsize=8, color="white")
        left += share
    for i, (_, counts) in enumerate(rows):
        total = sum(counts.values()) or 1
        bad = [f"{cat} {v:,} ({100 * v / total:.2f} %)" for cat, v in counts.items() if cat != "2xx" and v]
        ax.text(101, i, "; ".join(bad[:2]) + (" …" if len(bad) > 2 else "") if bad else "no failures",
                va="center", fontsize=8, color="#d62728" if bad else "#2ca02c")
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of requests (%); bar labels are counts")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=9)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=8, fontsize=8, frameon=False,
              handlelength=1.2, columnspacing=1.0)
    w, hgt = fig.get_size_inches()
    left_in = min(2.6, 0.35 + 0.075 * max(len(lab) for lab in labels))
    fig.subplots_adjust(left=left_in / w, right=1 - 2.3 / w, top=1 - 0.45 / hgt, bottom=0.5 / hgt)
    return Plot(key, title, _save(fig, path), "Share of each outcome per scale and endpoint (benchmark `by_status`, "
                                              "else the error split); labels are counts, non-2xx counts at the "
                                              "right.")


def latency_cdf(sm: ScaleMetrics, path: Path) -> Plot | Skipped:
    key, title = f"latency_cdf_{sm.scale}", f"Latency CDF (exact) — scale {sm.scale}"
    exact = {n: e for n, e in (sm.exact or {}).items() if e.cdf}
    if not exact:
        why = "no CDF points" if sm.exact else f"no {sm.files.csv_prefix or 'locust_' + sm.scale}_exact.json"
        return Skipped(key, title, why)
    fig, (ax,) = _figure(1, height=3.8)
    for i, (name, ep) in enumerate(exact.items()):
        pts = np.array(ep.cdf, dtype=float)
        pts = pts[pts[:, 0] > 0] if (pts[:, 0] > 0).any() else pts
        ax.step(pts[:, 0], 100 * pts[:, 1], where="post", color=f"C{i}", label=f"{name} (n={ep.count})")
        for q, marker in (("50", "o"), ("95", "s"), ("99", "^")):
            v = ep.percentiles_ms.get(q)
            if v is not None and v > 0:
                ax.plot([v], [float(q)], marker=marker, color=f"C{i}", markersize=5)
    if all(p > 0 for e in exact.values() for p, _ in e.cdf):
        ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale; unrounded)")
    ax.set_ylabel("requests at or below (%)")
    ax.set_ylim(0, 100.5)
    ax.set_title(f"Latency CDF per endpoint — scale {sm.scale} (exact listener; markers = p50/p95/p99)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    _layout(fig)
    return Plot(key, title, _save(fig, path), "Successful requests only (429s and failures are counted apart).")


def p95_vs_size(scales: list[ScaleMetrics], slo: SloTargets, path: Path) -> Plot | Skipped:
    key, title = "p95_vs_size", "p95 against dataset size across scales"
    series: dict[str, list[tuple[float, float]]] = {}
    for sm in scales:
        size = sm.dataset_nodes
        for ep in sm.endpoints.values():
            if size is not None and ep.p("p95") is not None:
                series.setdefault(ep.name, []).append((size, float(ep.p("p95"))))  # type: ignore[arg-type]
    if not series:
        return Skipped(key, title, "no scale has both a dataset size and a p95")
    sizes_seen = {p[0] for pts in series.values() for p in pts}
    if len(sizes_seen) < 2:
        return Skipped(key, title, f"only one dataset size ({next(iter(sizes_seen)):,.0f}) has a p95, and a "
                                   "trend against size needs at least two scales")
    fig, (ax,) = _figure(1, height=3.8)
    for i, (name, pts) in enumerate(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=f"{name} p95")
    names = set(series)
    top = max(p[1] for pts in series.values() for p in pts)
    for kind, present, target, color in (("recall", bool(names & {"recall_text", "recall"}), slo.recall_p95_ms,
                                          "#1f77b4"), ("write", "write" in names, slo.write_p95_ms, "#d62728")):
        if not present:
            continue
        if target <= 3 * top:
            ax.axhline(target, color=color, linestyle=":", label=f"{kind} SLO {target:g} ms")
        else:  # a far-away target line would flatten the data; say where it is instead
            ax.plot([], [], " ", label=f"{kind} SLO {target:g} ms (above this range)")
    sizes = [p[0] for pts in series.values() for p in pts]
    if min(sizes) > 0 and max(sizes) / min(sizes) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("dataset size (nodes in scope; scale label when no seed file)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("p95 vs dataset size (each point: one scale; source as in the summary table)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    _layout(fig)
    return Plot(key, title, _save(fig, path), "p95 per endpoint and scale against the seeded node count.")


def worker_throughput(worker: WorkerBaseline | None, slo: SloTargets, path: Path) -> Plot | Skipped:
    key, title = "worker_throughput", "Worker throughput per iteration"
    if worker is None:
        return Skipped(key, title, "no worker_baseline.json")
    frame = worker.per_iteration
    if frame.empty:
        return Skipped(key, title, "worker_baseline.json has no per_iteration rows")
    if not (frame["processed"].fillna(0) > 0).any():
        return Skipped(key, title, "no iteration in worker_baseline.json processed a job (the outbox had nothing "
                                   "to claim)")
    fig, (ax,) = _figure(1, height=4.0)
    tput = frame["throughput"].astype(float)
    if tput.isna().any():
        computed = frame["processed"].astype(float) / (frame["elapsed_ms"].astype(float) / 1000.0)
        tput = tput.fillna(computed)
    labels = []
    for it, types in zip(frame["iteration"], frame["job_types"], strict=True):
        mix = "\n".join(f"{k} {v}" for k, v in sorted(types.items(), key=lambda kv: -kv[1])[:2] if v) \
            if isinstance(types, dict) else ""
        labels.append(f"{int(it)}" + (f"\n{mix}" if mix else ""))
    ax.bar(labels, tput.to_numpy(), color="#1f77b4", label="jobs/s in the iteration")
    ax.axhline(worker.throughput, color="#2ca02c", linestyle="--",
               label=f"run total {worker.throughput:.1f} jobs/s (processed / Σ elapsed)")
    ax.axhline(slo.worker_min_jobs_per_sec, color="#d62728", linestyle=":",
               label=f"SLO > {slo.worker_min_jobs_per_sec:g} jobs/s")
    ax.set_xlabel("iteration (and the job types it drained)")
    ax.set_ylabel("jobs processed per second (jobs/s)")
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"Outbox worker throughput per iteration — scope {worker.scope or 'not recorded'}, mode "
                 f"{worker.mode or 'not recorded'} (one outbox row = one job)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    _layout(fig)
    lines = max(label.count("\n") for label in labels)
    if lines:
        fig.subplots_adjust(bottom=(0.6 + 0.15 * lines) / fig.get_size_inches()[1])
    return Plot(key, title, _save(fig, path), "Jobs/s per iteration (`worker_baseline.json` per_iteration; one outbox "
                                              "row = one job), labelled with the job types each iteration drained.")


def pace_over_time(sm: ScaleMetrics, path: Path) -> Plot | Skipped:
    key, title = f"pace_{sm.scale}", f"Adaptive pace over time — scale {sm.scale}"
    frame = sm.pacing
    if frame is None or frame.empty:
        return Skipped(key, title, f"no {_prefix(sm)}_pacing.csv")
    if not ((frame["pace_ms"] > 0).any() or (frame["count_429"] > 0).any()):
        return Skipped(key, title, f"pacing never engaged: {_prefix(sm)}_pacing.csv has pace 0 ms and no 429 in "
                                   f"all {len(frame)} rows")
    start = float(frame["timestamp"].min())
    classes = list(dict.fromkeys(frame["endpoint_class"]))
    fig, axes = _figure(len(classes), height=2.8)
    for ax, cls in zip(axes, classes, strict=True):
        part = frame[frame["endpoint_class"] == cls].sort_values("timestamp")
        x, xlabel, scale = _elapsed(part["timestamp"], start)
        xd, pace, _ = _decimate(x, part["pace_ms"].to_numpy(dtype=float), "max")
        ax.step(xd, pace, where="post", color="#1f77b4", label="pace (ms)")
        ax.set_ylabel("pace per user (ms)")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        counts, unit = part["count_429"].to_numpy(dtype=float), "second"
        if scale > 1:  # long run: 429s summed per minute, drawn as one filled step (thousands of bars are slow)
            minute = np.floor(x).astype(int)
            counts, x429 = np.bincount(minute, weights=counts), np.arange(minute.max() + 1, dtype=float)
            unit = "minute"
        else:
            x429 = x
        ax2.fill_between(x429, counts, step="post", color="#ff7f0e", alpha=0.45, linewidth=0,
                         label=f"429 per {unit}")
        ax2.set_ylabel(f"429 responses per {unit}")
        ax2.set_ylim(bottom=0)
        ax.set_zorder(ax2.get_zorder() + 1)  # the pace line above the 429 area
        ax.patch.set_visible(False)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{cls}: adaptive pace and 429s ({int(part['count_429'].sum())} × 429, "
                     f"{int(part['count_ok'].sum())} ok)", fontsize=10)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    fig.suptitle(f"Adaptive pacing — scale {sm.scale}", fontsize=11)
    _layout(fig, len(classes), twin=True, suptitle=True)
    return Plot(key, title, _save(fig, path), "The suite's pacing controller, one row per second per endpoint class.")


CPU_COLORS = {"api": "#1f77b4", "postgres": "#2ca02c", "other": "#7f7f7f"}
CPU_LABELS_PLOT = {"api": "API", "postgres": "PostgreSQL", "other": "other (load generator, rest of the machine)"}
CPU_MACHINE_ONLY = "#c5b0d5"  # a scale whose CPU is known for the whole machine only


def cpu_per_recall(scales: list[ScaleMetrics], path: Path) -> Plot | Skipped:
    """CPU ms per recall by scale (`cost_<scale>.json`), stacked API / PostgreSQL / other; a scale whose CPU is not
    split (an external target: only the machine's CPU is known) is one hatched bar of the machine's."""
    key, title = "cpu_per_recall", "CPU per recall by scale"
    bars: list[tuple[str, dict[str, float] | None, float]] = []  # scale, split (None: machine only), machine
    unmeasured: list[str] = []
    for sm in scales:
        cc = sm.cost.cases["recall"] if sm.cost is not None else None
        machine = cc.cpu_ms["machine"] if cc is not None else None
        if cc is None or machine is None:
            why = (sm.cost_failed or f"no cost_{sm.scale}.json") if cc is None else \
                cc.why.get("window") or cc.why.get("cpu.machine", "not measured")
            unmeasured.append(f"scale {sm.scale} ({why})")
            continue
        parts = {k: cc.cpu_ms[k] for k in ("api", "postgres", "other")}
        split = {k: float(v) for k, v in parts.items() if v is not None}
        bars.append((sm.scale, split if len(split) == 3 else None, float(machine)))
    if not bars:
        return Skipped(key, title, "no scale has its CPU per recall measured: " + "; ".join(unmeasured))
    fig, (ax,) = _figure(1, height=4.0, width=9.0)
    x = np.arange(len(bars), dtype=float)
    bottom = np.zeros(len(bars))
    for part, color in CPU_COLORS.items():
        values = np.array([b[1][part] if b[1] is not None else 0.0 for b in bars])
        if (values > 0).any():
            ax.bar(x, values, bottom=bottom, color=color, width=0.6, label=CPU_LABELS_PLOT[part])
        bottom += values
    machine_only = np.array([b[2] if b[1] is None else 0.0 for b in bars])
    if (machine_only > 0).any():
        ax.bar(x, machine_only, bottom=bottom, color=CPU_MACHINE_ONLY, edgecolor="#555555", hatch="//", width=0.6,
               label="machine, not split (API / PostgreSQL not sampled)")
    for i, (_, _, machine) in enumerate(bars):
        ax.text(x[i], machine, f"{machine:.2f} ms", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [b[0] for b in bars])
    ax.set_xlim(-0.5 - max(0.0, (3 - len(bars)) / 2), len(bars) - 0.5 + max(0.0, (3 - len(bars)) / 2))
    ax.set_xlabel("scale")
    ax.set_ylabel("CPU ms per recall (all cores)")
    ax.set_ylim(0, max(b[2] for b in bars) * 1.15 or 1)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=4, fontsize=8, frameon=False, handlelength=1.2)
    fig.suptitle("CPU per recall by scale, recall window (cost_<scale>.json)", fontsize=11)
    _layout(fig, suptitle=True)
    caption = ("CPU seconds of each group over the recall case's window ÷ the recalls in it; other = machine busy − "
               "API − PostgreSQL (the load generator and the rest of the machine); the label is the machine's total."
               + (" Not measured: " + "; ".join(unmeasured) + "." if unmeasured else ""))
    return Plot(key, title, _save(fig, path), caption)


def draw_all(scales: list[ScaleMetrics], worker: WorkerBaseline | None, slo: SloTargets,
             plot_dir: Path) -> list[Plot | Skipped]:
    """Every plot of the report, in reading order."""
    out: list[Plot | Skipped] = []
    for sm in scales:
        out.append(latency_over_time(sm, plot_dir / f"latency_over_time_{sm.scale}.png"))
        out.append(rps_over_time(sm, plot_dir / f"rps_failures_{sm.scale}.png"))
        out.append(latency_cdf(sm, plot_dir / f"latency_cdf_{sm.scale}.png"))
        out.append(pace_over_time(sm, plot_dir / f"pace_{sm.scale}.png"))
    out.append(status_breakdown(scales, plot_dir / "status_codes.png"))
    out.append(p95_vs_size(scales, slo, plot_dir / "p95_vs_dataset_size.png"))
    out.append(worker_throughput(worker, slo, plot_dir / "worker_throughput.png"))
    if any(sm.cost is not None or sm.cost_failed for sm in scales):  # no cost file at all: the section says so
        out.append(cpu_per_recall(scales, plot_dir / "cpu_per_recall.png"))
    return out
