"""The report's judgements as data: SLO targets, the pass rule, and ordered bottleneck rules with their evidence.

Every conclusion in PERFORMANCE_REPORT_V1.md comes from here and the report lists these rules verbatim, so a reader
can check each verdict against the numbers. Rules are evaluated in order; the first one that fires is the primary
bottleneck (the order puts rules that invalidate latency as evidence — rate limiting, errors — before latency rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from analysis.cost import CPU_LABELS, GROUP_LABELS
from analysis.metrics import LOW_CONFIDENCE_SAMPLES, EndpointMetrics, NotMeasured, RunMetrics, ScaleMetrics

# --------------------------------------------------------------------------------------------- thresholds
RATE_LIMIT_SHARE = 0.05  # 429s per request at or above which latency is not evidence (the Aionis kit's README: any 429)
WRITE_429_OF_FAILURES = 0.50  # the Aionis kit's perf-report: flag writes whose failures are mostly 429
LATE_SHARE = 0.01  # open model: late requests per request at or above which the generator is the suspect
DB_SHARE_OF_P95 = 0.50  # EXPLAIN stage1+stage2 time at or above this share of recall p95 => database-dominated
HIT_RATIO_MIN = 0.99  # recall path's HNSW / nodes-heap buffer hit ratio below which it reads outside shared_buffers
CPU_GROWTH = 1.5  # CPU per recall from the smallest to the largest measured scale above this factor => it grows
WARMING_MIN = 0.02  # hot hit ratio up by this much from a recall case's first half to its second => still warming


@dataclass(frozen=True)
class SloTargets:
    """The seed's starter SLOs (configurable): pass = p95 strictly below target AND error rate <= max, and the
    recall path's recall@k at or above its minimum."""

    recall_p95_ms: float = 300.0
    write_p95_ms: float = 500.0
    max_error_rate: float = 0.0
    worker_min_jobs_per_sec: float = 50.0
    min_recall_at_k: float = 0.95


SLO_RULE = ("pass = p95 strictly below the target AND error rate (failed / requests, every non-2xx or invalid "
            "response) ≤ the maximum; recall pass = recall@k of the recall path (ann_check_<scale>.json, ties "
            "counted when the file has recall_at_k_distance, at the hnsw.ef_search the benchmark ran with) ≥ the "
            "minimum; worker pass = processed/s strictly above the minimum. Overall: FAIL if any measured check "
            "fails; PASS only if every stage ran and every check was measured and passed; otherwise PARTIAL (passed "
            "what was measured; the NOT MEASURED list says what was not).")


@dataclass
class SloCheck:
    scale: str
    subject: str  # endpoint name or "worker"
    metric: str
    value: float | None
    target: float
    op: str  # "<", "<=", ">", ">="
    status: str  # pass / fail / not measured
    note: str = ""

    @property
    def fraction(self) -> bool:
        """A share (error rate, recall): shown as a percentage."""
        return self.metric == "error rate" or self.metric.startswith("recall@")


@dataclass
class SloVerdict:
    checks: list[SloCheck]
    stages: list[NotMeasured] = field(default_factory=list)  # stages that did not run: never PASS with any

    @property
    def status(self) -> str:
        measured = [c for c in self.checks if c.status != "not measured"]
        if any(c.status == "fail" for c in measured):
            return "FAIL"
        if not measured:
            return "NOT MEASURED"
        return "PASS" if len(measured) == len(self.checks) and not self.stages else "PARTIAL"

    def for_scale(self, scale: str) -> str:
        return SloVerdict([c for c in self.checks if c.scale == scale],
                          [n for n in self.stages if n.stage.endswith(f"_{scale}")]).status


