"""Fill docs/PERFORMANCE_REPORT_V1_TEMPLATE.md: each `{{ field }}` is a function of the run's data.

Formatting states its source: exact latencies are printed with two decimals, Locust's bucketed values as whole
milliseconds with "(Locust buckets)", and absent values as "not recorded" — never a blank or a guess.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import rules as R
from analysis.cost import CPU_LABELS, GROUP_LABELS, GROUPS, SIZE_LABELS, CaseCost, ScaleCost
from analysis.errors import TemplateError
from analysis.figures import Plot, Skipped
from analysis.jsonio import dig
from analysis.metrics import (
    ERROR_CATEGORIES,
    ERROR_LABELS,
    LOW_CONFIDENCE_SAMPLES,
    SRC_LOCUST,
    AnnMetrics,
    EndpointMetrics,
    NotMeasured,
    RunMetrics,
    ScaleMetrics,
)
from memload.contract import HEALTH

NR = "not recorded"
_FIELD_RE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


@dataclass
class HostMeta:
    """Run metadata gathered by the CLI layer when manifest.json does not have it (labelled as such)."""

    git_commit: str | None = None
    git_branch: str | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = None
    mem_gib: float | None = None


@dataclass
class ReportContext:
    run: RunMetrics
    slo: R.SloTargets
    verdict: R.SloVerdict
    diagnosis: R.Diagnosis
    recommendations: list[R.Recommendation]
    plots: list[Plot | Skipped]
    output: Path
    host: HostMeta = field(default_factory=HostMeta)
    generated_at: float = field(default_factory=time.time)


# ------------------------------------------------------------------------------------------------ formatting
def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(headers)
    body = [[_cell(c) for c in r] for r in rows]
    if not body:
        return "_none_"
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def ms(value: float | None, source: str = "") -> str:
    if value is None:
        return NR
    if source == SRC_LOCUST:
        return f"{value:.0f} ms"
    return f"{value:.2f} ms"


def pct(value: float | None) -> str:
    return NR if value is None else f"{100 * value:.2f} %"


def num(value: float | None, digits: int = 1, missing: str = NR) -> str:
    return missing if value is None else f"{value:,.{digits}f}"


def _short_source(source: str) -> str:
    return {"exact (suite listener)": "exact", "exact (benchmark JSON)": "exact",
            SRC_LOCUST: "Locust buckets"}.get(source, source)


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _per_scale(run: RunMetrics, fn: Callable[[ScaleMetrics], str | None]) -> str:
    parts = [(sm.scale, fn(sm)) for sm in run.scales]
    parts = [(s, v) for s, v in parts if v]
    if not parts:
        return NR
    if len(run.scales) == 1:
        return parts[0][1]  # type: ignore[return-value]
    return "; ".join(f"`{s}`: {v}" for s, v in parts)


# ------------------------------------------------------------------------------------------------ metadata
def _manifest(ctx: ReportContext, *paths: str) -> Any:
    return dig(ctx.run.manifest or {}, *paths)


def f_run_date(ctx: ReportContext) -> str:
    value = _manifest(ctx, "host.date", "date", "started_at")
    if isinstance(value, int | float):
        return f"{_utc(float(value))} (manifest.json)"
    if value:
        return f"{value} (manifest.json)"
    starts = [float(sm.locust.history["Timestamp"].min()) for sm in ctx.run.scales
              if sm.locust is not None and sm.locust.history is not None and not sm.locust.history.empty]
    if starts:
        return f"{_utc(min(starts))} (first Locust history sample)"
    files = [p for sm in ctx.run.scales for p in (sm.files.benchmark, sm.files.seed) if p is not None]
    if files:
        return f"{_utc(min(p.stat().st_mtime for p in files))} (file modification time)"
    return NR


def f_git_commit(ctx: ReportContext) -> str:
    commit = _manifest(ctx, "host.git_commit", "git_commit", "git.commit")
    branch = _manifest(ctx, "host.git_branch", "git_branch", "git.branch")
    if commit:
        return f"{branch + ' @ ' if branch else ''}{commit} (manifest.json)"
    if ctx.host.git_commit:
        b = f"{ctx.host.git_branch} @ " if ctx.host.git_branch else ""
        return f"{b}{ctx.host.git_commit} (checkout at report time; the run did not record it)"
    return NR


def f_host_spec(ctx: ReportContext) -> str:
    cpu = _manifest(ctx, "host.cpu_model", "host.cpu", "cpu_model")
    cores = _manifest(ctx, "host.cpu_cores", "host.cores", "cpu_cores")
    mem = _manifest(ctx, "host.mem_gib", "host.ram_gib", "mem_gib")
    src = "manifest.json"
    if not (cpu or cores or mem):
        cpu, cores, mem, src = ctx.host.cpu_model, ctx.host.cpu_cores, ctx.host.mem_gib, \
            "report host; the run did not record its host"
    if not (cpu or cores or mem):
        return NR
    osname = _manifest(ctx, "host.os")
    return (f"{cpu or 'CPU ' + NR}, {cores or '?'} logical cores, {mem if mem is not None else '?'} GiB RAM"
            + (f", {osname}" if osname else "") + f" ({src})")


def _explain_header(ctx: ReportContext) -> tuple[str, Any] | None:
    for sm in ctx.run.scales:
        if sm.explain is not None and sm.explain.header:
            return sm.explain.path.name, sm.explain
    return None


def _version(ctx: ReportContext, index: int, paths: tuple[str, ...]) -> str:
    v = _manifest(ctx, *paths)
    if v:
        return f"{v} (manifest.json)"
    found = _explain_header(ctx)
    if found and found[1].server_versions[index]:
        return f"{found[1].server_versions[index]} ({found[0]} header)"
    where = f"manifest.json has no {paths[0]}" if ctx.run.manifest is not None else "no manifest.json"
    return f"{NR} ({where}; no `memload explain` header)"


def f_postgres_version(ctx: ReportContext) -> str:
    return _version(ctx, 0, ("database.postgres", "versions.postgresql", "versions.postgres", "postgres_version"))


def f_pgvector_version(ctx: ReportContext) -> str:
    return _version(ctx, 1, ("database.pgvector", "versions.pgvector", "pgvector_version"))


def f_pg_settings(ctx: ReportContext) -> str:
    s = _manifest(ctx, "database.settings", "pg_settings")
    if isinstance(s, dict) and s:
        return ", ".join(f"`{k}={v}`" for k, v in s.items()) + " (manifest.json)"
    return NR


def f_api_settings(ctx: ReportContext) -> str:
    kind = ctx.run.target_kind
    if kind != "reference":
        why = ("the target is an external server: memload's own settings say nothing about it"
               if kind == "external" else "the run did not identify its target (no `target` in manifest.json)")
        return f"not shown — {why}"
    s = _manifest(ctx, "api_settings")
    out = ", ".join(f"`{k}={v}`" for k, v in s.items()) + " (manifest.json)" if isinstance(s, dict) and s else ""
    found = _explain_header(ctx)
    if found and found[1].header.get("settings"):
        out += ("; " if out else "") + f"EXPLAIN session: `{found[1].header['settings']}` ({found[0]})"
    return out or NR


def f_target(ctx: ReportContext) -> str:
    """What the run measured, as the target itself answered (manifest `target`), else the benchmark's base URL."""
    t = ctx.run.target
    bench_urls = sorted({sm.benchmark.base_url for sm in ctx.run.scales if sm.benchmark and sm.benchmark.base_url})
    lines = []
    url = t.get("base_url") or (", ".join(bench_urls) if bench_urls else None)
    src = "manifest.json" if t.get("base_url") else "benchmark JSON"
    lines.append(f"- Base URL: {url + f' ({src})' if url else NR}")
    kind = ctx.run.target_kind
    lines.append("- Kind: " + {
        "reference": f"memload's reference API (it identified itself: `server: memload-reference` in {HEALTH}, "
                     "`x-memload-api` header)",
        "external": "external server (not memload's reference API): only what the target itself answered is shown "
                    "about it; memload's own settings and components are not credited to it",
    }.get(kind or "", f"{NR} (manifest.json has no `target`: the run did not identify its target)"))
    if t:
        status = t.get("health_status")
        health = t.get("health")
        body = json_inline(health) if health is not None else "no body"
        lines.append(f"- `{HEALTH}`: " + (f"HTTP {status}, {body}" if status is not None else NR))
        headers = t.get("headers") if isinstance(t.get("headers"), dict) else {}
        lines.append("- Identifying headers: " + (", ".join(f"`{k}: {v}`" for k, v in headers.items())
                                                   if headers else "none sent"))
        if t.get("probe_error"):
            lines.append(f"- Probe error: {t['probe_error']}")
    pre = [(sm.scale, sm.benchmark.preflight) for sm in ctx.run.scales if sm.benchmark and sm.benchmark.preflight]
    for scale, p in pre:
        h = p.get("health") if isinstance(p.get("health"), dict) else {}
        lines.append(f"- Benchmark preflight (scale {scale}): {HEALTH} HTTP {h.get('status', NR)}, scope "
                     + {True: "has recallable memories", False: "EMPTY (no recallable memories)",
                        None: "not checked"}.get(p.get("scope_nonempty"), "not checked")
                     + f", {p.get('seeds_seen', 0)} seeds seen")
    return "\n".join(lines)


