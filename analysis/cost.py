"""What a scale's benchmark cost the server, from `cost_<scale>.json` and the canonical run's Locust summary: CPU per
request by process group, buffer hit ratios of the relations the recall path reads, blocks read from outside
shared_buffers, and the relations' sizes against shared_buffers and RAM.

The file holds raw cumulative counters; every figure here is the difference of two counters interpolated at a case's
window bounds [first_start, last_end], divided by the case's requests. A figure that cannot be computed is None with
its reason (a series not sampled, a window the samples do not cover, no summary) — never a 0 that was not measured.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from analysis import artifacts as art
from analysis.errors import MalformedArtifact

BLOCK_KB = 8.0  # PostgreSQL's block size
CASES: dict[str, tuple[str, ...]] = {"recall": art.RECALL_ENDPOINTS, "write": art.WRITE_ENDPOINTS}
GROUPS = ("nodes_heap", "embeddings", "hnsw", "nodes_indexes", "edges_heap", "edges_indexes")
GROUP_LABELS = {"nodes_heap": "nodes heap", "embeddings": "embeddings (nodes TOAST)", "hnsw": "HNSW",
                "nodes_indexes": "other nodes indexes", "edges_heap": "edges heap", "edges_indexes": "edges indexes"}
# What a recall's first stage reads per candidate: the row, its float32 vector, the graph. Their hit ratio in the first
# and the second half of a case says whether the cache was still warming while it ran.
HOT_GROUPS = ("nodes_heap", "embeddings", "hnsw")
SIZES = ("nodes_heap", "embeddings", "hnsw", "nodes_indexes", "edges", "total")
SIZE_LABELS = {"nodes_heap": "nodes heap", "embeddings": "embeddings (nodes TOAST)", "hnsw": "HNSW",
               "nodes_indexes": "other nodes indexes", "edges": "edges (heap + indexes)", "total": "all relations"}
CPU_PARTS = ("api", "postgres", "other", "machine")
CPU_LABELS = {"api": "API", "postgres": "PostgreSQL", "other": "other", "machine": "machine"}


def group_of(rel: art.CostRelation) -> str | None:
    """The hit-ratio group of a relation: any HNSW index; the nodes' TOAST, where their 1536-d embeddings live out of
    line (the recall path re-ranks its candidates by them); else by table (memory_nodes / memory_edges) and kind, an
    edges TOAST counting with its heap."""
    if rel.kind == "index" and rel.method.lower() == "hnsw":
        return "hnsw"
    table = rel.table.rsplit(".", 1)[-1]
    if rel.kind == "toast" and table == "memory_nodes":
        return "embeddings"
    part = "heap" if rel.kind in ("heap", "toast") else "indexes"
    if table in ("memory_nodes", "memory_edges"):
        return f"{table.removeprefix('memory_')}_{part}"
    return None


def _size_members(rel: art.CostRelation) -> set[str]:
    group = group_of(rel)
    members = {"total"}
    if group in ("nodes_heap", "embeddings", "hnsw", "nodes_indexes"):
        members.add(group)
    elif group in ("edges_heap", "edges_indexes"):
        members.add("edges")
    return members


# ------------------------------------------------------------------------------------------------ counters
Points = list[tuple[float, float]]


def counter_at(points: Points, t: float) -> float | None:
    """A cumulative counter at `t`, linearly interpolated between the samples around it; None outside the samples."""
    times = [p[0] for p in points]
    i = bisect_right(times, t)
    if i == 0:
        return None
    t0, v0 = points[i - 1]
    if t0 == t:
        return v0
    if i == len(points):
        return None
    t1, v1 = points[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def window_delta(points: Points, start: float, end: float, what: str) -> tuple[float | None, str | None]:
    """How much a cumulative counter grew over [start, end], or None and why (window not covered, went backwards)."""
    if not points:
        return None, f"no sample carries {what}"
    if points[0][0] > start:
        return None, (f"window not covered: the first sample of {what} is {points[0][0] - start:.2f} s after the "
                      "case's first_start")
    if points[-1][0] < end:
        return None, (f"window not covered: the last sample of {what} is {end - points[-1][0]:.2f} s before the "
                      "case's last_end")
    times = [p[0] for p in points]
    inside = [v for _, v in points[bisect_right(times, start) - 1: bisect_left(times, end) + 1]]
    if any(b < a for a, b in pairwise(inside)):
        return None, f"{what} went backwards inside the window (a process restarted or the statistics were reset)"
    lo, hi = counter_at(points, start), counter_at(points, end)
    assert lo is not None and hi is not None
    return hi - lo, None


# ------------------------------------------------------------------------------------------------ figures
@dataclass
class CaseCost:
    """One case's cost over its window: per request figures, hit ratios by group; `why[figure]` says why a figure is
    None (`window` when the whole case is not measurable)."""

    case: str  # recall / write
    endpoint: str | None
    requests: int | None = None
    window_s: float | None = None
    cpu_ms: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(CPU_PARTS))  # per request
    cores_busy: float | None = None  # Δmachine_busy / window seconds
    busy_share: float | None = None  # Δmachine_busy / Δmachine_total
    hit_ratio: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(GROUPS))
    read_kb: float | None = None  # kB per request read from outside shared_buffers
    hot_hit_halves: tuple[float | None, float | None] = (None, None)  # HOT_GROUPS' hit ratio, first / second half
    why: dict[str, str] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return "window" not in self.why


@dataclass
class ScaleCost:
    record: art.CostRecord
    summary: str | None  # the Locust summary the windows come from
    sizes_mb: dict[str, float | None]
    size_why: dict[str, str]
    cases: dict[str, CaseCost]

    @property
    def shared_buffers_mb(self) -> float | None:
        return self.record.memory.get("shared_buffers_mb")

    @property
    def host_mem_mb(self) -> float | None:
        return self.record.memory.get("host_mem_mb")

    @property
    def cpu_cores(self) -> int | None:
        cores = self.record.memory.get("cpu_cores")
        return None if cores is None else int(cores)

    @property
    def hot_mb(self) -> float | None:
        """HNSW + nodes heap + embeddings: what a recall's first stage reads and re-ranks by (a layout without a
        TOAST for the embeddings counts none)."""
        h, n = self.sizes_mb.get("hnsw"), self.sizes_mb.get("nodes_heap")
        return None if h is None or n is None else h + n + (self.sizes_mb.get("embeddings") or 0.0)

    def of_shared_buffers(self, mb: float | None) -> float | None:
        sb = self.shared_buffers_mb
        return None if mb is None or not sb else mb / sb

    @property
    def shared_tables(self) -> list[str]:
        """Tables whose relations also hold other scopes: their counters and sizes are the whole table's."""
        return sorted({r.table for r in self.record.relations if r.shared})

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {"file": r.path.name, "summary": self.summary, "scope": r.scope, "interval_s": r.interval_s,
                "memory": dict(r.memory), "sizes_mb": dict(self.sizes_mb), "sizes_not_measured": dict(self.size_why),
                "total_of_shared_buffers": self.of_shared_buffers(self.sizes_mb.get("total")),
                "shared_tables": self.shared_tables, "cpu_series": dict(r.cpu),
                "cases": {name: {"endpoint": c.endpoint, "requests": c.requests, "window_s": c.window_s,
                                 "cpu_ms_per_request": dict(c.cpu_ms), "cores_busy": c.cores_busy,
                                 "busy_share": c.busy_share, "hit_ratio": dict(c.hit_ratio),
                                 "read_kb_per_request": c.read_kb,
                                 "hot_hit_ratio_halves": list(c.hot_hit_halves), "not_measured": dict(c.why)}
                          for name, c in self.cases.items()}}


