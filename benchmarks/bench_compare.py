"""Benchmark of `memload compare`: two synthetic runs of N per-request records each, compared end to end.

Each run is one scale with a recall_text and a write case (70 % / 30 % of the records), written as the bench writes
them: `benchmark_<scale>.json` naming `<prefix>_requests.csv`. Both runs draw from one distribution (different
seeds), so the expected verdict is "no significant change". Prints JSON: the wall time of the `memload compare`
command (Python start-up included) and, in process, the wall and CPU time of loading the records and of the
bootstrap (CPU time is the figure a busy neighbour disturbs least).

    .venv/bin/python -m benchmarks.bench_compare [--records 100000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memload.config import REPO_ROOT

T0 = 1_790_000_000.0


def synthesize(directory: Path, records: int, seed: int, scale: str = "100000") -> None:
    """A run directory whose two cases hold `records` requests in all, at 200 req/s (recall) and 80 req/s (write)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = f"locust_{scale}"
    frames, cases, start = [], [], T0
    for name, share, rps, median_ms in (("recall_text", 0.7, 200.0, 6.0), ("write", 0.3, 80.0, 12.0)):
        n = int(records * share)
        t = start + np.sort(rng.uniform(0.0, n / rps, n))
        lat = median_ms * rng.lognormal(0.0, 0.5, n)
        cat = np.where(rng.uniform(size=n) < 0.002, "5xx", "ok")
        frames.append(pd.DataFrame({"t_s": t.round(3), "endpoint": name, "latency_ms": lat.round(4),
                                    "status": np.where(cat == "ok", 200, 503), "category": cat,
                                    "server_ms": "", "db_ms": ""}))
        ok = np.sort(lat[cat == "ok"])

        def pct(q: float, ok: np.ndarray = ok) -> float:
            return float(ok[max(0, int(np.ceil(len(ok) * q)) - 1)])

        failed = int((cat != "ok").sum())
        cases.append({"name": name, "total": n, "ok": n - failed, "failed": failed, "rps": rps,
                      "latency_ms": {"min": float(ok[0]), "p50": pct(.5), "p95": pct(.95), "p99": pct(.99),
                                     "max": float(ok[-1]), "mean": float(ok.mean())},
                      "by_status": {"200": n - failed, "503": failed}})
        start = float(t[-1]) + 1.0
    pd.concat(frames).to_csv(directory / f"{prefix}_requests.csv", index=False)
    (directory / f"benchmark_{scale}.json").write_text(json.dumps({
        "ok": True, "scope": f"perf_{scale}", "tenant_id": "default", "params": {"mode": "all"}, "cases": cases,
        "artifacts": {"csv_prefix": prefix}, "run": {"requests_file": f"{prefix}_requests.csv"}}, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="per-request records per run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the command (the median is printed)")
    ap.add_argument("--keep", help="write the runs here and keep them")
    args = ap.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="memload_bench_compare_"))
    base, cand = root / "base", root / "cand"
    synthesize(base, args.records, seed=1)
    synthesize(cand, args.records, seed=2)

    from analysis.compare import Thresholds, compare_runs, load_run

    t0, c0 = time.perf_counter(), time.process_time()
    runs = load_run(base), load_run(cand)
    t1, c1 = time.perf_counter(), time.process_time()
    result = compare_runs(*runs, Thresholds())
    t2, c2 = time.perf_counter(), time.process_time()

    wall, verdict, code = [], None, None
    for _ in range(args.repeat):
        s = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "scripts.cli", "compare", str(base), str(cand), "--output", "-"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        wall.append(time.perf_counter() - s)
        code, verdict = proc.returncode, json.loads(proc.stdout)["verdict"] if proc.stdout else proc.stderr[-300:]
    print(json.dumps({
        "records_per_run": args.records, "resamples": Thresholds().resamples, "metrics_compared": result.family,
        "in_process_s": {"load_records": round(t1 - t0, 3), "bootstrap_and_verdict": round(t2 - t1, 3)},
        "in_process_cpu_s": {"load_records": round(c1 - c0, 3), "bootstrap_and_verdict": round(c2 - c1, 3)},
        "command_wall_s": {"median": round(statistics.median(wall), 3), "runs": [round(w, 3) for w in wall]},
        "verdict": verdict, "exit_code": code, "directory": str(root) if args.keep else None,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
