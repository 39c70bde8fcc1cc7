"""Numbers of a run: per scale and endpoint latency, throughput and the error split, each with its source.

Source order for latency percentiles (the first that has the endpoint wins, and the report says which):
1. `locust_<scale>_exact.json` — the suite's exact listener (unrounded, successful requests only);
2. `benchmark_<scale>.json` `latency_ms` — exact as well (same listener, the Aionis kit's schema);
3. `locust_<scale>_stats.csv` — Locust's bucketed nearest-rank values (2 significant digits, failures included).
Requests, failures and the error split come from the benchmark JSON when present (its `by_status` and `errors`),
else from Locust's stats and failures CSVs (failure messages classified by the status code they contain).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import artifacts as art
from analysis.cost import ScaleCost, scale_cost
from analysis.errors import MalformedArtifact
from analysis.explain_parser import ExplainInfo, parse_explain
from analysis.jsonio import dig
from analysis.locust_csv import LocustRun, read_locust_run

ERROR_CATEGORIES = ("rate_limited_429", "client_4xx", "server_5xx", "transport", "empty_recall", "invalid_body",
                    "other")
ERROR_LABELS = {"rate_limited_429": "429", "client_4xx": "other 4xx", "server_5xx": "5xx", "transport": "transport",
                "empty_recall": "empty recall", "invalid_body": "invalid body", "other": "other"}

SRC_EXACT = "exact (suite listener)"
SRC_BENCH = "exact (benchmark JSON)"
SRC_RECORDS = "exact (request records)"
SRC_LOCUST = "Locust CSV (bucketed)"
LOW_CONFIDENCE_SAMPLES = 1000  # a p99 from fewer latencies rests on fewer than 10 tail samples


def nearest_rank(values: Any, q: float) -> float | None:
    """The seed document's percentile: sorted[ceil(n·q) − 1] (no interpolation)."""
    import numpy as np

    arr = np.sort(np.asarray(values, dtype=float))
    if arr.size == 0:
        return None
    return float(arr[max(0, math.ceil(arr.size * q) - 1)])


def summary_ms(values: Any) -> dict[str, float | None]:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return {"p50": nearest_rank(arr, .5), "p95": nearest_rank(arr, .95), "p99": nearest_rank(arr, .99),
            "mean": float(arr.mean()) if arr.size else None}


@dataclass
class ServerSplit:
    """Where an endpoint's time went: client-measured latency against the target's `Server-Timing` (total server
    time and database time), per endpoint; `reported` False when the target sent no `Server-Timing`."""

    reported: bool
    source: str
    client: dict[str, float | None]
    server: dict[str, float | None] | None = None
    db: dict[str, float | None] | None = None
    samples: int | None = None  # responses that carried Server-Timing


@dataclass
class AnnMetrics:
    """A scale's ANN recall (`ann_check_<scale>.json`) at the hnsw.ef_search the benchmark ran with.

    The figures are those of `ef_search_used`: the file's top-level ones when it equals the measured hnsw.ef_search,
    else its `ef_sweep` row for that value; None (with `not_measured` saying why) when the file has no figure for it.
    `recall` is the figure the SLO judges (`recall_key`: ties counted when the file has it, see
    art.AnnCheck.slo_recall); `recall_ids` the ids-matched `recall_at_k`."""

    check: art.AnnCheck
    ef_search_used: int  # the file's `ef_search_used`, else hnsw.ef_search
    tuned: bool  # the matrix raised ef_search to reach the recall target (`ef_search_tuned`)
    recall: float | None  # recall@k of the recall path at ef_search_used, the figure the SLO judges
    recall_ids: float | None  # its `recall_at_k` (ids matched)
    index_recall: float | None  # the bare index's recall@k at ef_search_used
    recall_key: str | None
    source: str
    not_measured: str | None = None

    @property
    def k(self) -> int:
        return self.check.k

    @property
    def ef_search(self) -> int:
        """The hnsw.ef_search the file's top-level figures were measured at."""
        return self.check.ef_search

    @property
    def raised(self) -> bool:
        return self.ef_search_used > self.check.ef_search

    @property
    def sweep(self) -> list[art.AnnSweepRow]:
        return self.check.sweep


