"""Builders of run-directory artifacts (docs/ARTIFACTS.md formats) for the report and compare tests, and a check of
what a plot actually drew.

Each builder writes exactly what it is given, so a test knows every input number and can compute the expected
report figures independently.
"""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from memload.net import free_port
from tests.support.api import wait_http
from tests.support.cli import PYTHON

EXPLAIN_HNSW = """\
-- memload explain: scope=perf tenant_id=default scope_key=perf lim=30 oversample=5
-- settings: hnsw.ef_search=100 hnsw.iterative_scan=relaxed_order plan_cache_mode=force_generic_plan
-- server: PostgreSQL 18.1, pgvector 0.8.5
-- ready hot/warm vectors: 1010 (HNSW required from 1000)
-- check: ok: stage 1 uses the HNSW index

-- stage1: ANN seeds (EXECUTE memload_explain_stage1)
                                   QUERY PLAN
-------------------------------------------------------------------------------------------
 Limit  (cost=30.67..33.38 rows=30 width=12) (actual time=0.461..0.500 rows=30.00 loops=1)
   Buffers: shared hit=608
   ->  Index Scan using memory_nodes_p_0a1b2c3d4e5f6a7b_embedding_idx on memory_nodes_p_0a1b2c3d4e5f6a7b n  \
(cost=30.67..1577.50 rows=20000 width=12) (actual time=0.459..0.492 rows=30.00 loops=1)
         Order By: (embedding <=> $1)
         Filter: (scope = 'perf'::text)
         Index Searches: 1
         Buffers: shared hit=608
 Planning Time: 0.342 ms
 Execution Time: 1.250 ms
(10 rows)

-- stage2: neighbourhood edges (EXECUTE memload_explain_stage2)
 Limit  (cost=120.10..130.20 rows=500 width=64) (actual time=1.201..2.950 rows=500.00 loops=1)
   ->  Sort  (cost=120.10..125.00 rows=1000 width=64) (actual time=1.200..2.900 rows=500.00 loops=1)
         Sort Key: e.weight DESC, e.confidence DESC
         Sort Method: top-N heapsort  Memory: 120kB
         ->  Index Scan using memory_edges_p_0a1b_scope_src_id_type_idx on memory_edges_p_0a1b e  \
(cost=0.42..90.00 rows=1000 width=64) (actual time=0.020..0.800 rows=1200.00 loops=1)
               Index Cond: ((scope = 'perf'::text) AND (src_id = ANY ($2)))
 Planning Time: 0.410 ms
 Execution Time: 3.750 ms
"""

EXPLAIN_SEQSCAN = """\
-- stage1
 Limit  (cost=5000.00..5000.10 rows=30 width=12) (actual time=40.100..40.120 rows=30.00 loops=1)
   ->  Sort  (cost=5000.00..5050.00 rows=20000 width=12) (actual time=40.090..40.100 rows=30.00 loops=1)
         Sort Key: ((embedding <=> $1))
         ->  Seq Scan on memory_nodes_p_0a1b2c3d4e5f6a7b n  (cost=0.00..4000.00 rows=20000 width=12) \
(actual time=0.010..30.000 rows=20000.00 loops=1)
               Filter: (scope = 'perf'::text)
 Planning Time: 0.300 ms
 Execution Time: 40.500 ms
-- stage2
 Limit  (cost=1.00..2.00 rows=500 width=64) (actual time=1.000..2.000 rows=500.00 loops=1)
 Planning Time: 0.200 ms
 Execution Time: 2.000 ms
"""

# The stage-1 LIMIT asks 150 rows from an index scan estimated at 20000, and only 40 come back (ef_search = 40 with
# a post-scan filter): the shape pgvector shows when filtered candidates are not replaced.
EXPLAIN_SHORT = """\
-- stage1
 Limit  (cost=30.67..42.27 rows=150 width=12) (actual time=0.495..0.556 rows=40.00 loops=1)
   ->  Index Scan using n_p_abc_embedding_idx on n_p_abc n  (cost=30.67..1577.50 rows=20000 width=12) \
(actual time=0.494..0.552 rows=40.00 loops=1)
         Order By: (embedding <=> '[1,2,3]'::vector)
         Filter: (scope = 'perf'::text)
 Planning Time: 0.132 ms
 Execution Time: 0.573 ms
"""


