"""Discover and load a run directory's artifacts (docs/ARTIFACTS.md), validating every key the report uses.

Loading is strict about what is present (a wrong type names the file and key) and lenient about what is absent
(absent files are listed, so the report can say what is missing instead of failing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import MalformedArtifact
from analysis.jsonio import Doc, load_json

RECALL_ENDPOINTS = ("recall_text", "recall")
WRITE_ENDPOINTS = ("write",)
KNOWN_ENDPOINTS = (*RECALL_ENDPOINTS, *WRITE_ENDPOINTS)

_ATTEMPT_RE = re.compile(r"^benchmark_(?P<scale>.+)_attempt(?P<n>\d+)\.json$")
_REP_RE = re.compile(r"^benchmark_(?P<scale>.+)_rep(?P<n>\d+)\.json$")
_REP_PREFIX_RE = re.compile(r"^.+_rep\d+$")  # `locust_<scale>_rep<k>`: a repeat's CSVs, not a scale of their own
_ADAPT_RE = re.compile(r"^benchmark_adapt_(?P<scale>.+)\.json$")
_BENCH_RE = re.compile(r"^benchmark_(?P<scale>.+)\.json$")
_SEED_RE = re.compile(r"^seed_(?P<scale>.+)\.json$")
_EXPLAIN_RE = re.compile(r"^explain_(?P<scale>.+)\.txt$")
_ANN_RE = re.compile(r"^ann_check_(?P<scale>.+)\.json$")
_COST_RE = re.compile(r"^cost_(?P<scale>.+)\.json$")
_STATS_RE = re.compile(r"^(?P<prefix>.+)_stats\.csv$")
PACING_COLUMNS = ("timestamp", "endpoint_class", "pace_ms", "count_429", "count_ok")


_STATUS_SUFFIX_RE = re.compile(r"\s*\[\d{3}\]$")


def status_suffix(name: str) -> str | None:
    """'recall_text [429]' -> '429': the suite books 429s under a separate Locust row so the main row's percentiles
    hold no rate-limited responses."""
    m = _STATUS_SUFFIX_RE.search(name.strip())
    return m.group(0).strip(" []") if m else None


def endpoint_key(name: str) -> str:
    """Map a Locust request name or case name to `recall_text` / `recall` / `write` (else the name itself)."""
    text = _STATUS_SUFFIX_RE.sub("", name.strip())
    last = re.split(r"[/\s:]+", text.lower().rstrip("/"))[-1]
    return last if last in KNOWN_ENDPOINTS else text


def scale_sort_key(scale: str) -> tuple[int, float, str]:
    try:
        return (0, float(scale), scale)
    except ValueError:
        return (1, 0.0, scale)


# ----------------------------------------------------------------------------------------------- typed artifacts
@dataclass
class SeedInfo:
    scope: str
    tenant_id: str | None
    scope_key: str | None
    nodes: int
    edges: int
    topics: int | None
    events: int | None
    elapsed_ms: float | None
    vectors: str | None
    layout: str | None = None
    seeded_by: str | None = None
    unknown_indexes: list[str] = field(default_factory=list)


class _SloRecall:
    """The recall path's figure the recall SLO judges: `recall_at_k_distance` (ties counted: on duplicate vectors
    every id at the k-th exact distance is an exact neighbour, which one a scan returns is chance) when the file has
    it, else `recall_at_k` (ids matched), as `memload ann-check --target-recall` judges it."""

    recall_at_k: float
    recall_at_k_distance: float | None

    @property
    def slo_recall(self) -> float:
        return self.recall_at_k if self.recall_at_k_distance is None else self.recall_at_k_distance

    @property
    def slo_recall_key(self) -> str:
        return "recall_at_k" if self.recall_at_k_distance is None else "recall_at_k_distance"


@dataclass
class AnnSweepRow(_SloRecall):
    """One hnsw.ef_search of `memload ann-check --ef-sweep`, measured against the same ground truth."""

    ef_search: int
    recall_at_k: float  # the recall path's
    index_recall_at_k: float | None  # the bare index's `LIMIT k`
    recall_path_mean_ms: float | None
    index_mean_ms: float | None
    recall_at_k_distance: float | None = None  # the recall path's, ties counted


@dataclass
class AnnCheck(_SloRecall):
    """`ann_check_<scale>.json`: the JSON `memload ann-check` prints, plus the matrix's `ef_search_used` and
    `ef_search_tuned` (the hnsw.ef_search the local API ran the benchmark with, and whether the matrix raised it)."""

    path: Path
    ok: bool | None
    scope: str | None
    k: int
    queries: int
    recall_at_k: float  # recall path: stage 1 as the API runs it (LIMIT candidates, re-ranked), top k kept
    index_recall_at_k: float | None  # the bare index's `LIMIT k` k-NN
    ef_search: int  # hnsw.ef_search the two figures above were measured at
    iterative_scan: str | None
    max_scan_tuples: int | None
    vectors_in_scope: int | None
    precision: str | None  # vector / halfvec
    exact: str | None  # sql / numpy: how the ground truth was computed
    limit: int | None
    candidates: int | None
    sweep: list[AnnSweepRow]
    target_recall: float | None
    ef_search_for_target: int | None
    ef_search_used: int | None  # written by the matrix; None when the file does not say
    ef_search_tuned: bool | None
    recall_at_k_distance: float | None = None  # recall path, ties counted (a result at the k-th exact distance)
    index_used: str | None = None  # the index the scan's plan used; None with index_in_plan False: no index at all
    index_in_plan: bool | None = None  # None: the file does not say


@dataclass
class BenchCase:
    name: str
    total: int
    ok: int
    failed: int
    rps: float | None
    latency_ms: dict[str, float | None]
    by_status: dict[str, int]
    errors: dict[str, int] | None
    open_model: dict[str, float | None]
    pacing: dict[str, float | None]
    server_timing_ms: dict[str, float | None]
    samples: int | None = None  # latencies behind p50/p95/p99 (bench JSON `samples`)
    duration_s: float | None = None  # measured window, warm-up excluded
    server_timing: ServerTiming | None = None


@dataclass
class ServerTiming:
    """A case's `server_timing`: whether the target sent `Server-Timing`, and its server / database percentiles."""

    reported: bool
    server_ms: dict[str, float | None] | None
    db_ms: dict[str, float | None] | None