def _check(scale: str, subject: str, metric: str, value: float | None, target: float, op: str,
           note: str = "") -> SloCheck:
    if value is None:
        return SloCheck(scale, subject, metric, None, target, op, "not measured", note)
    ok = {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[op]
    return SloCheck(scale, subject, metric, value, target, op, "pass" if ok else "fail", note)


def evaluate_slo(run: RunMetrics, slo: SloTargets) -> SloVerdict:
    checks: list[SloCheck] = []
    for sm in run.scales:
        for kind, eps, target in (("recall", sm.recall_endpoints(), slo.recall_p95_ms),
                                  ("write", sm.write_endpoints(), slo.write_p95_ms)):
            if not eps:
                checks.append(_check(sm.scale, kind, "p95 ms", None, target, "<", "no such endpoint in this run"))
            for ep in eps:
                note = f"{ep.latency_source}"
                if (ep.share("rate_limited_429") or 0) >= RATE_LIMIT_SHARE:
                    note += "; 429-dominated: latency is not evidence"
                checks.append(_check(sm.scale, ep.name, "p95 ms", ep.p("p95"), target, "<", note))
                checks.append(_check(sm.scale, ep.name, "error rate", ep.error_rate, slo.max_error_rate, "<=",
                                     ep.errors_source))
        checks.append(_recall_check(run, sm, slo))
    w = run.worker
    if w is None:
        checks.append(_check("run", "worker", "processed/s", None, slo.worker_min_jobs_per_sec, ">",
                             "worker_baseline.json absent"))
    elif run.external and w.mode == "in_process":
        checks.append(_check("run", "worker", "processed/s", None, slo.worker_min_jobs_per_sec, ">",
                             "memload's own worker ran, not the target's"))
    elif w.claimed == 0 and w.processed == 0:  # 0 jobs/s on an empty outbox measures nothing
        checks.append(_check("run", "worker", "processed/s", None, slo.worker_min_jobs_per_sec, ">",
                             "the outbox had no jobs to claim (build a backlog: PERF_PROFILE=worker_slo or "
                             "--backlog-writes)"))
    else:
        checks.append(_check("run", "worker", "processed/s", w.throughput, slo.worker_min_jobs_per_sec, ">",
                             "worker_baseline.json totals.throughput_processed_per_sec"))
    return SloVerdict(checks, list(run.not_measured))


def _recall_check(run: RunMetrics, sm: ScaleMetrics, slo: SloTargets) -> SloCheck:
    """recall@k of the recall path at the hnsw.ef_search the benchmark ran with, against the minimum."""
    ann = sm.ann
    metric = f"recall@{ann.k} of the recall path" if ann else "recall@k of the recall path"
    if ann is None or ann.recall is None:
        why = next((n.reason for n in run.not_measured if n.stage == f"ann_check_{sm.scale}"), None)
        note = why or (ann.not_measured if ann else None) or f"no ann_check_{sm.scale}.json"
        return _check(sm.scale, "ann", metric, None, slo.min_recall_at_k, ">=", note)
    return _check(sm.scale, "ann", metric, ann.recall, slo.min_recall_at_k, ">=", ann.source)


# --------------------------------------------------------------------------------------------- bottleneck rules
@dataclass
class Finding:
    rule: str
    scale: str
    subject: str
    evidence: str
    action: str | None = None  # a more specific next action than the rule's default


@dataclass(frozen=True)
class Rule:
    id: str
    bottleneck: str
    condition: str
    action: str
    check: Callable[[RunMetrics, SloTargets], list[Finding]] = field(compare=False, repr=False)


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _each_endpoint(run: RunMetrics) -> list[tuple[ScaleMetrics, EndpointMetrics]]:
    return [(sm, ep) for sm in run.scales for ep in sm.endpoints.values()]


def _rate_limit(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm, ep in _each_endpoint(run):
        share = ep.share("rate_limited_429")
        if share is not None and share >= RATE_LIMIT_SHARE:
            extra = ""
            if sm.adapt and sm.adapt.get("exhausted"):
                extra = f"; adaptive retries exhausted after {sm.adapt.get('attempts_total')} attempts"
            out.append(Finding("rate_limit", sm.scale, ep.name,
                               f"{ep.errors['rate_limited_429']} of {ep.requests} requests were 429 "
                               f"({_pct(share)} ≥ {_pct(RATE_LIMIT_SHARE)}){extra}"))
    return out


def _category(rule: str, category: str) -> Callable[[RunMetrics, SloTargets], list[Finding]]:
    def check(run: RunMetrics, slo: SloTargets) -> list[Finding]:
        out = []
        for sm, ep in _each_endpoint(run):
            n = ep.errors.get(category, 0)
            if n > 0:
                out.append(Finding(rule, sm.scale, ep.name, f"{n} of {ep.requests} requests "
                                   f"({_pct(ep.share(category) or 0)}) — source: {ep.errors_source}"))
        return out

    return check


def _client_errors(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm, ep in _each_endpoint(run):
        n = ep.errors.get("client_4xx", 0) + ep.errors.get("invalid_body", 0)
        if n > 0:
            out.append(Finding("client_errors", sm.scale, ep.name,
                               f"{ep.errors.get('client_4xx', 0)} non-429 4xx and {ep.errors.get('invalid_body', 0)}"
                               f" invalid bodies of {ep.requests} requests"))
    return out


def _ann_starvation(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm in run.scales:
        for ep in sm.recall_endpoints():
            n = ep.errors.get("empty_recall", 0)
            if n > 0:
                out.append(Finding("ann_starvation", sm.scale, ep.name,
                                   f"{n} of {ep.requests} recalls for questions that have answers returned no seeds"))
        s1 = sm.explain.stage1 if sm.explain and _explain_is_targets(run, sm) else None
        short = s1.short_result if s1 is not None else None
        if short is not None:
            out.append(Finding("ann_starvation", sm.scale, "stage1",
                               f"EXPLAIN: stage 1 returned {short[0]:g} rows for a LIMIT of {short[1]:g} although its "
                               "input was estimated larger (candidates filtered after the ANN scan were not replaced)"))
    return out


def _ann_recall(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm in run.scales:
        a = sm.ann
        if a is None or a.recall is None or a.recall >= slo.min_recall_at_k:
            continue
        index = f"; bare index (LIMIT {a.k}) {_pct(a.index_recall)}" if a.index_recall is not None else ""
        ties = " (ties counted)" if a.recall_key == "recall_at_k_distance" else ""
        evidence = (f"recall@{a.k} of the recall path{ties} {_pct(a.recall)} < target {_pct(slo.min_recall_at_k)} at "
                    f"hnsw.ef_search {a.ef_search_used} ({a.check.queries} queries"
                    + (f", {a.check.precision}" if a.check.precision else "") + f"){index}")
        higher = [r for r in a.sweep if r.ef_search > a.ef_search_used]
        reach = [r for r in higher if r.slo_recall >= slo.min_recall_at_k]
        action = None
        if reach:
            r = min(reach, key=lambda x: x.ef_search)
            cost = (f", recall path mean {r.recall_path_mean_ms:.2f} ms per query"
                    if r.recall_path_mean_ms is not None else "")
            action = (f"raise hnsw.ef_search to {r.ef_search} (HNSW_EF_SEARCH): the sweep reached the target at "
                      f"ef_search {r.ef_search} (recall@{a.k} {_pct(r.slo_recall)}{cost}); re-run the benchmark "
                      "there, so its latency is priced at the target recall")
        elif higher:
            best = max(higher, key=lambda x: (x.slo_recall, -x.ef_search))
            action = (f"no swept ef_search reached the target (best: {_pct(best.slo_recall)} at ef_search "
                      f"{best.ef_search}, swept up to {max(x.ef_search for x in higher)}): sweep higher values (up to "
                      "1000, ANN_EF_SWEEP), use hnsw.iterative_scan, or rebuild the index with larger m / "
                      "ef_construction")
        out.append(Finding("ann_recall", sm.scale, "ann", evidence, action))
    return out


def _index_planner(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm in run.scales:
        check = sm.explain.check if sm.explain is not None else None
        if check is not None and not check[0] and _explain_is_targets(run, sm):
            # `memload explain` judged the plans (stage-1 HNSW, stage-2 edge budget) and they failed
            out.append(Finding("index_planner", sm.scale, "explain", f"planner check FAILED: {check[1]}"))
            continue
        if sm.explain is not None and sm.explain.hnsw_used is False and _explain_is_targets(run, sm):
            small = sm.explain.hnsw_threshold
            if small is not None and small[0] < small[1]:
                continue  # too few vectors for HNSW to pay off: an exact scan is the right plan
            first = sm.explain.stage1.first_scan if sm.explain.stage1 else None
            out.append(Finding("index_planner", sm.scale, "stage1",
                               f"stage 1 has no ANN index scan (Index Scan ordered by a distance operator); "
                               f"first scan node: {first or 'none'}"))
    return out


def _generator(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm, ep in _each_endpoint(run):
        late, dropped = ep.open_model.get("late") or 0, ep.open_model.get("dropped") or 0
        intended = ep.open_model.get("intended") or 0
        if dropped > 0 or (intended and late / intended >= LATE_SHARE):
            out.append(Finding("generator", sm.scale, ep.name,
                               f"open model: {late:g} late and {dropped:g} dropped of {intended:g} intended requests"))
    return out


def _api_db_latency(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm, ep in _each_endpoint(run):
        target = slo.recall_p95_ms if ep.name in ("recall_text", "recall") else (
            slo.write_p95_ms if ep.name == "write" else None)
        p95 = ep.p("p95")
        if target is None or p95 is None or p95 < target:
            continue
        if (ep.share("rate_limited_429") or 0) >= RATE_LIMIT_SHARE:
            continue
        evidence = f"p95 {p95:.2f} ms ≥ target {target:g} ms with 429 share {_pct(ep.share('rate_limited_429') or 0)}"
        action = None
        timing = {k: v for k, v in ep.server_timing_ms.items() if v is not None}
        if timing:
            top = max(timing, key=lambda k: timing[k] or 0)
            evidence += "; Server-Timing: " + ", ".join(f"{k} {v:.2f} ms" for k, v in timing.items())
            action = f"the largest Server-Timing part is `{top}`: profile that first"
        db = _explain_ms(sm, run)
        if db is not None and ep.name in ("recall_text", "recall"):
            share = db / p95
            evidence += f"; EXPLAIN stage1+stage2 execution {db:.2f} ms = {_pct(share)} of p95"
            if share >= DB_SHARE_OF_P95:
                action = action or ("database-dominated: tune stage 1/2 (hnsw.ef_search, shared_buffers so the HNSW "
                                    "graph stays cached, edge indexes) before the API")
            else:
                action = action or ("time is outside the two recall queries: profile the API (its database "
                                    "pool, worker processes, embedding, JSON) and the client (generator CPU)")
        out.append(Finding("api_db_latency", sm.scale, ep.name, evidence, action))
    return out


def _rate_limit_minor(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    out = []
    for sm, ep in _each_endpoint(run):
        n, share, rate = ep.errors.get("rate_limited_429", 0), ep.share("rate_limited_429"), ep.error_rate
        if n > 0 and share is not None and share < RATE_LIMIT_SHARE and rate is not None \
                and rate > slo.max_error_rate:
            out.append(Finding("rate_limit_minor", sm.scale, ep.name,
                               f"{n} of {ep.requests} requests were 429 ({_pct(share)}, below {_pct(RATE_LIMIT_SHARE)})"
                               f" and the error rate {_pct(rate)} exceeds the SLO maximum {_pct(slo.max_error_rate)}"))
    return out


def _explain_is_targets(run: RunMetrics, sm: ScaleMetrics) -> bool:
    """False when the explain file is NOT MEASURED (memload's reference SQL run against an external target): its
    plans and times say nothing about the target's own queries."""
    return not any(n.stage == f"explain_{sm.scale}" for n in run.not_measured)


def _explain_ms(sm: ScaleMetrics, run: RunMetrics | None = None) -> float | None:
    if run is not None and not _explain_is_targets(run, sm):
        return None
    if sm.explain is None or sm.explain.stage1 is None or sm.explain.stage1.execution_ms is None:
        return None
    s2 = sm.explain.stage2.execution_ms if sm.explain.stage2 and sm.explain.stage2.execution_ms else 0.0
    return sm.explain.stage1.execution_ms + s2


def _worker(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    w = run.worker
    if w is None or (run.external and w.mode == "in_process") or w.throughput > slo.worker_min_jobs_per_sec \
            or (w.claimed == 0 and w.processed == 0):
        return []  # an empty outbox is "not measured" (see evaluate_slo), not a slow worker
    evidence = (f"processed/s {w.throughput:.2f} ≤ target {slo.worker_min_jobs_per_sec:g} "
                f"({w.processed} processed, {w.claimed} claimed, {w.failed_jobs} failed)")
    action = None
    if w.failed_jobs > 0:
        action = "jobs are failing: read embedding_last_error / outbox last_error before tuning throughput"
    return [Finding("worker", "run", "worker", evidence, action)]


def _mb(v: float) -> str:
    return f"{v:,.0f} MB"


def _cache_warming(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    """The recall path's hit ratio rose within the case: it measured a cache filling up, not the steady state."""
    out = []
    for sm in run.scales:
        if sm.cost is None or not sm.cost.cases["recall"].measured:
            continue
        rc = sm.cost.cases["recall"]
        first, second = rc.hot_hit_halves
        if first is None or second is None or second - first < WARMING_MIN:
            continue
        evidence = (f"recall window: buffer hit ratio of the nodes heap, embeddings and HNSW together {_pct(first)} "
                    f"in its first half → {_pct(second)} in its second (+{100 * (second - first):.2f} points ≥ "
                    f"{100 * WARMING_MIN:g}): the cache was still filling while the case ran, so its latency, "
                    "throughput and CPU per recall are not the steady state")
        out.append(Finding("cache_warming", sm.scale, rc.endpoint or "recall", evidence))
    return out


def _buffer_cache(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    """The recall path misses shared_buffers on the relations it reads most because they do not fit in it."""
    out = []
    for sm in run.scales:
        c = sm.cost
        if c is None or not c.cases["recall"].measured:
            continue
        rc = c.cases["recall"]
        low = {g: v for g in ("hnsw", "nodes_heap", "embeddings")
               if (v := rc.hit_ratio[g]) is not None and v < HIT_RATIO_MIN}
        hot, sb = c.hot_mb, c.shared_buffers_mb
        if not low or hot is None or sb is None or hot <= sb:
            continue
        hnsw, heap, vectors = (c.sizes_mb[k] for k in ("hnsw", "nodes_heap", "embeddings"))
        ratios = ", ".join(f"{GROUP_LABELS[g]} {_pct(v)}" for g, v in low.items())
        read = f"{rc.read_kb:,.1f} kB per recall" if rc.read_kb is not None else "an unmeasured amount"
        shared = (" (whole-table sizes and counters: " + ", ".join(c.shared_tables) + " also hold other scopes)"
                  if c.shared_tables else "")
        evidence = (f"recall window: buffer hit ratio {ratios} < {_pct(HIT_RATIO_MIN)}; {read} read from outside "
                    f"shared_buffers; HNSW {_mb(hnsw or 0.0)} + nodes heap {_mb(heap or 0.0)}"
                    + (f" + embeddings {_mb(vectors)}" if vectors is not None else "")
                    + f" = {_mb(hot)} > shared_buffers {_mb(sb)} ({hot / sb:.2f}×){shared}")
        ram = c.host_mem_mb
        room = (f" (host RAM {_mb(ram)}: they are {_pct(hot / ram)} of it)" if ram else
                " (host RAM not recorded)")
        precision = sm.ann.check.precision if sm.ann is not None else None
        halfvec = ("the index is already halfvec, so only memory (or a smaller scope) helps" if precision == "halfvec"
                   else "or build the HNSW index on halfvec (`memload seed --precision halfvec`): half the graph")
        action = (f"raise shared_buffers above {_mb(hot)} so the HNSW graph, the nodes heap and the embeddings stay "
                  f"cached, if RAM allows{room}; {halfvec}")
        out.append(Finding("buffer_cache", sm.scale, rc.endpoint or "recall", evidence, action))
    return out


def _cpu_growth(run: RunMetrics, slo: SloTargets) -> list[Finding]:
    """CPU per recall (all cores of the machine) from the smallest to the largest scale that measured it."""
    measured = [(sm, sm.cost.cases["recall"]) for sm in run.scales
                if sm.cost is not None and sm.cost.cases["recall"].cpu_ms["machine"] is not None]
    if len(measured) < 2:
        return []
    (small, a), (large, b) = measured[0], measured[-1]
    first, last = a.cpu_ms["machine"] or 0.0, b.cpu_ms["machine"] or 0.0
    if first <= 0 or last <= CPU_GROWTH * first:
        return []
    parts = {k: (a.cpu_ms[k], b.cpu_ms[k]) for k in ("api", "postgres", "other")}
    grown = {k: y - x for k, (x, y) in parts.items() if x is not None and y is not None}
    where = "; ".join(f"{CPU_LABELS[k]} {parts[k][0]:.2f} → {parts[k][1]:.2f} ms ({d:+.2f})"
                      for k, d in grown.items())
    evidence = (f"CPU per recall {first:.2f} ms at scale {small.scale} → {last:.2f} ms at scale {large.scale} "
                f"({last / first:.2f}× > {CPU_GROWTH:g}×)" + (f"; {where}" if where else
                                                               "; not split between API and PostgreSQL (their CPU "
                                                               "was not sampled)"))
    action = None
    if "api" in grown and "postgres" in grown:
        top = max(("api", "postgres"), key=lambda k: grown[k])
        share = grown[top] / (last - first)
        action = (f"most of the growth is {CPU_LABELS[top]} ({_pct(share)} of it): "
                  + ("profile the database side of a recall (stage-1 scan, hnsw.ef_search, buffer misses)"
                     if top == "postgres" else "profile the API's work per recall (result size, re-ranking, JSON)"))
    return [Finding("cpu_growth", large.scale, b.endpoint or "recall", evidence, action)]


RULES: tuple[Rule, ...] = (
    Rule("rate_limit", "rate limiter (429-dominated run)",
         f"an endpoint's 429 share ≥ {_pct(RATE_LIMIT_SHARE)} of its requests → rate-limit dominated; its latency "
         "is not evidence",
         "lower concurrency or raise the pace (adaptive pacing, AUTO_ADAPT_RATE_LIMIT), or raise the limits for "
         "benchmarking (RECALL_/WRITE_RATE_LIMIT_*, TENANT_* — the Aionis kit's benchmark profile)", _rate_limit),
    Rule("transport", "transport / availability",
         "any transport error (no HTTP status: refused, reset, timeout) → the run measured failures, not the server",
         "check the API is up and not saturated, --timeout-ms, and the generator's CPU; re-run before reading "
         "latency", _category("transport", "transport")),
    Rule("server_errors", "API errors (5xx)", "any 5xx response → the API fails under this load",
         "read the API log for the failing requests (pool exhaustion, statement timeouts) and fix before tuning",
         _category("server_errors", "server_5xx")),
    Rule("client_errors", "request / contract mismatch",
         "any non-429 4xx or any 200 whose body breaks the contract → requests or server do not match the contract",
         "check auth mode and keys, tenant/scope, request bodies and the server version", _client_errors),
    Rule("ann_starvation", "ANN starvation / query set mismatch",
         "empty_recall > 0 on a recall endpoint, or EXPLAIN stage 1 returned fewer rows than its LIMIT from an input "
         "estimated larger",
         "raise hnsw.ef_search or use hnsw.iterative_scan (relaxed_order/strict_order, hnsw.max_scan_tuples); check "
         "the query set belongs to this scope and the seed used distinct vectors", _ann_starvation),
    Rule("ann_recall", "ANN recall below target",
         "recall@k of the recall path (ann_check_<scale>.json, at the hnsw.ef_search the benchmark ran with) below "
         "the SLO minimum → a share of the recalls miss true neighbours; the latency is that of these answers",
         "measure an ef_search sweep (`memload ann-check --ef-sweep`, ANN_EF_SWEEP) and raise hnsw.ef_search "
         "(HNSW_EF_SEARCH) to the smallest value that reaches the target (the matrix does it on its local stack "
         "with TUNE_EF_SEARCH)", _ann_recall),
    Rule("index_planner", "index / planner",
         "EXPLAIN stage 1 has a plan but no ANN index scan (an Index Scan ordered by a pgvector distance operator), "
         "unless the explain header says the scope has fewer ready vectors than HNSW needs; or the explain file's "
         "planner check FAILED (e.g. stage 2 reads more edge rows than its budget)",
         "run `memload check-indexes`, ANALYZE the scope, check the stage-1 shape (ORDER BY embedding <=> $q LIMIT n)"
         " and PGOPTIONS (enable_seqscan/enable_indexscan); for stage 2, bound the edge query to the seeds' "
         "neighbourhood", _index_planner),
    Rule("generator", "load generator (coordinated omission risk)",
         f"open model: any dropped request, or late requests ≥ {_pct(LATE_SHARE)} of intended → the generator could "
         "not hold the arrival rate",
         "add Locust processes/workers (--processes, --worker) or lower --arrival-rate", _generator),
    Rule("api_db_latency", "API/DB latency",
         "p95 ≥ the endpoint's SLO target while its 429 share is below "
         f"{_pct(RATE_LIMIT_SHARE)}; Server-Timing (if recorded) and EXPLAIN time (≥ {_pct(DB_SHARE_OF_P95)} of p95 "
         "= database-dominated) say where the time goes",
         "profile the slow part named in the evidence", _api_db_latency),
    Rule("rate_limit_minor", "rate limiter (a few 429s fail the error-rate SLO)",
         f"429s below {_pct(RATE_LIMIT_SHARE)} of an endpoint's requests (latency still evidence) but its error rate "
         "exceeds the SLO maximum",
         "lower concurrency slightly or let adaptive pacing settle (AUTO_ADAPT_RATE_LIMIT), or raise the limits; "
         "the error-rate SLO counts every 429", _rate_limit_minor),
    Rule("worker", "worker", "worker processed/s ≤ the worker SLO minimum (with jobs to claim)",
         "raise OUTBOX_BATCH_SIZE, run more worker processes, and check failed_marked", _worker),
    Rule("cache_warming", "a cache still warming (the recall figures are not the steady state)",
         f"cost_<scale>.json: the recall path's hit ratio (nodes heap, embeddings, HNSW) rose by ≥ "
         f"{100 * WARMING_MIN:g} points from the first half of the recall case to the second",
         "warm the cache before measuring: raise BENCH_WARMUP (requests sent before the cases) or BENCH_DURATION_S, "
         "or run REPEAT=2 and read the last repeat", _cache_warming),
    Rule("buffer_cache", "buffer cache (the recall path reads outside shared_buffers)",
         f"cost_<scale>.json: in the recall window the HNSW, nodes-heap or embeddings buffer hit ratio is below "
         f"{_pct(HIT_RATIO_MIN)} and their MB together exceed shared_buffers",
         "raise shared_buffers (if RAM allows) so the HNSW graph, the nodes heap and the embeddings stay cached, or "
         "build the HNSW index on halfvec (half the graph)", _buffer_cache),
    Rule("cpu_growth", "CPU per recall grows with the scale",
         f"cost_<scale>.json: CPU ms per recall (all cores of the machine) at the largest measured scale is more "
         f"than {CPU_GROWTH:g}× the smallest's",
         "profile the part that grew (API or PostgreSQL, named in the evidence)", _cpu_growth),
)

NO_BOTTLENECK = Rule("none", "none reached at this load", "no rule above fired",
                     "raise the offered load (concurrency, arrival rate) or the scale until an SLO or rule trips, to "
                     "find the knee", lambda run, slo: [])


@dataclass
class Diagnosis:
    findings: dict[str, list[Finding]]

    @property
    def fired(self) -> list[Rule]:
        return [r for r in RULES if self.findings.get(r.id)]

    @property
    def primary(self) -> Rule:
        fired = self.fired
        return fired[0] if fired else NO_BOTTLENECK

    @property
    def primary_finding(self) -> Finding | None:
        fired = self.fired
        return self.findings[fired[0].id][0] if fired else None

    @property
    def next_action(self) -> str:
        f = self.primary_finding
        return (f.action if f and f.action else None) or self.primary.action


def diagnose(run: RunMetrics, slo: SloTargets) -> Diagnosis:
    return Diagnosis({rule.id: rule.check(run, slo) for rule in RULES})


# --------------------------------------------------------------------------------------------- recommendations
@dataclass
class Recommendation:
    profile: str
    status: str
    text: str


def recommendations(run: RunMetrics, verdict: SloVerdict, diagnosis: Diagnosis) -> list[Recommendation]:
    """Only what follows from this run's numbers: each fired rule's evidence and action, flags drawn from the
    error split, low-confidence p99s, the Server-Timing split and failed worker jobs, and a note when hnsw.ef_search
    was raised for the benchmark. Nothing when nothing applies (the verdict is stated once, in the conclusion; it is
    not repeated here)."""
    out = []
    for rule in diagnosis.fired:
        finding = diagnosis.findings[rule.id][0]
        out.append(Recommendation(f"rule:{rule.id}", "action",
                                  f"{rule.bottleneck} — scale {finding.scale}, {finding.subject}: {finding.evidence}."
                                  f" Next: {finding.action or rule.action}"))
    for sm in run.scales:
        for ep in sm.write_endpoints():
            if ep.failed and ep.errors.get("rate_limited_429", 0) / ep.failed >= WRITE_429_OF_FAILURES:
                out.append(Recommendation("write_slo", "flag",
                                          f"scale {sm.scale}: {ep.errors['rate_limited_429']} of {ep.failed} write "
                                          f"failures are 429 (≥ {_pct(WRITE_429_OF_FAILURES)}): the write limiter, "
                                          "not the API, fails these writes — lower WRITE_CONCURRENCY or raise "
                                          "the target's write rate limits"))
        for ep in sm.recall_endpoints():
            if ep.errors.get("server_5xx", 0) > 0:
                out.append(Recommendation("recall_slo", "flag",
                                          f"scale {sm.scale}: {ep.errors['server_5xx']} recall 5xx on {ep.name}: "
                                          "inspect the API log before reading recall latency"))
        for ep in sm.endpoints.values():
            if ep.p99_low_confidence:
                out.append(Recommendation("p99", "flag",
                                          f"scale {sm.scale}, {ep.name}: p99 rests on {ep.samples:,} samples "
                                          f"(< {LOW_CONFIDENCE_SAMPLES:,}), so fewer than 10 requests decide it: "
                                          "read p95, or run longer (`memload bench --duration-s`) before quoting "
                                          "p99"))
            out += _server_timing_notes(sm, ep)
        a = sm.ann
        if a is not None and a.ef_search_used != a.ef_search:
            at_used = _pct(a.recall) if a.recall is not None else "not measured"
            verb = "raised" if a.raised else "changed"
            who = f"the matrix {verb} hnsw.ef_search" if a.tuned else f"hnsw.ef_search was {verb}"
            out.append(Recommendation("ann_ef_search", "info",
                                      f"scale {sm.scale}: {who} from {a.ef_search} to "
                                      f"{a.ef_search_used} before the benchmark (recall@{a.k} of the recall path "
                                      f"{_pct(a.check.slo_recall)} at {a.ef_search}, {at_used} at "
                                      f"{a.ef_search_used}): the latencies are those of ef_search "
                                      f"{a.ef_search_used}"))
    w = run.worker
    if w is not None and w.failed_jobs > 0 and not any(r.id == "worker" for r in diagnosis.fired):
        out.append(Recommendation("worker", "flag",
                                  f"{w.failed_jobs:,} worker jobs failed (not counted as processed): read the "
                                  "outbox's last_error before reading throughput"))
    return out


SERVER_SHARE = 0.5  # server p50 below this share of client p50: most time is outside the server


def _server_timing_notes(sm: ScaleMetrics, ep: EndpointMetrics) -> list[Recommendation]:
    split = ep.server
    if split is None or not split.reported or not split.server:
        return []
    client, server = split.client.get("p50"), split.server.get("p50")
    db = split.db.get("p50") if split.db else None
    out = []
    if client and server is not None and server < SERVER_SHARE * client:
        out.append(Recommendation("server_timing", "flag",
                                  f"scale {sm.scale}, {ep.name}: the server reports {server:.2f} ms of a "
                                  f"{client:.2f} ms p50 ({_pct(server / client)}): most of the time is outside "
                                  "the server — network, the load generator's CPU, or queueing in front of it"))
    if server and db is not None and db >= DB_SHARE_OF_P95 * server:
        out.append(Recommendation("server_timing", "flag",
                                  f"scale {sm.scale}, {ep.name}: database time is {db:.2f} ms of {server:.2f} ms "
                                  f"server time at p50 ({_pct(db / server)}): start with the query plans"))
    return out


def _fmt(check: SloCheck, value: float | None = None) -> str:
    v = check.value if value is None else value
    if v is None:
        return "n/a"
    return _pct(v) if check.fraction else f"{v:.2f}"
