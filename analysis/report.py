"""`memload report`: run directory → numbers → SLO verdict and bottleneck → plots → PERFORMANCE_REPORT_V1.md.

Reads files only. Absent inputs are listed in the report; malformed ones raise MalformedArtifact (one line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import rules as R
from analysis.figures import Plot, Skipped
from analysis.metrics import AnnMetrics, RunMetrics, collect_run
from analysis.render import HostMeta, ReportContext, render

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "docs" / "PERFORMANCE_REPORT_V1_TEMPLATE.md"
REPORT_NAME = "PERFORMANCE_REPORT_V1.md"


@dataclass
class ReportResult:
    output: Path
    run: RunMetrics
    verdict: R.SloVerdict
    diagnosis: R.Diagnosis
    plots: list[Any]
    timings_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The machine-readable result printed by the CLI (every figure the report states, by scale/endpoint)."""
        scales = []
        for sm in self.run.scales:
            scales.append({
                "scale": sm.scale, "scope": sm.scope, "tenant_id": sm.tenant_id,
                "nodes": sm.seed.nodes if sm.seed else None, "edges": sm.seed.edges if sm.seed else None,
                "slo": self.verdict.for_scale(sm.scale),
                "endpoints": {ep.name: {
                    "requests": ep.requests, "ok": ep.ok, "failed": ep.failed, "error_rate": ep.error_rate,
                    "errors": ep.errors, "errors_source": ep.errors_source, "rps": ep.rps,
                    "rps_source": ep.rps_source, "latency_ms": ep.latency, "latency_source": ep.latency_source,
                    "samples": ep.samples, "samples_source": ep.samples_source,
                    "p99_low_confidence": ep.p99_low_confidence,
                    "server_timing": None if ep.server is None else {
                        "reported": ep.server.reported, "source": ep.server.source, "client_ms": ep.server.client,
                        "server_ms": ep.server.server, "db_ms": ep.server.db, "samples": ep.server.samples},
                    "locust_bucketed_ms": ep.locust} for ep in sm.endpoints.values()},
                "explain": None if sm.explain is None else {
                    "hnsw_used": sm.explain.hnsw_used,
                    "stage1_ms": sm.explain.stage1.execution_ms if sm.explain.stage1 else None,
                    "stage2_ms": sm.explain.stage2.execution_ms if sm.explain.stage2 else None,
                    "execution_times_ms": sm.explain.execution_times_ms},
                "ann": _ann_summary(sm.ann),
                "cost": sm.cost.as_dict() if sm.cost is not None else None,
                "cost_not_measured": sm.cost_failed if sm.cost is None and sm.cost_failed else None,
                "missing": sm.missing,
            })
        w = self.run.worker
        return {
            "ok": True,
            "output": str(self.output),
            "slo": {"status": self.verdict.status, "checks": [vars(c) for c in self.verdict.checks]},
            "primary_bottleneck": {"rule": self.diagnosis.primary.id, "bottleneck": self.diagnosis.primary.bottleneck,
                                   "next_action": self.diagnosis.next_action},
            "rules_fired": {r.id: [vars(f) for f in self.diagnosis.findings[r.id]] for r in self.diagnosis.fired},
            "scales": scales,
            "target": {"kind": self.run.target_kind, "base_url": self.run.target.get("base_url")},
            "not_measured": [{"stage": n.stage, "reason": n.reason} for n in self.run.not_measured],
            "worker": None if w is None else {"throughput_processed_per_sec": w.throughput, "unit": "jobs/s",
                                              "processed": w.processed, "claimed": w.claimed,
                                              "failed": w.failed_jobs, "failed_marked": w.failed_marked,
                                              "mode": w.mode, "scope": w.scope, "scope_nodes": w.scope_nodes,
                                              "enqueued_during_run": w.enqueued_during_run},
            "plots": [str(p.path) for p in self.plots if isinstance(p, Plot)],
            "plots_skipped": {p.key: p.reason for p in self.plots if isinstance(p, Skipped)},
            "missing": self.run.missing,
            "timings_s": self.timings_s,
        }


def _ann_summary(a: AnnMetrics | None) -> dict[str, Any] | None:
    """A scale's ANN recall: the figures at the benchmark's hnsw.ef_search, and what the check measured."""
    if a is None:
        return None
    c = a.check
    return {"file": c.path.name, "k": a.k, "queries": c.queries, "vectors_in_scope": c.vectors_in_scope,
            "precision": c.precision, "exact": c.exact, "limit": c.limit, "candidates": c.candidates,
            "recall_at_k": a.recall, "recall_figure": a.recall_key, "recall_at_k_ids": a.recall_ids,
            "index_recall_at_k": a.index_recall, "source": a.source, "not_measured": a.not_measured,
            "ef_search_measured": a.ef_search, "recall_at_k_measured": c.slo_recall,
            "index_recall_at_k_measured": c.index_recall_at_k,
            "ef_search_used": a.ef_search_used, "ef_search_raised": a.raised, "ef_search_tuned": a.tuned,
            "target_recall": c.target_recall, "ef_search_for_target": c.ef_search_for_target,
            "ef_sweep": [vars(r) for r in a.sweep]}


def build_report(directory: Path, *, output: Path | None = None, slo: R.SloTargets | None = None,
                 host: HostMeta | None = None, template: Path | None = None, plots: bool = True) -> ReportResult:
    """Analyse `directory` and write the report (default `<directory>/PERFORMANCE_REPORT_V1.md`, plots beside it)."""
    slo = slo or R.SloTargets()
    output = output or directory / REPORT_NAME
    template = template or DEFAULT_TEMPLATE
    t0 = time.perf_counter()
    run = collect_run(directory)
    t1 = time.perf_counter()
    verdict = R.evaluate_slo(run, slo)
    diagnosis = R.diagnose(run, slo)
    recs = R.recommendations(run, verdict, diagnosis)
    drawn: list[Any] = []
    if plots:
        from analysis.plots import draw_all

        drawn = draw_all(run.scales, run.worker, slo, output.parent / "plots")
    t2 = time.perf_counter()
    ctx = ReportContext(run, slo, verdict, diagnosis, recs, drawn, output, host or HostMeta())
    text = render(template.read_text(encoding="utf-8"), ctx, template.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    t3 = time.perf_counter()
    timings = {"load_s": round(t1 - t0, 3), "plots_s": round(t2 - t1, 3), "render_s": round(t3 - t2, 3),
               "total_s": round(t3 - t0, 3)}
    return ReportResult(output, run, verdict, diagnosis, drawn, timings)