@dataclass
class Benchmark:
    path: Path
    ok: bool | None
    scope: str | None
    tenant_id: str | None
    params: dict[str, Any]
    cases: list[BenchCase]
    csv_prefix: str | None
    requests_file: str | None = None  # `run.requests_file`: the per-request records beside the JSON
    base_url: str | None = None
    preflight: dict[str, Any] | None = None
    summary_file: str | None = None  # `artifacts.summary`: the canonical run's Locust summary


@dataclass
class ExactEndpoint:
    count: int
    min_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    percentiles_ms: dict[str, float | None]
    cdf: list[tuple[float, float]]


@dataclass
class WorkerBaseline:
    scope: str | None
    mode: str | None
    iterations: int | None
    claimed: int
    processed: int
    failed_marked: int
    throughput: float
    elapsed_ms_sum: float | None
    elapsed_ms_wall: float | None
    outbox_before: dict[str, float | None]
    outbox_after: dict[str, float | None]
    per_iteration: pd.DataFrame
    scope_nodes: int | None = None
    unit: str | None = None
    failed: int | None = None  # `totals.failed`: jobs that failed (never counted as processed)
    by_job_type: dict[str, dict[str, int]] = field(default_factory=dict)
    backlog_before_by_type: dict[str, int] = field(default_factory=dict)
    backlog_after_by_type: dict[str, int] = field(default_factory=dict)
    enqueued_during_run: dict[str, int] | None = None

    @property
    def failed_jobs(self) -> int:
        return self.failed if self.failed is not None else self.failed_marked


@dataclass
class ScaleFiles:
    scale: str
    seed: Path | None = None
    benchmark: Path | None = None
    attempts: list[Path] = field(default_factory=list)
    reps: list[Path] = field(default_factory=list)  # benchmark_<scale>_rep<k>.json (REPEAT=N), in k order
    adapt: Path | None = None
    csv_prefix: str | None = None
    exact: Path | None = None
    pacing: Path | None = None
    requests: Path | None = None
    explain: Path | None = None
    ann_check: Path | None = None
    cost: Path | None = None


