"""Convergence of adaptive pacing: the real suite (Locust headless) against the loopback limiter fixture.

For each (rate r, users, per-client / per-tenant) it starts a token-bucket limiter (burst 2r, 600 ms hold, integer
`Retry-After`), runs the suite's recall users for `--duration-s`, and prints what the server counted: achieved
success rate after `--settle-s` as a share of r, the share of requests answered 429 after it, and the time (server
clock) at which a window's success rate first reached 90 % of r. Per-tenant runs fork two Locust processes that
share the tenant's bucket (one process when there is one user).

    python -m benchmarks.bench_pacing                       # full grid, 45 s per cell (about 30 minutes)
    python -m benchmarks.bench_pacing --rates 4,30 --users 1,4 --per client --duration-s 30

A developer benchmark, not a test: figures depend on the machine (a busy one cannot send 200 req/s with 1 user).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.support.suite_run import FixtureRun, run_suite


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="2,4,10,30,100,200", help="limiter rates r (req/s), comma-separated")
    ap.add_argument("--users", default="1,4,16", help="user counts, comma-separated")
    ap.add_argument("--per", default="client,tenant", help="client, tenant or both")
    ap.add_argument("--duration-s", type=float, default=45.0, help="run length of each cell (s)")
    ap.add_argument("--settle-s", type=float, default=30.0, help="achieved rate and 429 share count from here (s)")
    ap.add_argument("--max-wait-ms", type=float, default=600.0, help="the limiter's hold before a 429 (ms)")
    args = ap.parse_args(argv)
    if args.settle_s >= args.duration_s:
        ap.error("--settle-s must be shorter than --duration-s")
    pers = [p.strip() for p in args.per.split(",") if p.strip()]
    if not pers or any(p not in ("client", "tenant") for p in pers):
        ap.error("--per takes client, tenant or client,tenant")
    header = (f"{'r/s':>6} {'users':>5} {'limit':>7} | {'achieved/s':>10} {'of r':>6} {'429 %':>6} "
              f"{'t90 s':>6} | {'ok':>6} {'429':>5}")
    print(f"limiter: burst 2r, hold {args.max_wait_ms:g} ms, Retry-After >= 1 s; {args.duration_s:g} s per cell, "
          f"figures after {args.settle_s:g} s (server clock)")
    print(header)
    print("-" * len(header))
    misses = 0
    with tempfile.TemporaryDirectory(prefix="bench_pacing_") as tmp:
        for per in pers:
            for rate in _floats(args.rates):
                for users in [int(u) for u in _floats(args.users)]:
                    processes = 2 if per == "tenant" and users > 1 else 1
                    run = run_suite(rate, users, per, args.duration_s, Path(tmp), max_wait_ms=args.max_wait_ms,
                                    processes=processes)
                    misses += _row(run, args.settle_s)
    print(f"\ncells missing >= 90 % of r or <= 2 % 429 after {args.settle_s:g} s: {misses}")
    return 0


def _row(run: FixtureRun, settle_s: float) -> int:
    share, p429, ok, n429 = run.after(settle_s)
    t90 = run.time_to_90()
    miss = share < 0.9 or p429 > 0.02 or t90 is None or t90 > 30.0
    t90_text = "-" if t90 is None else f"{t90:.1f}"
    print(f"{run.rate:>6g} {run.users:>5} {run.per:>7} | {share * run.rate:>10.2f} {share:>6.0%} {p429:>6.2%} "
          f"{t90_text:>6} | {ok:>6} {n429:>5}{'  <- miss' if miss else ''}", flush=True)
    return int(miss)


if __name__ == "__main__":
    sys.exit(main())
