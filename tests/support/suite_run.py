"""Run the real suite (Locust headless, recall users only, adaptive pacing) against the limiter fixture, bounded in
time, and read back what the server counted. Shared by the pacing test and `benchmarks/bench_pacing.py`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from memload.config import REPO_ROOT
from tests.support.limiter_server import LimiterServer


@dataclass
class FixtureRun:
    rate: float
    users: int
    per: str
    duration_s: float
    stats: dict  # the server's own counters (`GET /_limiter`)
    returncode: int
    log: str

    def successes(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.stats["grant_times"] if t0 <= t < t1)

    def rejections(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.stats["reject_times"] if t0 <= t < t1)

    @property
    def end_s(self) -> float:
        """Last answer the server gave, in seconds since its first request."""
        times = self.stats["grant_times"] + self.stats["reject_times"]
        return max(times) if times else 0.0

    def window_s(self) -> float:
        return max(5.0, 20.0 / self.rate)

    def time_to_90(self) -> float | None:
        """End of the first window (server clock) whose success rate is >= 90 % of the limit."""
        w, t = self.window_s(), 0.0
        while t + w <= self.end_s:
            if self.successes(t, t + w) >= 0.9 * self.rate * w:
                return t + w
            t += 0.5
        return None

    def after(self, t0: float) -> tuple[float, float, int, int]:
        """(success rate / limit, 429 share, successes, 429s) from t0 to the last answer, server clock."""
        end = self.end_s
        ok, n429 = self.successes(t0, end + 1), self.rejections(t0, end + 1)
        span = max(1e-9, end - t0)
        return ok / span / self.rate, n429 / max(1, ok + n429), ok, n429


def run_suite(rate: float, users: int, per: str, duration_s: float, workdir: Path, *,
              max_wait_ms: float = 600.0, burst: float | None = None, processes: int = 1) -> FixtureRun:
    """Start a fixture limiter, run `users` recall users for `duration_s` against it, stop it, return its counts.
    `processes` > 1 forks Locust workers (per-tenant sharing between load-generator processes)."""
    srv = LimiterServer(rate, 2 * rate if burst is None else burst, max_wait_ms, per).start()
    prefix = workdir / f"pacing_{per}_{rate:g}_{users}"
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "memory_users.py"), "--headless",
           "-u", str(users), "-r", str(users), "-t", f"{duration_s:g}s", "--host", srv.url, "--scope", "pacing",
           "--adaptive", "on", "--csv", str(prefix), "--only-summary", "--stop-timeout", "5"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    cmd.append("RecallUser")
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration_s + 120)
        stats = srv.stats()
    finally:
        srv.stop()
    return FixtureRun(rate, users, per, duration_s, stats, proc.returncode, proc.stdout[-3000:] + proc.stderr[-3000:])