def sizes(record: art.CostRecord) -> tuple[dict[str, float | None], dict[str, str]]:
    """MB of each size group; None (and why) when the file lists no such relation or one size was not read."""
    out: dict[str, float | None] = {}
    why: dict[str, str] = {}
    for key in SIZES:
        rels = [r for r in record.relations if key in _size_members(r)]
        unread = [r.name for r in rels if r.mb is None]
        if not rels:
            out[key], why[key] = None, f"no such relation in {record.path.name}"
        elif unread:
            out[key], why[key] = None, f"size of {unread[0]} not read"
        else:
            out[key] = round(sum(r.mb or 0.0 for r in rels), 3)
    return out, why


def _cpu_missing(record: art.CostRecord, group: str) -> str | None:
    if record.cpu.get(group) is None:
        return record.not_measured.get(group) or f"`cpu.{group}` is null: not sampled"
    return None


def _cpu_delta(record: art.CostRecord, series: str, start: float, end: float) -> tuple[float | None, str | None]:
    group = "machine" if series.startswith("machine") else series
    why = _cpu_missing(record, group)
    if why is not None:
        return None, why
    points = [(s.t, s.cpu_s[series]) for s in record.samples if series in s.cpu_s]
    return window_delta(points, start, end, f"cpu_s.{series}")


