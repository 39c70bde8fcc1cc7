"""429-aware adaptive pacing: one AIMD controller per endpoint class, shared by the users of a process.

Each user waits `pace_ms` before every request (the peer's per-worker pace). On a 429 the controller
- honours `Retry-After`: every user of the class holds until it has passed, then they restart staggered by
  pace/users so the refilled bucket is not hit by one synchronised burst;
- increases the wait multiplicatively (once per Retry-After window, so the in-flight 429s of one episode count
  once), to at least the wait that sends `HEADROOM` x the success rate the server granted. That rate is measured
  between two 429 episodes: at both instants the server's token bucket was empty, so the successes in between
  are exactly the tokens it produced, whatever its burst. (The first episode, with no earlier one, uses the
  successes of the last second.)
and on every run of `users` consecutive successes it decreases the wait additively, by a step of
`STEP_FRACTION` x the wait set at the last episode, down to `--pace-ms`.

With `adaptive=False` the wait stays at `--pace-ms` and Retry-After is ignored: the peer's fixed pacing.
Pure Python, no gevent: callers sleep for the delays it returns, tests drive it with a fake clock.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE_EVERY_S = 0.1


@dataclass(frozen=True)
class PacingParams:
    """Tunables of the controller (see the module docstring); defaults chosen with a token-bucket simulation."""

    factor: float = 1.5  # multiplicative increase of the wait on a 429 episode
    headroom: float = 0.9  # target send rate as a share of the measured granted rate
    step_fraction: float = 0.01  # additive decrease step, as a share of the wait set at the last episode
    min_step_ms: float = 0.5
    min_increase_ms: float = 1.0
    max_pace_ms: float = 10_000.0
    window_s: float = 1.0  # success-rate window before the first episode
    min_marker_gap_s: float = 1.5  # shortest gap between two episodes that gives a rate estimate
    default_retry_after_s: float = 1.0


class PacingController:
    """AIMD wait of one endpoint class (`recall` or `write`) in one process."""

    def __init__(self, name: str, base_ms: float, adaptive: bool, params: PacingParams | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.base_ms = max(0.0, float(base_ms))
        self.adaptive = adaptive
        self.params = params or PacingParams()
        self.clock = clock
        self.pace_ms = self.base_ms
        self.max_pace_ms = self.base_ms
        self.users = 0
        self.count_ok = 0
        self.count_429 = 0
        self.episodes = 0
        self.blocked_until = 0.0
        self.estimated_rate: float | None = None
        self._cooldown_until = 0.0
        self._streak = 0
        self._step_ms = self.params.min_step_ms
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)  # (time, count_ok)
        self._next_sample = 0.0
        self._marker: tuple[float, int] | None = None
        self._latency_ms: float | None = None
        self._release_seq = 0
        # per-second counters for the pacing timeline
        self.tick_ok = 0
        self.tick_429 = 0

    # --- users ---
    def register_user(self) -> None:
        self.users += 1

    def unregister_user(self) -> None:
        self.users = max(0, self.users - 1)

    # --- waits ---
    @property
    def pace_s(self) -> float:
        return self.pace_ms / 1000.0

    def release_delay(self, now: float | None = None) -> float:
        """Seconds the calling user must still hold before sending (0 = go). Stagger users after a block."""
        now = self.clock() if now is None else now
        if now >= self.blocked_until:
            return 0.0
        self._release_seq += 1
        spacing = self.pace_s / max(1, self.users)
        return self.blocked_until + (self._release_seq - 1) * spacing - now

    # --- outcomes ---
    def on_ok(self, latency_ms: float, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.count_ok += 1
        self.tick_ok += 1
        if not self.adaptive:
            return
        if now >= self._next_sample:  # a (time, successes) sample every 0.1 s, for the rate before an episode
            self._samples.append((now, self.count_ok - 1))
            self._next_sample = now + SAMPLE_EVERY_S
        self._latency_ms = latency_ms if self._latency_ms is None else 0.9 * self._latency_ms + 0.1 * latency_ms
        if self.pace_ms > self.base_ms:
            self._streak += 1
            if self._streak >= max(1, self.users):
                self._streak = 0
                self.pace_ms = max(self.base_ms, self.pace_ms - self._step_ms)

    def on_429(self, retry_after_s: float | None, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.count_429 += 1
        self.tick_429 += 1
        if not self.adaptive:
            return
        p = self.params
        self._streak = 0
        retry = retry_after_s if retry_after_s and retry_after_s > 0 else p.default_retry_after_s
        if now < self._cooldown_until:  # another in-flight 429 of the same episode
            return
        self.episodes += 1
        rate = self._granted_rate(now)
        self.estimated_rate = rate
        target = self.pace_ms * p.factor
        if rate > 0:
            latency_s = (self._latency_ms or 0.0) / 1000.0
            target = max(target, (max(1, self.users) / (p.headroom * rate) - latency_s) * 1000.0)
        else:
            target = max(target, retry * 1000.0)
        self.pace_ms = min(p.max_pace_ms, max(target, self.pace_ms + p.min_increase_ms))
        self.max_pace_ms = max(self.max_pace_ms, self.pace_ms)
        self._step_ms = max(p.min_step_ms, self.pace_ms * p.step_fraction)
        self.blocked_until = max(self.blocked_until, now + retry)
        self._cooldown_until = self.blocked_until
        self._release_seq = 0

    def _granted_rate(self, now: float) -> float:
        """Successes/s the server granted: between the last two episodes if far enough apart, else last second."""
        p = self.params
        rate: float | None = None
        if self._marker is not None and now - self._marker[0] >= p.min_marker_gap_s:
            rate = (self.count_ok - self._marker[1]) / (now - self._marker[0])
        self._marker = (now, self.count_ok)
        if rate is None:
            horizon, before = now - p.window_s, 0
            for t, count in reversed(self._samples):
                if t <= horizon:
                    before = count
                    break
            rate = (self.count_ok - before) / p.window_s
        return rate

    # --- reporting ---
    def take_tick(self) -> tuple[float, int, int]:
        """(pace_ms, 429s, successes) since the previous tick; resets the tick counters."""
        row = (round(self.pace_ms, 3), self.tick_429, self.tick_ok)
        self.tick_ok = self.tick_429 = 0
        return row

    def snapshot(self, now: float | None = None) -> dict[str, float | int | str | None]:
        now = self.clock() if now is None else now
        return {
            "endpoint_class": self.name,
            "adaptive": "on" if self.adaptive else "off",
            "users": self.users,
            "base_pace_ms": round(self.base_ms, 3),
            "pace_ms": round(self.pace_ms, 3),
            "max_pace_ms": round(self.max_pace_ms, 3),
            "blocked_ms": round(max(0.0, self.blocked_until - now) * 1000.0, 1),
            "count_429": self.count_429,
            "count_ok": self.count_ok,
            "episodes": self.episodes,
            "estimated_rate": None if self.estimated_rate is None else round(self.estimated_rate, 3),
        }


def parse_retry_after(value: str | None, body_retry_after_ms: object = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds, as the peer sends), else the body's `retry_after_ms`."""
    if value:
        try:
            seconds = float(value.strip())
            if seconds >= 0:
                return seconds
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                when = parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    if isinstance(body_retry_after_ms, (int, float)) and body_retry_after_ms >= 0:
        return float(body_retry_after_ms) / 1000.0
    return None