@dataclass
class RunFiles:
    directory: Path
    scales: dict[str, ScaleFiles]
    worker: Path | None
    manifest: Path | None


# ----------------------------------------------------------------------------------------------- discovery
def discover(directory: Path) -> RunFiles:
    """Group the directory's files by scale (the `<scale>` of the seed document's names)."""
    scales: dict[str, ScaleFiles] = {}

    def at(scale: str) -> ScaleFiles:
        return scales.setdefault(scale, ScaleFiles(scale))

    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    for name in names:
        path = directory / name
        if m := _ATTEMPT_RE.match(name):
            at(m["scale"]).attempts.append(path)
        elif m := _REP_RE.match(name):
            at(m["scale"]).reps.append(path)
        elif m := _ADAPT_RE.match(name):
            at(m["scale"]).adapt = path
        elif m := _BENCH_RE.match(name):
            at(m["scale"]).benchmark = path
        elif m := _SEED_RE.match(name):
            at(m["scale"]).seed = path
        elif m := _EXPLAIN_RE.match(name):
            at(m["scale"]).explain = path
        elif m := _ANN_RE.match(name):
            at(m["scale"]).ann_check = path
        elif m := _COST_RE.match(name):
            at(m["scale"]).cost = path
    # Locust CSV prefixes: `locust_<scale>` by convention; any other prefix becomes its own "scale" label.
    for name in names:
        if (m := _STATS_RE.match(name)) and not _REP_PREFIX_RE.match(m["prefix"]):
            prefix = m["prefix"]
            scale = prefix[len("locust_"):] if prefix.startswith("locust_") else prefix
            sf = at(scale)
            sf.csv_prefix = prefix
    for sf in scales.values():
        prefix = sf.csv_prefix or f"locust_{sf.scale}"
        exact, pacing = directory / f"{prefix}_exact.json", directory / f"{prefix}_pacing.csv"
        sf.exact = exact if exact.is_file() else None
        sf.pacing = pacing if pacing.is_file() else None
        requests = directory / f"{prefix}_requests.csv"
        sf.requests = requests if requests.is_file() else None
        sf.attempts.sort(key=lambda p: int(_ATTEMPT_RE.match(p.name)["n"]))  # type: ignore[index]
        sf.reps.sort(key=lambda p: int(_REP_RE.match(p.name)["n"]))  # type: ignore[index]
    worker = directory / "worker_baseline.json"
    manifest = directory / "manifest.json"
    ordered = dict(sorted(scales.items(), key=lambda kv: scale_sort_key(kv[0])))
    return RunFiles(directory, ordered, worker if worker.is_file() else None,
                    manifest if manifest.is_file() else None)


# ----------------------------------------------------------------------------------------------- loaders
def empty_result(path: Path) -> str | None:
    """A stage's result file that is empty (the stage died before writing it): the reason, else None."""
    if not path.read_bytes().strip():
        return f"{path.name} is empty: the stage failed before writing its result"
    return None


def seed_failed(path: Path) -> str | None:
    """Why a seed file says the seed failed (an empty file, or `ok: false`), else None."""
    if not path.read_bytes().strip():
        return f"{path.name} is empty: the seed failed before writing its result"
    value = load_json(path)
    if isinstance(value, dict) and value.get("ok") is False:
        why = value.get("error") or value.get("reason")
        return f"{path.name} says ok: false" + (f" ({why})" if isinstance(why, str) and why else "")
    return None


def ann_check_failed(path: Path) -> str | None:
    """Why an ann_check file holds no measurement (empty, or `ok: false` without a recall), else None. An `ok:
    false` beside a recall is `memload ann-check --min-recall` judging it: the recall is still measured."""
    if not path.read_bytes().strip():
        return f"{path.name} is empty: the check failed before writing its result"
    value = load_json(path)
    if isinstance(value, dict) and value.get("ok") is False and "recall_at_k" not in value:
        why = value.get("error") or value.get("reason")
        return f"{path.name} says ok: false" + (f" ({why})" if isinstance(why, str) and why else "")
    return None