def ann_metrics(check: art.AnnCheck) -> AnnMetrics:
    used = check.ef_search_used if check.ef_search_used is not None else check.ef_search
    name = check.path.name
    tuned = bool(check.ef_search_tuned)
    if used == check.ef_search:
        return AnnMetrics(check, used, tuned, check.slo_recall, check.recall_at_k, check.index_recall_at_k,
                          check.slo_recall_key, f"{name} `{check.slo_recall_key}` at hnsw.ef_search {used}")
    row = next((r for r in check.sweep if r.ef_search == used), None)
    if row is not None:
        return AnnMetrics(check, used, tuned, row.slo_recall, row.recall_at_k, row.index_recall_at_k,
                          row.slo_recall_key, f"{name} `ef_sweep` row of ef_search {used}, `{row.slo_recall_key}` "
                                              f"(the check's hnsw.ef_search was {check.ef_search})")
    swept = ", ".join(str(r.ef_search) for r in check.sweep) or "none"
    return AnnMetrics(check, used, tuned, None, None, None, None, name,
                      f"the benchmark ran with hnsw.ef_search {used} (`ef_search_used`) but {name} measured "
                      f"recall at {check.ef_search} and its `ef_sweep` has no row for {used} (swept: {swept})")


@dataclass
class NotMeasured:
    stage: str
    reason: str


@dataclass
class EndpointMetrics:
    scale: str
    name: str
    requests: int | None = None
    ok: int | None = None
    failed: int | None = None
    errors: dict[str, int] = field(default_factory=dict)
    errors_source: str = "not recorded"
    by_status: dict[str, int] = field(default_factory=dict)
    rps: float | None = None
    rps_source: str = "not recorded"
    latency: dict[str, float | None] = field(default_factory=dict)  # p50 p95 p99 min max mean (ms)
    latency_source: str = "not recorded"
    locust: dict[str, float | None] = field(default_factory=dict)  # bucketed p50/p95/p99, requests, failures, rps
    open_model: dict[str, float | None] = field(default_factory=dict)
    pacing: dict[str, float | None] = field(default_factory=dict)
    server_timing_ms: dict[str, float | None] = field(default_factory=dict)
    exact_count: int | None = None
    samples: int | None = None  # latencies behind p50/p95/p99
    samples_source: str = "not recorded"
    server: ServerSplit | None = None

    @property
    def p99_low_confidence(self) -> bool:
        return self.p("p99") is not None and self.samples is not None and self.samples < LOW_CONFIDENCE_SAMPLES

    @property
    def error_rate(self) -> float | None:
        """failed / requests (every non-success: 429, 4xx, 5xx, transport, empty recall, invalid body)."""
        if not self.requests or self.failed is None:
            return None
        return self.failed / self.requests

    def share(self, category: str) -> float | None:
        if not self.requests:
            return None
        return self.errors.get(category, 0) / self.requests

    def p(self, key: str) -> float | None:
        return self.latency.get(key)


@dataclass
class ScaleMetrics:
    scale: str
    files: art.ScaleFiles
    seed: art.SeedInfo | None = None
    benchmark: art.Benchmark | None = None
    endpoints: dict[str, EndpointMetrics] = field(default_factory=dict)
    locust: LocustRun | None = None
    exact: dict[str, art.ExactEndpoint] | None = None
    pacing: pd.DataFrame | None = None
    explain: ExplainInfo | None = None
    ann: AnnMetrics | None = None  # ann_check_<scale>.json
    ann_failed: str | None = None
    cost: ScaleCost | None = None  # cost_<scale>.json
    cost_failed: str | None = None  # why the cost file could not be used (explanatory: never a failed stage)
    adapt: dict[str, Any] | None = None
    records: pd.DataFrame | None = None  # PREFIX_requests.csv
    seed_failed: str | None = None
    benchmark_failed: str | None = None
    missing: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str | None:
        if self.seed:
            return self.seed.scope
        return self.benchmark.scope if self.benchmark else None

    @property
    def tenant_id(self) -> str | None:
        if self.seed and self.seed.tenant_id:
            return self.seed.tenant_id
        return self.benchmark.tenant_id if self.benchmark else None

    @property
    def dataset_nodes(self) -> float | None:
        """Dataset size for the p95-vs-size plot: seeded nodes, else the numeric scale label (events)."""
        if self.seed:
            return float(self.seed.nodes)
        try:
            return float(self.scale)
        except ValueError:
            return None

    def recall_endpoints(self) -> list[EndpointMetrics]:
        return [self.endpoints[n] for n in art.RECALL_ENDPOINTS if n in self.endpoints]

    def write_endpoints(self) -> list[EndpointMetrics]:
        return [self.endpoints[n] for n in art.WRITE_ENDPOINTS if n in self.endpoints]