def json_inline(value: Any) -> str:
    import json

    text = json.dumps(value, separators=(", ", ": "), sort_keys=True)
    return f"`{text[:300]}`" + (" (truncated)" if len(text) > 300 else "")


def f_not_measured(ctx: ReportContext) -> str:
    items = ctx.run.not_measured
    if not items:
        return "Every stage ran."
    return ("These stages did not run, failed, or measured something other than the target; the verdict is "
            "therefore PARTIAL at best:\n\n" + "\n".join(f"- **{n.stage}**: NOT MEASURED — {n.reason}" for n in items))


def f_scope_tenant(ctx: ReportContext) -> str:
    return _per_scale(ctx.run, lambda sm: f"{sm.scope or NR} / {sm.tenant_id or NR}"
                      + (f" (scope_key `{sm.seed.scope_key}`)" if sm.seed and sm.seed.scope_key else ""))


def f_dataset_size(ctx: ReportContext) -> str:
    def one(sm: ScaleMetrics) -> str | None:
        if sm.seed_failed:
            return f"NOT MEASURED (seed failed: {sm.seed_failed})"
        if sm.seed is None:
            return f"{NR} (no seed_{sm.scale}.json)"
        parts = [f"{sm.seed.nodes:,} nodes, {sm.seed.edges:,} edges"]
        if sm.seed.events is not None or sm.seed.topics is not None:
            parts.append(f"inserted {sm.seed.events or 0:,} events + {sm.seed.topics or 0:,} topics")
        if sm.seed.vectors:
            parts.append(f"vectors: {sm.seed.vectors}")
        if sm.seed.layout:
            parts.append(f"layout: {sm.seed.layout}")
        if sm.seed.seeded_by and sm.seed.seeded_by != "memload":
            parts.append(f"seeded by `{sm.seed.seeded_by}`")
        if sm.seed.unknown_indexes:
            parts.append("indexes the seeder does not know: " + ", ".join(f"`{i}`" for i in sm.seed.unknown_indexes))
        return ", ".join(parts)

    return _per_scale(ctx.run, one)


def f_load_shape(ctx: ReportContext) -> str:
    def one(sm: ScaleMetrics) -> str | None:
        bits = []
        p = sm.benchmark.params if sm.benchmark else {}
        profile = p.get("profile") or ctx.run.config("PERF_PROFILE")
        if profile:
            bits.append(f"profile {profile}")
        if p.get("mode"):
            bits.append(f"mode {p['mode']}")
        for key, label in (("recall_requests", "recall requests"), ("recall_concurrency", "recall users"),
                           ("write_requests", "write requests"), ("write_concurrency", "write users"),
                           ("pace_ms", "pace ms"), ("adaptive", "adaptive"), ("arrival_rate", "arrival rate/s")):
            if p.get(key) is not None:
                bits.append(f"{label} {p[key]}")
        if sm.locust and sm.locust.duration_s is not None:
            hist = sm.locust.history
            users = int(hist["User Count"].max()) if hist is not None and not hist.empty else None
            bits.append(f"Locust history {sm.locust.duration_s:.0f} s" + (f", max {users} users" if users else ""))
        durations = [f"{c.name} {c.duration_s:.1f} s" for c in (sm.benchmark.cases if sm.benchmark else [])
                     if c.duration_s is not None]
        if durations:
            bits.append("measured window (warm-up excluded): " + ", ".join(durations))
        if p.get("locust_version"):
            bits.append(f"Locust {p['locust_version']}")
        return ", ".join(bits) or None

    return _per_scale(ctx.run, one)


def f_phases_table(ctx: ReportContext) -> str:
    phases = _manifest(ctx, "phases")
    if not isinstance(phases, list) or not phases:
        return "_Phase timings: not recorded (no manifest.json with phases)._"
    rows = []
    for ph in phases:
        if isinstance(ph, dict):
            el = ph.get("elapsed_s")
            rows.append([ph.get("name"), f"{el:.1f} s" if isinstance(el, int | float) else NR,
                         "ok" if ph.get("ok") else "FAILED", ph.get("detail") or ""])
    total = sum(ph.get("elapsed_s") or 0 for ph in phases if isinstance(ph, dict)
                and isinstance(ph.get("elapsed_s"), int | float))
    return "Phase timings (manifest.json):\n\n" + table(["phase", "time", "status", "detail"], rows) + \
        f"\n\nSum of phase times: {total:.1f} s."


# ------------------------------------------------------------------------------------------------ latency
def _eps(ctx: ReportContext, kind: str) -> Callable[[ScaleMetrics], str | None]:
    def one(sm: ScaleMetrics) -> str | None:
        eps = sm.recall_endpoints() if kind == "recall" else sm.write_endpoints()
        out = []
        for ep in eps:
            if ep.p("p95") is None:
                out.append(f"{ep.name}: {NR}")
                continue
            s = ep.latency_source
            out.append(f"{ms(ep.p('p50'), s)} / {ms(ep.p('p95'), s)} / {p99(ep)}"
                       f" ({ep.name}, {_short_source(s)}, {samples(ep)})")
        return "; ".join(out) or None

    return one


def f_recall_latency(ctx: ReportContext) -> str:
    return _per_scale(ctx.run, _eps(ctx, "recall"))


def f_write_latency(ctx: ReportContext) -> str:
    return _per_scale(ctx.run, _eps(ctx, "write"))


def _rps(kind: str) -> Callable[[ScaleMetrics], str | None]:
    def one(sm: ScaleMetrics) -> str | None:
        eps = sm.recall_endpoints() if kind == "recall" else sm.write_endpoints()
        return "; ".join(f"{num(ep.rps)} req/s ({ep.name})" for ep in eps) or None

    return one


def f_recall_rps(ctx: ReportContext) -> str:
    return _per_scale(ctx.run, _rps("recall"))


def f_write_rps(ctx: ReportContext) -> str:
    return _per_scale(ctx.run, _rps("write"))


def f_error_rate(ctx: ReportContext) -> str:
    def one(sm: ScaleMetrics) -> str | None:
        out = []
        for ep in sm.endpoints.values():
            if not ep.requests:
                continue
            split = ", ".join(f"{ERROR_LABELS[c]} {ep.errors[c]}" for c in ERROR_CATEGORIES if ep.errors.get(c))
            out.append(f"{ep.name} {pct(ep.error_rate)} ({ep.failed}/{ep.requests}" + (f": {split})" if split else ")"))
        return "; ".join(out) or None

    return _per_scale(ctx.run, one)


