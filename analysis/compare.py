"""`memload compare`: two run directories, case by case, with a confidence interval of every difference.

Two runs of the same code on the same machine never print the same numbers, so a difference counts only when it is
both *significant* (its bootstrap confidence interval excludes zero) and *material* (larger than a noise floor).

Samples, per scale and case, best first:
- **per-request records** (`<prefix>_requests.csv`, named by `run.requests_file` of each benchmark JSON) on both
  sides: latency percentiles are bootstrapped over the successful requests' exact latencies, throughput over the
  1-second windows of the records (requests per full second), the error rate over the requests;
- **repeated runs** (`benchmark_<scale>_rep<k>.json`, REPEAT=N in the matrix) otherwise: each repeat's summary is one
  sample and the mean over repeats is bootstrapped. Fewer than three repeats on a side are too few to measure the
  noise with (a bootstrap over two values is far too narrow): that metric gets no verdict.

The noise floor of a metric is the larger of the minimum effect (latency: max(rel % of the baseline, an absolute
floor in ms); throughput: rel %; error rate: percentage points) and the spread between repeats (max − min of the
per-repeat values, on the side that spreads more), so a run-to-run wobble that the records alone cannot show is
not called a change. With one run per side the spread is taken between the consecutive thirds of each run's
records: a run whose own latency drifts (a busy neighbour, a cache warming up) cannot prove a small change.

Intervals are family-wise (Bonferroni over the metrics compared), so comparing ten metrics does not give noise ten
chances. Resampling is seeded (deterministic) and vectorised: percentiles are drawn exactly from the Beta
distribution of a bootstrap order statistic instead of resampling 10^5 records thousands of times.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import artifacts as art
from analysis.errors import MalformedArtifact
from analysis.jsonio import dig, load_json
from analysis.render import table
from analysis.rules import RATE_LIMIT_SHARE

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NOISE = "no significant change"
NA = "not comparable"
NOT_EVIDENCE = "not evidence (429)"
TOO_FEW = "too few samples"

METHOD_RECORDS = "records"
METHOD_REPEATS = "repeats"
FLOOR_MIN_EFFECT = "minimum effect"
FLOOR_REPEATS = "repeats"
FLOOR_THIRDS = "run thirds"

LATENCY_METRICS = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))
MIN_WINDOWS = 10  # 1-second throughput windows per side
MIN_REQUESTS = 100  # requests per side behind an error rate
MIN_REPEATS = 3  # repeats per side for a between-run estimate worth the name
# Config keys expected to differ between two runs (they name the run, not what it measured).
CONFIG_IGNORED = {"MATRIX_TAG", "OUT_DIR"}
PARAMS_IGNORED = {"query_set"}  # a path inside each run's own directory
HOST_KEYS = ("hostname", "cpu_model", "cpu_cores", "mem_gib")
RECORD_COLUMNS = ("t_s", "endpoint", "latency_ms", "category")


def min_samples(q: float) -> int:
    """Latencies a side needs for percentile q: ten beyond it (p50 20, p95 200, p99 1,000)."""
    return math.ceil(10 / (1 - q) - 1e-9)


@dataclass(frozen=True)
class Thresholds:
    """Minimum effect and bootstrap settings."""

    rel_pct: float = 10.0
    latency_floor_ms: float = 1.0
    error_rate_pp: float = 0.5
    confidence: float = 0.95
    resamples: int = 10_000
    seed: int = 1

    def describe(self) -> str:
        return (f"a change counts when its bootstrap interval ({self.resamples} resamples, seed {self.seed}) excludes "
                f"0 and it exceeds the noise floor: latency max({self.rel_pct:g} % of baseline, "
                f"{self.latency_floor_ms:g} ms), throughput {self.rel_pct:g} %, error rate {self.error_rate_pp:g} "
                "percentage points, or the spread between repeats (one run: between its thirds) when larger. "
                "Intervals are family-wise "
                f"(Bonferroni): each at 1 − {1 - self.confidence:.2g}/m for m compared metrics, so the chance that "
                f"noise anywhere in the comparison is called significant stays below {1 - self.confidence:.2g}.")

    def level(self, family: int) -> float:
        """Per-interval confidence for `family` intervals at once."""
        return 1.0 - (1.0 - self.confidence) / max(1, family)

    def to_json(self) -> dict[str, Any]:
        return {"rel_pct": self.rel_pct, "latency_floor_ms": self.latency_floor_ms,
                "error_rate_pp": self.error_rate_pp, "confidence": self.confidence, "resamples": self.resamples,
                "seed": self.seed, "rule": self.describe()}


# ---------------------------------------------------------------------------------------------- samples
@dataclass
class RepCase:
    """One repeat of one case: its summary numbers, and its records when the run wrote them."""

    total: int
    failed: int
    rps: float | None
    latency: dict[str, float | None]
    share_429: float
    records: pd.DataFrame | None = None


@dataclass
class CaseSamples:
    reps: list[RepCase] = field(default_factory=list)

    @property
    def has_records(self) -> bool:
        return bool(self.reps) and all(r.records is not None for r in self.reps)

    @property
    def share_429(self) -> float:
        return max((r.share_429 for r in self.reps), default=0.0)


@dataclass
class RunData:
    directory: Path
    manifest: dict[str, Any] | None
    cases: dict[tuple[str, str], CaseSamples]
    params: dict[str, list[dict[str, Any]]]
    reps: dict[str, int]
    worker: art.WorkerBaseline | None
    notes: list[str] = field(default_factory=list)


def nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The kit's percentile: sorted[ceil(n·q) − 1]."""
    return float(sorted_values[max(0, math.ceil(len(sorted_values) * q) - 1)])


