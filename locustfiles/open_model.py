"""Open-model arrivals (`--arrival-rate`): a fixed schedule of intended start times, coordinated-omission aware.

Slot k of a schedule is due at t0 + k/rate, whatever the server does. A free user takes the next slot, sleeps
until it is due and sends; its latency is measured from the slot's intended start (wrk2 -R, k6 arrival-rate).
A request sent more than `late_ms` after its slot counts as late; a slot already `drop_ms` overdue when a user
gets to it is skipped and counted as dropped (pgbench -R --latency-limit "skipped", k6 `dropped_iterations`): the
generator had no free user for it. Users are the pool of virtual users, as k6's preAllocatedVUs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Slot:
    intended: float  # epoch seconds
    dropped_before: int  # slots skipped (too late) to reach this one


class ArrivalSchedule:
    """One schedule (one endpoint class in one process); `rate` is requests/s of this schedule."""

    def __init__(self, rate: float, late_ms: float, drop_ms: float, clock: Callable[[], float] = time.time) -> None:
        if rate <= 0:
            raise ValueError("arrival rate must be > 0")
        self.rate = rate
        self.late_s = late_ms / 1000.0
        self.drop_s = drop_ms / 1000.0
        self.clock = clock
        self.t0: float | None = None
        self._next = 0
        self.issued = 0
        self.dropped = 0

    def next_slot(self, now: float | None = None) -> Slot:
        """Claim the next slot that is not yet `drop_ms` overdue (skipping and counting the ones that are)."""
        now = self.clock() if now is None else now
        if self.t0 is None:
            self.t0 = now
        k = self._next
        skipped = 0
        if now - (self.t0 + k / self.rate) > self.drop_s:
            first_ok = math.ceil((now - self.drop_s - self.t0) * self.rate)
            skipped = max(0, first_ok - k)
            k += skipped
        self._next = k + 1
        self.issued += 1
        self.dropped += skipped
        return Slot(self.t0 + k / self.rate, skipped)

    def is_late(self, intended: float, sent_at: float) -> bool:
        return sent_at - intended > self.late_s
