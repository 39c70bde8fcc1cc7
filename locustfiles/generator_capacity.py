"""Locustfile of the generator benchmark (`python -m benchmarks.bench_generator`): the suite's recall and write users
against bare FastHttpUsers sending the same requests, in turns, in one Locust process.

`RecallUser` / `WriteUser` are the suite's own users (budget token, pacing controller, response validation, exact
histograms, per-request records, Server-Timing); `BareRecallUser` / `BareWriteUser` are plain FastHttpUsers posting
the same bodies with the same headers. The `Alternating` shape runs one class at a time, for each endpoint
bare, suite, bare, suite, ... (MEMLOAD_CAPACITY_ROUNDS pairs), each turn a second with no users, a second of
spawning and warm-up, then MEMLOAD_CAPACITY_SECONDS measured with MEMLOAD_CAPACITY_USERS users. Per measured
window it records the requests, the process's CPU time (user + sys from /proc), the wall time and, when
MEMLOAD_CAPACITY_TARGET_PID names the target's process, the target's CPU time. At quit the turns are written as
JSON to MEMLOAD_CAPACITY_OUT.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust import FastHttpUser, LoadTestShape, events, task

from locustfiles.memory_users import RecallUser, WriteUser
from locustfiles.options import FALLBACK_QUERY
from memload.bench_settings import BY_NAME
from memload.client import recall_text_body, write_body
from memload.contract import RECALL_TEXT, WRITE
from memload.proc import cpu_seconds

__all__ = ["Alternating", "BareRecallUser", "BareWriteUser", "RecallUser", "WriteUser"]

TENANT, SCOPE, LIMIT = (BY_NAME["tenant_id"].default, BY_NAME["scope"].default,  # the suite's defaults: both
                        BY_NAME["recall_limit"].default)  # sides send the same bytes
BARE_RECALL, BARE_WRITE = "recall_text (bare)", "write (bare)"
JSON_HEADERS = {"content-type": "application/json"}
_bare_writes = itertools.count(1)


class BareRecallUser(FastHttpUser):
    """What Locust costs with nothing of the suite: the suite's recall_text request, response unread beyond Locust."""

    body = recall_text_body(TENANT, SCOPE, FALLBACK_QUERY, LIMIT)

    @task
    def recall(self) -> None:
        self.client.post(RECALL_TEXT, data=self.body, headers=JSON_HEADERS, name=BARE_RECALL)


class BareWriteUser(FastHttpUser):
    """The suite's write request (a unique client id per request, built by the same function), nothing else."""

    run_tag = f"bare_{int(time.time())}"

    @task
    def write(self) -> None:
        body = write_body(TENANT, SCOPE, self.run_tag, next(_bare_writes), False)
        self.client.post(WRITE, data=body, headers=JSON_HEADERS, name=BARE_WRITE)


PAIRS = {"recall": ("BareRecallUser", "RecallUser"), "write": ("BareWriteUser", "WriteUser")}
CLASSES: dict[str, type] = {"BareRecallUser": BareRecallUser, "RecallUser": RecallUser,
                            "BareWriteUser": BareWriteUser, "WriteUser": WriteUser}
def _env_int(name: str, default: int) -> int:
    return max(1, int(os.environ.get(name) or default))


class Alternating(LoadTestShape):
    """Turns of one class at a time: per endpoint, bare and suite alternate (B S B S ...)."""

    use_common_options = False

    def __init__(self) -> None:
        super().__init__()
        self.seconds = _env_int("MEMLOAD_CAPACITY_SECONDS", 8)
        self.users = _env_int("MEMLOAD_CAPACITY_USERS", 16)
        rounds = _env_int("MEMLOAD_CAPACITY_ROUNDS", 2)
        endpoints = [e for e in (os.environ.get("MEMLOAD_CAPACITY_ENDPOINTS") or "recall,write").split(",") if e]
        self.target_pid = int(os.environ.get("MEMLOAD_CAPACITY_TARGET_PID") or 0)
        self.turns = [(ep, PAIRS[ep][k % 2]) for ep in endpoints for k in range(2 * rounds)]
        self.records: list[dict[str, Any]] = []
        self._current: int | None = None
        self._mark: tuple[float, float, int, float] | None = None

    def _snapshot(self) -> tuple[float, float, int, float]:
        target = cpu_seconds(self.target_pid) if self.target_pid else 0.0
        return cpu_seconds(), time.perf_counter(), self.runner.stats.total.num_requests, target

    def _close_turn(self) -> None:
        if self._current is None or self._mark is None:
            return
        cpu1, wall1, req1, tgt1 = self._snapshot()
        cpu0, wall0, req0, tgt0 = self._mark
        endpoint, cls = self.turns[self._current]
        self.records.append({"turn": self._current + 1, "endpoint": endpoint, "class": cls,
                             "side": "bare" if cls.startswith("Bare") else "suite", "requests": req1 - req0,
                             "cpu_s": round(cpu1 - cpu0, 3), "wall_s": round(wall1 - wall0, 4),
                             "target_cpu_s": round(tgt1 - tgt0, 3) if self.target_pid else None})
        self._mark = None

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type]] | None:
        """Each turn: 1 s with no users (Locust keeps running users when only the class list changes), 1 s of
        spawning and warm-up, then `seconds` measured: the CPU/request marks bracket that last part only."""
        period = self.seconds + 2
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
        cls = CLASSES[self.turns[idx][1]]
        if phase >= 2.0 and self._current != idx:
            self._current = idx
            self._mark = self._snapshot()
        return self.users, 1000.0, [cls]


@events.quitting.add_listener
def _write_turns(environment: Any, **_: Any) -> None:
    out = os.environ.get("MEMLOAD_CAPACITY_OUT")
    shape = environment.shape_class
    if out and isinstance(shape, Alternating):
        Path(out).write_text(json.dumps({"users": shape.users, "seconds": shape.seconds, "turns": shape.records}))
