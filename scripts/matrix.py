"""`memload matrix`: the one-command baseline (the peer's phase-d-matrix.sh), phase by phase.

Per scale: purge (when the strategy says) → seed → benchmark with the peer's adaptive retry loop → EXPLAIN;
then the worker benchmark, then the report. Each phase is a `memload` subprocess whose JSON/text output lands in the
run directory under the seed document's names, so a run can be re-analysed later from files alone. Whatever
happens (a failed phase, Ctrl-C), every process started here is stopped and a report of what ran is still written.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memload.config import REPO_ROOT, Settings
from memload.embedder import fake_embed
from memload.errors import MemloadError
from scripts.common import log
from scripts.hostinfo import host_info
from scripts.matrix_config import BENCHMARK_RATE_LIMITS, MatrixConfig

SOURCE_ANCHOR_TEXT = "perf source anchor vector"


@dataclass
class Phase:
    name: str
    started_at: float
    elapsed_s: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class RunState:
    out_dir: Path
    phases: list[Phase] = field(default_factory=list)
    interrupted: bool = False
    failed: str | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        ph = Phase(name, time.time())
        self.phases.append(ph)
        log(f"phase {name} …", prefix="matrix")
        t0 = time.perf_counter()
        try:
            yield ph
            ph.ok = True
        except BaseException as exc:
            ph.detail = ph.detail or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise
        finally:
            ph.elapsed_s = round(time.perf_counter() - t0, 3)
            log(f"phase {name} {'ok' if ph.ok else 'FAILED'} in {ph.elapsed_s:.1f}s"
                + (f": {ph.detail}" if ph.detail and not ph.ok else ""), prefix="matrix")


def _memload(args: list[str], *, env: dict[str, str], out: Path | None = None, timeout: float = 3600,
             ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run `memload ARGS` as a child process; stdout goes to `out` when given; stderr streams through."""
    cmd = [sys.executable, "-m", "scripts.cli", *args]
    # Own process group: on Ctrl-C / failure the whole tree (e.g. bench → Locust master + workers) is stopped.
    child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                             start_new_session=True)
    try:
        stdout, _ = child.communicate(timeout=timeout)
    except BaseException:
        _stop_group(child)
        raise
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, None)
    if out is not None:
        out.write_text(proc.stdout)
    if proc.returncode not in ok_codes:
        raise MemloadError(f"`memload {' '.join(args[:2])}` exited with {proc.returncode}")
    return proc


