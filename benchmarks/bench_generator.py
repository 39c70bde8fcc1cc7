"""Generator benchmark: requests per CPU-second of one Locust process, the suite's recall and write users against
bare FastHttpUsers sending the same requests, against a static target.

    python -m benchmarks.bench_generator [--users 16] [--seconds 8] [--rounds 2] [--seeds 10]

The target (`benchmarks/static_target.py`, its own process) answers with pre-rendered bytes: a recall answer with
`--seeds` seeds and a `Server-Timing` header, a write acknowledgement. One Locust process runs
`locustfiles/generator_capacity.py`: per endpoint, turns of bare, suite, bare, suite (`--rounds` pairs), one class
at a time. The suite runs as `memload bench` runs it: records file and exact histograms on (`--csv`), response
validation, adaptive pacing, and a time budget (token pool). The headline is requests per CPU-second of the Locust
process (user + sys from /proc): what one generator core sustains, whatever else the shared machine runs. The
target's CPU over the same windows is printed beside it, to show it was not the bottleneck. After the run, the
suite's records file must hold exactly one row per request its statistics counted.
Lines on stderr; JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from memload.net import free_port
from scripts import stack

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "locustfiles" / "generator_capacity.py"
ENDPOINTS = ("recall", "write")
SIDES = ("bare", "suite")



def run_turns(base_url: str, target_pid: int, users: int, seconds: int, rounds: int,
              endpoints: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the alternating turns; returns them and the suite's records check."""
    with tempfile.TemporaryDirectory(prefix="memload_generator_") as tmp:
        out = Path(tmp) / "turns.json"
        prefix = Path(tmp) / "locust"
        env = {**os.environ, "MEMLOAD_CAPACITY_OUT": str(out), "MEMLOAD_CAPACITY_USERS": str(users),
               "MEMLOAD_CAPACITY_SECONDS": str(seconds), "MEMLOAD_CAPACITY_ROUNDS": str(rounds),
               "MEMLOAD_CAPACITY_ENDPOINTS": ",".join(endpoints), "MEMLOAD_CAPACITY_TARGET_PID": str(target_pid),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        budget_s = len(endpoints) * 2 * rounds * (seconds + 2) + 120
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
               "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "0", "--csv", str(prefix),
               # as `memload bench` runs a case: a time budget (here longer than the benchmark; the shape ends it)
               "--duration-s", str(budget_s), "--phases", "concurrent"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=budget_s, cwd=REPO)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"locust failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        turns = json.loads(out.read_text())["turns"]
        summary = json.loads(Path(f"{prefix}_summary.json").read_text())
        with open(f"{prefix}_requests.csv") as fh:
            file_rows = sum(1 for _ in fh) - 1
    totals = sum(c["total"] for c in summary["cases"].values())
    errors = {name: c["errors"] for name, c in summary["cases"].items() if c["total"] != c["ok"]}
    check = {"requests_counted": totals, "records_rows": file_rows, "summary_rows": summary["records"]["rows"],
             "rows_match": file_rows == totals == summary["records"]["rows"], "failed": errors}
    for t in turns:
        t["req_per_cpu_s"] = round(t["requests"] / t["cpu_s"], 1) if t["cpu_s"] else 0.0
        t["wall_rps"] = round(t["requests"] / t["wall_s"], 1) if t["wall_s"] else 0.0
        tgt = t.get("target_cpu_s")
        t["target_cpu_share"] = round(tgt / t["wall_s"], 3) if tgt is not None and t["wall_s"] else None
    return turns, check


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ep in sorted({t["endpoint"] for t in turns}):
        row: dict[str, Any] = {}
        for side in SIDES:
            mine = [t for t in turns if t["endpoint"] == ep and t["side"] == side]
            req, cpu = sum(t["requests"] for t in mine), sum(t["cpu_s"] for t in mine)
            row[side] = {"runs": [t["req_per_cpu_s"] for t in mine], "requests": req, "cpu_s": round(cpu, 3),
                         "req_per_cpu_s": round(req / cpu, 1) if cpu else 0.0,
                         "cpu_us_per_request": round(1e6 * cpu / req, 1) if req else None}
        bare, suite = row["bare"]["req_per_cpu_s"], row["suite"]["req_per_cpu_s"]
        row["ratio"] = round(suite / bare, 3) if bare else None
        row["ratio_per_pair"] = [round(s / b, 3) if b else None
                                 for b, s in zip(row["bare"]["runs"], row["suite"]["runs"], strict=False)]
        shares = [t["target_cpu_share"] for t in turns if t["endpoint"] == ep and t["target_cpu_share"] is not None]
        row["target_cpu_share_max"] = max(shares) if shares else None
        out[ep] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_generator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_USERS") or 16),
                    help="users per turn [env MEMLOAD_CAPACITY_USERS; default 16]")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_SECONDS") or 8),
                    help="measured seconds of each turn [env MEMLOAD_CAPACITY_SECONDS; default 8]")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_ROUNDS") or 2),
                    help="bare/suite pairs per endpoint [env MEMLOAD_CAPACITY_ROUNDS; default 2]")
    ap.add_argument("--seeds", type=int, default=10, help="seeds in the target's recall answer (default 10)")
    ap.add_argument("--endpoints", default="recall,write", help="comma-separated: recall, write (default both)")
    args = ap.parse_args(argv)
    endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    if args.users < 1 or args.seconds < 2 or args.rounds < 1 or args.seeds < 1:
        ap.error("--users >= 1, --seconds >= 2, --rounds >= 1, --seeds >= 1")
    if not endpoints or set(endpoints) - set(ENDPOINTS):
        ap.error(f"--endpoints: a comma-separated list of {', '.join(ENDPOINTS)}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    target = stack.spawn("static target", [sys.executable, "-m", "benchmarks.static_target", "--port", str(port),
                                           "--seeds", str(args.seeds)],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stack.wait_healthy(base_url, [target], 30.0, what="static target")
        turns, check = run_turns(base_url, target.pid, args.users, args.seconds, args.rounds, endpoints)
    finally:
        stack.stop_child(target, 10.0)
    for t in turns:
        share = t["target_cpu_share"]
        print(f"[generator] {t['endpoint']:6s} {t['side']:5s} {t['requests']:7d} req  cpu {t['cpu_s']:6.2f} s"
              f"  {t['req_per_cpu_s']:8.1f} req/cpu-s  (wall {t['wall_rps']:7.1f} req/s; target cpu "
              f"{'-' if share is None else f'{100 * share:.0f} %'} of a core)", file=sys.stderr)
    s = summarise(turns)
    for ep, row in s.items():
        b, u = row["bare"], row["suite"]
        print(f"[generator] {ep}: bare {' / '.join(f'{x:.0f}' for x in b['runs'])} req/cpu-s "
              f"({b['cpu_us_per_request']} us/req), suite {' / '.join(f'{x:.0f}' for x in u['runs'])} req/cpu-s "
              f"({u['cpu_us_per_request']} us/req): suite/bare {row['ratio']} "
              f"(pairs {', '.join(str(r) for r in row['ratio_per_pair'])})", file=sys.stderr)
    print(f"[generator] suite records: {check['records_rows']} rows for {check['requests_counted']} requests "
          f"counted ({'match' if check['rows_match'] else 'MISMATCH'}); failed requests: {check['failed'] or 'none'}",
          file=sys.stderr)
    print(json.dumps({"target": base_url, "users": args.users, "seconds": args.seconds, "rounds": args.rounds,
                      "seeds": args.seeds, "turns": turns, "summary": s, "records_check": check}, indent=2))
    return 0 if check["rows_match"] and not check["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
