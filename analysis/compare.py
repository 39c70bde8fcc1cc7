"""`memload compare`: two run directories, case by case, with deltas and a verdict against a stated noise threshold.

A metric regresses when it moves the wrong way by more than the threshold: latency by more than
max(rel % of the baseline, an absolute floor in ms) — the floor covers sub-millisecond jitter and Locust's 1 ms
buckets — throughput by more than rel %, and the error rate by more than an absolute number of percentage points.
Latency of an endpoint that is 429-dominated on either side is not evidence and gets no verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.metrics import RunMetrics, collect_run
from analysis.render import table
from analysis.rules import RATE_LIMIT_SHARE

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NOISE = "within noise"
NA = "not comparable"
NOT_EVIDENCE = "not evidence (429)"


@dataclass(frozen=True)
class Thresholds:
    rel_pct: float = 10.0
    latency_floor_ms: float = 1.0
    error_rate_pp: float = 0.5

    def describe(self) -> str:
        return (f"latency (p50/p95/p99): a change beyond ±max({self.rel_pct:g} % of baseline, "
                f"{self.latency_floor_ms:g} ms); throughput (req/s, worker jobs/s): beyond ±{self.rel_pct:g} %; "
                f"error rate: beyond ±{self.error_rate_pp:g} percentage points. Smaller changes are within noise.")


@dataclass
class Delta:
    scale: str
    case: str
    metric: str
    baseline: float | None
    candidate: float | None
    verdict: str
    note: str = ""

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


@dataclass
class Comparison:
    baseline: Path
    candidate: Path
    thresholds: Thresholds
    deltas: list[Delta] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

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
            "thresholds": {**asdict(self.thresholds), "rule": self.thresholds.describe()},
            "regressions": len(self.regressions),
            "improvements": len(self.improvements),
            "rows": [{**asdict(d), "delta": d.delta, "delta_pct": d.delta_pct} for d in self.deltas],
            "unmatched": self.unmatched,
        }

    def to_markdown(self) -> str:
        rows = [[d.scale, d.case, d.metric, _fmt(d.metric, d.baseline), _fmt(d.metric, d.candidate),
                 _fmt_delta(d), "–" if d.delta_pct is None else f"{d.delta_pct:+.1f} %",
                 f"**{d.verdict}**" if d.verdict == REGRESSION else d.verdict, d.note] for d in self.deltas]
        text = [
            "# Performance comparison",
            "",
            f"- Baseline: `{self.baseline}`",
            f"- Candidate: `{self.candidate}`",
            f"- Verdict: **{self.verdict}** ({len(self.regressions)} regressions, {len(self.improvements)} "
            "improvements)",
            f"- Threshold: {self.thresholds.describe()}",
            "",
            table(["scale", "case", "metric", "baseline", "candidate", "Δ", "Δ %", "verdict", "note"], rows),
        ]
        if self.unmatched:
            text += ["", "Not compared (present on one side only):", ""] + [f"- {u}" for u in self.unmatched]
        return "\n".join(text) + "\n"


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "–"
    if metric == "error_rate":
        return f"{100 * v:.2f} %"
    return f"{v:.2f}"


def _fmt_delta(d: Delta) -> str:
    if d.delta is None:
        return "–"
    if d.metric == "error_rate":
        return f"{100 * d.delta:+.2f} pp"
    return f"{d.delta:+.2f}"


def _judge(metric: str, base: float | None, cand: float | None, t: Thresholds) -> str:
    if base is None or cand is None:
        return NA
    diff = cand - base
    if metric.endswith("_ms"):
        band = max(t.rel_pct / 100.0 * abs(base), t.latency_floor_ms)
        worse, better = diff > band, -diff > band
    elif metric == "error_rate":
        band = t.error_rate_pp / 100.0
        worse, better = diff > band, -diff > band
    else:  # higher is better
        band = t.rel_pct / 100.0 * abs(base)
        worse, better = -diff > band, diff > band
    return REGRESSION if worse else IMPROVEMENT if better else NOISE


def _cases(run: RunMetrics) -> dict[tuple[str, str], Any]:
    return {(sm.scale, ep.name): ep for sm in run.scales for ep in sm.endpoints.values()}


def compare_runs(base: RunMetrics, cand: RunMetrics, thresholds: Thresholds) -> Comparison:
    out = Comparison(base.directory, cand.directory, thresholds)
    bc, cc = _cases(base), _cases(cand)
    for key in [k for k in bc if k in cc]:
        b, c = bc[key], cc[key]
        limited = max(b.share("rate_limited_429") or 0, c.share("rate_limited_429") or 0) >= RATE_LIMIT_SHARE
        note = "" if b.latency_source == c.latency_source else \
            f"latency sources differ: {b.latency_source} vs {c.latency_source}"
        for metric, attr in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
            verdict = NOT_EVIDENCE if limited else _judge(metric, b.p(attr), c.p(attr), thresholds)
            out.deltas.append(Delta(key[0], key[1], metric, b.p(attr), c.p(attr), verdict, note))
        out.deltas.append(Delta(key[0], key[1], "rps", b.rps, c.rps, _judge("rps", b.rps, c.rps, thresholds)))
        out.deltas.append(Delta(key[0], key[1], "error_rate", b.error_rate, c.error_rate,
                                _judge("error_rate", b.error_rate, c.error_rate, thresholds)))
    out.unmatched += [f"{s}/{n}: only in baseline" for (s, n) in bc if (s, n) not in cc]
    out.unmatched += [f"{s}/{n}: only in candidate" for (s, n) in cc if (s, n) not in bc]
    bw, cw = base.worker, cand.worker
    if bw is not None and cw is not None:
        out.deltas.append(Delta("run", "worker", "processed_per_sec", bw.throughput, cw.throughput,
                                _judge("processed_per_sec", bw.throughput, cw.throughput, thresholds)))
    elif bw is not None or cw is not None:
        out.unmatched.append(f"run/worker: only in {'baseline' if bw is not None else 'candidate'}")
    return out


def compare_dirs(baseline: Path, candidate: Path, thresholds: Thresholds | None = None) -> Comparison:
    return compare_runs(collect_run(baseline), collect_run(candidate), thresholds or Thresholds())
