"""Generator-capacity benchmark: how many requests/s one Locust process sustains with the suite's users versus a
bare FastHttpUser, against GET /health, side by side in one run (alternating rounds A/B/A/B).

    python -m scripts.bench_generator [--base-url http://127.0.0.1:3001] [--users 16] [--seconds 8] [--rounds 2]

Without --base-url it starts the reference API (`memload api`, GET /health touches no data) on a free loopback
port and stops it at the end. The figure that matters is requests per CPU-second of the Locust process (its
capacity when it is the bottleneck), measured inside the process between test start and stop, so start-up and
the server's speed do not blur the comparison; the achieved wall-clock rps is printed beside it.
JSON on stdout, a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "locustfiles" / "generator_capacity.py"
CLASSES = ("BareHealthUser", "SuiteHealthUser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"memload api exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url}/health did not answer within {timeout}s")


def run_once(base_url: str, user_class: str, users: int, seconds: int, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{user_class}_{time.monotonic_ns()}.json"
    env = {**os.environ, "MEMLOAD_CAPACITY_OUT": str(out)}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary", "--exit-code-on-error", "0",
           "--stop-timeout", "0", user_class]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"locust {user_class} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    data = json.loads(out.read_text())
    data["class"] = user_class
    data["wall_rps"] = data["requests"] / data["wall_s"] if data["wall_s"] else 0.0
    data["capacity_rps"] = data["requests"] / data["cpu_s"] if data["cpu_s"] else 0.0
    data["cpu_us_per_request"] = 1e6 * data["cpu_s"] / data["requests"] if data["requests"] else None
    return data


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled figures per class, plus the median of the per-round overheads (adjacent A/B runs share the
    machine's conditions, which on a shared box drift more than the difference being measured)."""
    out: dict[str, Any] = {}
    for cls in CLASSES:
        mine = [r for r in runs if r["class"] == cls]
        req = sum(r["requests"] for r in mine)
        cpu = sum(r["cpu_s"] for r in mine)
        wall = sum(r["wall_s"] for r in mine)
        out[cls] = {"requests": req, "failures": sum(r["failures"] for r in mine), "cpu_s": round(cpu, 3),
                    "wall_s": round(wall, 3), "wall_rps": round(req / wall, 1) if wall else 0.0,
                    "capacity_rps": round(req / cpu, 1) if cpu else 0.0,
                    "cpu_us_per_request": round(1e6 * cpu / req, 2) if req else None}
    bare, suite = out[CLASSES[0]], out[CLASSES[1]]
    out["overhead_capacity_pct"] = round(100.0 * (1 - suite["capacity_rps"] / bare["capacity_rps"]), 2)
    out["overhead_wall_rps_pct"] = round(100.0 * (1 - suite["wall_rps"] / bare["wall_rps"]), 2)
    per_round = []
    for rnd in sorted({r["round"] for r in runs}):
        pair = {r["class"]: r for r in runs if r["round"] == rnd}
        if len(pair) == 2 and pair[CLASSES[0]]["capacity_rps"]:
            per_round.append(100.0 * (1 - pair[CLASSES[1]]["capacity_rps"] / pair[CLASSES[0]]["capacity_rps"]))
    out["overhead_capacity_pct_per_round"] = [round(x, 2) for x in per_round]
    out["overhead_capacity_pct_median"] = round(statistics.median(per_round), 2) if per_round else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench_generator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default=os.environ.get("MEMLOAD_CAPACITY_BASE_URL") or None,
                    help="server with GET /health (loopback) [env MEMLOAD_CAPACITY_BASE_URL; default: start one]")
    ap.add_argument("--users", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_USERS", 16)),
                    help="users per run [env MEMLOAD_CAPACITY_USERS; default 16]")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_SECONDS", 8)),
                    help="length of each run [env MEMLOAD_CAPACITY_SECONDS; default 8]")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_ROUNDS", 2)),
                    help="A/B rounds [env MEMLOAD_CAPACITY_ROUNDS; default 2]")
    args = ap.parse_args(argv)
    if args.users < 1 or args.seconds < 1 or args.rounds < 1:
        ap.error("--users, --seconds and --rounds must be >= 1")
    api = None
    base_url = args.base_url
    try:
        if not base_url:
            port = _free_port()
            base_url = f"http://127.0.0.1:{port}"
            api = subprocess.Popen([sys.executable, "-m", "scripts.cli", "api", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_health(base_url, api)
        runs = []
        with tempfile.TemporaryDirectory(prefix="memload_capacity_") as tmp:
            for rnd in range(args.rounds):
                for cls in CLASSES if rnd % 2 == 0 else reversed(CLASSES):
                    r = run_once(base_url, cls, args.users, args.seconds, Path(tmp))
                    r["round"] = rnd + 1
                    print(f"[capacity] round {rnd + 1} {cls:16s} {r['requests']:7d} req  wall {r['wall_rps']:8.1f}/s"
                          f"  cpu {r['cpu_s']:6.2f}s  capacity {r['capacity_rps']:8.1f} req/cpu-s", file=sys.stderr)
                    runs.append(r)
        result = {"base_url": base_url, "endpoint": "GET /health", "users": args.users, "seconds": args.seconds,
                  "rounds": args.rounds, "runs": runs, "summary": summarise(runs)}
        s = result["summary"]
        print(f"[capacity] bare {s['BareHealthUser']['capacity_rps']} req/cpu-s ({s['BareHealthUser']['wall_rps']} "
              f"req/s wall) vs suite {s['SuiteHealthUser']['capacity_rps']} req/cpu-s "
              f"({s['SuiteHealthUser']['wall_rps']} req/s wall): overhead {s['overhead_capacity_pct']} % per CPU "
              f"(median of rounds {s['overhead_capacity_pct_median']} %), {s['overhead_wall_rps_pct']} % wall",
              file=sys.stderr)
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()


if __name__ == "__main__":
    sys.exit(main())