@dataclass
class RunMetrics:
    directory: Path
    files: art.RunFiles
    scales: list[ScaleMetrics]
    worker: art.WorkerBaseline | None
    manifest: dict[str, Any] | None
    missing: list[str] = field(default_factory=list)
    not_measured: list[NotMeasured] = field(default_factory=list)

    def config(self, name: str) -> Any:
        return dig(self.manifest or {}, f"config.{name}", name)

    @property
    def target(self) -> dict[str, Any]:
        t = (self.manifest or {}).get("target")
        return t if isinstance(t, dict) else {}

    @property
    def target_kind(self) -> str | None:
        """`reference` (memload's own API), `external`, or None when the run did not identify its target."""
        kind = self.target.get("kind")
        return kind if kind in ("reference", "external") else None

    @property
    def external(self) -> bool:
        return self.target_kind == "external"


# ---------------------------------------------------------------------------------------------- error split
def split_by_status(by_status: dict[str, int]) -> dict[str, int]:
    """The Aionis kit's `by_status` keys into the report's categories (used when the file has no `errors` object)."""
    out = dict.fromkeys(ERROR_CATEGORIES, 0)
    for key, count in by_status.items():
        k = key.strip()
        if k.startswith("error:"):
            out["transport"] += count
        elif k in ("empty_recall", "invalid_body"):
            out[k] += count
        elif k.isdigit():
            code = int(k)
            if 200 <= code < 300:
                continue
            if code == 429:
                out["rate_limited_429"] += count
            elif 400 <= code < 500:
                out["client_4xx"] += count
            elif code >= 500:
                out["server_5xx"] += count
            else:
                out["other"] += count
        else:
            out["other"] += count
    return out


_WRAPPED_RE = re.compile(r"^\w+\((['\"])(.*)\1\)$", re.DOTALL)
_STATUS_IN_MESSAGE = re.compile(r"(?<![\d.])([1-5]\d\d)(?![\d.])")


def classify_failure_message(message: str) -> str:
    """Category of a Locust failure message (HTTPError('429 Client Error…'), CatchResponseError('…'), …)."""
    low = message.lower().strip()
    wrapped = _WRAPPED_RE.match(low)  # Locust stores failures as repr(exception): CatchResponseError('...')
    if wrapped:
        low = wrapped.group(2).strip()
    for category in ERROR_CATEGORIES:  # the suite's own failure messages start with the category
        if low == category or low.startswith(category + ":"):
            return category
    if "empty_recall" in low or "empty recall" in low:
        return "empty_recall"
    if "invalid_body" in low or "invalid body" in low:
        return "invalid_body"
    m = _STATUS_IN_MESSAGE.search(message)
    if m:
        code = int(m.group(1))
        if code == 429:
            return "rate_limited_429"
        if 400 <= code < 500:
            return "client_4xx"
        if code >= 500:
            return "server_5xx"
    if any(w in low for w in ("status code 0", "connection", "timeout", "timed out", "refused", "reset",
                                "disconnected", "error(")):
        return "transport"
    return "other"