def load_seed(path: Path) -> SeedInfo:
    doc = Doc(path, load_json(path))
    totals = doc.obj("totals_in_scope")
    inserted = doc.obj("inserted", required=False)
    assert totals is not None
    return SeedInfo(
        scope=doc.str_("scope") or "",
        tenant_id=doc.str_("tenant_id", required=False),
        scope_key=doc.str_("scope_key", required=False),
        nodes=totals.int_("nodes") or 0,
        edges=totals.int_("edges") or 0,
        topics=inserted.int_("topics", required=False) if inserted else None,
        events=inserted.int_("events", required=False) if inserted else None,
        elapsed_ms=doc.num("elapsed_ms", required=False),
        vectors=doc.str_("vectors", required=False),
        layout=doc.str_("layout", required=False),
        seeded_by=doc.str_("seeded_by", required=False),
        unknown_indexes=[str(x.value) for x in doc.items("unknown_indexes", required=False)],
    )


def _key(doc: Doc, name: str) -> str:
    return f"{doc.key}.{name}" if doc.key else name


def _fraction(doc: Doc, name: str, *, required: bool = True) -> float | None:
    """A recall: a number in 0..1 (absent or null allowed when not required)."""
    value = doc.num(name, required=required)
    if value is not None and not 0.0 <= value <= 1.0:
        raise MalformedArtifact(doc.path, f"key {_key(doc, name)}: expected a fraction 0..1, got {doc.value[name]!r}")
    return value


def _positive(doc: Doc, name: str, *, required: bool = True) -> int | None:
    """An hnsw.ef_search or k: an integer ≥ 1 (absent or null allowed when not required)."""
    value = doc.int_(name, required=required)
    if value is not None and value < 1:
        raise MalformedArtifact(doc.path, f"key {_key(doc, name)}: expected an integer ≥ 1, got {doc.value[name]!r}")
    return value


def load_ann_check(path: Path) -> AnnCheck:
    doc = Doc(path, load_json(path))
    hnsw = doc.obj("hnsw")
    assert hnsw is not None
    sweep = []
    for row in doc.items("ef_sweep", required=False):
        sweep.append(AnnSweepRow(
            ef_search=_positive(row, "ef_search") or 0,
            recall_at_k=_fraction(row, "recall_at_k") or 0.0,
            index_recall_at_k=_fraction(row, "index_recall_at_k", required=False),
            recall_path_mean_ms=row.num("recall_path_mean_ms", required=False, nullable=True),
            index_mean_ms=row.num("index_mean_ms", required=False, nullable=True),
            recall_at_k_distance=_fraction(row, "recall_at_k_distance", required=False)))
    return AnnCheck(
        path=path,
        ok=doc.bool_("ok", required=False),
        scope=doc.str_("scope", required=False),
        k=_positive(doc, "k") or 0,
        queries=doc.int_("queries") or 0,
        recall_at_k=_fraction(doc, "recall_at_k") or 0.0,
        index_recall_at_k=_fraction(doc, "index_recall_at_k", required=False),
        ef_search=_positive(hnsw, "ef_search") or 0,
        iterative_scan=hnsw.str_("iterative_scan", required=False),
        max_scan_tuples=hnsw.int_("max_scan_tuples", required=False),
        vectors_in_scope=doc.int_("vectors_in_scope", required=False),
        precision=doc.str_("precision", required=False),
        exact=doc.str_("exact", required=False),
        limit=doc.int_("limit", required=False),
        candidates=doc.int_("candidates", required=False),
        sweep=sorted(sweep, key=lambda r: r.ef_search),
        target_recall=_fraction(doc, "target_recall", required=False),
        ef_search_for_target=_positive(doc, "ef_search_for_target", required=False),
        ef_search_used=_positive(doc, "ef_search_used", required=False),
        ef_search_tuned=doc.bool_("ef_search_tuned", required=False),
        recall_at_k_distance=_fraction(doc, "recall_at_k_distance", required=False),
        index_used=doc.str_("index_used", required=False),
        index_in_plan=None if "index_used" not in doc.value else doc.value["index_used"] is not None,
    )


