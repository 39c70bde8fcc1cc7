"""Request budgets per endpoint class (an exact count, or a duration), in one process or across Locust workers,
with sequential phases.

The `TokenDispenser` (master, or the local runner) owns the budget: N tokens per class, or, for a class with a
duration, tokens for as long as its window is open (the window opens with the class's first grant, so each case
runs its full duration after the warm-up and after the previous case). Grants carry the window's end; a pool
stops handing out tokens at that instant. Users take one token per
request from their process's `TokenPool`, which asks the dispenser for batches. A class not yet in its phase gets
its requests queued, so with `sequential` phases the write users idle until every recall token is spent and every
recall request has completed. A pool that learns its class is exhausted and has no request in flight reports
`done`; a class is over when its tokens are all granted and every process that got some reported done. Since a
worker flushes its stats before reporting done, the master has every sample when the last class ends.

The transport is injected: `BudgetLink` wires both sides to a Locust runner (direct calls on the local runner,
custom messages between master and workers), so the protocol lives in this module alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event

TIME_BATCH = 64  # tokens per grant for a duration budget: they are void at the window's end anyway
MSG_TOKENS_REQ = "memload_tokens_req"
MSG_TOKENS_GRANT = "memload_tokens_grant"
MSG_DONE = "memload_done"

log = logging.getLogger("memload")


class TokenPool:
    """Per-process side: tokens on hand, in-flight counts, blocking `take`."""

    def __init__(self, classes: Iterable[str], request: Callable[[str, int], None], done: Callable[[str], None],
                 batch: Callable[[str], int], clock: Callable[[], float] = time.time) -> None:
        self.limited = set(classes)
        self._clock = clock
        self._until: dict[str, float | None] = dict.fromkeys(self.limited)
        self._request = request
        self._done = done
        self._batch = batch
        self._pool = dict.fromkeys(self.limited, 0)
        self._inflight = dict.fromkeys(self.limited, 0)
        self._exhausted = dict.fromkeys(self.limited, False)
        self._asked = dict.fromkeys(self.limited, False)
        self._reported = dict.fromkeys(self.limited, False)
        self._events = {c: gevent.event.Event() for c in self.limited}
        self.taken = dict.fromkeys(self.limited, 0)

    def take(self, cls: str) -> bool:
        """Block until a token of `cls` is available (True) or the class is exhausted (False)."""
        if cls not in self.limited:
            return True
        event = self._events[cls]
        while True:
            until = self._until[cls]
            if until is not None and self._clock() >= until:  # the class's window closed: void what is left
                self._pool[cls] = 0
                self._exhausted[cls] = True
            if self._pool[cls] > 0:
                self._pool[cls] -= 1
                self._inflight[cls] += 1
                self.taken[cls] += 1
                return True
            if self._exhausted[cls]:
                self._maybe_done(cls)
                return False
            if not self._asked[cls]:
                self._asked[cls] = True
                event.clear()
                self._request(cls, max(1, self._batch(cls)))
                continue  # a local dispenser may have granted synchronously
            event.wait()

    def complete(self, cls: str) -> None:
        """A request that took a token has finished (its request event has fired)."""
        if cls not in self.limited:
            return
        self._inflight[cls] -= 1
        self._maybe_done(cls)

    def on_grant(self, cls: str, n: int, until: float | None = None) -> None:
        """`n` tokens of `cls` (0 = the class is exhausted), valid until the epoch `until` (duration budgets)."""
        if cls not in self.limited:
            return
        self._asked[cls] = False
        if until is not None:
            self._until[cls] = until
        if n <= 0:
            self._exhausted[cls] = True
        else:
            self._pool[cls] += n
        self._events[cls].set()
        self._maybe_done(cls)

    def _maybe_done(self, cls: str) -> None:
        if (self._exhausted[cls] and self._pool[cls] == 0 and self._inflight[cls] == 0
                and not self._reported[cls]):
            self._reported[cls] = True
            self._done(cls)


class TokenDispenser:
    """Budget owner: grants tokens per class in phase order, detects the end of each class and of the run.

    `budgets` are exact counts; `durations` (seconds) give the classes without a count a time window instead.
    `grant(node, cls, n, until)` delivers tokens (`until` = the window's end, None for counted classes)."""

    def __init__(self, budgets: dict[str, int], sequential: bool, grant: Callable[[str, str, int, float | None], None],
                 on_class_done: Callable[[str], None], on_all_done: Callable[[], None],
                 durations: dict[str, float] | None = None, clock: Callable[[], float] = time.time,
                 call_later: Callable[[float, Callable[[], None]], object] | None = None) -> None:
        self.durations = {c: float(s) for c, s in (durations or {}).items() if c not in budgets and s > 0}
        self.deadline: dict[str, float] = {}
        self._clock = clock
        self._call_later = call_later or (lambda delay, fn: gevent.spawn_later(delay, fn))
        self.remaining = dict(budgets)
        self.budgets = dict(budgets)
        classes = set(budgets) | set(self.durations)
        order = [c for c in ("recall", "write") if c in classes]
        self.phases: list[list[str]] = [[c] for c in order] if sequential else [order]
        self.phase = 0
        self._grant = grant
        self._on_class_done = on_class_done
        self._on_all_done = on_all_done
        self._pending: dict[str, list[tuple[str, int]]] = {c: [] for c in classes}
        self._requesters: dict[str, set[str]] = {c: set() for c in classes}
        self._done_nodes: dict[str, set[str]] = {c: set() for c in classes}
        self._expired: set[str] = set()
        self.classes = classes
        self.finished: set[str] = set()
        self.all_done = not classes

    def active(self, cls: str) -> bool:
        return self.phase < len(self.phases) and cls in self.phases[self.phase]

    def on_request(self, node: str, cls: str, n: int) -> None:
        if cls not in self.classes:
            self._grant(node, cls, 0, None)
            return
        if not self.active(cls) and cls not in self.finished:
            self._pending[cls].append((node, n))
            return
        if cls in self.durations:
            until = self.deadline.get(cls)
            if until is None and cls not in self.finished:  # the case's window opens with its first grant
                until = self.deadline[cls] = self._clock() + self.durations[cls]
                self._call_later(self.durations[cls], lambda: self._expire(cls))
            granted = max(n, TIME_BATCH) if until is not None and self._clock() < until else 0
            if granted:
                self._requesters[cls].add(node)
            self._grant(node, cls, granted, until)
            return
        granted = min(max(0, n), self.remaining[cls])
        self.remaining[cls] -= granted
        if granted:
            self._requesters[cls].add(node)
        self._grant(node, cls, granted, None)

    def on_done(self, node: str, cls: str) -> None:
        if cls not in self.classes:
            return
        self._done_nodes[cls].add(node)
        self._check(cls)

    def _expire(self, cls: str) -> None:
        self._expired.add(cls)
        self._check(cls)

    def _spent(self, cls: str) -> bool:
        if cls in self.durations:
            return cls in self._expired
        return self.remaining[cls] <= 0

    def _check(self, cls: str) -> None:
        if cls in self.finished or not self._spent(cls):
            return
        if not self._requesters[cls] <= self._done_nodes[cls]:
            return
        self.finished.add(cls)
        self._on_class_done(cls)
        if self.phase < len(self.phases) and all(c in self.finished for c in self.phases[self.phase]):
            self.phase += 1
            if self.phase < len(self.phases):
                for nxt in self.phases[self.phase]:
                    queued, self._pending[nxt] = self._pending[nxt], []
                    for node, n in queued:
                        self.on_request(node, nxt, n)
        if len(self.finished) == len(self.classes) and not self.all_done:
            self.all_done = True
            self._on_all_done()


class BudgetLink:
    """One process's end of the budget protocol on a Locust runner of role `master`, `worker` or `local`.

    The master owns the dispenser, a worker a pool, the local runner both (joined by direct calls). A worker asks
    with `MSG_TOKENS_REQ`, gets `MSG_TOKENS_GRANT`, and reports `MSG_DONE` after `flush` (its stats go first, so the
    master has every sample when it learns the class is done). `local_users(cls)` sizes a worker's batches;
    `on_all_done` fires once every budgeted class is over.
    """

    def __init__(self, runner: Any, role: str, local_users: Callable[[str], int], flush: Callable[[], None],
                 on_all_done: Callable[[], None]) -> None:
        self.runner = runner
        self.role = role
        self._local_users = local_users
        self._flush = flush
        self._on_all_done = on_all_done
        self.pool: TokenPool | None = None
        self.dispenser: TokenDispenser | None = None

    def register(self) -> None:
        """init: listen for the messages this role receives."""
        if self.role == "master":
            self.runner.register_message(MSG_TOKENS_REQ, self._on_tokens_req)
            self.runner.register_message(MSG_DONE, self._on_done_msg)
        elif self.role == "worker":
            self.runner.register_message(MSG_TOKENS_GRANT, self._on_grant_msg)

    def start(self, budgets: dict[str, int], durations: dict[str, float], sequential: bool) -> None:
        """test_start: a fresh dispenser (master/local) and pool (worker/local) for this run's budgets."""
        limited = set(budgets) | set(durations)
        self.pool, self.dispenser = None, None
        if self.role != "worker":
            self.dispenser = TokenDispenser(budgets, sequential, self._grant, self._class_done, self._on_all_done,
                                            durations=durations)
        if self.role == "worker":
            self.pool = TokenPool(limited, self._request_remote, self._worker_done, self._local_users)
        elif self.role == "local":
            dispenser = self.dispenser
            assert dispenser is not None
            self.pool = TokenPool(limited, lambda c, n: dispenser.on_request("local", c, n),
                                  lambda c: dispenser.on_done("local", c), lambda c: 1)

    def take(self, cls: str) -> bool:
        return self.pool.take(cls) if self.pool is not None else True

    def complete(self, cls: str) -> None:
        if self.pool is not None:
            self.pool.complete(cls)

    # --- transport ---
    def _grant(self, node: str, cls: str, n: int, until: float | None = None) -> None:
        if self.role == "master":
            self.runner.send_message(MSG_TOKENS_GRANT, {"cls": cls, "n": n, "until": until}, client_id=node)
        elif self.pool is not None:
            self.pool.on_grant(cls, n, until)

    def _request_remote(self, cls: str, n: int) -> None:
        self.runner.send_message(MSG_TOKENS_REQ, {"cls": cls, "n": n})

    def _worker_done(self, cls: str) -> None:
        """Flush this worker's stats first (message order is kept), then tell the master the class is done here."""
        self._flush()
        self.runner.send_message(MSG_DONE, {"cls": cls})

    def _on_tokens_req(self, environment: Any, msg: Any, **_: Any) -> None:
        if self.dispenser is not None:
            self.dispenser.on_request(msg.node_id, msg.data["cls"], int(msg.data["n"]))

    def _on_done_msg(self, environment: Any, msg: Any, **_: Any) -> None:
        if self.dispenser is not None:
            self.dispenser.on_done(msg.node_id, msg.data["cls"])

    def _on_grant_msg(self, environment: Any, msg: Any, **_: Any) -> None:
        if self.pool is not None:
            self.pool.on_grant(msg.data["cls"], int(msg.data["n"]), msg.data.get("until"))

    @staticmethod
    def _class_done(cls: str) -> None:
        log.info("memload: %s requests done", cls)
