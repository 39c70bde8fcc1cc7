"""`memload up` (= `make up`): the whole local stack in one foreground command, until Ctrl-C.

Embedded PostgreSQL when DATABASE_URL is unset, migrations, the API and the outbox worker. Prints the base URL and
the Locust command line on stdout; Ctrl-C/SIGTERM stops everything; if a child dies, the rest is stopped and the
exit code is non-zero.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from scripts.options import add_option, add_switch, bounded_int

LOCUSTFILE = "locustfiles/memory_users.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the local stack (database, migrations, API, worker) until Ctrl-C")
    add_option(p, "--port", env="PORT", type=bounded_int(0, 65535), default=3001,
               help="API port on 127.0.0.1 (0 = any free port)")
    add_switch(p, "--worker", env="MEMLOAD_UP_WORKER", default=True, help="also run the outbox worker")
    add_option(p, "--log-dir", env="MEMLOAD_UP_LOG_DIR",
               help="write the API and worker output to files here (default: this terminal's stderr)")
    add_option(p, "--startup-timeout-s", env="MEMLOAD_UP_STARTUP_TIMEOUT_S", type=bounded_int(1, 3600), default=60,
               help="how long the API may take to answer /health")
    p.set_defaults(func=run_up)


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
                       startup_timeout_s=float(args.startup_timeout_s))
    try:
        try:
            stack.start(should_abort=lambda: bool(stop_signal))
        except Exception as exc:
            if stop_signal:
                log("interrupted during startup; everything stopped", prefix="memload up")
                return 130
            raise exc
        print(stack.base_url)
        print(f"locust -f {LOCUSTFILE} --host {stack.base_url}")
        sys.stdout.flush()
        log(f"stack up: API {stack.base_url} " + " ".join(f"{n}={p}" for n, p in stack.pids.items())
            + "; Ctrl-C stops everything", prefix="memload up")
        while not stop_signal:
            dead = stack.dead_child()
            if dead is not None:
                log(f"{dead.name} (pid {dead.pid}) exited with code {dead.proc.returncode}: stopping the stack",
                    prefix="memload up")
                return 1
            time.sleep(0.2)
        log(f"{signal.Signals(stop_signal[0]).name}: stopping", prefix="memload up")
        return 0
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