def throughput_windows(t_s: np.ndarray) -> np.ndarray:
    """Requests started in each full 1-second window from the first request (the last, partial window dropped)."""
    if len(t_s) == 0:
        return np.zeros(0)
    offset = t_s - t_s.min()
    full = math.floor(offset.max())
    counts = np.bincount(np.floor(offset).astype(np.int64), minlength=full + 1)
    return counts[:full].astype(float)


def _read_records(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, usecols=list(RECORD_COLUMNS),
                            dtype={"t_s": float, "endpoint": str, "latency_ms": float, "category": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise MalformedArtifact(path, f"per-request records: {exc}") from None
    names = {name: art.endpoint_key(str(name)) for name in frame["endpoint"].unique()}
    frame["endpoint"] = frame["endpoint"].map(names)
    return frame


def _rep_case(case: art.BenchCase, records: pd.DataFrame | None) -> RepCase:
    share = case.by_status.get("429", 0) / case.total if case.total else 0.0
    if case.errors is not None and case.total:
        share = max(share, case.errors.get("rate_limited_429", 0) / case.total)
    if records is not None and len(records):
        share = float((records["category"] == "429").mean())
    return RepCase(case.total, case.failed, case.rps, dict(case.latency_ms), share, records)


def load_run(directory: Path) -> RunData:
    """Every case of every scale, one `RepCase` per repeat (the canonical benchmark when there are no repeats)."""
    files = art.discover(directory)
    cases: dict[tuple[str, str], CaseSamples] = {}
    params: dict[str, list[dict[str, Any]]] = {}
    reps: dict[str, int] = {}
    notes: list[str] = []
    for scale, sf in files.scales.items():
        paths = sf.reps or ([sf.benchmark] if sf.benchmark else [])
        reps[scale] = len(paths)
        for path in paths:
            bench = art.load_benchmark(path)
            params.setdefault(scale, []).append(bench.params)
            name = dig(load_json(path), "run.requests_file")
            frame = None
            if isinstance(name, str) and name:
                if (path.parent / name).is_file():
                    frame = _read_records(path.parent / name)
                else:
                    notes.append(f"{directory.name}/{path.name} names per-request records {name}, which is missing")
            for c in bench.cases:
                key = art.endpoint_key(c.name)
                own = frame[frame["endpoint"] == key] if frame is not None else None
                cases.setdefault((scale, key), CaseSamples()).reps.append(_rep_case(c, own))
    manifest = art.load_manifest(files.manifest) if files.manifest else None
    worker = art.load_worker(files.worker) if files.worker else None
    return RunData(directory, manifest, cases, params, reps, worker, notes)


# ---------------------------------------------------------------------------------------------- bootstrap
def _rng(t: Thresholds, *key: str) -> np.random.Generator:
    """One stream per row, so a row's interval does not depend on which other rows were compared."""
    return np.random.default_rng([t.seed, zlib.crc32("/".join(key).encode())])


def boot_percentile(sorted_values: np.ndarray, q: float, rng: np.random.Generator, b: int) -> np.ndarray:
    """b bootstrap replicates of the nearest-rank q-percentile, exactly and in O(b).

    A resample is F⁻¹(U₁…Uₙ) for uniform Uᵢ and the empirical quantile function F⁻¹(u) = x₍⌈nu⌉₎, which is monotone,
    so its k-th order statistic is F⁻¹(U₍ₖ₎) with U₍ₖ₎ ~ Beta(k, n − k + 1).
    """
    n = len(sorted_values)
    k = max(1, math.ceil(n * q))
    u = rng.beta(k, n - k + 1, size=b)
    idx = np.clip(np.ceil(u * n).astype(np.int64) - 1, 0, n - 1)
    return sorted_values[idx]


def boot_mean(values: np.ndarray, rng: np.random.Generator, b: int) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(b, len(values)))
    return values[idx].mean(axis=1)


def boot_share(k: int, n: int, rng: np.random.Generator, b: int) -> np.ndarray:
    """Resampling n Bernoulli outcomes with k successes: the success count is Binomial(n, k/n)."""
    return rng.binomial(n, k / n, size=b) / n


# ---------------------------------------------------------------------------------------------- rows
@dataclass
class Delta:
    scale: str
    case: str
    metric: str
    baseline: float | None
    candidate: float | None
    verdict: str
    method: str | None = None
    ci: tuple[float, float] | None = None
    noise_floor: float | None = None
    floor_source: str = ""
    samples: tuple[int, int] | None = None
    note: str = ""
    level: float | None = None

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline

    @property
    def delta_pct(self) -> float | None:
        if self.delta is None or not self.baseline:
            return None
        return 100.0 * self.delta / self.baseline

    @property
    def significant(self) -> bool | None:
        if self.ci is None:
            return None
        return self.ci[0] > 0 or self.ci[1] < 0

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "case": self.case, "metric": self.metric, "baseline": self.baseline,
                "candidate": self.candidate, "delta": self.delta, "delta_pct": self.delta_pct,
                "ci": list(self.ci) if self.ci else None, "ci_level": self.level, "significant": self.significant,
                "noise_floor": self.noise_floor, "noise_floor_source": self.floor_source or None,
                "method": self.method,
                "samples": {"baseline": self.samples[0], "candidate": self.samples[1]} if self.samples else None,
                "verdict": self.verdict, "note": self.note}