# ---------------------------------------------------------------------------------------------- collection
def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _locust_endpoints(run: LocustRun) -> dict[str, dict[str, float | None]]:
    """Per endpoint: counts summed over its rows (`recall_text` + `recall_text [429]`, or GET+POST of one name);
    latency from its main row (no status suffix, most requests; a suffixed row only when there is no other)."""
    rows: dict[str, list[pd.Series]] = {}
    for _, row in run.entries().iterrows():
        rows.setdefault(art.endpoint_key(str(row["Name"])), []).append(row)
    out: dict[str, dict[str, float | None]] = {}
    for key, group in rows.items():
        def rank(r: pd.Series) -> tuple[bool, float]:
            return (art.status_suffix(str(r["Name"])) is None, _num(r["Request Count"]) or 0.0)

        best = max(group, key=rank)
        has_requests = (_num(best["Request Count"]) or 0) > 0
        out[key] = {
            "requests": sum(_num(r["Request Count"]) or 0 for r in group),
            "failures": sum(_num(r["Failure Count"]) or 0 for r in group),
            "rps": sum(_num(r["Requests/s"]) or 0 for r in group),
            "samples": _num(best["Request Count"]) or 0,
            **{k: (_num(best[c]) if has_requests else None) for k, c in
               (("p50", "50%"), ("p95", "95%"), ("p99", "99%"), ("min", "Min Response Time"),
                ("max", "Max Response Time"), ("mean", "Average Response Time"))},
        }
    return out


def _locust_failures(run: LocustRun) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if run.failures is None:
        return out
    for _, row in run.failures.iterrows():
        key = art.endpoint_key(str(row["Name"]))
        cat = classify_failure_message(str(row["Error"]))
        bucket = out.setdefault(key, dict.fromkeys(ERROR_CATEGORIES, 0))
        bucket[cat] += int(_num(row["Occurrences"]) or 0)
    return out


def _endpoint_order(names: list[str]) -> list[str]:
    known = [n for n in art.KNOWN_ENDPOINTS if n in names]
    return known + sorted(n for n in names if n not in known)


def collect_scale(directory: Path, files: art.ScaleFiles) -> ScaleMetrics:
    sm = ScaleMetrics(files.scale, files)
    if files.seed:
        sm.seed_failed = art.seed_failed(files.seed)
        if sm.seed_failed is None:
            sm.seed = art.load_seed(files.seed)
        sm.used.append(files.seed.name)
    if files.benchmark:
        sm.benchmark_failed = art.empty_result(files.benchmark)
        if sm.benchmark_failed is None:
            sm.benchmark = art.load_benchmark(files.benchmark)
        sm.used.append(files.benchmark.name)
        if sm.benchmark and sm.benchmark.csv_prefix and (directory / f"{sm.benchmark.csv_prefix}_stats.csv").is_file():
            files.csv_prefix = sm.benchmark.csv_prefix
    prefix = files.csv_prefix or f"locust_{files.scale}"
    run = read_locust_run(directory, prefix)
    if run.stats is not None or run.history is not None:
        sm.locust = run
        sm.used += [f"{prefix}{s}" for s in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv")
                    if f"{prefix}{s}" not in run.missing]
    sm.missing += run.missing
    exact_path = directory / f"{prefix}_exact.json"
    if exact_path.is_file():
        sm.exact = art.load_exact(exact_path)
        sm.used.append(exact_path.name)
    else:
        sm.missing.append(exact_path.name)
    pacing_path = directory / f"{prefix}_pacing.csv"
    if pacing_path.is_file():
        sm.pacing = art.load_pacing(pacing_path)
        sm.used.append(pacing_path.name)
    else:
        sm.missing.append(pacing_path.name)
    if files.explain:
        sm.explain = parse_explain(files.explain)
        sm.used.append(files.explain.name)
    if files.ann_check:
        sm.ann_failed = art.ann_check_failed(files.ann_check)
        if sm.ann_failed is None:
            sm.ann = ann_metrics(art.load_ann_check(files.ann_check))
        sm.used.append(files.ann_check.name)
    if files.adapt:
        sm.adapt = art.load_adapt(files.adapt)
        sm.used.append(files.adapt.name)
    if files.cost:
        _collect_cost(directory, sm, files.cost)
    req_path = directory / f"{prefix}_requests.csv"
    if sm.benchmark and sm.benchmark.requests_file and (directory / sm.benchmark.requests_file).is_file():
        req_path = directory / sm.benchmark.requests_file
    if req_path.is_file():
        files.requests = req_path
        sm.records = art.load_requests(req_path)
        sm.used.append(req_path.name)
    else:
        sm.missing.append(req_path.name)
    for label, present in ((f"seed_{files.scale}.json", files.seed), (f"benchmark_{files.scale}.json",
                           files.benchmark), (f"explain_{files.scale}.txt", files.explain),
                           (f"ann_check_{files.scale}.json", files.ann_check),
                           (f"benchmark_adapt_{files.scale}.json", files.adapt),
                           (f"cost_{files.scale}.json", files.cost)):
        if present is None:
            sm.missing.append(label)
    _build_endpoints(sm)
    return sm