def _block_deltas(record: art.CostRecord, start: float, end: float) -> dict[str, tuple[float | None, float | None,
                                                                                          str | None]]:
    """Per relation: (Δhit, Δread, why not) over the window."""
    out = {}
    for rel in record.relations:
        pts = [(s.t, s.blocks[rel.name]) for s in record.samples if s.blocks is not None and rel.name in s.blocks]
        dh, why = window_delta([(t, float(v[0])) for t, v in pts], start, end, f"blocks.{rel.name}")
        dr, why_r = window_delta([(t, float(v[1])) for t, v in pts], start, end, f"blocks.{rel.name}")
        out[rel.name] = (dh, dr, why or why_r)
    return out


def case_cost(record: art.CostRecord, case: str, endpoint: str | None, window: art.CaseWindow | None,
              no_window: str | None = None) -> CaseCost:
    cc = CaseCost(case, endpoint)
    if window is None:
        cc.why["window"] = no_window or f"no {case} case in the Locust summary"
        return cc
    start, end = window.first_start, window.last_end
    if not window.total or start is None or end is None or end <= start:
        cc.why["window"] = f"the {endpoint} case has no request window (total {window.total}, first_start {start}, " \
                           f"last_end {end})"
        return cc
    n, seconds = window.total, end - start
    cc.requests, cc.window_s = n, seconds
    if not record.samples:
        cc.why["window"] = f"{record.path.name} has no samples"
        return cc
    first, last = record.samples[0].t, record.samples[-1].t
    if first > start or last < end:
        edge = (f"the first sample is {first - start:.2f} s after its first_start" if first > start
                else f"the last sample is {end - last:.2f} s before its last_end")
        cc.why["window"] = f"the samples do not cover the {endpoint} window ({edge})"
        return cc
    cpu = {s: _cpu_delta(record, s, start, end) for s in art.CPU_SERIES}
    for part in ("api", "postgres"):
        d, why = cpu[part]
        cc.cpu_ms[part] = None if d is None else 1000.0 * d / n
        if why:
            cc.why[f"cpu.{part}"] = why
    busy, why_busy = cpu["machine_busy"]
    if busy is None:
        cc.why["cpu.machine"] = cc.why["cores_busy"] = why_busy or "not measured"
    else:
        cc.cpu_ms["machine"] = 1000.0 * busy / n
        cc.cores_busy = busy / seconds
        total, why_total = cpu["machine_total"]
        if total:
            cc.busy_share = busy / total
        else:
            cc.why["busy_share"] = why_total or "cpu_s.machine_total did not grow in the window"
    api, pg = cpu["api"][0], cpu["postgres"][0]
    if busy is not None and api is not None and pg is not None:
        other = busy - api - pg
        if other >= 0:
            cc.cpu_ms["other"] = 1000.0 * other / n
        else:
            cc.why["cpu.other"] = (f"the API's and PostgreSQL's CPU ({api + pg:.2f} s) exceed the machine's busy CPU "
                                   f"({busy:.2f} s): the series do not count the same machine")
    else:
        missing = next((f"{CPU_LABELS[k]}: {cc.why[f'cpu.{k}']}" for k in ("machine", "api", "postgres")
                        if f"cpu.{k}" in cc.why), "not measured")
        cc.why["cpu.other"] = f"machine busy − API − PostgreSQL needs all three ({missing})"
    _blocks(record, cc, start, end)
    mid = (start + end) / 2
    cc.hot_hit_halves = (_hot_hit(record, start, mid), _hot_hit(record, mid, end))
    return cc


