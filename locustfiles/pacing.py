"""429-aware adaptive pacing: one rate controller per endpoint class, shared by the users of a process.

The controller sets a send rate for the whole class, not a wait per user: users waiting to send all wake at the
class's next slot, one takes it, the next slot comes `1 / rate` later. So 1 or 16 users send the same number of
requests per second, 16 users never back off 16 times for one limit, and the rate does not depend on the server's
latency (a limiter that holds requests before answering makes latency swing). No slot is handed out ahead of time:
a new rate or a hold applies at once to every waiting user.

The rate follows an estimate of what the server grants, measured from successes, not from `Retry-After` (an
integer number of seconds, far coarser than a token's refill time):
- a 429 proves the server's token bucket was empty at that instant. Between two such instants every token the
  bucket produced went to a success, so the successes granted in between (counted at their grant time: the answer
  less the usual server work) divided by the time between them is the granted rate, whatever the burst. Summed
  over consecutive pairs of recent 429 episodes, the +-1 token error at each end does not add up and the estimate
  sharpens as the run goes on; a pair too far apart (the bucket may have overflowed) is left out;
- on a 429 episode (the first 429 after the previous hold ended; the in-flight ones count once) every user of the
  class holds until `Retry-After` has passed, the rate drops to `headroom` x the estimate, and after the hold a
  short catch-up at twice the rate sends the tokens the bucket saved meanwhile (never more than the burst the start
  of the run showed; none when the previous episode was recent);
- a success far slower than the fast ones (the server held it until a token came: its bucket is empty now) stops
  any probing and brings the rate back to `headroom` x the estimate before a 429 happens; the successes since the
  last episode may also raise the estimate (a false alarm can only undercount, so it never lowers it);
- after `quiet_s` without either signal the rate climbs through the estimate's uncertainty (+-1 token over the
  tokens behind it) in `probe_span_s`, then creeps up by `probe_per_s` of the estimate per second, so a low
  estimate or a limit raised mid-run is found again.
Before the first 429 the class sends as fast as its users can; the first episode sets a provisional rate (the
successes of the last second, at least 1 / Retry-After) that doubles every `start_double_s` until a second episode
gives an estimate.

`--pace-ms` is a floor on each user's own wait. With `adaptive=False` each user waits exactly `--pace-ms` and
Retry-After is ignored: the Aionis kit's fixed pacing. `pace_ms` (timeline, summary) is the equivalent wait of one
user: users / rate. Pure Python, no gevent: callers sleep for the delays it returns (`wait(sleep)`), tests drive it
with a virtual clock.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PacingParams:
    """Tunables of the controller (see the module docstring); defaults chosen with a token-bucket simulation."""

    headroom: float = 0.95  # target rate as a share of the granted-rate estimate
    probe_span_s: float = 20.0  # the estimate's uncertainty is probed in this time ...
    probe_per_s: float = 0.001  # ... then the rate creeps up by this share of the estimate per second
    quiet_s: float = 5.0  # time without a signal before probing starts
    start_double_s: float = 2.0  # before the first estimate the rate doubles this often
    raise_min_tokens: float = 5.0  # a held success raises the estimate only from this many tokens
    catchup: float = 0.9  # share of the tokens saved during a hold that are sent after it
    slow_factor: float = 2.0  # a success is "held by the server" when slower than this multiple of the recent
    slow_min_ms: float = 20.0  # 90th percentile plus this
    max_pair_gap_s: float = 30.0  # two episodes further apart say nothing exact (the bucket may have overflowed)
    horizon_s: float = 120.0  # episodes older than this are forgotten
    window_s: float = 1.0  # success-rate window for the provisional rate of the first episode
    min_rate: float = 0.1  # req/s: the slowest the class is ever paced
    default_retry_after_s: float = 1.0


@dataclass(frozen=True)
class Turn:
    """One user's wait for a send: not before `earliest` (its own --pace-ms), then the class's next slot."""

    earliest: float


class PacingController:
    """Send rate of one endpoint class (`recall` or `write`) in one process."""

    def __init__(self, name: str, base_ms: float, adaptive: bool, params: PacingParams | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.base_ms = max(0.0, float(base_ms))
        self.adaptive = adaptive
        self.params = params or PacingParams()
        self.clock = clock
        self.max_pace_ms = self.base_ms
        self.users = 0
        self._peak_users = 0
        self.count_ok = 0
        self.count_429 = 0
        self.count_slow = 0
        self.episodes = 0
        self.blocked_until = 0.0
        self.estimated_rate: float | None = None  # granted rate measured between 429 episodes (req/s)
        self.burst_estimate: float | None = None
        self._rate: float | None = None  # rate set at the last signal; None = as fast as the users go
        self._quiet_since = 0.0
        self._next_slot = 0.0
        self._credit = 0.0  # catch-up tokens still to send after a hold
        self._cooldown_until = 0.0
        self._marks: collections.deque[float] = collections.deque()  # time of each episode's first 429
        self._granted_at: collections.deque[float] = collections.deque()  # grant time of each recent success
        self._tokens = 0.0  # successes behind the current estimate (its precision: +-1 token at each end) ...
        self._span = 0.0  # ... and the time they span
        self._first_send: float | None = None
        self._fast: collections.deque[float] = collections.deque(maxlen=64)  # recent success latencies (ms)
        self._burst_ok, self._burst_span = 0, 0.0
        self._release_seq = 0
        self._last_go = -math.inf  # slot of the last request sent
        # per-second counters for the pacing timeline
        self.tick_ok = 0
        self.tick_429 = 0

    # --- users ---
    def register_user(self) -> None:
        self.users += 1
        self._peak_users = max(self._peak_users, self.users)

    def unregister_user(self) -> None:
        self.users = max(0, self.users - 1)

    # --- rate ---
    def rate(self, now: float | None = None) -> float | None:
        """Target send rate of the class (req/s) at `now`, probing included; None while unlimited."""
        if not self.adaptive or self._rate is None:
            return None
        now = self.clock() if now is None else now
        p = self.params
        rate = self._rate
        if self.estimated_rate is None:  # nothing measured yet: double every `start_double_s` after the hold
            quiet = now - self._quiet_since
            if quiet > 0:
                rate *= 2.0 ** min(30.0, quiet / p.start_double_s)
            return max(p.min_rate, rate)
        quiet = now - self._quiet_since - p.quiet_s
        if quiet > 0:
            # quickly up to the top of the estimate's uncertainty (+-1 token at each end), slowly beyond it
            est = self.estimated_rate
            u = 1.0 / max(1.0, self._tokens)
            fast_to = max(rate, est * (1.0 + u))
            fast_for = (fast_to - rate) / (est * u / p.probe_span_s)
            if quiet <= fast_for:
                rate += est * u / p.probe_span_s * quiet
            else:
                rate = fast_to + est * p.probe_per_s * (quiet - fast_for)
        return max(p.min_rate, rate)

    @property
    def pace_ms(self) -> float:
        """Equivalent wait of one user before each request: users / rate, never below --pace-ms."""
        rate = self.rate()
        users = self.users or self._peak_users or 1  # after the run: the users it had
        pace = self.base_ms if rate is None else max(self.base_ms, users * 1000.0 / rate)
        self.max_pace_ms = max(self.max_pace_ms, pace)
        return pace

    @property
    def pace_s(self) -> float:
        return self.pace_ms / 1000.0

    # --- waits ---
    def reserve(self, now: float | None = None) -> Turn:
        """Start a user's wait: its own --pace-ms first, then (adaptive) the next free slot of the class."""
        now = self.clock() if now is None else now
        if self._first_send is None:
            self._first_send = now
        return Turn(now + self.base_ms / 1000.0)

    def delay(self, turn: Turn, now: float | None = None) -> float:
        """Seconds the user must still wait (0: send now, its slot is taken). Users waiting for the same slot
        all wake at it, one takes it, the others wait for the next: no slot is handed out ahead of time, so a
        rate change or a hold applies at once to every waiting user."""
        now = self.clock() if now is None else now
        if now < turn.earliest:
            return turn.earliest - now
        if not self.adaptive:
            return 0.0
        due = max(self._next_slot, self.blocked_until)
        if now < due:
            return due - now
        rate = self.rate(now)
        if rate is None:
            gap = 0.0
        elif self._credit > 0:  # catch-up after a hold: twice the rate
            gap = 0.5 / rate
            self._credit -= 0.5
        else:
            gap = 1.0 / rate
        self._next_slot = (due if now - due < gap else now) + gap  # keep the cadence through small wake-up lags
        self._last_go = now
        return 0.0

    def wait(self, sleep: Callable[[float], object]) -> None:
        """Block the calling user (with `sleep`) until its turn."""
        turn = self.reserve()
        while (hold := self.delay(turn)) > 0:
            sleep(hold)

    def release_delay(self, now: float | None = None) -> float:
        """Seconds the caller must still hold after a 429 (0 = go), staggered after the hold (open model)."""
        now = self.clock() if now is None else now
        if now >= self.blocked_until:
            return 0.0
        self._release_seq += 1
        rate = self.rate(now)
        spacing = 1.0 / rate if rate else self.base_ms / 1000.0 / max(1, self.users)
        return self.blocked_until + (self._release_seq - 1) * spacing - now

    # --- outcomes ---
    def on_ok(self, latency_ms: float, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.count_ok += 1
        self.tick_ok += 1
        if not self.adaptive:
            return
        p = self.params
        if self._first_send is None:
            self._first_send = now - latency_ms / 1000.0
        recent = sorted(self._fast) if self._fast else [latency_ms]
        self._fast.append(latency_ms)
        # when the server granted it: the answer minus the usual work (a held request got its token late)
        self._granted_at.append(now - min(latency_ms, recent[0]) / 1000.0)
        while self._granted_at and self._granted_at[0] < now - p.horizon_s:
            self._granted_at.popleft()
        usual = recent[int(0.9 * (len(recent) - 1))]  # the 90th percentile: a server's own slow tail is no alarm
        if latency_ms > p.slow_factor * usual + p.slow_min_ms and self._rate is not None:
            self._on_slow(now)

    def _on_slow(self, now: float) -> None:
        """A success the server held until a token came: its bucket is (very likely) empty now. The successes since
        the last 429 episode may then show a higher granted rate than the estimate (never a lower one: a
        false alarm only undercounts), and the rate stops probing."""
        p = self.params
        self.count_slow += 1
        if self.estimated_rate is not None and self._marks:
            tokens = self._tokens + self._granted_between(self._marks[-1], now)
            span = self._span + now - self._marks[-1]
            if tokens >= p.raise_min_tokens and tokens / span > self.estimated_rate:
                self.estimated_rate = tokens / span
        rate = self.rate(now)
        target = rate if self.estimated_rate is None else p.headroom * self.estimated_rate
        if rate is not None and (rate > target or self.estimated_rate is None):
            self._rate = target
        self._quiet_since = now

    def on_429(self, retry_after_s: float | None, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.count_429 += 1
        self.tick_429 += 1
        if not self.adaptive:
            return
        if now < self._cooldown_until:  # another in-flight 429 of the same episode
            return
        p = self.params
        retry = retry_after_s if retry_after_s and retry_after_s > 0 else p.default_retry_after_s
        self.episodes += 1
        if self.episodes == 1:  # the burst plus what refilled until the bucket first ran dry
            self._burst_ok = self._granted_between(-math.inf, now)
            self._burst_span = now - (self._first_send if self._first_send is not None else now)
        self._marks.append(now)
        while self._marks and self._marks[0] < now - p.horizon_s:
            self._marks.popleft()
        granted = self._granted_rate()
        if granted is not None:
            self.estimated_rate = granted
            if self.burst_estimate is None:
                self.burst_estimate = max(1.0, self._burst_ok - granted * self._burst_span)
            self._rate = p.headroom * granted
            saved = granted * retry
            recent = len(self._marks) > 1 and now - self._marks[-2] < 2 * p.quiet_s  # the catch-up did not fit
            self._credit = 0.0 if recent else p.catchup * min(saved, self.burst_estimate)
        else:  # first episode: the successes of the last second (burst included) until the second one says more
            self._rate = max(p.min_rate, 1.0 / retry, self._granted_between(now - p.window_s, now) / p.window_s)
            self._credit = 0.0
        self._quiet_since = now + retry
        self.blocked_until = max(self.blocked_until, now + retry)
        self._cooldown_until = self.blocked_until
        self._next_slot = max(self.blocked_until, self._last_go + 1.0 / max(p.min_rate, self._rate))
        self._release_seq = 0
        _ = self.pace_ms  # keeps max_pace_ms

    def _granted_rate(self) -> float | None:
        """Successes/s between consecutive episodes (bucket empty at both ends), summed over the recent pairs.

        A success counts in the pair it was granted in (its answer time less the usual server work), so a request
        the server held across an episode counts after it."""
        tokens = span = 0.0
        for t0, t1 in itertools.pairwise(self._marks):
            if t1 - t0 <= self.params.max_pair_gap_s:
                tokens += self._granted_between(t0, t1)
                span += t1 - t0
        if span <= 0:
            return None
        self._tokens, self._span = tokens, span
        return tokens / span

    def _granted_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self._granted_at if t0 <= t < t1)

    # --- reporting ---
    def take_tick(self) -> tuple[float, int, int]:
        """(pace_ms, 429s, successes) since the previous tick; resets the tick counters."""
        row = (round(self.pace_ms, 3), self.tick_429, self.tick_ok)
        self.tick_ok = self.tick_429 = 0
        return row

    def snapshot(self, now: float | None = None) -> dict[str, float | int | str | None]:
        now = self.clock() if now is None else now
        rate = self.rate(now)
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
            "count_slow": self.count_slow,
            "episodes": self.episodes,
            "estimated_rate": None if self.estimated_rate is None else round(self.estimated_rate, 3),
            "target_rate": None if rate is None or not math.isfinite(rate) else round(rate, 3),
        }


def parse_retry_after(value: str | None, body_retry_after_ms: object = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds, as Aionis sends), else the body's `retry_after_ms`."""
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