def _collect_cost(directory: Path, sm: ScaleMetrics, path: Path) -> None:
    """The scale's cost explains the results and judges nothing: a malformed file is noted (naming the file and the
    key), never a reason not to write the report."""
    sm.used.append(path.name)
    sm.cost_failed = art.empty_result(path)
    if sm.cost_failed is not None:
        return
    try:
        sm.cost = scale_cost(directory, art.load_cost(path), sm.benchmark, sm.benchmark_failed)
    except MalformedArtifact as exc:
        sm.cost_failed = str(exc)
        return
    if sm.cost.summary and sm.cost.summary not in sm.used:
        sm.used.append(sm.cost.summary)


def _build_endpoints(sm: ScaleMetrics) -> None:
    bench_cases = {art.endpoint_key(c.name): c for c in (sm.benchmark.cases if sm.benchmark else [])}
    locust_eps = _locust_endpoints(sm.locust) if sm.locust and sm.locust.stats is not None else {}
    locust_fail = _locust_failures(sm.locust) if sm.locust else {}
    exact = sm.exact or {}
    recs = sm.records if sm.records is not None else None
    rec_names = set(recs["endpoint"].unique()) if recs is not None else set()
    names = _endpoint_order(list({*bench_cases, *locust_eps, *exact, *rec_names}))
    for name in names:
        ep = EndpointMetrics(sm.scale, name)
        case, loc, ex = bench_cases.get(name), locust_eps.get(name), exact.get(name)
        mine = recs[recs["endpoint"] == name] if recs is not None else None
        if loc:
            ep.locust = {k: loc[k] for k in ("requests", "failures", "rps", "p50", "p95", "p99", "max")}
        if case:
            ep.requests, ep.ok, ep.failed = case.total, case.ok, case.failed
            ep.by_status = dict(case.by_status)
            split = split_by_status(case.by_status)
            if case.errors is not None:
                split.update({k: v for k, v in case.errors.items() if k in ERROR_CATEGORIES})
                ep.errors_source = "benchmark JSON `errors`"
            else:
                ep.errors_source = "benchmark JSON `by_status`"
            ep.errors = split
            ep.rps, ep.rps_source = case.rps, ("benchmark JSON (requests / case wall time)"
                                               if case.rps is not None else "not recorded")
            ep.open_model, ep.pacing, ep.server_timing_ms = case.open_model, case.pacing, case.server_timing_ms
        elif mine is not None and len(mine):
            ep.requests = len(mine)
            ep.ok = int((mine["category"] == "ok").sum())
            ep.failed = ep.requests - ep.ok
            cats = mine["category"].value_counts()
            ep.errors = dict.fromkeys(ERROR_CATEGORIES, 0)
            for cat, key in (("429", "rate_limited_429"), ("4xx", "client_4xx"), ("5xx", "server_5xx"),
                             ("transport", "transport"), ("empty_recall", "empty_recall")):
                ep.errors[key] = int(cats.get(cat, 0))
            ep.errors_source = f"request records ({sm.files.requests.name if sm.files.requests else 'requests.csv'})"
            span = float(mine["t_s"].max() - mine["t_s"].min() + mine["latency_ms"].iloc[-1] / 1000.0)
            ep.rps = ep.requests / span if span > 0 else None
            ep.rps_source = "request records (requests / first-to-last request span)"
        elif loc:
            req, fail = int(loc["requests"] or 0), int(loc["failures"] or 0)
            ep.requests, ep.failed, ep.ok = req, fail, req - fail
            ep.errors = locust_fail.get(name, dict.fromkeys(ERROR_CATEGORIES, 0))
            ep.errors_source = "Locust failures CSV (messages classified by status code)"
            ep.rps, ep.rps_source = loc["rps"], "Locust stats CSV (requests / run time)"
        if ex and ex.count > 0:
            ep.latency = {"p50": ex.percentiles_ms.get("50"), "p95": ex.percentiles_ms.get("95"),
                          "p99": ex.percentiles_ms.get("99"), "min": ex.min_ms, "max": ex.max_ms,
                          "mean": ex.mean_ms}
            ep.latency_source, ep.exact_count = SRC_EXACT, ex.count
            ep.samples, ep.samples_source = ex.count, f"{sm.files.exact.name if sm.files.exact else 'exact'} count"
        elif case and case.ok > 0 and case.latency_ms.get("p95") is not None:
            ep.latency = {k: case.latency_ms.get(k) for k in ("p50", "p95", "p99", "min", "max", "mean")}
            ep.latency_source = SRC_BENCH
            if case.samples is not None:
                ep.samples, ep.samples_source = case.samples, "benchmark JSON `samples`"
            else:
                ep.samples, ep.samples_source = case.ok, "benchmark JSON `ok` (no `samples`)"
        elif mine is not None and (mine["category"] == "ok").any():
            lat = mine.loc[mine["category"] == "ok", "latency_ms"].to_numpy(dtype=float)
            ep.latency = {**summary_ms(lat), "min": float(lat.min()), "max": float(lat.max())}
            ep.latency_source = SRC_RECORDS
            ep.samples, ep.samples_source = int(lat.size), "request records (successful requests)"
        elif loc and (loc["requests"] or 0) > 0 and loc["p95"] is not None:
            ep.latency = {k: loc[k] for k in ("p50", "p95", "p99", "min", "max", "mean")}
            ep.latency_source = SRC_LOCUST
            ep.samples = int(loc["samples"] or 0)
            ep.samples_source = "Locust stats `Request Count` of the endpoint's main row (failures included)"
        ep.server = _server_split(ep, case, mine)
        sm.endpoints[name] = ep