LOW_CONF = "⚠ low confidence"


def p99(ep: EndpointMetrics) -> str:
    """p99 with its warning: from fewer than LOW_CONFIDENCE_SAMPLES latencies, fewer than 10 requests decide it."""
    text = ms(ep.p("p99"), ep.latency_source)
    return f"{text} {LOW_CONF}" if ep.p99_low_confidence else text


def samples(ep: EndpointMetrics) -> str:
    return f"n={ep.samples:,}" if ep.samples is not None else "n not recorded"


def f_latency_table(ctx: ReportContext) -> str:
    rows = []
    for sm in ctx.run.scales:
        for ep in sm.endpoints.values():
            s = ep.latency_source
            loc = ep.locust
            rows.append([sm.scale, ep.name, ep.requests, ep.ok, "–" if ep.samples is None else f"{ep.samples:,}",
                         ms(ep.p("p50"), s), ms(ep.p("p95"), s), p99(ep), ms(ep.p("max"), s), _short_source(s),
                         "/".join("–" if loc.get(k) is None else f"{loc[k]:.0f}" for k in ("p50", "p95", "p99"))
                         if loc else "–", num(ep.rps), pct(ep.error_rate)])
    low = any(ep.p99_low_confidence for sm in ctx.run.scales for ep in sm.endpoints.values())
    note = (f"\n\n{LOW_CONF}: the p99 rests on fewer than {LOW_CONFIDENCE_SAMPLES:,} samples, so fewer than 10 "
            "requests decide it; read p95, or run longer." if low else "")
    return ("Per scale and endpoint. `samples` = the latencies behind p50/p95/p99 (successful requests when exact). "
            "The Locust column is Locust's bucketed p50/p95/p99 (ms, all requests) for comparison.\n\n"
            + table(["scale", "endpoint", "requests", "ok", "samples", "p50", "p95", "p99", "max", "latency source",
                     "Locust p50/p95/p99", "req/s", "error rate"], rows) + note)


def f_server_timing(ctx: ReportContext) -> str:
    rows, silent = [], []
    for sm in ctx.run.scales:
        for ep in sm.endpoints.values():
            split = ep.server
            if split is None:
                continue
            if not split.reported:
                silent.append(f"{sm.scale}/{ep.name}")
                continue
            c, sv, db = split.client, split.server or {}, split.db or {}
            outside = (c.get("mean") - sv.get("mean")) if c.get("mean") is not None and sv.get("mean") is not None \
                else None
            rows.append([sm.scale, ep.name, "–" if split.samples is None else f"{split.samples:,}",
                         "/".join(_ms_short(c.get(k)) for k in ("p50", "p95", "p99")),
                         "/".join(_ms_short(sv.get(k)) for k in ("p50", "p95", "p99")) if sv else NR,
                         "/".join(_ms_short(db.get(k)) for k in ("p50", "p95", "p99")) if db else NR,
                         ms(outside), split.source])
    measured = [sm for sm in ctx.run.scales if sm.endpoints]
    if not rows and not silent:
        return ("Not measured: no benchmark case or request records in this run carry the target's `Server-Timing` "
                "data." if measured else "Not measured: no requests in this run.")
    out = ""
    if rows:
        out = ("p50/p95/p99 in ms, successful requests that carried `Server-Timing`: client = the latency the load "
               "generator measured; server = the target's own total; database = its database part; outside the "
               "server = mean client − mean server (network, client, queueing).\n\n"
               + table(["scale", "endpoint", "samples", "client", "server", "database", "outside the server (mean)",
                        "source"], rows))
    if silent:
        out += ("\n\n" if out else "") + ("The target does not report `Server-Timing` (no response carried it) for "
                                            + ", ".join(silent) + ": client time cannot be split into server and "
                                                                  "database time.")
    return out


def _ms_short(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def f_error_table(ctx: ReportContext) -> str:
    rows = []
    for sm in ctx.run.scales:
        for ep in sm.endpoints.values():
            if not ep.requests:
                continue
            rows.append([sm.scale, ep.name, ep.requests]
                        + [f"{ep.errors.get(c, 0)} ({pct(ep.share(c))})" for c in ERROR_CATEGORIES]
                        + [ep.errors_source])
    return table(["scale", "endpoint", "requests", *[ERROR_LABELS[c] for c in ERROR_CATEGORIES], "source"], rows)


# ------------------------------------------------------------------------------------------------ worker
WORKER_MODES = {
    "in_process": "memload's own in-process worker (meaningful for memload's reference API only)",
    "command": "the worker command given with `--worker-command`, run once per iteration",
    "observe": "the target's own running worker, observed draining the outbox (`--observe`)",
}


def _types(counts: dict[str, int] | None) -> str:
    if not counts:
        return "–"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v) or "none"


def f_worker_summary(ctx: ReportContext) -> str:
    """Unit, scope and node count stated once; every figure below is in that unit."""
    w = ctx.run.worker
    if w is None:
        reason = next((n.reason for n in ctx.run.not_measured if n.stage.startswith("worker")),
                      "no worker_baseline.json")
        return f"NOT MEASURED — {reason}."
    lines = [f"- Worker measured: {WORKER_MODES.get(w.mode or '', f'mode {w.mode}') if w.mode else NR + ' (no mode)'}"]
    nm = next((n for n in ctx.run.not_measured if n.stage == "worker"), None)
    if nm is not None:
        lines.append(f"- **NOT MEASURED for the target** — {nm.reason}. The figures below describe that worker only.")
    bench_scopes = sorted({sm.scope for sm in ctx.run.scales if sm.scope})
    scope = f"`{w.scope}`" if w.scope else NR
    nodes = f" ({w.scope_nodes:,} nodes at start)" if w.scope_nodes is not None else ""
    other = [b for b in bench_scopes if b != w.scope]
    where = (f"; not the benchmark's scope{'s' if len(other) > 1 else ''} " + ", ".join(f"`{b}`" for b in other)
             if w.scope and other else "")
    lines.append(f"- Scope: {scope}{nodes}{where}")
    lines.append(f"- Unit: {w.unit or 'jobs/s'} — one outbox row is one job; every rate in this section is jobs/s")
    extra = ""
    if w.elapsed_ms_wall:
        extra = f"; {w.processed / (w.elapsed_ms_wall / 1000):.2f} over wall time {w.elapsed_ms_wall / 1000:.2f} s"
    lines.append(f"- Processed/sec: {w.throughput:.2f} jobs/s (processed / Σ iteration time{extra})")
    lines.append(f"- Claimed total: {w.claimed:,}")
    lines.append(f"- Processed: {w.processed:,}; failed: {w.failed_jobs:,} (failed jobs are never counted as "
                 "processed)")
    lines.append(f"- Outbox backlog delta: {f_worker_backlog_delta(ctx)}")
    if w.by_job_type:
        lines.append("- By job type: " + "; ".join(f"{t} {v.get('processed', 0):,} processed, {v.get('failed', 0):,} "
                                                   f"failed" for t, v in sorted(w.by_job_type.items())))
    recon = _worker_reconciliation(w)
    if recon:
        lines.append(f"- {recon}")
    return "\n".join(lines)