@dataclass
class Comparison:
    baseline: Path
    candidate: Path
    thresholds: Thresholds
    deltas: list[Delta] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: dict[str, Any] = field(default_factory=dict)
    family: int = 0

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == REGRESSION]

    @property
    def improvements(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == IMPROVEMENT]

    @property
    def verdict(self) -> str:
        if self.regressions:
            return REGRESSION
        return IMPROVEMENT if self.improvements else NOISE

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.regressions,
            "verdict": self.verdict,
            "baseline": str(self.baseline),
            "candidate": str(self.candidate),
            "thresholds": {**self.thresholds.to_json(), "family": self.family,
                           "ci_level": self.thresholds.level(self.family)},
            "regressions": len(self.regressions),
            "improvements": len(self.improvements),
            "warnings": self.warnings,
            "runs": self.runs,
            "rows": [d.to_json() for d in self.deltas],
            "unmatched": self.unmatched,
        }

    def to_markdown(self) -> str:
        conf = f"{100 * self.thresholds.level(self.family):.3g} % CI of Δ"
        rows = [[d.scale, d.case, d.metric, _fmt(d.metric, d.baseline), _fmt(d.metric, d.candidate),
                 _fmt_delta(d.metric, d.delta), "–" if d.delta_pct is None else f"{d.delta_pct:+.1f} %",
                 _fmt_ci(d), _fmt_floor(d), _fmt_samples(d),
                 f"**{d.verdict}**" if d.verdict == REGRESSION else d.verdict, d.note] for d in self.deltas]
        text = [
            "# Performance comparison",
            "",
            f"- Baseline: `{self.baseline}`",
            f"- Candidate: `{self.candidate}`",
            f"- Verdict: **{self.verdict}** ({len(self.regressions)} regressions, {len(self.improvements)} "
            "improvements)",
            f"- Rule: {self.thresholds.describe()}",
        ]
        if self.warnings:
            text += ["", "Warnings:", ""] + [f"- ⚠ {w}" for w in self.warnings]
        text += ["", table(["scale", "case", "metric", "baseline", "candidate", "Δ", "Δ %", conf, "noise floor",
                            "samples (method)", "verdict", "note"], rows)]
        if self.unmatched:
            text += ["", "Not compared (present on one side only):", ""] + [f"- {u}" for u in self.unmatched]
        return "\n".join(text) + "\n"


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "–"
    if metric == "error_rate":
        return f"{100 * v:.2f} %"
    return f"{v:.2f}"