def nearest_rank(values: list[float], q: float) -> float:
    """The Aionis kit's percentile: sorted[ceil(n·q) − 1]."""
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * q) - 1)]


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2))
    return path


def case(name: str, latencies: list[float], by_status: dict[str, int], *, rps: float = 50.0,
         errors: dict[str, int] | None = None, open_model: dict[str, int] | None = None,
         server_timing_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """A benchmark case whose latency block is the nearest-rank summary of `latencies` (successes)."""
    total = sum(by_status.values())
    ok = sum(v for k, v in by_status.items() if k.isdigit() and 200 <= int(k) < 300)
    c: dict[str, Any] = {
        "name": name, "total": total, "ok": ok, "failed": total - ok, "rps": rps,
        "latency_ms": {"min": min(latencies), "p50": nearest_rank(latencies, .5), "p95": nearest_rank(latencies, .95),
                       "p99": nearest_rank(latencies, .99), "max": max(latencies),
                       "mean": sum(latencies) / len(latencies)} if latencies else
        {"min": None, "p50": None, "p95": None, "p99": None, "max": None, "mean": None},
        "by_status": by_status, "transport_error_count": sum(v for k, v in by_status.items() if k.startswith("error:")),
        "transport_error_rate": 0.0,
    }
    if errors is not None:
        c["errors"] = errors
    if open_model is not None:
        c["open_model"] = open_model
    if server_timing_ms is not None:
        c["server_timing_ms"] = server_timing_ms
    return c


def write_benchmark(directory: Path, scale: str, cases: list[dict[str, Any]], **extra: Any) -> Path:
    doc = {"ok": True, "base_url": "http://127.0.0.1:3001", "auth_mode": "none", "scope": f"perf_{scale}",
           "tenant_id": "default",
           "params": {"mode": "all", "recall_concurrency": 12, "write_concurrency": 4, "pace_ms": 0,
                      "adaptive": "on", "profile": "balanced", "locust_version": "2.47.0"},
           "cases": cases, "artifacts": {"csv_prefix": f"locust_{scale}"}}
    doc.update(extra)
    return write_json(directory / f"benchmark_{scale}.json", doc)


def write_seed(directory: Path, scale: str, nodes: int, edges: int) -> Path:
    return write_json(directory / f"seed_{scale}.json", {
        "ok": True, "scope": f"perf_{scale}", "tenant_id": "default", "scope_key": f"perf_{scale}",
        "inserted": {"topics": nodes // 101, "events": nodes - nodes // 101, "edges": edges},
        "totals_in_scope": {"nodes": nodes, "edges": edges}, "elapsed_ms": 1234.5, "vectors": "clustered"})


def write_ann_check(directory: Path, scale: str, recall: float = 0.97, index_recall: float = 0.9, *,
                    recall_distance: float | None = None, ef_search: int = 100, sweep: list[tuple] | None = None,
                    target: float | None = 0.95, ef_search_used: int | None = None,
                    tuned: bool | None = None, k: int = 10, queries: int = 100,
                    index_used: str | bool | None = False) -> Path:
    """`ann_check_<scale>.json` as `memload ann-check` prints it (and the matrix completes it): `recall` (ids matched)
    and `index_recall` measured at `ef_search`, `recall_distance` the ties-counted figure (default: `recall`);
    `sweep` rows are (ef_search, recall path recall, index recall, recall path mean ms, index mean ms[, ties-counted
    recall]); `ef_search_for_target` is computed from the rows as ann-check does; `ef_search_used` and
    `ef_search_tuned` are written only when given; `index_used` too (None: the plan used no index)."""
    rows = []
    for ef, r, ir, pm, im, *tied in (sweep or []):
        rows.append({"ef_search": ef, "recall_at_k": r, "index_recall_at_k": ir, "recall_path_mean_ms": pm,
                     "index_mean_ms": im, **({"recall_at_k_distance": tied[0]} if tied else {})})
    distance = recall if recall_distance is None else recall_distance
    measured = rows or [{"ef_search": ef_search, "recall_at_k": recall, "recall_at_k_distance": distance}]
    reaching = [r["ef_search"] for r in measured
                if target is not None and r.get("recall_at_k_distance", r["recall_at_k"]) >= target]
    doc: dict[str, Any] = {
        "ok": True, "scope": f"perf_{scale}", "tenant_id": "default", "scope_key": f"perf_{scale}", "k": k,
        "queries": queries, "seed": 0, "vectors_in_scope": 1010, "query_node_excluded": True,
        "hnsw": {"ef_search": ef_search, "iterative_scan": "relaxed_order", "max_scan_tuples": 20000},
        "precision": "halfvec", "exact": "numpy", "limit": 30, "candidates": 150,
        "recall_at_k": recall, "index_recall_at_k": index_recall, "recall_at_k_distance": distance,
        "min_recall_at_k": 0.1, "ef_sweep": rows, "target_recall": target,
        "ef_search_for_target": min(reaching) if reaching else None}
    if ef_search_used is not None:
        doc["ef_search_used"] = ef_search_used
    if tuned is not None:
        doc["ef_search_tuned"] = tuned
    if index_used is not False:
        doc["index_used"] = index_used
    return write_json(directory / f"ann_check_{scale}.json", doc)


def write_worker(directory: Path, per_iteration: list[tuple[int, int, float]], *, failed_marked: int = 0,
                 before: int = 500, after: int = 20, mode: str = "in_process", scope: str = "default",
                 job_types: list[dict[str, int]] | None = None, enqueued: dict[str, int] | None = None,
                 scope_nodes: int | None = None, failed: int | None = None) -> Path:
    """per_iteration: (claimed, processed, elapsed_ms) per iteration; the keyword arguments add the fields of the
    worker benchmark's current format (mode, scope_nodes, unit, job types, enqueued_during_run)."""
    processed = sum(p for _, p, _ in per_iteration)
    elapsed = sum(e for _, _, e in per_iteration)
    doc: dict[str, Any] = {
        "ok": True, "scope": scope, "iterations": len(per_iteration), "mode": mode,
        "totals": {"claimed": sum(c for c, _, _ in per_iteration), "processed": processed, "topic_cluster_runs": 1,
                   "embed_backfill_runs": 1, "failed_marked": failed_marked, "elapsed_ms_sum": elapsed,
                   "elapsed_ms_wall": elapsed + 100, "throughput_processed_per_sec": processed / (elapsed / 1000)},
        "outbox_before": {"unpublished": before, "failed": 0, "claimed": 0},
        "outbox_after": {"unpublished": after, "failed": failed_marked, "claimed": 0},
        "per_iteration": [{"iteration": i + 1, "claimed": c, "processed": p, "failed_marked": 0, "elapsed_ms": e,
                           "throughput_processed_per_sec": p / (e / 1000)}
                          for i, (c, p, e) in enumerate(per_iteration)]}
    if job_types is not None:
        doc["unit"] = "jobs/s"
        by_type: dict[str, dict[str, int]] = {}
        for it, types in zip(doc["per_iteration"], job_types, strict=True):
            it["job_types"] = types
            for k, v in types.items():
                by_type.setdefault(k, {"processed": 0, "failed": 0})["processed"] += v
        doc["totals"]["by_job_type"] = by_type
    if enqueued is not None:
        doc["enqueued_during_run"] = enqueued
    if scope_nodes is not None:
        doc["scope_nodes"] = scope_nodes
    if failed is not None:
        doc["totals"]["failed"] = failed
    return write_json(directory / "worker_baseline.json", doc)


def write_target_manifest(directory: Path, kind: str, *, base_url: str = "http://127.0.0.1:3999",
                          health: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                          not_measured: list[dict[str, str]] | None = None,
                          failed_phases: list[dict[str, str]] | None = None) -> Path:
    """manifest.json with the `target` block (and `api_settings` as an old manifest had them, to prove an external
    target's report never shows them)."""
    path = write_manifest(directory)
    doc = json.loads(path.read_text())
    doc["target"] = {"base_url": base_url, "kind": kind, "health": health, "health_status": 200 if health else None,
                     "headers": headers or {}, "probe_error": None}
    doc["api_settings"] = {"hnsw_iterative_scan": "relaxed_order", "db_pool_max": 16, "api_workers": 2}
    doc["not_measured"] = not_measured or []
    doc["failed_phases"] = failed_phases or []
    return write_json(path, doc)


def write_exact(directory: Path, scale: str, endpoints: dict[str, list[float]]) -> Path:
    out = {}
    for name, lat in endpoints.items():
        s = sorted(lat)
        out[name] = {"count": len(s), "min_ms": s[0], "max_ms": s[-1], "mean_ms": sum(s) / len(s),
                     "percentiles_ms": {k: nearest_rank(s, q) for k, q in
                                        (("50", .5), ("66", .66), ("75", .75), ("90", .9), ("95", .95),
                                         ("99", .99), ("99.9", .999))},
                     "cdf": [[v, (i + 1) / len(s)] for i, v in enumerate(s)]}
    return write_json(directory / f"locust_{scale}_exact.json", {"endpoints": out})


def write_pacing(directory: Path, scale: str, rows: list[tuple[float, str, float, int, int]]) -> Path:
    path = directory / f"locust_{scale}_pacing.csv"
    path.write_text("timestamp,endpoint_class,pace_ms,count_429,count_ok\n"
                    + "".join(f"{t},{c},{p},{n429},{ok}\n" for t, c, p, n429, ok in rows))
    return path


def write_adapt(directory: Path, scale: str, *, attempts: int = 2, exhausted: bool = False) -> Path:
    return write_json(directory / f"benchmark_adapt_{scale}.json", {
        "scale": scale, "auto_adapt": True, "max_rate_limit_retries": 4, "retries_used": attempts - 1,
        "attempts_total": attempts, "exhausted": exhausted,
        "initial": {"recall_concurrency": 12, "write_concurrency": 4, "pace_ms": 0},
        "final": {"recall_concurrency": 6, "write_concurrency": 2, "pace_ms": 50, "last_429": 0,
                  "last_total_requests": 280, "last_allowed_429": 0, "last_429_rate": 0.0}})


def write_manifest(directory: Path) -> Path:
    return write_json(directory / "manifest.json", {
        "tool": "memload matrix", "matrix_tag": "t1", "config": {"PERF_PROFILE": "balanced", "RUN_EXPLAIN": True},
        "host": {"hostname": "h", "cpu_model": "Test CPU 9000", "cpu_cores": 2, "mem_gib": 23.5, "os": "Linux-x",
                 "python": "3.11.7", "git_commit": "abc1234", "git_branch": "main", "date": "2026-09-01T10:00:00+0000"},
        "database": {"postgres": "18.0", "pgvector": "0.8.5",
                     "settings": {"shared_buffers": "128MB", "work_mem": "4MB"}},
        "api_settings": {"hnsw_ef_search": 100, "hnsw_iterative_scan": "relaxed_order"},
        "phases": [{"name": "seed_1000", "started_at": 1.0, "elapsed_s": 2.5, "ok": True, "detail": ""},
                   {"name": "benchmark_1000", "started_at": 4.0, "elapsed_s": 7.25, "ok": True, "detail": ""}],
        "interrupted": False, "failed": None, "complete": True})


def write_locust_summary(directory: Path, name: str, cases: dict[str, tuple[int, float | None, float | None]]) -> Path:
    """`<prefix>_summary.json` reduced to what the cost figures read: per case (total, first_start, last_end)."""
    return write_json(directory / name, {
        "locust_version": "2.47.0", "completed": True,
        "cases": {n: {"total": total, "ok": total, "failed": 0, "first_start": first, "last_end": last}
                  for n, (total, first, last) in cases.items()}})


def cost_samples(times: list[float], cpu: dict[str, list[float]],
                 blocks: dict[str, list[tuple[int, int]]] | None = None) -> list[dict[str, Any]]:
    """Samples of `cost_<scale>.json` from columns: one value per time for each CPU series and relation."""
    out = []
    for i, t in enumerate(times):
        sample: dict[str, Any] = {"t": t, "cpu_s": {k: v[i] for k, v in cpu.items()}}
        if blocks is not None:
            sample["blocks"] = {k: list(v[i]) for k, v in blocks.items()}
        out.append(sample)
    return out


def cost_relation(name: str, table: str, kind: str, method: str, mb: float | None, *,
                  shared: bool = False) -> dict[str, Any]:
    return {"name": name, "table": table, "kind": kind, "method": method, "mb": mb, "shared": shared}


LOCAL_CPU = {"api": "the local API's process tree (pid 1234)",
             "postgres": "the PostgreSQL server's processes on this machine (postmaster pid 99), other clients' "
                         "backends excluded",
             "machine": "all cores of this machine (/proc/stat)"}


def write_cost(directory: Path, scale: str, samples: list[dict[str, Any]], relations: list[dict[str, Any]], *,
               shared_buffers_mb: float | None = 8192.0, host_mem_mb: float | None = 32000.0, cpu_cores: int = 4,
               cpu: dict[str, str | None] | None = None, not_measured: dict[str, str] | None = None) -> Path:
    """`cost_<scale>.json` as the matrix writes it (docs/ARTIFACTS.md): exactly the given samples and relations."""
    return write_json(directory / f"cost_{scale}.json", {
        "scale": int(scale) if scale.isdigit() else scale, "scope": f"perf_{scale}", "scope_key": f"perf_{scale}",
        "interval_s": 0.5,
        "memory": {"shared_buffers_mb": shared_buffers_mb, "effective_cache_size_mb": 24576.0,
                   "host_mem_mb": host_mem_mb, "cpu_cores": cpu_cores},
        "relations": relations, "cpu": LOCAL_CPU if cpu is None else cpu, "not_measured": not_measured or {},
        "samples": samples})


REQUEST_HEADER = "t_s,endpoint,latency_ms,status,category,server_ms,db_ms\n"


def records(seconds: float, *, rate: float = 40.0, endpoints: tuple[str, ...] = ("recall_text", "write"),
            start: float = 1_790_000_000.0, server_timing: bool = False, fail_every: int = 0,
            seed: int = 1) -> list[tuple]:
    """Per-request records over `seconds` (every endpoint at `rate` req/s, deterministic): the rows of
    `PREFIX_requests.csv` as `memload bench` writes them; every `fail_every`-th request is a 429."""
    import random

    rnd = random.Random(seed)
    rows: list[tuple] = []
    for e, name in enumerate(endpoints):
        n = max(1, int(seconds * rate))
        for i in range(n):
            t = start + i * seconds / n + e * 0.001
            lat = round(2.0 + 3.0 * e + rnd.expovariate(1.0), 3)
            if fail_every and i % fail_every == fail_every - 1:
                rows.append((round(t, 3), name, round(lat / 2, 3), 429, "429", None, None))
                continue
            srv = round(lat * 0.6, 3) if server_timing else None
            db = round(lat * 0.4, 3) if server_timing else None
            rows.append((round(t, 3), name, lat, 200, "ok", srv, db))
    return sorted(rows)


def write_requests(directory: Path, scale: str, rows: list[tuple], *, prefix: str | None = None) -> Path:
    path = directory / f"{prefix or 'locust_' + scale}_requests.csv"
    path.write_text(REQUEST_HEADER + "".join(
        ",".join("" if v is None else str(v) for v in row) + "\n" for row in rows))
    return path


def case_from_records(name: str, rows: list[tuple], **kw: Any) -> dict[str, Any]:
    """The benchmark case `memload bench` writes for these records (latency over the ok rows)."""
    mine = [r for r in rows if r[1] == name]
    by_status: dict[str, int] = {}
    for r in mine:
        by_status[str(r[3])] = by_status.get(str(r[3]), 0) + 1
    ok = [r[2] for r in mine if r[4] == "ok"]
    c = case(name, ok, by_status, **kw)
    c["samples"] = len(ok)
    c["duration_s"] = round(mine[-1][0] - mine[0][0], 3)
    return c


# ------------------------------------------------------------------------------------------ a real Locust run
SERVER = textwrap.dedent('''
    import json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    lock = threading.Lock(); n = {"write": 0}
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"; wbufsize = 65536; disable_nagle_algorithm = True
        def log_message(self, *a): pass
        def send(self, code, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(code); self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in headers: self.send_header(k, v)
            self.end_headers(); self.wfile.write(data)
        def do_GET(self):
            self.send(200, {"ok": True}) if self.path == "/health" else self.send(500, {"error": "internal_error"})
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.endswith("/recall_text"):
                time.sleep(0.002); self.send(200, {"seeds": [{"id": "x"}]})
            elif self.path.endswith("/write"):
                with lock:
                    n["write"] += 1; k = n["write"]
                if k % 4 == 0: self.send(429, {"error": "tenant_rate_limited_write"}, [("retry-after", "1")])
                else: time.sleep(0.004); self.send(200, {"commit_id": "c"})
            else: self.send(404, {"error": "not_found"})
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')

LOCUSTFILE = textwrap.dedent('''
    from locust import HttpUser, constant, task
    class U(HttpUser):
        wait_time = constant(0.01)
        @task(3)
        def recall(self):
            self.client.post("/v1/memory/recall_text", json={"query_text": "q"}, name="recall_text")
        @task(1)
        def write(self):
            # as the suite's users do: 429s are booked under "<endpoint> [429]" with the category as the failure
            with self.client.post("/v1/memory/write", json={"input_text": "w"}, name="write",
                                  catch_response=True) as resp:
                if resp.status_code == 429:
                    resp.request_meta["name"] = "write [429]"
                    resp.failure("rate_limited_429")
                elif resp.status_code != 200:
                    resp.failure(f"server_5xx: {resp.status_code}")
                else:
                    resp.success()
''')


def real_locust_run(workdir: Path, scale: str = "1000", seconds: int = 4) -> Path:
    """A short real headless Locust 2.47.0 run (--csv-full-history) against a loopback server; returns the dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "server.py").write_text(SERVER)
    (workdir / "locustfile.py").write_text(LOCUSTFILE)
    out = workdir / "run"
    out.mkdir(exist_ok=True)
    port = free_port()
    server = subprocess.Popen([PYTHON, str(workdir / "server.py"), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=20, proc=server)
        t0 = time.monotonic()
        proc = subprocess.run(
            [PYTHON, "-m", "locust", "-f", str(workdir / "locustfile.py"), "--headless", "-u", "2", "-r", "2",
             "-t", f"{seconds}s", "--csv", str(out / f"locust_{scale}"), "--csv-full-history", "--only-summary",
             "-H", f"http://127.0.0.1:{port}", "--exit-code-on-error", "0"],
            capture_output=True, text=True, timeout=60 + seconds)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert time.monotonic() - t0 < 40 + seconds
    finally:
        server.terminate()
        server.wait(10)
    return out


def pixels(path: Path, hex_color: str) -> int:
    """Pixels of one line colour in a PNG: how much of a data series was actually drawn."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)[:, :, :3]
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - rgb).max(axis=2) < 0.06).sum())