def _server_split(ep: EndpointMetrics, case: art.BenchCase | None, mine: pd.DataFrame | None) -> ServerSplit | None:
    """Client vs server vs database time: from the records' `server_ms`/`db_ms` (exact, per request) when present,
    else the benchmark case's `server_timing` block; None when neither file says anything about it."""
    if mine is not None and len(mine):
        ok = mine[mine["category"] == "ok"]
        timed = ok[ok["server_ms"].notna()]
        if len(timed):
            db = timed["db_ms"].dropna()
            return ServerSplit(True, "request records", summary_ms(timed["latency_ms"]),
                               summary_ms(timed["server_ms"]), summary_ms(db) if len(db) else None, len(timed))
        if case is None or case.server_timing is None:
            return ServerSplit(False, "request records", summary_ms(ok["latency_ms"]), samples=0)
    if case is not None and case.server_timing is not None:
        st = case.server_timing
        client = {k: ep.latency.get(k) for k in ("p50", "p95", "p99", "mean")}
        return ServerSplit(st.reported and bool(st.server_ms or st.db_ms), "benchmark JSON `server_timing`", client,
                           st.server_ms, st.db_ms, case.samples)
    return None


def collect_run(directory: Path) -> RunMetrics:
    """Load everything in `directory` (strict on malformed files, lenient on absent ones)."""
    files = art.discover(directory)
    scales = [collect_scale(directory, sf) for sf in files.scales.values()]
    # A benchmark may name a CSV prefix other than `locust_<scale>`; discovery then also made a group of that
    # prefix alone. Keep the CSVs with the benchmark's scale only.
    claimed = {sm.benchmark.csv_prefix for sm in scales if sm.benchmark and sm.benchmark.csv_prefix}
    scales = [sm for sm in scales if not (sm.benchmark is None and sm.seed is None and sm.files.csv_prefix in claimed
                                          and any(o is not sm and o.files.csv_prefix == sm.files.csv_prefix
                                                  for o in scales))]
    worker_failed = art.empty_result(files.worker) if files.worker else None
    worker = art.load_worker(files.worker) if files.worker and worker_failed is None else None
    manifest = art.load_manifest(files.manifest) if files.manifest else None
    missing = []
    if worker is None:
        missing.append("worker_baseline.json")
    if manifest is None:
        missing.append("manifest.json")
    run = RunMetrics(directory, files, scales, worker, manifest, missing)
    run.not_measured = not_measured(run, worker_failed)
    return run