def _fmt_delta(metric: str, v: float | None) -> str:
    if v is None:
        return "–"
    if metric == "error_rate":
        return f"{100 * v:+.2f} pp"
    return f"{v:+.2f}"


def _fmt_ci(d: Delta) -> str:
    if d.ci is None:
        return "–"
    return f"[{_fmt_delta(d.metric, d.ci[0])}, {_fmt_delta(d.metric, d.ci[1])}]"


def _fmt_floor(d: Delta) -> str:
    if d.noise_floor is None:
        return "–"
    value = f"±{100 * d.noise_floor:.2f} pp" if d.metric == "error_rate" else f"±{d.noise_floor:.2f}"
    return value if d.floor_source == FLOOR_MIN_EFFECT else f"{value} ({d.floor_source})"


def _fmt_samples(d: Delta) -> str:
    if d.samples is None:
        return "–"
    return f"{d.samples[0]} / {d.samples[1]} ({d.method})"


# ---------------------------------------------------------------------------------------------- judging
Kind = str  # "latency" | "rate" (higher is better) | "error"


def _floor(kind: Kind, base: float, t: Thresholds) -> float:
    if kind == "latency":
        return max(t.rel_pct / 100.0 * abs(base), t.latency_floor_ms)
    if kind == "error":
        return t.error_rate_pp / 100.0
    return t.rel_pct / 100.0 * abs(base)


def _spread(per_unit: list[list[float]], source: str) -> tuple[float, str] | None:
    """max − min of the per-unit values (repeats, or thirds of a run) on the side that spreads more."""
    spreads = [max(v) - min(v) for v in per_unit if len(v) >= 2]
    return (max(spreads), source) if spreads else None


@dataclass
class Pending:
    """A row whose bootstrap replicates are drawn; its interval waits for the family size."""

    delta: Delta
    kind: Kind
    diff: np.ndarray
    spread: tuple[float, str] | None


def _judge(d: Delta, kind: Kind, base_boot: np.ndarray, cand_boot: np.ndarray, spread: tuple[float, str] | None,
           pending: list[Pending]) -> None:
    pending.append(Pending(d, kind, cand_boot - base_boot, spread))


def _decide(p: Pending, level: float, t: Thresholds) -> None:
    """Interval at `level`, noise floor and verdict of a row whose point values are set."""
    d = p.delta
    assert d.baseline is not None and d.candidate is not None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(p.diff, [alpha, 1.0 - alpha])
    d.ci, d.level = (float(lo), float(hi)), level
    floor = _floor(p.kind, d.baseline, t)
    d.floor_source = FLOOR_MIN_EFFECT
    if p.spread is not None and p.spread[0] > floor:
        floor, d.floor_source = p.spread
    d.noise_floor = floor
    delta = d.candidate - d.baseline
    if d.significant and abs(delta) > floor:
        worse = delta < 0 if p.kind == "rate" else delta > 0
        d.verdict = REGRESSION if worse else IMPROVEMENT
    else:
        d.verdict = NOISE


def _latencies(frame: pd.DataFrame) -> np.ndarray:
    return np.sort(frame.loc[frame["category"] == "ok", "latency_ms"].to_numpy(dtype=float))


def _windows(frame: pd.DataFrame) -> np.ndarray:
    return throughput_windows(frame["t_s"].to_numpy(dtype=float))


def _errors(frame: pd.DataFrame) -> tuple[int, int]:
    return int((frame["category"] != "ok").sum()), len(frame)