def load_benchmark(path: Path) -> Benchmark:
    doc = Doc(path, load_json(path))
    cases = []
    for c in doc.items("cases"):
        errors = c.counts("errors", required=False) if c.has("errors") else None
        cases.append(BenchCase(
            name=c.str_("name") or "",
            total=c.int_("total") or 0,
            ok=c.int_("ok") or 0,
            failed=c.int_("failed") or 0,
            rps=c.num("rps", required=False, nullable=True),
            latency_ms=c.numbers("latency_ms"),
            by_status=c.counts("by_status"),
            errors=errors,
            open_model=c.numbers("open_model", required=False, strict=False),
            pacing=c.numbers("pacing", required=False, strict=False),
            server_timing_ms=c.numbers("server_timing_ms", required=False, strict=False),
            samples=c.int_("samples", required=False),
            duration_s=c.num("duration_s", required=False, nullable=True),
            server_timing=_server_timing(c),
        ))
    for case in cases:
        for key in ("p50", "p95", "p99"):
            if key not in case.latency_ms:
                raise MalformedArtifact(path, f"key cases[{cases.index(case)}].latency_ms.{key}: missing")
    params = doc.obj("params", required=False)
    arts = doc.obj("artifacts", required=False)
    run = doc.obj("run", required=False)
    preflight = doc.obj("preflight", required=False)
    return Benchmark(
        path=path,
        ok=doc.bool_("ok", required=False),
        scope=doc.str_("scope", required=False),
        tenant_id=doc.str_("tenant_id", required=False),
        params=dict(params.value) if params else {},
        cases=cases,
        csv_prefix=arts.str_("csv_prefix", required=False) if arts else None,
        requests_file=run.str_("requests_file", required=False) if run else None,
        base_url=doc.str_("base_url", required=False),
        preflight=dict(preflight.value) if preflight else None,
        summary_file=arts.str_("summary", required=False) if arts else None,
    )


def _server_timing(case: Doc) -> ServerTiming | None:
    st = case.obj("server_timing", required=False)
    if st is None:
        return None
    return ServerTiming(reported=bool(st.bool_("reported", required=False)),
                        server_ms=st.numbers("server_ms", required=False) or None,
                        db_ms=st.numbers("db_ms", required=False) or None)


def load_adapt(path: Path) -> dict[str, Any]:
    doc = Doc(path, load_json(path))
    initial, final = doc.obj("initial"), doc.obj("final")
    assert initial is not None and final is not None
    out: dict[str, Any] = {
        "auto_adapt": doc.bool_("auto_adapt", required=False),
        "max_rate_limit_retries": doc.int_("max_rate_limit_retries", required=False),
        "retries_used": doc.int_("retries_used", required=False),
        "attempts_total": doc.int_("attempts_total", required=False),
        "exhausted": doc.bool_("exhausted", required=False),
        "initial": {k: initial.num(k, required=False, nullable=True)
                    for k in ("recall_concurrency", "write_concurrency", "pace_ms")},
        "final": {k: final.num(k, required=False, nullable=True)
                  for k in ("recall_concurrency", "write_concurrency", "pace_ms", "last_429", "last_total_requests",
                            "last_allowed_429", "last_429_rate")},
    }
    return out


def load_exact(path: Path) -> dict[str, ExactEndpoint]:
    doc = Doc(path, load_json(path))
    endpoints = doc.obj("endpoints")
    assert endpoints is not None
    out: dict[str, ExactEndpoint] = {}
    for name in endpoints.value:
        ep = endpoints.obj(name)
        assert ep is not None
        pct = ep.numbers("percentiles_ms")
        for key in ("50", "95", "99"):
            if key not in pct:
                raise MalformedArtifact(path, f"key {ep.key}.percentiles_ms.{key}: missing")
        cdf: list[tuple[float, float]] = []
        for i, point in enumerate(ep.items("cdf", required=False)):
            v = point.value
            if (not isinstance(v, list) or len(v) != 2
                    or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)):
                raise MalformedArtifact(path, f"key {ep.key}.cdf[{i}]: expected [ms, fraction], got {v!r}")
            cdf.append((float(v[0]), float(v[1])))
        out[endpoint_key(name)] = ExactEndpoint(
            count=ep.int_("count") or 0, min_ms=ep.num("min_ms", required=False, nullable=True),
            max_ms=ep.num("max_ms", required=False, nullable=True),
            mean_ms=ep.num("mean_ms", required=False, nullable=True), percentiles_ms=pct, cdf=cdf)
    return out