def _worker_reconciliation(w: Any) -> str | None:
    """Why the jobs handled differ from the backlog delta: jobs enqueued while the benchmark ran."""
    b, a = w.outbox_before.get("unpublished"), w.outbox_after.get("unpublished")
    if b is None or a is None:
        return None
    drained = int(b - a)
    handled = w.processed + w.failed_jobs if (w.processed + w.failed_jobs) else w.claimed
    if handled == drained:
        return None
    enq = w.enqueued_during_run
    if enq is None:
        return (f"{handled:,} jobs were handled while the backlog shrank by {drained:,}: the difference "
                f"({handled - drained:+,}) is not explained by the file (no `enqueued_during_run`)")
    total = sum(enq.values())
    text = (f"{handled:,} jobs handled = {drained:,} drained from the backlog + {total:,} enqueued during the run "
            f"({_types(enq)})")
    gap = handled - drained - total
    if gap:
        text += f"; {gap:+,} jobs unaccounted for"
    return text


def f_worker_processed_per_sec(ctx: ReportContext) -> str:
    w = ctx.run.worker
    return NR if w is None else f"{w.throughput:.2f} jobs/s"


def f_worker_claimed(ctx: ReportContext) -> str:
    return NR if ctx.run.worker is None else f"{ctx.run.worker.claimed:,}"


def f_worker_failed_marked(ctx: ReportContext) -> str:
    return NR if ctx.run.worker is None else f"{ctx.run.worker.failed_jobs:,}"


def f_worker_backlog_delta(ctx: ReportContext) -> str:
    w = ctx.run.worker
    if w is None:
        return NR
    b, a = w.outbox_before.get("unpublished"), w.outbox_after.get("unpublished")
    if b is None or a is None:
        return f"{NR} (outbox_before/outbox_after.unpublished absent)"
    return f"{a - b:+,.0f} unpublished ({b:,.0f} → {a:,.0f}; negative = drained)"


def f_worker_details(ctx: ReportContext) -> str:
    w = ctx.run.worker
    if w is None or w.per_iteration.empty:
        return ""
    frame = w.per_iteration
    has_types = frame["job_types"].notna().any()
    rows = []
    for r in frame.itertuples():
        failed = r.failed if r.failed == r.failed and r.failed is not None else r.failed_marked
        row = [int(r.iteration), _g(r.claimed), _g(r.processed), _g(failed), num(r.elapsed_ms, 1),
               num(r.throughput, 2)]
        if has_types:
            row.append(_types(r.job_types if isinstance(r.job_types, dict) else None))
        rows.append(row)
    head = ["iteration", "claimed", "processed", "failed", "elapsed ms", "jobs/s"] + (["job types"] if has_types
                                                                                       else [])
    out = "Per iteration (worker_baseline.json):\n\n" + table(head, rows)
    if has_types:
        mixes = {tuple(sorted((r or {}).keys())) for r in frame["job_types"] if isinstance(r, dict) and r}
        if len(mixes) > 1:
            out += ("\n\nThe iterations drained different job mixes (see job types): a job type costs what it "
                    "costs, so jobs/s is comparable between iterations of the same mix only — a change of mix is "
                    "not a degradation.")
    else:
        out += "\n\nJob types per iteration: not recorded in this file."
    return out


# ------------------------------------------------------------------------------------------------ planner
def f_hnsw_used(ctx: ReportContext) -> str:
    def one(sm: ScaleMetrics) -> str | None:
        nm = next((n for n in ctx.run.not_measured if n.stage == f"explain_{sm.scale}"), None)
        if nm is not None:  # before the missing file: a failed or skipped explain stage says why
            return f"NOT MEASURED for the target — {nm.reason}"
        if sm.explain is None:
            return f"{NR} (no explain_{sm.scale}.txt)"
        used = sm.explain.hnsw_used
        if used is None:
            return "no stage-1 plan in the file"
        s1 = sm.explain.stage1
        return f"yes — {s1.ann_scan}" if used and s1 else "NO — " + str(s1.first_scan if s1 else None)

    return _per_scale(ctx.run, one)


def f_explain_total_time(ctx: ReportContext) -> str:
    def one(sm: ScaleMetrics) -> str | None:
        if sm.explain is None:
            return None
        s1, s2 = sm.explain.stage1, sm.explain.stage2
        t1 = s1.execution_ms if s1 else None
        t2 = s2.execution_ms if s2 else None
        total = (t1 or 0) + (t2 or 0) if (t1 is not None or t2 is not None) else None
        return f"stage 1 {ms(t1)} + stage 2 {ms(t2)} = {ms(total)}"

    return _per_scale(ctx.run, one)


def f_planner_details(ctx: ReportContext) -> str:
    blocks = []
    for sm in ctx.run.scales:
        if sm.explain is None:
            continue
        for label, plan in (("Stage-1 plan key lines", sm.explain.stage1), ("Stage-2 plan key lines",
                                                                           sm.explain.stage2)):
            if plan is None:
                blocks.append(f"- {label} (scale {sm.scale}): {NR}")
                continue
            lines = "\n".join(plan.key_lines()) or "(no plan nodes)"
            short = plan.short_result
            note = (f"\n\nStage returned {short[0]:g} of {short[1]:g} rows asked (see rule ann_starvation)."
                    if short else "")
            blocks.append(f"- {label} (scale {sm.scale}, `{sm.explain.path.name}`, execution "
                          f"{ms(plan.execution_ms)}, planning {ms(plan.planning_ms)}):\n\n```text\n{lines}\n```{note}")
    checks = [f"- `{sm.explain.path.name}` check: {sm.explain.header['check']}" for sm in ctx.run.scales
              if sm.explain is not None and sm.explain.header.get("check")]
    if checks:
        blocks.insert(0, "\n".join(checks))
    # whose queries these plans are: the target's own explain script, or memload's reference SQL
    sources = [f"- SQL explained in `{sm.explain.path.name}`: {sm.explain.header['memload explain']}"
               for sm in ctx.run.scales if sm.explain is not None and sm.explain.header.get("memload explain")]
    if sources:
        blocks.insert(0, "\n".join(sources))
    return "\n\n".join(blocks) if blocks else "_No explain_<scale>.txt in the run directory._"


# ------------------------------------------------------------------------------------------------ ANN recall
def f_ann_recall(ctx: ReportContext) -> str:
    """Per scale: recall@k of the recall path and of the bare index at the benchmark's hnsw.ef_search, how it was
    measured, and the ef_search sweep when the check ran one."""
    blocks = []
    for sm in ctx.run.scales:
        nm = next((n for n in ctx.run.not_measured if n.stage == f"ann_check_{sm.scale}"), None)
        a = sm.ann
        if a is None:
            reason = nm.reason if nm is not None else f"no ann_check_{sm.scale}.json"
            blocks.append(f"- Scale {sm.scale}: NOT MEASURED — {reason}")
            continue
        blocks.append(_ann_block(ctx, sm, a, nm))
    if not blocks:
        return "_No ann_check_<scale>.json in the run directory._"
    return "\n\n".join(blocks)