def _units(side: CaseSamples, thirds: bool) -> list[pd.DataFrame]:
    """The record sets whose spread is the noise floor: each repeat, or the consecutive thirds of a single run."""
    frames = [r.records for r in side.reps if r.records is not None]
    if not thirds:
        return frames
    ordered = frames[0].sort_values("t_s", kind="stable")
    return [ordered.iloc[idx] for idx in np.array_split(np.arange(len(ordered)), 3)]


def _records_rows(scale: str, case: str, b: CaseSamples, c: CaseSamples, limited: bool, t: Thresholds,
                  warn: Callable[[str], None], pending: list[Pending]) -> list[Delta]:
    out: list[Delta] = []
    thirds = max(len(b.reps), len(c.reps)) < 2
    source = FLOOR_THIRDS if thirds else FLOOR_REPEATS
    units = _units(b, thirds), _units(c, thirds)
    unit_lat = [[_latencies(f) for f in side] for side in units]
    lat_b, lat_c = (np.sort(np.concatenate(side)) for side in unit_lat)
    for metric, q in LATENCY_METRICS:
        d = Delta(scale, case, metric, None, None, NA, METHOD_RECORDS, samples=(len(lat_b), len(lat_c)))
        out.append(d)
        if len(lat_b) == 0 or len(lat_c) == 0:
            d.note = "no successful request on one side"
            continue
        d.baseline, d.candidate = nearest_rank(lat_b, q), nearest_rank(lat_c, q)
        need = min_samples(q)
        if min(len(lat_b), len(lat_c)) < need:
            d.note = f"fewer than {need} latencies on a side: low confidence"
            warn(f"{scale}/{case} {metric}: {len(lat_b)} baseline / {len(lat_c)} candidate latencies, "
                 f"fewer than {need}")
        if limited:
            d.verdict = NOT_EVIDENCE
            continue
        rng = _rng(t, scale, case, metric)
        # a unit's percentile enters the spread only when it rests on enough latencies itself: otherwise the
        # spread would be mostly sampling noise, which the interval already accounts for
        per_unit = [[nearest_rank(x, q) for x in side if len(x) >= need] for side in unit_lat]
        _judge(d, "latency", boot_percentile(lat_b, q, rng, t.resamples),
               boot_percentile(lat_c, q, rng, t.resamples), _spread(per_unit, source), pending)

    win_b, win_c = (np.concatenate([_windows(r.records) for r in side.reps if r.records is not None])
                    for side in (b, c))
    d = Delta(scale, case, "rps", None, None, TOO_FEW, METHOD_RECORDS, samples=(len(win_b), len(win_c)))
    out.append(d)
    if len(win_b) and len(win_c):
        d.baseline, d.candidate = float(win_b.mean()), float(win_c.mean())
    if min(len(win_b), len(win_c)) < MIN_WINDOWS:
        d.note = f"fewer than {MIN_WINDOWS} one-second windows on a side"
        warn(f"{scale}/{case} rps: {len(win_b)} baseline / {len(win_c)} candidate one-second windows, fewer than "
             f"{MIN_WINDOWS}")
    if min(len(win_b), len(win_c)) >= 2:
        rng = _rng(t, scale, case, "rps")
        per_unit = [[float(w.mean()) for w in map(_windows, side) if len(w)] for side in units]
        _judge(d, "rate", boot_mean(win_b, rng, t.resamples), boot_mean(win_c, rng, t.resamples),
               _spread(per_unit, source), pending)

    errs_b, errs_c = ([_errors(f) for f in side] for side in units)
    kb, nb = sum(k for k, _ in errs_b), sum(n for _, n in errs_b)
    kc, nc = sum(k for k, _ in errs_c), sum(n for _, n in errs_c)
    d = Delta(scale, case, "error_rate", None, None, NA, METHOD_RECORDS, samples=(nb, nc))
    out.append(d)
    if nb and nc:
        d.baseline, d.candidate = kb / nb, kc / nc
        if min(nb, nc) < MIN_REQUESTS:
            d.note = f"fewer than {MIN_REQUESTS} requests on a side"
            warn(f"{scale}/{case} error_rate: {nb} baseline / {nc} candidate requests, fewer than {MIN_REQUESTS}")
        rng = _rng(t, scale, case, "error_rate")
        per_unit = [[k / n for k, n in errs if n] for errs in (errs_b, errs_c)]
        _judge(d, "error", boot_share(kb, nb, rng, t.resamples), boot_share(kc, nc, rng, t.resamples),
               _spread(per_unit, source), pending)
    return out


