"""Deterministic discrete-event simulation of the suite's users against a rate-limited server (virtual clock).

Each simulated Locust user loops as `SuiteUser.send` does: reserve a turn from its class's `PacingController`, sleep
until it comes (re-asking after a hold), send, and report the answer (success latency or 429 with `Retry-After`).
The server is the limiter fixture's token bucket with the same hold-and-recheck rule. Per-client: one process, all
its users share the client's bucket. Per-tenant: the users are split over two load-generator processes (two
controllers, as with Locust workers) that share the tenant's bucket. Nothing sleeps; no wall time is read.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from locustfiles.pacing import PacingController
from tests.support.limiter_server import TokenBucket, retry_after_header

ONE_WAY_S = 0.0005  # network, each way (a granted request also takes service_ms x U(0.5, 1.5) of server work)


@dataclass
class SimRun:
    rate: float
    users: int
    per: str
    duration_s: float
    responses: list[tuple[float, int]] = field(default_factory=list)  # (virtual time of the answer, status)
    controllers: list[PacingController] = field(default_factory=list)

    def successes(self, t0: float, t1: float) -> int:
        return sum(1 for t, s in self.responses if t0 <= t < t1 and s == 200)

    def count_429(self, t0: float, t1: float) -> int:
        return sum(1 for t, s in self.responses if t0 <= t < t1 and s == 429)

    def window_s(self) -> float:
        """Window for rate figures: at least 5 s and 20 tokens."""
        return max(5.0, 20.0 / self.rate)

    def time_to_90(self) -> float | None:
        """End of the first window whose success rate is >= 90 % of the limit."""
        w = self.window_s()
        t = 0.0
        while t + w <= self.duration_s:
            if self.successes(t, t + w) >= 0.9 * self.rate * w:
                return t + w
            t += 0.5
        return None

    def after(self, t0: float) -> tuple[float, float]:
        """(success rate / limit, 429 share) from t0 to the end."""
        ok, n429 = self.successes(t0, self.duration_s), self.count_429(t0, self.duration_s)
        return ok / (self.duration_s - t0) / self.rate, n429 / max(1, ok + n429)

    def worst_window(self, t0: float) -> float:
        """Lowest success rate / limit over consecutive windows from t0 to the end."""
        w = 2 * self.window_s()
        worst, t = float("inf"), t0
        while t + w <= self.duration_s:
            worst = min(worst, self.successes(t, t + w) / w / self.rate)
            t += w
        return worst


def simulate(rate: float, users: int, per: str = "client", *, burst: float | None = None, max_wait_ms: float = 600.0,
             duration_s: float = 90.0, base_ms: float = 0.0, service_ms: float = 2.0, seed: int = 1,
             hold: str = "recheck", service_sigma: float = 0.0,
             controller: Callable[[str, Callable[[], float]], PacingController] | None = None) -> SimRun:
    """Run `users` simulated users for `duration_s` virtual seconds against a bucket (rate, burst = 2 x rate).

    `hold="recheck"`: the fixture's rule (hold until the next token, at most max-wait, check once more).
    `hold="queue"`: a request that would get a token within max-wait waits for it in line (tokens reserved in
    arrival order); one that would not is answered 429 after max-wait."""
    bucket = TokenBucket(rate, 2 * rate if burst is None else burst)
    max_wait_s = max_wait_ms / 1000.0
    service_s = service_ms / 1000.0
    rng = random.Random(seed)
    now = 0.0
    seq = itertools.count()
    events: list[tuple[float, int, Callable[[], None]]] = []

    def work() -> float:
        """Server work of a granted request: U(0.5, 1.5) x service_ms, or log-normal (heavy tail) with a sigma."""
        if service_sigma > 0:
            return service_s * rng.lognormvariate(0.0, service_sigma)
        return service_s * (0.5 + rng.random())

    def at(t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(events, (t, next(seq), fn))

    def clock() -> float:
        return now

    make = controller or (lambda name, clk: PacingController(name, base_ms, True, clock=clk))
    processes = 2 if per == "tenant" and users > 1 else 1
    ctls = [make("recall", clock) for _ in range(processes)]
    run = SimRun(rate, users, per, duration_s, controllers=ctls)

    def user(ctl: PacingController) -> None:
        turn = ctl.reserve(now)

        def wake() -> None:
            hold = ctl.delay(turn, now)
            if hold > 0:
                at(now + hold, wake)
                return
            sent = now
            at(now + ONE_WAY_S, lambda: arrive(ctl, sent))

        wake()

    def arrive(ctl: PacingController, sent: float) -> None:
        if hold == "queue":
            queue(ctl, sent)
            return
        ok, retry_ms = bucket.take(now)
        if ok:
            answer(ctl, sent, 200, None, now + work())
        elif max_wait_s > 0:
            at(now + min(max_wait_s, retry_ms / 1000.0), lambda: recheck(ctl, sent))
        else:
            answer(ctl, sent, 429, retry_after_header(retry_ms), now)

    def queue(ctl: PacingController, sent: float) -> None:
        if bucket.last is None:  # full at start
            bucket.tokens, bucket.last = bucket.burst, now
        bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.last) * bucket.rate)
        bucket.last = now
        wait = max(0.0, (1.0 - bucket.tokens) / bucket.rate)
        if wait <= max_wait_s:
            bucket.tokens -= 1.0  # reserved: the bucket goes into debt until the token is made
            answer(ctl, sent, 200, None, now + wait + work())
        else:
            answer(ctl, sent, 429, retry_after_header(math.ceil(wait * 1000.0)), now + max_wait_s)

    def recheck(ctl: PacingController, sent: float) -> None:
        ok, retry_ms = bucket.take(now)
        if ok:
            answer(ctl, sent, 200, None, now + work())
        else:
            answer(ctl, sent, 429, retry_after_header(retry_ms), now)

    def answer(ctl: PacingController, sent: float, status: int, retry_after: int | None, t: float) -> None:
        def receive() -> None:
            if status == 200:
                ctl.on_ok((now - sent) * 1000.0, now)
            else:
                ctl.on_429(float(retry_after or 1), now)
            run.responses.append((now, status))
            if now < duration_s:
                user(ctl)

        at(t + ONE_WAY_S, receive)

    for i in range(users):
        ctl = ctls[i % processes]
        ctl.register_user()
        at(0.0, lambda c=ctl: user(c))
    while events:
        t, _, fn = heapq.heappop(events)
        if t > duration_s + 5:
            break
        now = t
        fn()
    return run