def _stop_group(child: subprocess.Popen[str], grace_s: float = 10.0) -> None:
    """SIGINT the child's process group (children write what they can), then SIGKILL whatever is left."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; make sure no member of its group outlives it
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise MemloadError(f"POST {url} -> {exc.code}: {exc.read()[:300]!r}") from None


def _auth_headers() -> dict[str, str]:
    headers = {}
    if os.environ.get("PERF_API_KEY"):
        headers["x-api-key"] = os.environ["PERF_API_KEY"]
    if os.environ.get("PERF_AUTH_BEARER"):
        headers["authorization"] = f"Bearer {os.environ['PERF_AUTH_BEARER']}"
    return headers


def ensure_source_vector(base_url: str, scope: str, tenant_id: str) -> None:
    """The seeder copies/needs one READY vector in the source scope (peer semantics): write one, idempotently."""
    _post_json(f"{base_url}/v1/memory/write", {
        "tenant_id": tenant_id, "scope": scope, "input_text": "memload perf source anchor", "auto_embed": False,
        "memory_lane": "shared",
        "nodes": [{"client_id": "memload_perf_source_anchor", "type": "event", "text_summary": SOURCE_ANCHOR_TEXT,
                   "embedding": fake_embed(SOURCE_ANCHOR_TEXT)}],
    }, _auth_headers())


def adapt_step(cfg: MatrixConfig, mode: str, rc: int, wc: int, pace: int, bench: dict[str, Any]
               ) -> tuple[bool, int, int, int, dict[str, Any]]:
    """One step of the peer's adaptive pacing (contract §2). Returns (retry?, rc, wc, pace, stats)."""
    cases = bench.get("cases", [])
    c429 = sum(int(c.get("by_status", {}).get("429", 0)) for c in cases)
    total = sum(int(c.get("total", 0)) for c in cases)
    allowed = math.ceil(total * cfg["SLO_MAX_ERROR_RATE"])
    rate = c429 / total if total else 0.0
    stats = {"last_429": c429, "last_total_requests": total, "last_allowed_429": allowed,
             "last_429_rate": round(rate, 6)}
    if c429 <= allowed:
        return False, rc, wc, pace, stats
    new_rc = rc // 2 if mode != "write" and rc > 1 else rc
    new_wc = wc // 2 if mode != "recall" and wc > 1 else wc
    m = 4 if rate >= 0.5 else 3 if rate >= 0.2 else 2 if rate >= 0.05 else 1
    new_pace = min(cfg["PACE_MAX_MS"], pace + cfg["PACE_STEP_MS"] * m)
    changed = (new_rc, new_wc, new_pace) != (rc, wc, pace)
    return changed, new_rc, new_wc, new_pace, stats


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: stop what was started, write the partial report."""
    raise KeyboardInterrupt


class Matrix:
    """Runs the matrix described by a resolved `MatrixConfig`."""

    def __init__(self, cfg: MatrixConfig, settings: Settings) -> None:
        self.cfg = cfg
        self.settings = settings
        out = cfg["OUT_DIR"] or str(REPO_ROOT / "artifacts" / "perf" / cfg["MATRIX_TAG"])
        self.state = RunState(Path(out).resolve())
        self.base_url = cfg["BASE_URL"]
        self.database_url = settings.database_url
        self.stack: Any = None
        self.env = dict(os.environ)

    # ----------------------------------------------------------------- orchestration
    def run(self) -> int:
        out = self.state.out_dir
        out.mkdir(parents=True, exist_ok=True)
        print(self.cfg.echo(), file=sys.stderr)
        log(f"artifacts: {out}", prefix="matrix")
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._write_manifest()
            self._bring_up()
            self._write_manifest()
            for scale in self.cfg["SCALES"]:
                self._run_scale(scale)
            if self.cfg["RUN_WORKER_BENCHMARK"]:
                self._worker_benchmark()
        except KeyboardInterrupt:
            self.state.interrupted = True
            log("interrupted: stopping and writing a partial report", prefix="matrix")
        except MemloadError as exc:
            self.state.failed = str(exc)
            log(f"failed: {exc}", prefix="matrix")
        finally:
            self._tear_down()
            signal.signal(signal.SIGTERM, previous)
            self._write_manifest()
            self._report()
            self._write_manifest()
        if self.state.interrupted:
            return 130
        return 1 if self.state.failed else 0

    def _bring_up(self) -> None:
        if self.base_url and not self.database_url:
            raise MemloadError("BASE_URL is set but DATABASE_URL is not: seeding and EXPLAIN need the target's "
                               "database; set DATABASE_URL too (or unset BASE_URL to use the local stack)")
        if self.base_url:
            log(f"targeting {self.base_url}; starting nothing", prefix="matrix")
            self.env["DATABASE_URL"] = self.database_url or ""
            return
        with self.state.phase("stack_up"):
            from scripts.stack import LocalStack

            api_env = dict(BENCHMARK_RATE_LIMITS) if self.cfg["LOCAL_RATE_LIMIT_PROFILE"] == "benchmark" else {}
            self.stack = LocalStack(self.settings, worker=False, api_env=api_env, log_dir=self.state.out_dir / "logs")
            self.stack.start()
            self.base_url = self.stack.base_url
            self.database_url = self.stack.database_url
            self.env["DATABASE_URL"] = self.database_url

    def _tear_down(self) -> None:
        if self.stack is not None:
            with self.state.phase("stack_down"):
                self.stack.stop()
            self.stack = None

    # ----------------------------------------------------------------- per scale
    def _run_scale(self, scale: int) -> None:
        cfg, out = self.cfg, self.state.out_dir
        scope = cfg.scope_for(scale)
        if cfg.should_reset() and cfg["RESET_IMPL"] == "scope_purge":
            with self.state.phase(f"purge_{scale}"):
                args = ["purge", "--scope", scope, "--tenant-id", cfg["TENANT_ID"], "--mode",
                        cfg["RESET_PURGE_MODE"], "--batch-size", "5000", "--apply"]
                if cfg["RESET_PURGE_ALLOW_FALLBACK_DELETE"]:
                    args.append("--allow-fallback-delete")
                if cfg["RESET_PURGE_FAIL_ON_DELETE"]:
                    args.append("--fail-on-delete")
                _memload(args, env=self.env, out=out / f"purge_{scale}.json")
        with self.state.phase(f"seed_{scale}"):
            ensure_source_vector(self.base_url, cfg["SRC_SCOPE"], cfg["SRC_TENANT_ID"])
            args = ["seed", "--scope", scope, "--tenant-id", cfg["TENANT_ID"], "--src-scope", cfg["SRC_SCOPE"],
                    "--src-tenant-id", cfg["SRC_TENANT_ID"], "--events", str(scale), "--topics",
                    str(cfg.topics_for(scale)), "--vectors", cfg["SEED_VECTORS"], "--seed",
                    str(cfg["SEED_RANDOM_SEED"]), "--query-set-out", str(out / f"query_set_{scale}.json")]
            if cfg.should_reset() and cfg["RESET_IMPL"] == "perf_seed":
                args.append("--reset")
            _memload(args, env=self.env, out=out / f"seed_{scale}.json")
        with self.state.phase(f"benchmark_{scale}"):
            self._benchmark(scale, scope)
        if cfg["PERF_PROFILE"] == "worker_slo":
            with self.state.phase(f"worker_backlog_{scale}"):
                self._backlog(cfg["WORKER_SCOPE"] or scope)
        if cfg["RUN_EXPLAIN"]:
            with self.state.phase(f"explain_{scale}"):
                proc = _memload(["explain", "--scope", scope, "--tenant-id", cfg["TENANT_ID"], "--lim", "30",
                                 "--out", str(out / f"explain_{scale}.txt")], env=self.env, ok_codes=(0, 3))
                if proc.returncode != 0:
                    self.state.phases[-1].detail = "planner check failed (see explain file)"

    def _benchmark(self, scale: int, scope: str) -> None:
        """The peer's adaptive retry loop, then REPEAT−1 more runs at the settings it settled on.

        Each case runs BENCH_DURATION_S seconds after warm-up unless RECALL_REQUESTS / WRITE_REQUESTS give it a
        request count. With REPEAT=N > 1 the runs are `benchmark_<scale>_rep<k>.json` (CSV prefix
        `locust_<scale>_rep<k>`; repeat 1 is the adaptive loop's last attempt) and `benchmark_<scale>.json` is a copy
        of the last repeat; `memload compare` uses every repeat.
        """
        cfg, out = self.cfg, self.state.out_dir
        mode, repeat = cfg["BENCH_MODE"], cfg["REPEAT"]
        rc, wc, pace = cfg["RECALL_CONCURRENCY"], cfg["WRITE_CONCURRENCY"], cfg["BENCH_PACE_MS"]
        initial = {"recall_concurrency": rc, "write_concurrency": wc, "pace_ms": pace}
        counts = {"recall": cfg["RECALL_REQUESTS"], "write": cfg["WRITE_REQUESTS"]}
        cases = [c for c in ("recall", "write") if mode in ("all", c)]
        timed = any(counts[c] is None for c in cases)

        def run(prefix: str, target: Path) -> dict[str, Any]:
            args = ["bench", "--base-url", self.base_url, "--scope", scope, "--tenant-id", cfg["TENANT_ID"],
                    "--mode", mode, "--warmup", str(cfg["BENCH_WARMUP"]),
                    "--recall-concurrency", str(rc), "--write-concurrency", str(wc),
                    "--timeout-ms", str(cfg["BENCH_TIMEOUT_MS"]), "--pace-ms", str(pace),
                    "--profile", cfg["PERF_PROFILE"], "--query-set", str(out / f"query_set_{scale}.json"),
                    "--csv", str(out / prefix), "--out", str(target)]
            if timed:
                args += ["--duration-s", str(cfg["BENCH_DURATION_S"])]
            for case in cases:
                if counts[case] is not None:
                    args += [f"--{case}-requests", str(counts[case])]
            if cfg["EMBED_ON_WRITE"]:
                args.append("--embed-on-write")
            if cfg["BENCH_FAIL_ON_TRANSPORT_ERROR_RATE"] is not None:
                args += ["--fail-on-transport-error-rate", str(cfg["BENCH_FAIL_ON_TRANSPORT_ERROR_RATE"])]
            proc = _memload(args, env=self.env, ok_codes=(0, 2, 3))
            if proc.returncode == 2:
                self.state.phases[-1].detail = "transport-error gate failed"
            return json.loads(target.read_text())

        first_prefix = f"locust_{scale}_rep1" if repeat > 1 else f"locust_{scale}"
        attempt, retries_used, exhausted = 0, 0, False
        stats: dict[str, Any] = {"last_429": 0, "last_total_requests": 0, "last_allowed_429": 0, "last_429_rate": 0}
        while True:
            attempt += 1
            target = out / f"benchmark_{scale}_attempt{attempt}.json"
            bench = run(first_prefix, target)
            (out / f"benchmark_{scale}.json").write_text(target.read_text())
            if not cfg["AUTO_ADAPT_RATE_LIMIT"]:
                break
            retry, rc2, wc2, pace2, stats = adapt_step(cfg, mode, rc, wc, pace, bench)
            if not retry:
                break
            if retries_used >= cfg["MAX_RATE_LIMIT_RETRIES"]:
                exhausted = True
                break
            retries_used += 1
            log(f"429s: {stats['last_429']}/{stats['last_total_requests']}; retry with recall_concurrency={rc2} "
                f"write_concurrency={wc2} pace_ms={pace2}", prefix="matrix")
            rc, wc, pace = rc2, wc2, pace2
        reps: list[str] = []
        if repeat > 1:
            (out / f"benchmark_{scale}_rep1.json").write_text(target.read_text())
            reps.append(f"benchmark_{scale}_rep1.json")
            for k in range(2, repeat + 1):
                log(f"benchmark {scale}: repeat {k}/{repeat}", prefix="matrix")
                rep = out / f"benchmark_{scale}_rep{k}.json"
                run(f"locust_{scale}_rep{k}", rep)
                reps.append(rep.name)
            (out / f"benchmark_{scale}.json").write_text((out / reps[-1]).read_text())
        adapt = {
            "scale": scale, "auto_adapt": cfg["AUTO_ADAPT_RATE_LIMIT"],
            "max_rate_limit_retries": cfg["MAX_RATE_LIMIT_RETRIES"], "retries_used": retries_used,
            "attempts_total": attempt, "exhausted": exhausted, "initial": initial,
            "final": {"recall_concurrency": rc, "write_concurrency": wc, "pace_ms": pace, **stats},
            "repeat": repeat, "repeats": reps, "canonical": reps[-1] if reps else target.name,
        }
        (out / f"benchmark_adapt_{scale}.json").write_text(json.dumps(adapt, indent=2) + "\n")

    def _backlog(self, scope: str) -> None:
        """worker_slo: writes with auto_embed=true create the outbox backlog the worker benchmark drains."""
        _memload(["worker-bench", "--scope", scope, "--iterations", "0", "--backlog-writes",
                  str(self.cfg["WORKER_BACKLOG_WRITES"]), "--base-url", self.base_url, "--tenant-id",
                  self.cfg["TENANT_ID"], "--backlog-only"], env=self.env)

    def _worker_benchmark(self) -> None:
        cfg, out = self.cfg, self.state.out_dir
        with self.state.phase("worker_benchmark"):
            if cfg["PERF_PROFILE"] == "worker_slo":
                scope, tenant = cfg["WORKER_SCOPE"] or cfg.scope_for(cfg["SCALES"][0]), cfg["TENANT_ID"]
                args = ["worker-bench", "--scope", scope, "--tenant-id", tenant]
            else:
                scope, tenant = cfg["SRC_SCOPE"], cfg["SRC_TENANT_ID"]
                args = ["worker-bench", "--scope", scope, "--tenant-id", tenant,
                        "--backlog-writes", str(cfg["WORKER_BACKLOG_WRITES"]), "--base-url", self.base_url]
            args += ["--iterations", str(cfg["WORKER_ITERATIONS"]), "--out", str(out / "worker_baseline.json")]
            _memload(args, env=self.env)

    # ----------------------------------------------------------------- outputs
    def _report(self) -> None:
        out = self.state.out_dir
        cfg = self.cfg
        args = ["report", "--dir", str(out), "--slo-recall-p95-ms", str(cfg["SLO_RECALL_P95_MS"]),
                "--slo-write-p95-ms", str(cfg["SLO_WRITE_P95_MS"]), "--slo-max-error-rate",
                str(cfg["SLO_MAX_ERROR_RATE"]), "--slo-worker-min-jobs-per-sec",
                str(cfg["SLO_WORKER_MIN_JOBS_PER_SEC"])]
        ph = Phase("report", time.time())
        t0 = time.perf_counter()
        try:
            _memload(args, env=self.env, timeout=600)
            ph.ok = True
        except (MemloadError, subprocess.TimeoutExpired, OSError) as exc:
            ph.detail = str(exc)
            log(f"report failed: {exc}", prefix="matrix")
        ph.elapsed_s = round(time.perf_counter() - t0, 3)
        self.state.phases.append(ph)

    def _write_manifest(self) -> None:
        manifest = {
            "tool": "memload matrix",
            "matrix_tag": self.cfg["MATRIX_TAG"],
            "config": {k: v for k, v in self.cfg.values.items()},
            "config_sources": self.cfg.sources,
            "target": {"base_url": self.base_url, "local_stack": self.stack is not None or not self.cfg["BASE_URL"],
                       "local_rate_limits": BENCHMARK_RATE_LIMITS if (
                           not self.cfg["BASE_URL"] and self.cfg["LOCAL_RATE_LIMIT_PROFILE"] == "benchmark") else None},
            "host": host_info(),
            "database": database_info(self.database_url) if self.database_url else None,
            "api_settings": {"hnsw_ef_search": self.settings.hnsw_ef_search,
                             "hnsw_iterative_scan": self.settings.hnsw_iterative_scan,
                             "hnsw_max_scan_tuples": self.settings.hnsw_max_scan_tuples,
                             "db_pool_max": self.settings.db_pool_max,
                             "api_workers": self.settings.api_workers},
            "phases": [asdict(p) for p in self.state.phases],
            "interrupted": self.state.interrupted,
            "failed": self.state.failed,
            "complete": bool(self.state.phases) and all(p.ok for p in self.state.phases)
            and not self.state.interrupted and not self.state.failed,
        }
        (self.state.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


PG_SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size", "max_connections",
               "random_page_cost", "jit", "max_parallel_workers_per_gather", "synchronous_commit")


def database_info(url: str) -> dict[str, Any]:
    from memload.db import connection

    try:
        with connection(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            vec = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}
    except MemloadError as exc:
        return {"error": str(exc)}
    return {"postgres": version, "pgvector": vec[0] if vec else None, "settings": settings}