def _repeat_values(side: CaseSamples, metric: str) -> list[float]:
    out: list[float] = []
    for r in side.reps:
        if metric == "rps":
            v = r.rps
        elif metric == "error_rate":
            v = r.failed / r.total if r.total else None
        else:
            v = r.latency.get(metric.removesuffix("_ms"))
        if v is not None:
            out.append(float(v))
    return out


def _repeats_rows(scale: str, case: str, b: CaseSamples, c: CaseSamples, limited: bool, t: Thresholds,
                  warn: Callable[[str], None], pending: list[Pending], why: str) -> list[Delta]:
    out: list[Delta] = []
    few = min(len(b.reps), len(c.reps)) < MIN_REPEATS
    for metric, kind in (("p50_ms", "latency"), ("p95_ms", "latency"), ("p99_ms", "latency"), ("rps", "rate"),
                         ("error_rate", "error")):
        vb, vc = _repeat_values(b, metric), _repeat_values(c, metric)
        d = Delta(scale, case, metric, None, None, NA, METHOD_REPEATS, samples=(len(vb), len(vc)), note=why)
        out.append(d)
        if not vb or not vc:
            continue
        d.baseline, d.candidate = float(np.mean(vb)), float(np.mean(vc))
        if kind == "latency" and limited:
            d.verdict = NOT_EVIDENCE
            continue
        if min(len(vb), len(vc)) < MIN_REPEATS:
            d.verdict = TOO_FEW
            continue
        rng = _rng(t, scale, case, metric)
        _judge(d, kind, boot_mean(np.array(vb), rng, t.resamples), boot_mean(np.array(vc), rng, t.resamples),
               _spread([vb, vc], FLOOR_REPEATS), pending)
    if few:
        warn(f"{scale}/{case}: {len(b.reps)} baseline / {len(c.reps)} candidate repeats and no per-request records "
             f"on both sides ({why}): no verdict with fewer than {MIN_REPEATS} repeats per side, too few to tell a "
             f"change from noise (rerun with REPEAT={MIN_REPEATS} or more, or with a bench that writes "
             "<prefix>_requests.csv)")
    return out


def _worker_row(bw: art.WorkerBaseline, cw: art.WorkerBaseline, t: Thresholds,
                warn: Callable[[str], None], pending: list[Pending]) -> Delta:
    """Worker jobs/s: the ratio processed/elapsed, bootstrapped over the benchmark's iterations."""
    d = Delta("run", "worker", "processed_per_sec", bw.throughput, cw.throughput, TOO_FEW, "iterations")

    def iterations(w: art.WorkerBaseline) -> tuple[np.ndarray, np.ndarray]:
        frame = w.per_iteration
        if frame.empty or "elapsed_ms" not in frame:
            return np.zeros(0), np.zeros(0)
        frame = frame.dropna(subset=["elapsed_ms"])
        return frame["processed"].to_numpy(dtype=float), frame["elapsed_ms"].to_numpy(dtype=float)

    (pb, eb), (pc, ec) = iterations(bw), iterations(cw)
    d.samples = (len(pb), len(pc))
    if min(len(pb), len(pc)) < 2 or eb.sum() <= 0 or ec.sum() <= 0:
        d.note = "fewer than 2 timed iterations on a side"
        warn("run/worker processed_per_sec: fewer than 2 timed iterations on a side, no verdict")
        return d
    if min(len(pb), len(pc)) < MIN_REPEATS:
        warn(f"run/worker processed_per_sec: {len(pb)} baseline / {len(pc)} candidate iterations, "
             f"fewer than {MIN_REPEATS}")
    rng = _rng(t, "run", "worker")

    def boot(p: np.ndarray, e: np.ndarray) -> np.ndarray:
        idx = rng.integers(0, len(p), size=(t.resamples, len(p)))
        return 1000.0 * p[idx].sum(axis=1) / np.maximum(e[idx].sum(axis=1), 1e-9)

    _judge(d, "rate", boot(pb, eb), boot(pc, ec), None, pending)
    return d