def load_pacing(path: Path) -> pd.DataFrame:
    """`timestamp,endpoint_class,pace_ms,count_429,count_ok`; timestamp as epoch seconds or ISO-8601."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise MalformedArtifact(path, "empty file (no header row)") from None
    except pd.errors.ParserError as exc:
        raise MalformedArtifact(path, f"not a readable CSV: {str(exc).splitlines()[0]}") from None
    for col in PACING_COLUMNS:
        if col not in frame.columns:
            raise MalformedArtifact(path, f"missing column {col!r}")
    out = pd.DataFrame({"endpoint_class": frame["endpoint_class"].astype(str)})
    for col in ("pace_ms", "count_429", "count_ok"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            i = int(values.isna().to_numpy().nonzero()[0][0])
            raise MalformedArtifact(path, f"column {col!r} line {i + 2}: not a number: {frame[col].iloc[i]!r}")
        out[col] = values
    ts = pd.to_numeric(frame["timestamp"], errors="coerce")
    if ts.isna().any():
        parsed = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():
            i = int(parsed.isna().to_numpy().nonzero()[0][0])
            raise MalformedArtifact(path, f"column 'timestamp' line {i + 2}: not epoch seconds or ISO-8601: "
                                          f"{frame['timestamp'].iloc[i]!r}")
        ts = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    out["timestamp"] = ts.astype(float)
    return out


def load_worker(path: Path) -> WorkerBaseline:
    doc = Doc(path, load_json(path))
    totals = doc.obj("totals")
    assert totals is not None
    before = doc.numbers("outbox_before", required=False, strict=False)
    after = doc.numbers("outbox_after", required=False, strict=False)
    rows = []
    for it in doc.items("per_iteration", required=False):
        types = it.counts("job_types", required=False) if it.has("job_types") else None
        rows.append({"iteration": it.int_("iteration"), "claimed": it.int_("claimed", required=False),
                     "processed": it.int_("processed"), "failed_marked": it.int_("failed_marked", required=False),
                     "failed": it.int_("failed", required=False),
                     "elapsed_ms": it.num("elapsed_ms", required=False),
                     "throughput": it.num("throughput_processed_per_sec", required=False, nullable=True),
                     "job_types": types})
    by_type: dict[str, dict[str, int]] = {}
    bt = totals.obj("by_job_type", required=False)
    if bt is not None:
        for name in bt.value:
            by_type[str(name)] = bt.counts(str(name))
    enqueued = doc.counts("enqueued_during_run", required=False) if doc.has("enqueued_during_run") else None

    def backlog(name: str) -> dict[str, int]:
        ob = doc.obj(name, required=False)
        return ob.counts("by_job_type", required=False) if ob is not None else {}

    return WorkerBaseline(
        scope=doc.str_("scope", required=False), mode=doc.str_("mode", required=False),
        iterations=doc.int_("iterations", required=False),
        claimed=totals.int_("claimed", required=False) or 0, processed=totals.int_("processed") or 0,
        failed_marked=totals.int_("failed_marked", required=False) or 0,
        throughput=totals.num("throughput_processed_per_sec") or 0.0,
        elapsed_ms_sum=totals.num("elapsed_ms_sum", required=False),
        elapsed_ms_wall=totals.num("elapsed_ms_wall", required=False),
        outbox_before=before, outbox_after=after,
        per_iteration=pd.DataFrame(rows, columns=["iteration", "claimed", "processed", "failed_marked", "failed",
                                                  "elapsed_ms", "throughput", "job_types"]),
        scope_nodes=doc.int_("scope_nodes", required=False), unit=doc.str_("unit", required=False),
        failed=totals.int_("failed", required=False), by_job_type=by_type,
        backlog_before_by_type=backlog("outbox_before"), backlog_after_by_type=backlog("outbox_after"),
        enqueued_during_run=enqueued,
    )


REQUEST_COLUMNS = ("t_s", "endpoint", "latency_ms", "status", "category", "server_ms", "db_ms")
REQUEST_CATEGORIES = ("ok", "429", "4xx", "5xx", "transport", "empty_recall")


def load_requests(path: Path) -> pd.DataFrame:
    """`PREFIX_requests.csv`: one row per measured request (docs/ARTIFACTS.md); numbers checked by column."""
    try:
        frame = pd.read_csv(path, dtype={"endpoint": str, "category": str}, keep_default_na=False,
                            na_values={"server_ms": [""], "db_ms": [""]})
    except pd.errors.EmptyDataError:
        raise MalformedArtifact(path, "empty file (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MalformedArtifact(path, f"not a readable CSV: {str(exc).splitlines()[0]}") from None
    for col in REQUEST_COLUMNS:
        if col not in frame.columns:
            raise MalformedArtifact(path, f"missing column {col!r} (header: {', '.join(map(str, frame.columns))})")
    for col in ("t_s", "latency_ms", "status", "server_ms", "db_ms"):
        if pd.api.types.is_numeric_dtype(frame[col]):
            continue
        raw = frame[col].astype(str).str.strip()
        values = pd.to_numeric(raw.where(raw != ""), errors="coerce")
        bad = values.isna() & ((raw != "") | (col in ("t_s", "latency_ms", "status")))
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise MalformedArtifact(path, f"column {col!r} line {i + 2}: not a number: {raw.iloc[i]!r}")
        frame[col] = values
    names = frame["endpoint"].astype(str)
    frame["endpoint"] = names.map({u: endpoint_key(u) for u in names.unique()})  # a few names, many rows
    frame["category"] = frame["category"].astype(str)
    if not frame["category"].isin(REQUEST_CATEGORIES).all():
        frame["category"] = frame["category"].str.strip()
    bad = ~frame["category"].isin(REQUEST_CATEGORIES)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise MalformedArtifact(path, f"column 'category' line {i + 2}: expected one of "
                                      f"{'|'.join(REQUEST_CATEGORIES)}, got {frame['category'].iloc[i]!r}")
    return frame[list(REQUEST_COLUMNS)]


def load_manifest(path: Path) -> dict[str, Any]:
    value = load_json(path)
    if not isinstance(value, dict):
        raise MalformedArtifact(path, "key <root>: expected an object")
    return value



# ----------------------------------------------------------------------------------------------- scale cost
RELATION_KINDS = ("heap", "toast", "index")
CPU_GROUPS = ("api", "postgres", "machine")
CPU_SERIES = ("api", "postgres", "machine_busy", "machine_total")


@dataclass
class CostRelation:
    """A relation the recall path reads, its size at the start of the benchmark; `shared`: it also holds other
    scopes, so its counters and size are the whole table's."""

    name: str
    table: str
    kind: str  # heap / toast (the heap's out-of-line values: the embeddings) / index
    method: str  # heap, hnsw, btree, …
    mb: float | None
    shared: bool


