"""Locustfile of the generator-capacity benchmark (`python -m scripts.bench_generator`): GET /health two ways.

`SuiteHealthUser` goes through everything the suite adds to a request (budget check, pacing controller, response
validation, exact-latency listener, pacing timeline); `BareHealthUser` is a plain FastHttpUser. The benchmark runs
one class at a time and compares requests per CPU-second of the Locust process: the suite's overhead.
When MEMLOAD_CAPACITY_OUT is set, the process writes {requests, cpu_s, wall_s} of the run there at quit.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust import FastHttpUser, events, task

from locustfiles import runtime
from locustfiles.base_user import SuiteUser
from memload.contract import HEALTH

runtime.install(events)


class SuiteHealthUser(SuiteUser):
    endpoint_class = "health"

    @task
    def health(self) -> None:
        self.send("health", "GET", HEALTH)


class BareHealthUser(FastHttpUser):
    @task
    def health(self) -> None:
        self.client.get(HEALTH, name="health")


_clock: dict[str, float] = {}


@events.test_start.add_listener
def _started(**_: Any) -> None:
    _clock.update(cpu=time.process_time(), wall=time.perf_counter())


@events.test_stop.add_listener
def _stopped(environment: Any, **_: Any) -> None:
    out = os.environ.get("MEMLOAD_CAPACITY_OUT")
    if not out or "cpu" not in _clock:
        return
    total = environment.runner.stats.total
    Path(out).write_text(json.dumps({
        "requests": total.num_requests, "failures": total.num_failures,
        "cpu_s": time.process_time() - _clock["cpu"], "wall_s": time.perf_counter() - _clock["wall"],
    }))
