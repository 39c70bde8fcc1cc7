"""`memload up` (= `make up`): the whole local stack in one foreground command, until Ctrl-C.

Embedded PostgreSQL when DATABASE_URL is unset, migrations, the API and the outbox worker. stdout carries the base
URL, a ready-to-paste Locust web-UI command (for the most recently seeded scope and its query set, when one is
still in the database), then the rate limits the API enforces, so a number read in the web UI is never mistaken for
the server's capacity when it is the limiter's. Ctrl-C/SIGTERM stops everything; if a child dies, the rest is
stopped and the exit code is non-zero.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from memload.config import Settings
from memload.contract import HEALTH
from memload.errors import ExitCode
from memload.limits import LIMIT_PROFILES, describe
from scripts.options import add_option, add_switch, bounded_int

LOCUSTFILE = "locustfiles/memory_users.py"
LIMIT_HELP = {
    "contract": "the server defaults (Aionis values), or your env file's",
    "benchmark": "the benchmark profile `memload matrix` uses (recall 400/s, write 120/s per tenant)",
    "off": "no rate limiting at all: what you see is the server's capacity",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the local stack (database, migrations, API, worker) until Ctrl-C",
                       description="Run the local stack (embedded database, migrations, reference API, outbox "
                                   "worker) in the foreground until Ctrl-C; prints the API URL, a Locust web-UI "
                                   "command and the rate limits in force.")
    add_option(p, "--port", env="PORT", type=bounded_int(0, 65535), default=3001,
               help="API port on 127.0.0.1 (0 = any free port)")
    add_option(p, "--limits", env="MEMLOAD_UP_LIMITS", choices=tuple(LIMIT_PROFILES), default="contract",
               help="rate limits of the API: " + "; ".join(f"{k} = {v}" for k, v in LIMIT_HELP.items()))
    add_switch(p, "--worker", env="MEMLOAD_UP_WORKER", default=True, help="also run the outbox worker")
    add_option(p, "--log-dir", env="MEMLOAD_UP_LOG_DIR",
               help="write the API and worker output to files here (default: this terminal's stderr)")
    add_option(p, "--startup-timeout-s", env="MEMLOAD_UP_STARTUP_TIMEOUT_S", type=bounded_int(1, 3600), default=60,
               help=f"how long the API may take to answer {HEALTH}")
    p.set_defaults(func=run_up)


def latest_seeded_scope(settings: Settings, database_url: str) -> dict[str, Any] | None:
    """The newest query set under MEMLOAD_HOME/query_sets whose scope still has rows in this database, or None.

    `memload seed` writes one query set per seeded scope there; a purged scope's file may outlive its rows, and a
    web UI pointed at an empty scope would show empty recalls, so each candidate is checked (newest first).
    """
    import psycopg

    folder = settings.memload_home / "query_sets"
    files = sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True) if folder.is_dir() else []
    candidates = []
    for path in files[:50]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("scope") and data.get("scope_key") and data.get("queries"):
            candidates.append((path, data))
    if not candidates:
        return None
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
            for path, data in candidates:
                row = conn.execute("SELECT EXISTS (SELECT 1 FROM memory_nodes WHERE scope = %s)",
                                   (data["scope_key"],)).fetchone()
                if row and row[0]:
                    return {"scope": data["scope"], "tenant_id": data.get("tenant_id") or "default",
                            "query_set": path.resolve(), "queries": len(data["queries"])}
    except psycopg.Error:
        return None
    return None


def locust_command(base_url: str, seeded: dict[str, Any] | None) -> str:
    """The Locust web-UI command line (UI bound to loopback), pointed at `seeded` when there is one."""
    parts = ["locust", "-f", LOCUSTFILE, "--host", base_url, "--web-host", "127.0.0.1"]
    if seeded:
        parts += ["--scope", seeded["scope"]]
        if seeded["tenant_id"] != "default":
            parts += ["--tenant-id", seeded["tenant_id"]]
        parts += ["--query-set", str(seeded["query_set"])]
    return " ".join(shlex.quote(p) for p in parts)


def banner(mode: str, api_settings: Settings, seeded: dict[str, Any] | None) -> list[str]:
    """The lines printed after the two result lines: what the limiter allows, and what the Locust command loads."""
    lines = [f"rate limits (--limits {mode}): {LIMIT_HELP[mode]}"]
    lines += ["  " + line for line in describe(api_settings)]
    if api_settings.rate_limit_enabled or api_settings.tenant_quota_enabled:
        lines.append("  a rate above these limits is answered with 429s: the web UI then shows the limiter, not "
                     "the server (--limits off or benchmark to measure the server)")
    if seeded:
        lines.append(f"web UI: scope {seeded['scope']} (tenant {seeded['tenant_id']}), {seeded['queries']} queries "
                     f"from {seeded['query_set']}; open http://127.0.0.1:8089")
    else:
        lines.append("web UI: no seeded scope found (run `memload seed` for recalls with answers); "
                     "open http://127.0.0.1:8089")
    return lines


def run_up(args: argparse.Namespace) -> int:
    from scripts.common import log, settings_from_args
    from scripts.stack import LocalStack

    settings = settings_from_args(args)
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop_signal.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = LocalStack(settings, port=int(args.port), worker=bool(args.worker),
                       log_dir=Path(args.log_dir) if args.log_dir else None,
                       api_env=LIMIT_PROFILES[args.limits], startup_timeout_s=float(args.startup_timeout_s))
    try:
        try:
            stack.start(should_abort=lambda: bool(stop_signal))
        except Exception as exc:
            if stop_signal:
                log("interrupted during startup; everything stopped", prefix="memload up")
                return int(ExitCode.INTERRUPTED)
            raise exc
        seeded = latest_seeded_scope(settings, stack.database_url)
        print(stack.base_url)
        print(locust_command(stack.base_url, seeded))
        for line in banner(args.limits, stack.child_settings("api"), seeded):
            print(line)
        sys.stdout.flush()
        log(f"stack up: API {stack.base_url} " + " ".join(f"{n}={p}" for n, p in stack.pids.items())
            + "; Ctrl-C stops everything", prefix="memload up")
        while not stop_signal:
            dead = stack.dead_child()
            if dead is not None:
                log(f"{dead.name} (pid {dead.pid}) exited with code {dead.proc.returncode}: stopping the stack",
                    prefix="memload up")
                return int(ExitCode.ERROR)
            time.sleep(0.2)
        log(f"{signal.Signals(stop_signal[0]).name}: stopping", prefix="memload up")
        return 0
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