@dataclass
class CostSample:
    t: float  # epoch seconds, the Locust summary's clock
    cpu_s: dict[str, float]  # cumulative CPU seconds by series (CPU_SERIES); absent series left out
    blocks: dict[str, tuple[int, int]] | None  # relation -> cumulative (blks_hit, blks_read); None: not sampled


@dataclass
class CostRecord:
    """`cost_<scale>.json`: the raw cumulative counters the matrix sampled while the benchmark ran."""

    path: Path
    scale: str | None
    scope: str | None
    scope_key: str | None
    interval_s: float | None
    memory: dict[str, float | None]  # shared_buffers_mb, effective_cache_size_mb, host_mem_mb, cpu_cores
    relations: list[CostRelation]
    cpu: dict[str, str | None]  # what each CPU group counts (CPU_GROUPS); None: not sampled
    not_measured: dict[str, str]
    samples: list[CostSample]


@dataclass
class CaseWindow:
    """A case of the Locust summary: its requests and the window [first_start, last_end] they ran in."""

    total: int
    first_start: float | None
    last_end: float | None


def load_cost(path: Path) -> CostRecord:
    doc = Doc(path, load_json(path))
    memory = doc.obj("memory")
    assert memory is not None
    mem = {k: memory.num(k, required=False, nullable=True)
           for k in ("shared_buffers_mb", "effective_cache_size_mb", "host_mem_mb")}
    mem["cpu_cores"] = memory.int_("cpu_cores", required=False)
    relations: list[CostRelation] = []
    for r in doc.items("relations"):
        kind = r.str_("kind") or ""
        if kind not in RELATION_KINDS:
            raise MalformedArtifact(path, f"key {r.key}.kind: expected heap, toast or index, got {r.value['kind']!r}")
        mb = r.num("mb", nullable=True)
        if mb is not None and mb < 0:
            raise MalformedArtifact(path, f"key {r.key}.mb: expected a size ≥ 0, got {r.value['mb']!r}")
        rel = CostRelation(name=r.str_("name") or "", table=r.str_("table") or "", kind=kind,
                           method=r.str_("method") or "", mb=mb, shared=bool(r.bool_("shared", required=False)))
        if any(o.name == rel.name for o in relations):
            raise MalformedArtifact(path, f"key {r.key}.name: relation {rel.name!r} is listed twice")
        relations.append(rel)
    cpu_doc = doc.obj("cpu")
    assert cpu_doc is not None
    cpu = {g: cpu_doc.str_(g, required=False) for g in CPU_GROUPS}
    nm = doc.obj("not_measured", required=False)
    not_measured = {str(k): nm.str_(str(k)) or "" for k in nm.value} if nm is not None else {}
    names = {r.name for r in relations}
    samples: list[CostSample] = []
    for s in doc.items("samples"):
        t = s.num("t")
        assert t is not None
        if samples and t <= samples[-1].t:
            raise MalformedArtifact(path, f"key {s.key}.t: {s.value['t']!r} is not after the previous sample's")
        cpu_s = s.obj("cpu_s", required=False)
        series: dict[str, float] = {}
        for name in (cpu_s.value if cpu_s is not None else {}):
            value = cpu_s.num(str(name), nullable=True)
            if value is not None:
                series[str(name)] = value
        blocks_doc = s.obj("blocks", required=False)
        blocks: dict[str, tuple[int, int]] | None = None
        if blocks_doc is not None:
            blocks = {}
            for name, pair in blocks_doc.value.items():
                key = f"{blocks_doc.key}.{name}"
                if (not isinstance(pair, list) or len(pair) != 2
                        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in pair)):
                    raise MalformedArtifact(path, f"key {key}: expected [blks_hit, blks_read] (integers ≥ 0), "
                                                  f"got {pair!r}")
                if name in names:  # a relation the file no longer lists cannot be grouped or sized
                    blocks[str(name)] = (pair[0], pair[1])
        samples.append(CostSample(t, series, blocks))
    return CostRecord(path=path, scale=doc.str_("scale", required=False), scope=doc.str_("scope", required=False),
                      scope_key=doc.str_("scope_key", required=False),
                      interval_s=doc.num("interval_s", required=False, nullable=True), memory=mem,
                      relations=relations, cpu=cpu, not_measured=not_measured, samples=samples)


def load_case_windows(path: Path) -> dict[str, CaseWindow]:
    """`<prefix>_summary.json` → per endpoint (`recall_text` / `recall` / `write`) its total and window."""
    doc = Doc(path, load_json(path))
    cases = doc.obj("cases")
    assert cases is not None
    out: dict[str, CaseWindow] = {}
    for name in cases.value:
        c = cases.obj(str(name))
        assert c is not None
        out[endpoint_key(str(name))] = CaseWindow(total=c.int_("total") or 0,
                                                  first_start=c.num("first_start", required=False, nullable=True),
                                                  last_end=c.num("last_end", required=False, nullable=True))
    return out