def _ann_block(ctx: ReportContext, sm: ScaleMetrics, a: AnnMetrics, nm: NotMeasured | None) -> str:
    c = a.check
    check = next((x for x in ctx.verdict.checks if x.scale == sm.scale and x.subject == "ann"), None)
    if a.recall is None:
        head = f"recall@{a.k}: NOT MEASURED — {nm.reason if nm is not None else a.not_measured}"
    else:
        index = f"; bare index (`LIMIT {a.k}`) {pct(a.index_recall)}" if a.index_recall is not None else ""
        verdict = (f" — {check.status.upper()} against ≥ {pct(ctx.slo.min_recall_at_k)}" if check is not None
                   else "")
        ties = (f" (ties counted; {pct(a.recall_ids)} with the same ids)" if a.recall_key == "recall_at_k_distance"
                else "")
        head = (f"recall@{a.k} of the recall path **{pct(a.recall)}**{ties} at hnsw.ef_search {a.ef_search_used} "
                f"(the benchmark's){index}{verdict}")
    lines = [f"- Scale {sm.scale} (`{c.path.name}`): {head}"]
    how = [f"{c.queries:,} sampled queries" + (f" over {c.vectors_in_scope:,} vectors"
                                                 if c.vectors_in_scope is not None else "")]
    if c.precision:
        how.append(f"{c.precision} index")
    if c.exact:
        how.append(f"exact top-{a.k} by {c.exact}")
    if c.candidates is not None and c.limit is not None:
        how.append(f"the recall path reads {c.candidates:,} candidates for a limit of {c.limit}")
    how += [f"hnsw.{k} {v:,}" if isinstance(v, int) else f"hnsw.{k} {v}" for k, v in
            (("iterative_scan", c.iterative_scan), ("max_scan_tuples", c.max_scan_tuples)) if v is not None]
    lines.append("  - Measured: " + "; ".join(how))
    if c.index_in_plan is False:
        lines.append("  - Plan: **no index** — the planner chose a sequential scan and a sort for this query at this "
                     "scale, so the recall path is exact here and the figure says nothing about the HNSW index")
    elif c.index_used:
        lines.append(f"  - Plan: index `{c.index_used}`")
    if a.ef_search_used != a.ef_search:
        at_used = pct(a.recall) if a.recall is not None else "not measured"
        who = "the matrix raised hnsw.ef_search" if a.tuned else "hnsw.ef_search was raised"
        change = (f"{who} from {a.ef_search} to {a.ef_search_used} before the benchmark" if a.raised else
                  f"the benchmark ran with hnsw.ef_search {a.ef_search_used}, not the check's {a.ef_search}")
        lines.append(f"  - {RAISED if a.raised else 'ef_search'}: {change} (recall@{a.k} {pct(c.slo_recall)} at "
                     f"{a.ef_search}, {at_used} at {a.ef_search_used}); the benchmark's latencies are those of "
                     f"ef_search {a.ef_search_used}")
    if c.target_recall is not None:
        reach = (f"reached from ef_search {c.ef_search_for_target}" if c.ef_search_for_target is not None
                 else "reached by no measured ef_search")
        lines.append(f"  - The check's target recall {pct(c.target_recall)}: {reach}")
    out = "\n".join(lines)
    if a.sweep:
        ties = any(r.recall_at_k_distance is not None for r in a.sweep)
        rows = []
        for r in a.sweep:
            marks = [m for m, on in (("benchmark", r.ef_search == a.ef_search_used),
                                     ("check", r.ef_search == a.ef_search)) if on]
            tied = [pct(r.recall_at_k_distance) if r.recall_at_k_distance is not None else NR] if ties else []
            rows.append([r.ef_search, *tied, pct(r.recall_at_k),
                         pct(r.index_recall_at_k) if r.index_recall_at_k is not None else NR,
                         ms(r.recall_path_mean_ms), ms(r.index_mean_ms), ", ".join(marks) or "–"])
        head = ([f"recall@{a.k} (recall path, ties counted)", f"recall@{a.k} (recall path, same ids)"] if ties
                else [f"recall@{a.k} (recall path)"])
        out += (f"\n\nhnsw.ef_search sweep of scale {sm.scale} (same queries and ground truth; mean time per "
                "query):\n\n" + table(["ef_search", *head, f"index recall@{a.k}", "recall path mean", "index mean",
                                        "used by"], rows))
    return out


# ------------------------------------------------------------------------------------------------ scale cost
COST_INTRO = (
    "What each scale's benchmark cost the server, from `cost_<scale>.json`: cumulative CPU and buffer counters the "
    "matrix sampled while the benchmark ran, interpolated at the bounds of each case's window ([first_start, "
    "last_end] of the canonical run's Locust summary) and divided by the case's requests; between two samples a "
    "counter is taken to grow evenly, so the sample interval around a bound may carry a little of the neighbouring "
    "case's work. It explains the results and judges nothing: the SLO verdict does not read it. Hit % = blocks found "
    "in shared_buffers ÷ blocks accessed; a read is a block from outside shared_buffers (the OS page cache or the "
    "disk, 8 kB); embeddings = the nodes' TOAST, where each 1536-d vector (6 kB) is stored out of line and read "
    "for every candidate the recall re-ranks (an edges TOAST counts with its heap). Other CPU = "
    "machine busy − API − PostgreSQL: the load generator and the rest of the machine.")


def f_scale_cost(ctx: ReportContext) -> str:
    """Per scale, the recall case as a table row (sizes against shared_buffers, hit ratios, kB read and CPU per
    recall, cores busy) and the write case as a line; one sentence when no scale has a cost file."""
    scales = ctx.run.scales
    if not any(sm.cost is not None or sm.cost_failed for sm in scales):
        return ("Not measured: no `cost_<scale>.json` in the run directory (the matrix samples CPU and buffer "
                "counters while the benchmark runs).")
    rows, writes, notes = [], [], []
    for sm in scales:
        c = sm.cost
        if c is None:
            notes.append(f"- Scale {sm.scale}: NOT MEASURED — {sm.cost_failed or f'no cost_{sm.scale}.json'}")
            continue
        rc, wc = c.cases["recall"], c.cases["write"]
        rows.append([sm.scale, _case_count(rc), _sizes_cell(c), _ratio(c.of_shared_buffers(c.hot_mb)),
                     _ratio(c.of_shared_buffers(c.sizes_mb.get("total"))),
                     f"{_mb(c.shared_buffers_mb)} / {_mb(c.host_mem_mb)}", _hits_cell(rc), _kb(rc), _cpu_cell(rc),
                     _cores_cell(c, rc)])
        writes.append(_write_line(sm.scale, c, wc))
        notes += _cost_notes(sm.scale, c)
    out = COST_INTRO
    if rows:
        out += ("\n\nRecall case:\n\n" + table(
            ["scale", "recalls (window)", "MB: nodes heap / embeddings / HNSW / other nodes idx / edges = all",
             "nodes heap + embeddings + HNSW ÷ shared_buffers", "all ÷ shared_buffers",
             "shared_buffers / host RAM (MB)",
             "hit %: nodes heap / embeddings / HNSW / other nodes idx / edges heap / edges idx", "kB read per recall",
             "CPU ms per recall: API / PostgreSQL / other = machine", "cores busy"], rows))
        out += "\n\nHit % below 99 are in bold.\n\nWrite case:\n\n" + "\n".join(writes)
    if notes:
        out += "\n\n" + "\n".join(notes)
    return out