def _hot_hit(record: art.CostRecord, start: float, end: float) -> float | None:
    """The hit ratio of HOT_GROUPS together over [start, end]; None when any of their counters cannot say."""
    rels = [r for r in record.relations if group_of(r) in HOT_GROUPS]
    if not rels or not any(s.blocks is not None for s in record.samples):
        return None
    deltas = _block_deltas(record, start, end)
    if any(deltas[r.name][2] for r in rels):
        return None
    hit = sum(deltas[r.name][0] or 0.0 for r in rels)
    read = sum(deltas[r.name][1] or 0.0 for r in rels)
    return hit / (hit + read) if hit + read > 0 else None


def _blocks(record: art.CostRecord, cc: CaseCost, start: float, end: float) -> None:
    n = cc.requests or 0
    stopped = record.not_measured.get("blocks")
    if not record.relations or not any(s.blocks is not None for s in record.samples):
        why = stopped or ("no sample carries block counters" if record.relations
                          else f"no relation in {record.path.name}")
        cc.why.update({f"hit.{g}": why for g in GROUPS})
        cc.why["read_kb"] = why
        return
    deltas = _block_deltas(record, start, end)
    if stopped:  # the counters stopped part-way: a window they do not cover says why
        deltas = {k: (h, r, f"{why} ({stopped})" if why else None) for k, (h, r, why) in deltas.items()}
    for group in GROUPS:
        rels = [r for r in record.relations if group_of(r) == group]
        failed = next((f"{r.name}: {deltas[r.name][2]}" for r in rels if deltas[r.name][2]), None)
        if not rels:
            cc.why[f"hit.{group}"] = f"no such relation in {record.path.name}"
        elif failed:
            cc.why[f"hit.{group}"] = failed
        else:
            hit = sum(deltas[r.name][0] or 0.0 for r in rels)
            read = sum(deltas[r.name][1] or 0.0 for r in rels)
            if hit + read > 0:
                cc.hit_ratio[group] = hit / (hit + read)
            else:
                cc.why[f"hit.{group}"] = "no block of it was accessed in the window"
    failed = next((f"{name}: {d[2]}" for name, d in deltas.items() if d[2]), None)
    if failed:
        cc.why["read_kb"] = failed
    else:
        cc.read_kb = BLOCK_KB * sum(d[1] or 0.0 for d in deltas.values()) / n


# ------------------------------------------------------------------------------------------------ loading
def find_summary(directory: Path, scale: str, benchmark: art.Benchmark | None,
                 benchmark_failed: str | None) -> tuple[Path | None, str | None]:
    """The canonical run's Locust summary, named by benchmark_<scale>.json `artifacts.summary` (with REPEAT > 1 the
    canonical run is the last repeat, so the name is never guessed)."""
    if benchmark is None:
        why = benchmark_failed or f"no benchmark_{scale}.json"
        return None, f"no Locust summary to take the windows from ({why}; its `artifacts.summary` names it)"
    if not benchmark.summary_file:
        return None, f"{benchmark.path.name} has no `artifacts.summary` (the Locust summary with the case windows)"
    path = directory / Path(benchmark.summary_file).name  # beside the benchmark JSON, as its other artifacts
    if path.is_file():
        return path, None
    return None, f"{path.name} (named by {benchmark.path.name} `artifacts.summary`) is not in the run directory"


def scale_cost(directory: Path, record: art.CostRecord, benchmark: art.Benchmark | None,
               benchmark_failed: str | None = None) -> ScaleCost:
    """The figures of one scale; the summary's problems make the windows not measured, never the sizes."""
    scale = record.path.name[len("cost_"):-len(".json")]
    summary, why = find_summary(directory, scale, benchmark, benchmark_failed)
    windows: dict[str, art.CaseWindow] = {}
    if summary is not None:
        try:
            windows = art.load_case_windows(summary)
        except MalformedArtifact as exc:
            why = str(exc)
    mb, size_why = sizes(record)
    cases = {}
    for case, endpoints in CASES.items():
        endpoint = next((e for e in endpoints if e in windows), None)
        no_window = why or (f"{summary.name if summary else 'the Locust summary'} has no "
                            f"{' or '.join(endpoints)} case")
        cases[case] = case_cost(record, case, endpoint, windows.get(endpoint) if endpoint else None, no_window)
    return ScaleCost(record, summary.name if summary is not None and why is None else None, mb, size_why, cases)