# ---------------------------------------------------------------------------------------------- provenance
def _identity(run: RunData) -> dict[str, Any]:
    m = run.manifest or {}
    host = m.get("host") if isinstance(m.get("host"), dict) else {}
    return {"manifest": run.manifest is not None, "git_commit": host.get("git_commit"),
            "host": {k: host.get(k) for k in HOST_KEYS}, "repeats": run.reps,
            "records": sorted({f"{s}/{c}" for (s, c), cs in run.cases.items() if cs.has_records})}


def _provenance_warnings(base: RunData, cand: RunData) -> list[str]:
    out: list[str] = []
    for label, run in (("baseline", base), ("candidate", cand)):
        if run.manifest is None:
            out.append(f"{label} has no manifest.json: its commit, configuration and host are unknown")
    if base.manifest is not None and cand.manifest is not None:
        bi, ci = _identity(base), _identity(cand)
        if bi["git_commit"] != ci["git_commit"]:
            out.append(f"commits differ: {bi['git_commit']} vs {ci['git_commit']}")
        hosts = [k for k in HOST_KEYS if bi["host"][k] != ci["host"][k]]
        if hosts:
            out.append("hosts differ: " + ", ".join(f"{k} {bi['host'][k]!r} vs {ci['host'][k]!r}" for k in hosts))
        bc, cc = base.manifest.get("config") or {}, cand.manifest.get("config") or {}
        keys = sorted(k for k in {*bc, *cc} - CONFIG_IGNORED if bc.get(k) != cc.get(k))
        if keys:
            out.append("configs differ: " + ", ".join(f"{k} {bc.get(k)!r} vs {cc.get(k)!r}" for k in keys))
    for scale in sorted(set(base.params) & set(cand.params), key=art.scale_sort_key):
        bp, cp = base.params[scale][-1], cand.params[scale][-1]
        keys = sorted(k for k in {*bp, *cp} - PARAMS_IGNORED if bp.get(k) != cp.get(k))
        if keys:
            out.append(f"benchmark parameters of scale {scale} differ: "
                       + ", ".join(f"{k} {bp.get(k)!r} vs {cp.get(k)!r}" for k in keys))
    return out


# ---------------------------------------------------------------------------------------------- entry points
def compare_runs(base: RunData, cand: RunData, thresholds: Thresholds) -> Comparison:
    out = Comparison(base.directory, cand.directory, thresholds)
    out.warnings += base.notes + cand.notes + _provenance_warnings(base, cand)
    out.runs = {"baseline": _identity(base), "candidate": _identity(cand)}
    pending: list[Pending] = []
    for key in sorted(base.cases.keys() & cand.cases.keys(), key=lambda k: (art.scale_sort_key(k[0]), k[1])):
        b, c = base.cases[key], cand.cases[key]
        limited = max(b.share_429, c.share_429) >= RATE_LIMIT_SHARE
        if b.has_records and c.has_records:
            out.deltas += _records_rows(*key, b, c, limited, thresholds, out.warnings.append, pending)
        else:
            why = ("no per-request records" if not (b.has_records or c.has_records) else
                   f"per-request records on the {'baseline' if b.has_records else 'candidate'} side only")
            out.deltas += _repeats_rows(*key, b, c, limited, thresholds, out.warnings.append, pending, why)
    out.unmatched += [f"{s}/{n}: only in baseline" for (s, n) in sorted(base.cases.keys() - cand.cases.keys())]
    out.unmatched += [f"{s}/{n}: only in candidate" for (s, n) in sorted(cand.cases.keys() - base.cases.keys())]
    bw, cw = base.worker, cand.worker
    if bw is not None and cw is not None:
        out.deltas.append(_worker_row(bw, cw, thresholds, out.warnings.append, pending))
    elif bw is not None or cw is not None:
        out.unmatched.append(f"run/worker: only in {'baseline' if bw is not None else 'candidate'}")
    out.family = len(pending)
    for p in pending:
        _decide(p, thresholds.level(out.family), thresholds)
    return out


def compare_dirs(baseline: Path, candidate: Path, thresholds: Thresholds | None = None) -> Comparison:
    return compare_runs(load_run(baseline), load_run(candidate), thresholds or Thresholds())