def _mb(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _case_count(cc: CaseCost) -> str:
    if not cc.measured:
        return "NOT MEASURED"
    return f"{cc.requests:,} in {cc.window_s:.1f} s ({cc.endpoint})"


def _sizes_cell(c: ScaleCost) -> str:
    m = c.sizes_mb
    return " / ".join(_mb(m.get(k)) for k in ("nodes_heap", "embeddings", "hnsw", "nodes_indexes", "edges")) + \
        f" = {_mb(m.get('total'))}"


def _hit(v: float | None) -> str:
    if v is None:
        return "–"
    text = f"{100 * v:.2f}"
    return f"**{text}**" if v < R.HIT_RATIO_MIN else text


def _hits_cell(cc: CaseCost) -> str:
    return "–" if not cc.measured else " / ".join(_hit(cc.hit_ratio[g]) for g in GROUPS)


def _kb(cc: CaseCost) -> str:
    return num(cc.read_kb, 2, "–")


def _cpu_cell(cc: CaseCost) -> str:
    if not cc.measured:
        return "–"
    ms_ = cc.cpu_ms
    return " / ".join(num(ms_[k], 2, "–") for k in ("api", "postgres", "other")) + f" = {num(ms_['machine'], 2, '–')}"


def _cores_cell(c: ScaleCost, cc: CaseCost) -> str:
    if cc.cores_busy is None:
        return "–"
    text = f"{cc.cores_busy:.2f}" + (f" of {c.cpu_cores}" if c.cpu_cores else "")
    return text + (f" ({100 * cc.busy_share:.0f} %)" if cc.busy_share is not None else "")


def _write_line(scale: str, c: ScaleCost, wc: CaseCost) -> str:
    if not wc.measured:
        return f"- Scale {scale}, write: NOT MEASURED — {wc.why['window']}"
    hits = ", ".join(f"{GROUP_LABELS[g]} {_hit(wc.hit_ratio[g])}" for g in GROUPS if wc.hit_ratio[g] is not None)
    return (f"- Scale {scale}, write ({wc.requests:,} writes in {wc.window_s:.1f} s): CPU ms per write "
            f"{_cpu_cell(wc)} (API / PostgreSQL / other = machine); cores busy {_cores_cell(c, wc)}; "
            + (f"{_kb(wc)} kB read per write from outside shared_buffers" if wc.read_kb is not None
               else "kB read per write: not measured") + f"; hit % {hits or 'not measured'}")


def _cost_notes(scale: str, c: ScaleCost) -> list[str]:
    """How the scale was measured, what is whole-table, and why each missing figure is missing (grouped by reason)."""
    r = c.record
    series = "; ".join(f"{CPU_LABELS[g]} = {r.cpu[g]}" for g in ("api", "postgres", "machine") if r.cpu.get(g))
    how = [f"`{r.path.name}`" + (f", a sample every {r.interval_s:g} s" if r.interval_s else "")
           + (f", windows from `{c.summary}`" if c.summary else "")]
    if r.memory.get("effective_cache_size_mb") is not None:
        how.append(f"effective_cache_size {_mb(r.memory['effective_cache_size_mb'])} MB")
    if series:
        how.append(f"CPU: {series}")
    notes = [f"- Scale {scale}: " + "; ".join(how)]
    if c.shared_tables:
        tables = ", ".join(f"`{t}`" for t in c.shared_tables)
        notes.append(f"- Scale {scale}: {tables} also hold other scopes (`\"shared\": true`): their counters and sizes "
                     "are the whole table's, other scopes included, not this scope's alone")
    by_reason: dict[str, list[str]] = {}
    for key, why in c.size_why.items():
        if key not in ("total",):
            by_reason.setdefault(why, []).append(f"{SIZE_LABELS[key]} MB")
    for name, cc in c.cases.items():
        if not cc.measured:
            continue
        for key, why in cc.why.items():
            kind, _, part = key.partition(".")
            label = {"cpu": f"{CPU_LABELS.get(part, part)} CPU", "hit": f"hit % {GROUP_LABELS.get(part, part)}",
                     "read_kb": "kB read", "cores_busy": "cores busy", "busy_share": "busy share"}.get(kind, key)
            by_reason.setdefault(why, []).append(f"{label} ({name})")
    for why, labels in by_reason.items():
        notes.append(f"- Scale {scale}, not measured: {', '.join(labels)} — {why}")
    rc = c.cases["recall"]
    if not rc.measured:
        notes.append(f"- Scale {scale}, recall: NOT MEASURED — {rc.why['window']}")
    return notes


# ------------------------------------------------------------------------------------------------ conclusion
def f_slo_verdict(ctx: ReportContext) -> str:
    v = ctx.verdict
    fails = [c for c in v.checks if c.status == "fail"]
    unmeasured = [c for c in v.checks if c.status == "not measured"]
    text = f"**{v.status}**"
    if fails:
        text += " — failing: " + "; ".join(
            f"{c.scale}/{c.subject} {c.metric} {_val(c)} (target {c.op} {_tgt(c)})" for c in fails)
    if unmeasured:
        text += " — not measured: " + ", ".join(f"{c.scale}/{c.subject} {c.metric}" for c in unmeasured)
    if v.stages:
        text += " — stages NOT MEASURED: " + ", ".join(n.stage for n in v.stages) + " (see [Not Measured]" \
                                                                                    "(#not-measured))"
    if ctx.diagnosis.findings.get("rate_limit"):
        text += " — latency checks of 429-dominated endpoints are not evidence (rule rate_limit)"
    return text


def _val(c: R.SloCheck) -> str:
    if c.value is None:
        return NR
    return pct(c.value) if c.fraction else f"{c.value:.2f}"


def _tgt(c: R.SloCheck) -> str:
    return pct(c.target) if c.fraction else f"{c.target:g}"


def _nothing_measured(ctx: ReportContext) -> bool:
    return not any(ep.p("p95") is not None or ep.requests for sm in ctx.run.scales for ep in sm.endpoints.values()) \
        and not (ctx.run.worker and ctx.run.worker.processed)


def f_primary_bottleneck(ctx: ReportContext) -> str:
    rule, finding = ctx.diagnosis.primary, ctx.diagnosis.primary_finding
    if finding is None and _nothing_measured(ctx):
        return "not determined: this run measured no requests and no worker jobs"
    if finding is None:
        return f"{rule.bottleneck} (rule `none`: no bottleneck rule fired)"
    return f"**{rule.bottleneck}** (rule `{rule.id}`; scale {finding.scale}, {finding.subject}: {finding.evidence})"


def f_next_action(ctx: ReportContext) -> str:
    if ctx.diagnosis.primary_finding is None and _nothing_measured(ctx):
        return "none follows from this run (nothing was measured); see [Not Measured](#not-measured)"
    return f"{ctx.diagnosis.next_action} (rule `{ctx.diagnosis.primary.id}`)"


def f_findings_table(ctx: ReportContext) -> str:
    rows = [[r.id, f.scale, f.subject, f.evidence] for r in ctx.diagnosis.fired for f in ctx.diagnosis.findings[r.id]]
    return "All rules that fired, in priority order:\n\n" + table(["rule", "scale", "subject", "evidence"], rows)


# ---------------------------------------------------------------------------- sections of the Aionis kit's report
def f_summary_table(ctx: ReportContext) -> str:
    rows = []
    for sm in ctx.run.scales:
        rec = sm.recall_endpoints()[0] if sm.recall_endpoints() else None
        wr = sm.write_endpoints()[0] if sm.write_endpoints() else None
        total = sum(ep.requests or 0 for ep in sm.endpoints.values())
        failed = sum(ep.failed or 0 for ep in sm.endpoints.values())

        def lat(ep: EndpointMetrics | None, key: str) -> str:
            if ep is None:
                return "–"
            return p99(ep) if key == "p99" else ms(ep.p(key), ep.latency_source)

        rows.append([sm.scale, sm.scope, f"{sm.seed.nodes:,}" if sm.seed else NR,
                     f"{sm.seed.edges:,}" if sm.seed else NR, *_ann_cells(sm), lat(rec, "p95"), lat(rec, "p99"),
                     lat(wr, "p95"), lat(wr, "p99"), pct(failed / total) if total else NR,
                     ctx.verdict.for_scale(sm.scale)])
    ks = {sm.ann.k for sm in ctx.run.scales if sm.ann is not None}
    k = str(next(iter(ks))) if len(ks) == 1 else "k"
    raised = any(sm.ann is not None and sm.ann.raised for sm in ctx.run.scales)
    note = (f"\n\n{RAISED}: hnsw.ef_search was raised above the recall check's before the benchmark (see "
            "[ANN Recall](#ann-recall)); recall is the one measured at the raised value." if raised else "")
    return table(["scale", "scope", "nodes", "edges", f"recall@{k} (recall path)", f"index recall@{k}",
                  "ef_search used", "recall p95", "recall p99", "write p95", "write p99", "fail %", "SLO"],
                 rows) + note


RAISED = "↑ raised"


def _ann_cells(sm: ScaleMetrics) -> list[str]:
    """recall@k of the recall path, the bare index's recall@k and the hnsw.ef_search they are measured at (the
    benchmark's); NOT MEASURED when the scale has no usable ann_check file."""
    a = sm.ann
    if a is None:
        return ["NOT MEASURED", "–", "–"]
    return [pct(a.recall) if a.recall is not None else "NOT MEASURED",
            pct(a.index_recall) if a.index_recall is not None else "–", _ef_used(a)]


def _ef_used(a: AnnMetrics) -> str:
    if a.raised:
        return f"{a.ef_search_used} {RAISED} from {a.ef_search}"
    if a.ef_search_used != a.ef_search:
        return f"{a.ef_search_used} (the check measured {a.ef_search})"
    return str(a.ef_search_used)


def f_slo_targets(ctx: ReportContext) -> str:
    s = ctx.slo
    return (f"- Recall p95 < {s.recall_p95_ms:g} ms\n- Write p95 < {s.write_p95_ms:g} ms\n"
            f"- Error rate ≤ {pct(s.max_error_rate)}\n- Recall@k of the recall path ≥ {pct(s.min_recall_at_k)}\n"
            f"- Worker > {s.worker_min_jobs_per_sec:g} jobs/s\n\nRule: {R.SLO_RULE}")


def f_slo_checks_table(ctx: ReportContext) -> str:
    rows = [[c.scale, c.subject, c.metric, _val(c), f"{c.op} {_tgt(c)}", c.status.upper(), c.note]
            for c in ctx.verdict.checks]
    return table(["scale", "subject", "metric", "value", "target", "result", "source / note"], rows)


def f_failure_attribution(ctx: ReportContext) -> str:
    blocks = []
    for sm in ctx.run.scales:
        counts: dict[str, int] = {}
        for ep in sm.endpoints.values():
            if ep.by_status:
                for k, v in ep.by_status.items():
                    if not (k.isdigit() and 200 <= int(k) < 300) and v:
                        counts[f"{ep.name} {k}"] = counts.get(f"{ep.name} {k}", 0) + v
            else:
                for c in ERROR_CATEGORIES:
                    if ep.errors.get(c):
                        counts[f"{ep.name} {ERROR_LABELS[c]}"] = ep.errors[c]
        total_fail = sum(counts.values())
        total_req = sum(ep.requests or 0 for ep in sm.endpoints.values())
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows = [[i + 1, k, v, pct(v / total_fail), pct(v / total_req) if total_req else NR]
                for i, (k, v) in enumerate(top)]
        head = f"Scale {sm.scale}: {total_fail} failed of {total_req} requests."
        blocks.append(head + ("\n\n" + table(["#", "endpoint / status", "count", "share of failures",
                                              "share of requests"], rows) if rows else " No failures."))
    locust_rows = []
    for sm in ctx.run.scales:
        if sm.locust is not None and sm.locust.failures is not None:
            for _, r in sm.locust.failures.sort_values("Occurrences", ascending=False).head(3).iterrows():
                locust_rows.append([sm.scale, r["Method"], r["Name"], str(r["Error"])[:140], int(r["Occurrences"])])
    out = "\n\n".join(blocks) or "_No scale with requests._"
    if locust_rows:
        out += "\n\nTop Locust failure messages (`_failures.csv`):\n\n" + table(
            ["scale", "method", "name", "error", "occurrences"], locust_rows)
    exc_rows = []
    for sm in ctx.run.scales:
        if sm.locust is not None and sm.locust.exceptions is not None:
            for _, r in sm.locust.exceptions.iterrows():
                exc_rows.append([sm.scale, int(r["Count"]), str(r["Message"])[:140]])
    if exc_rows:
        out += "\n\nLocust user exceptions (`_exceptions.csv`; errors in the test code, not the server):\n\n" + table(
            ["scale", "count", "message"], exc_rows)
    return out


def f_explain_stats(ctx: ReportContext) -> str:
    rows = []
    for sm in ctx.run.scales:
        if sm.explain is None:
            rows.append([sm.scale, "–", NR, NR, NR, NR, NR])
            continue
        t = sm.explain.execution_times_ms
        rows.append([sm.scale, sm.explain.path.name, len(t), ms(min(t)) if t else NR,
                     ms(statistics.fmean(t)) if t else NR, ms(max(t)) if t else NR,
                     {True: "yes", False: "NO", None: "no plan"}[sm.explain.hnsw_used]])
    return ("`Execution Time` lines of each explain file (stage 1 and stage 2 plans):\n\n"
            + table(["scale", "file", "plans", "min", "avg", "max", "stage 1 on HNSW"], rows))


def f_adaptive_table(ctx: ReportContext) -> str:
    rows = []
    for sm in ctx.run.scales:
        a = sm.adapt
        if a is None:
            if sm.files.attempts:
                rows.append([sm.scale, NR, len(sm.files.attempts), "–", "–", "–", "–", "–", "–", "–"])
            continue
        i, f = a["initial"], a["final"]

        def cpace(d: dict[str, Any]) -> str:
            return (f"{_g(d.get('recall_concurrency'))} / {_g(d.get('write_concurrency'))} / "
                    f"{_g(d.get('pace_ms'))}")

        attempts = a.get("attempts_total")
        if sm.files.attempts and attempts != len(sm.files.attempts):
            attempts = f"{attempts} ({len(sm.files.attempts)} attempt files)"
        last_429, last_total, last_rate = _last_attempt(sm, f)
        rows.append([sm.scale, a.get("auto_adapt"), attempts, a.get("retries_used"),
                     a.get("exhausted"), cpace(i), cpace(f), last_429, last_total, last_rate])
    live = []
    for sm in ctx.run.scales:
        if sm.pacing is None or sm.pacing.empty:
            continue
        for cls, part in sm.pacing.groupby("endpoint_class", sort=False):
            live.append([sm.scale, cls, f"{part['pace_ms'].iloc[0]:g}", f"{part['pace_ms'].max():g}",
                         f"{part.sort_values('timestamp')['pace_ms'].iloc[-1]:g}", int(part["count_429"].sum()),
                         int(part["count_ok"].sum())])
    out = ("Adaptive retry loop (`benchmark_adapt_<scale>.json`; concurrency recall / write / pace ms):\n\n"
           + table(["scale", "auto adapt", "attempts", "retries used", "exhausted", "initial", "final",
                    "last 429", "last requests", "last 429 rate"], rows))
    out += ("\n\nLive adaptive pacing (`locust_<scale>_pacing.csv`):\n\n"
            + table(["scale", "class", "first pace ms", "max pace ms", "last pace ms", "429s", "ok"], live))
    return out


def _last_attempt(sm: ScaleMetrics, final: dict[str, Any]) -> tuple[str, str, str]:
    """429s and requests of the last attempt, counted from `benchmark_<scale>.json` (a copy of the last attempt).

    The adapt file's `final.last_*` fields are filled only when the retry loop evaluated an attempt: with
    AUTO_ADAPT_RATE_LIMIT off they stay 0 whatever ran, so the benchmark file is the source, and the adapt file's
    value is used only when there is no benchmark file."""
    if sm.benchmark is not None and sm.benchmark.cases:
        total = sum(c.total for c in sm.benchmark.cases)
        n429 = sum((c.errors or {}).get("rate_limited_429", c.by_status.get("429", 0)) for c in sm.benchmark.cases)
        return f"{n429:,}", f"{total:,}", pct(n429 / total) if total else NR
    total = final.get("last_total_requests")
    if not total:  # 0 or absent: the retry loop evaluated no attempt, and there is no benchmark file to count
        return "–", f"{NR} (no benchmark_{sm.scale}.json)", NR
    return _g(final.get("last_429")), _g(total), pct(final.get("last_429_rate"))


def _g(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:g}" if isinstance(v, float) else str(v)


def f_recommendations(ctx: ReportContext) -> str:
    return "\n".join(f"- {r.text}" for r in ctx.recommendations) or \
        "_None: nothing in this run's numbers calls for one._"


def f_plots(ctx: ReportContext) -> str:
    """Each figure in reading order; a figure without data is one sentence in its place, never an empty image."""
    out = []
    base = ctx.output.parent
    for p in ctx.plots:
        if isinstance(p, Plot):
            rel = os.path.relpath(p.path, base).replace(os.sep, "/")
            out.append(f"### {p.title}\n\n![{p.title}]({rel})\n\n{p.caption}")
        else:
            out.append(f"### {p.title}\n\nNot drawn: {p.reason}.")
    return "\n\n".join(out) or "_Plots disabled._"


def f_rules_table(ctx: ReportContext) -> str:
    fired = {r.id for r in ctx.diagnosis.fired}
    rows = [[i + 1, f"`{r.id}`", r.bottleneck, r.condition, r.action, "FIRED" if r.id in fired else "–"]
            for i, r in enumerate(R.RULES)]
    return ("Bottleneck rules, evaluated in this order; the first that fires is the primary bottleneck.\n\n"
            + table(["#", "rule", "bottleneck", "condition", "default next action", "this run"], rows))


def f_caveats(ctx: ReportContext) -> str:
    lines = [
        "- **Exact vs bucketed.** p50/p95/p99 marked *exact* come from the suite's request listener "
        "(`locust_<scale>_exact.json`) or the benchmark JSON and are unrounded, over successful requests only. "
        "Values marked *Locust buckets* come from Locust's CSVs, which round every response time to 2 significant "
        "digits before the nearest-rank percentile (≈ ±0.5 ms below 100 ms, ±5 ms to 1 s) and include failures.",
        "- **History percentiles.** With `--csv-full-history` the percentiles in `_stats_history.csv` are a ~10 s "
        "sliding window; without it they are cumulative since start (Aggregated row only). Locust writes 0 before "
        "the first window exists; those points are not drawn. `Requests/s` there is already a ~10 s moving average.",
        "- **Error rate** = failed / requests, where failed counts every non-success (429, other 4xx, 5xx, transport "
        "errors, empty recalls, invalid bodies). 429s are kept out of the latency percentiles and reported apart.",
        "- **RPS** from the benchmark JSON is requests / case wall time (pacing included); from Locust's stats CSV "
        "it is requests / run time.",
        "- **Worker jobs/s** is processed / Σ iteration time (the Aionis kit's definition; one outbox row = one "
        "job); the wall-time rate is shown beside it.",
        "- **Over-time plots** come from the per-request records (`<prefix>_requests.csv`) in 1-second windows "
        "when that file exists; Locust's history CSV (≈10 s moving averages) is only the fallback.",
    ]
    if any(sm.ann is not None for sm in ctx.run.scales):
        lines.append("- **Recall@k** (`ann_check_<scale>.json`, `memload ann-check`) is measured on vectors sampled "
                     "from the scope (the query's own node excluded) against an exact top-k: *recall path* = stage 1 "
                     "as the API runs it (`LIMIT` max(limit, min(1000, 5·limit)) candidates, re-ranked by float32 "
                     "distance, top k kept); *index* = the bare index's `LIMIT k`. The SLO check reads the recall "
                     "path's figure at the hnsw.ef_search the benchmark ran with (`ef_search_used`), ties counted "
                     "(`recall_at_k_distance`: on duplicate vectors any id at the k-th exact distance is an exact "
                     "neighbour) when the file has it, else with the same ids (`recall_at_k`).")
    for sm in ctx.run.scales:
        if sm.locust is not None and sm.locust.history is not None:
            kind = "windowed (~10 s, --csv-full-history)" if sm.locust.full_history else "cumulative"
            lines.append(f"- Scale {sm.scale}: Locust history is {kind}, {len(sm.locust.history)} rows.")
        if sm.benchmark is not None and sm.benchmark.ok is False:
            lines.append(f"- Scale {sm.scale}: `{sm.benchmark.path.name}` has `ok: false` (a gate failed in the "
                         "benchmark); its numbers are shown but are not a clean baseline.")
    return "\n".join(lines)


def f_inputs(ctx: ReportContext) -> str:
    run = ctx.run
    rows = []
    config_off = {"explain_": ("RUN_EXPLAIN", "false"), "ann_check_": ("RUN_ANN_CHECK", "false"),
                  "worker_baseline": ("RUN_WORKER_BENCHMARK", "false")}
    for sm in run.scales:
        rows.append([sm.scale, ", ".join(f"`{u}`" for u in sm.used) or "–",
                     ", ".join(_missing_label(ctx, m, config_off) for m in sm.missing) or "–"])
    run_used = [p.name for p in (run.files.worker, run.files.manifest) if p is not None]
    rows.append(["run", ", ".join(f"`{u}`" for u in run_used) or "–",
                 ", ".join(_missing_label(ctx, m, config_off) for m in run.missing) or "–"])
    intro = "" if run.scales else ("**No per-scale artifacts were found** (seed_*, benchmark_*, locust_*_stats.csv, "
                                   "explain_*): the sections above are empty for that reason.\n\n")
    effects = ("\n\nWhat a missing file costs: `seed_*` → dataset size and the p95-vs-size plot; `benchmark_*` → exact "
               "error split and RPS (Locust CSVs are used instead); `*_exact.json` → exact percentiles and the CDF "
               "plot; `*_stats_history.csv` → the over-time plots when there are no request records; "
               "`*_requests.csv` → the 1-second over-time plots and the server-time split; `*_pacing.csv` → the "
               "pace plot; `explain_*` → "
               "planner notes and the index rules; `ann_check_*` → the recall@k SLO check, the ANN Recall section "
               "and the ann_recall rule; `cost_*` → the Scale Cost section, the buffer_cache and cpu_growth rules "
               "and the CPU-per-recall plot (explanatory: never the verdict); `worker_baseline.json` → the worker "
               "SLO; `manifest.json` → host, versions, PG settings and phase timings.")
    return intro + table(["scale", "used", "missing"], rows) + effects


def _missing_label(ctx: ReportContext, name: str, config_off: dict[str, tuple[str, str]]) -> str:
    for prefix, (var, off) in config_off.items():
        if name.startswith(prefix):
            value = ctx.run.config(var)
            if value is not None and str(value).lower() == off:
                return f"`{name}` (not run: {var}={value})"
    return f"`{name}`"


def f_title(ctx: ReportContext) -> str:
    tag = _manifest(ctx, "matrix_tag")
    scales = ", ".join(sm.scale for sm in ctx.run.scales) or "no scales"
    return f"{tag or ctx.run.directory.name} (scales: {scales})"


def f_generated_at(ctx: ReportContext) -> str:
    return _utc(ctx.generated_at)


def f_run_dir(ctx: ReportContext) -> str:
    return str(ctx.run.directory)


def f_sources_note(ctx: ReportContext) -> str:
    return ("Latency figures say whether they are *exact* (unrounded, from the suite's listener) or *Locust "
            "buckets* (2 significant digits, from Locust's CSVs).")


FIELDS: dict[str, Callable[[ReportContext], str]] = {
    name[2:]: fn for name, fn in globals().items() if name.startswith("f_") and callable(fn)
}


def render(template: str, ctx: ReportContext, template_name: str = "template") -> str:
    """Substitute every `{{ field }}`; an unknown field is a one-line error naming it and the template."""
    if template.lstrip().startswith("<!--"):  # the template's own header comment is for its editors
        template = re.sub(r"^\s*<!--.*?-->\n?", "", template, count=1, flags=re.DOTALL)
    unknown = sorted({m for m in _FIELD_RE.findall(template) if m not in FIELDS})
    if unknown:
        raise TemplateError(f"{template_name}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    cache: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in cache:
            cache[name] = FIELDS[name](ctx)
        return cache[name]

    text = _FIELD_RE.sub(sub, template)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
