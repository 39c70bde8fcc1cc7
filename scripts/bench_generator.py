"""Generator-capacity benchmark: requests/s one Locust process sustains against GET /health with the suite's users
(listener, validation, pacing on) versus a bare FastHttpUser, side by side in one run.

    python -m scripts.bench_generator [--base-url http://127.0.0.1:3001] [--users 16] [--seconds 5] [--rounds 4]

One Locust process runs `locustfiles/generator_capacity.py`: turns of one class at a time in ABBA order, so slow
drift of a shared machine cancels out. Per turn it records requests, process CPU time and wall time. The headline
is requests per CPU-second (the rps the process sustains when it is the bottleneck, whatever the server's speed),
pooled over the turns of each class, and the overhead of the suite = 1 - suite/bare; the median of the per-round
overheads and the achieved wall-clock rps are printed beside it. Without --base-url the reference API is started
(`memload api`; GET /health touches no data) on a free loopback port and stopped at the end.
JSON on stdout, one line per turn and the summary on stderr.
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
BARE, SUITE = "BareHealthUser", "SuiteHealthUser"


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


def run_turns(base_url: str, users: int, seconds: int, rounds: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="memload_capacity_") as tmp:
        out = Path(tmp) / "turns.json"
        env = {**os.environ, "MEMLOAD_CAPACITY_OUT": str(out), "MEMLOAD_CAPACITY_USERS": str(users),
               "MEMLOAD_CAPACITY_SECONDS": str(seconds), "MEMLOAD_CAPACITY_ROUNDS": str(rounds)}
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
               "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "0"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2 * rounds * seconds + 120)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"locust failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        turns = json.loads(out.read_text())["turns"]
    for t in turns:
        t["wall_rps"] = round(t["requests"] / t["wall_s"], 1) if t["wall_s"] else 0.0
        t["capacity_rps"] = round(t["requests"] / t["cpu_s"], 1) if t["cpu_s"] else 0.0
    return turns


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in (BARE, SUITE):
        mine = [t for t in turns if t["class"] == cls]
        req, cpu, wall = (sum(t[k] for t in mine) for k in ("requests", "cpu_s", "wall_s"))
        out[cls] = {"turns": len(mine), "requests": req, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                    "wall_rps": round(req / wall, 1) if wall else 0.0,
                    "capacity_rps": round(req / cpu, 1) if cpu else 0.0,
                    "cpu_us_per_request": round(1e6 * cpu / req, 2) if req else None}
    bare, suite = out[BARE], out[SUITE]
    out["overhead_capacity_pct"] = round(100.0 * (1 - suite["capacity_rps"] / bare["capacity_rps"]), 2)
    out["overhead_wall_rps_pct"] = round(100.0 * (1 - suite["wall_rps"] / bare["wall_rps"]), 2)
    per_round = []
    for i in range(0, len(turns) - 1, 2):  # each ABBA half (2 turns) holds one turn of each class
        pair = {t["class"]: t for t in turns[i:i + 2]}
        if len(pair) == 2 and pair[BARE]["capacity_rps"]:
            per_round.append(round(100.0 * (1 - pair[SUITE]["capacity_rps"] / pair[BARE]["capacity_rps"]), 2))
    out["overhead_capacity_pct_per_round"] = per_round
    out["overhead_capacity_pct_median"] = round(statistics.median(per_round), 2) if per_round else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench_generator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default=os.environ.get("MEMLOAD_CAPACITY_BASE_URL") or None,
                    help="server with GET /health (loopback) [env MEMLOAD_CAPACITY_BASE_URL; default: start one]")
    ap.add_argument("--users", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_USERS") or 16),
                    help="users per turn [env MEMLOAD_CAPACITY_USERS; default 16]")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_SECONDS") or 5),
                    help="length of each turn [env MEMLOAD_CAPACITY_SECONDS; default 5]")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("MEMLOAD_CAPACITY_ROUNDS") or 4),
                    help="rounds; each is one bare and one suite turn [env MEMLOAD_CAPACITY_ROUNDS; default 4]")
    args = ap.parse_args(argv)
    if args.users < 1 or args.seconds < 2 or args.rounds < 1:
        ap.error("--users >= 1, --seconds >= 2, --rounds >= 1")
    api = None
    base_url = args.base_url
    try:
        if not base_url:
            port = _free_port()
            base_url = f"http://127.0.0.1:{port}"
            api = subprocess.Popen([sys.executable, "-m", "scripts.cli", "api", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_health(base_url, api)
        turns = run_turns(base_url, args.users, args.seconds, args.rounds)
        for t in turns:
            print(f"[capacity] turn {t['turn']:2d} {t['class']:16s} {t['requests']:7d} req  wall {t['wall_rps']:8.1f}/s"
                  f"  cpu {t['cpu_s']:6.2f}s  capacity {t['capacity_rps']:8.1f} req/cpu-s", file=sys.stderr)
        s = summarise(turns)
        print(f"[capacity] GET /health, {args.users} users: bare {s[BARE]['capacity_rps']} req/cpu-s "
              f"({s[BARE]['wall_rps']} req/s wall) vs suite {s[SUITE]['capacity_rps']} req/cpu-s "
              f"({s[SUITE]['wall_rps']} req/s wall): overhead {s['overhead_capacity_pct']} % per CPU-second "
              f"(median of rounds {s['overhead_capacity_pct_median']} %), {s['overhead_wall_rps_pct']} % wall rps",
              file=sys.stderr)
        print(json.dumps({"base_url": base_url, "endpoint": "GET /health", "users": args.users,
                          "seconds": args.seconds, "rounds": args.rounds, "turns": turns, "summary": s}, indent=2))
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
