"""Locustfile of the generator-capacity benchmark (`python -m scripts.bench_generator`): GET /health two ways,
side by side in one Locust process.

`SuiteHealthUser` goes through everything the suite adds to a request (budget check, pacing controller, response
validation with catch_response, exact-latency listener, pacing timeline); `BareHealthUser` is a plain
FastHttpUser. The `Alternating` shape runs them in turns (bare, suite, suite, bare, ...: ABBA cancels drift) of
MEMLOAD_CAPACITY_SECONDS each with MEMLOAD_CAPACITY_USERS users, for MEMLOAD_CAPACITY_ROUNDS rounds, and records
per turn the requests, the process CPU time and the wall time. At quit the turns are written as JSON to
MEMLOAD_CAPACITY_OUT. Requests per CPU-second is what one process sustains when it is the bottleneck.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust import FastHttpUser, LoadTestShape, events, task

from locustfiles import runtime
from locustfiles.base_user import SuiteUser
from memload.contract import HEALTH

runtime.install(events)

BARE_NAME = "health (bare)"


class SuiteHealthUser(SuiteUser):
    endpoint_class = "health"

    @task
    def health(self) -> None:
        self.send("health", "GET", HEALTH)


class BareHealthUser(FastHttpUser):
    @task
    def health(self) -> None:
        self.client.get(HEALTH, name=BARE_NAME)


def _env_int(name: str, default: int) -> int:
    return max(1, int(os.environ.get(name) or default))


class Alternating(LoadTestShape):
    """Turns of one class at a time: B S S B B S S B ... (each round is an ABBA pair of turns)."""

    use_common_options = False

    def __init__(self) -> None:
        super().__init__()
        self.seconds = _env_int("MEMLOAD_CAPACITY_SECONDS", 5)
        self.users = _env_int("MEMLOAD_CAPACITY_USERS", 16)
        rounds = _env_int("MEMLOAD_CAPACITY_ROUNDS", 2)
        pattern = ("BareHealthUser", "SuiteHealthUser", "SuiteHealthUser", "BareHealthUser")
        self.turns = [pattern[i % 4] for i in range(2 * rounds)]
        self.records: list[dict[str, Any]] = []
        self._current: int | None = None
        self._mark: tuple[float, float, int, int] | None = None

    def _snapshot(self) -> tuple[float, float, int, int]:
        stats = self.runner.stats
        return (time.process_time(), time.perf_counter(), stats.get("health", "GET").num_requests,
                stats.get(BARE_NAME, "GET").num_requests)

    def _close_turn(self) -> None:
        if self._current is None or self._mark is None:
            return
        cpu1, wall1, suite1, bare1 = self._snapshot()
        cpu0, wall0, suite0, bare0 = self._mark
        cls = self.turns[self._current]
        requests = (bare1 - bare0) if cls == "BareHealthUser" else (suite1 - suite0)
        self.records.append({"turn": self._current + 1, "class": cls, "requests": requests,
                             "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0})
        self._mark = None

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        """Each turn: one second with no users (Locust keeps running users when only the class list changes),
        then `seconds` of the turn's class; the CPU/request marks bracket the second part only."""
        period = self.seconds + 1
        run_time = self.get_run_time()
        idx, phase = int(run_time // period), run_time % period
        if idx >= len(self.turns):
            self._close_turn()
            self._current = None
            return None
        if phase < 1.0:
            self._close_turn()
            self._current = None
            return 0, float(self.users)
        if self._current != idx:
            self._current = idx
            self._mark = self._snapshot()
        cls = SuiteHealthUser if self.turns[idx] == "SuiteHealthUser" else BareHealthUser
        return self.users, float(self.users), [cls]


@events.quitting.add_listener
def _write_turns(environment: Any, **_: Any) -> None:
    out = os.environ.get("MEMLOAD_CAPACITY_OUT")
    shape = environment.shape_class
    if out and isinstance(shape, Alternating):
        Path(out).write_text(json.dumps({"users": shape.users, "seconds": shape.seconds, "turns": shape.records}))