def _config_off(run: RunMetrics, var: str) -> str | None:
    value = run.config(var)
    if value is not None and str(value).lower() in ("false", "0", "no", "off"):
        return f"not run: {var}={value}"
    return None


def not_measured(run: RunMetrics, worker_failed: str | None = None) -> list[NotMeasured]:
    """Every stage that did not run, failed, or measured something other than the target, with its reason: the
    manifest's `not_measured` and `failed_phases` first, then what the files show (absent, empty, or memload's own
    component standing in for the target's)."""
    out: list[NotMeasured] = []
    manifest = run.manifest or {}
    for item in manifest.get("failed_phases") or []:
        if isinstance(item, dict) and item.get("name"):
            hint = f" ({item['hint']})" if item.get("hint") else ""
            out.append(NotMeasured(str(item["name"]), f"failed: {item.get('reason') or 'no reason recorded'}{hint}"))
    failed = {n.stage for n in out}
    for item in manifest.get("not_measured") or []:
        if isinstance(item, dict) and item.get("stage") and str(item["stage"]) not in failed:
            out.append(NotMeasured(str(item["stage"]), str(item.get("reason") or "no reason recorded")))
    named = [n.stage.lower() for n in out]

    def add(kind: str, scale: str | None, reason: str) -> None:
        stage = f"{kind}_{scale}" if scale else kind
        if any(n.startswith(kind) and (scale is None or scale in n or n == kind) for n in named):
            return
        out.append(NotMeasured(stage, reason))

    if not run.scales:
        add("benchmark", None, "no seed_*, benchmark_*, locust_* or *_requests.csv file in the run directory")
    for sm in run.scales:
        if sm.seed_failed:
            add("seed", sm.scale, f"seed failed: {sm.seed_failed}")
        elif sm.files.seed is None:
            add("seed", sm.scale, f"no seed_{sm.scale}.json in the run directory")
        if sm.ann_failed:
            add("ann_check", sm.scale, f"ANN recall check failed: {sm.ann_failed}")
        elif sm.ann is None:
            add("ann_check", sm.scale, _config_off(run, "RUN_ANN_CHECK") or f"no ann_check_{sm.scale}.json")
        elif sm.ann.not_measured:
            add("ann_check", sm.scale, f"recall not measured at the benchmark's ef_search: {sm.ann.not_measured}")
        if sm.benchmark_failed:
            add("benchmark", sm.scale, f"benchmark failed: {sm.benchmark_failed}")
        elif not any(ep.requests for ep in sm.endpoints.values()):
            add("benchmark", sm.scale, f"no benchmark_{sm.scale}.json, Locust CSV or request records with requests")
        if sm.explain is None:
            add("explain", sm.scale, _config_off(run, "RUN_EXPLAIN") or f"no explain_{sm.scale}.txt")
        elif run.external and sm.explain.header.get("memload explain", "").startswith("memload reference SQL"):
            add("explain", sm.scale, "explained memload's reference SQL, not the target's own queries "
                                     "(`memload explain --sql FILE` / EXPLAIN_SQL)")
    w = run.worker
    if worker_failed:
        add("worker", None, f"worker benchmark failed: {worker_failed}")
    elif w is None:
        add("worker", None, _config_off(run, "RUN_WORKER_BENCHMARK") or "no worker_baseline.json")
    elif run.external and w.mode == "in_process":
        add("worker", None, "memload's own in-process worker ran, not the target's: its throughput is not the "
                            "target's (`memload worker-bench --worker-command` or `--observe`)")
    return out
