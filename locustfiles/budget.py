"""Exact request counts per endpoint class, in one process or across Locust workers, with sequential phases.

The `TokenDispenser` (master, or the local runner) owns the budget: N tokens per class. Users take one token per
request from their process's `TokenPool`, which asks the dispenser for batches. A class not yet in its phase gets
its requests queued, so with `sequential` phases the write users idle until every recall token is spent and every
recall request has completed. A pool that learns its class is exhausted and has no request in flight reports
`done`; a class is over when its tokens are all granted and every process that got some reported done. Since a
worker flushes its stats before reporting done, the master has every sample when the last class ends.

The transport (direct calls locally, Locust custom messages between master and workers) is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import gevent.event


class TokenPool:
    """Per-process side: tokens on hand, in-flight counts, blocking `take`."""

    def __init__(self, classes: Iterable[str], request: Callable[[str, int], None], done: Callable[[str], None],
                 batch: Callable[[str], int]) -> None:
        self.limited = set(classes)
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

    def on_grant(self, cls: str, n: int) -> None:
        if cls not in self.limited:
            return
        self._asked[cls] = False
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
    """Budget owner: grants tokens per class in phase order, detects the end of each class and of the run."""

    def __init__(self, budgets: dict[str, int], sequential: bool, grant: Callable[[str, str, int], None],
                 on_class_done: Callable[[str], None], on_all_done: Callable[[], None]) -> None:
        self.remaining = dict(budgets)
        self.budgets = dict(budgets)
        order = [c for c in ("recall", "write") if c in budgets]
        self.phases: list[list[str]] = [[c] for c in order] if sequential else [order]
        self.phase = 0
        self._grant = grant
        self._on_class_done = on_class_done
        self._on_all_done = on_all_done
        self._pending: dict[str, list[tuple[str, int]]] = {c: [] for c in budgets}
        self._requesters: dict[str, set[str]] = {c: set() for c in budgets}
        self._done_nodes: dict[str, set[str]] = {c: set() for c in budgets}
        self.finished: set[str] = set()
        self.all_done = not budgets

    def active(self, cls: str) -> bool:
        return self.phase < len(self.phases) and cls in self.phases[self.phase]

    def on_request(self, node: str, cls: str, n: int) -> None:
        if cls not in self.remaining:
            self._grant(node, cls, 0)
            return
        if not self.active(cls) and cls not in self.finished:
            self._pending[cls].append((node, n))
            return
        granted = min(max(0, n), self.remaining[cls])
        self.remaining[cls] -= granted
        if granted:
            self._requesters[cls].add(node)
        self._grant(node, cls, granted)

    def on_done(self, node: str, cls: str) -> None:
        if cls not in self.remaining:
            return
        self._done_nodes[cls].add(node)
        self._check(cls)

    def _check(self, cls: str) -> None:
        if cls in self.finished or self.remaining[cls] > 0:
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
        if len(self.finished) == len(self.remaining) and not self.all_done:
            self.all_done = True
            self._on_all_done()
