"""Token-bucket rate limiting, per process, as an Aionis server does it.

Two layers: per client (`<kind>:ip:<addr>`, or `<kind>:admin:<sha16>` with a valid admin token; loopback bypassed
unless APP_ENV=prod, except for the recall_text embedding kind) and per tenant (`tenant:<id>:<kind>`, never
bypassed). Buckets start full, refill continuously, and cost 1. A denied write or recall_text embedding sleeps
min(MAX_WAIT, retry_after_ms) and re-checks once before answering 429.

Kinds: `recall`, `write`, `debug_embeddings`, and `recall_text_embed` (every recall_text request of a server with an
embedding provider, checked after the recall quota; a query-cache hit still costs a token, as on an Aionis server,
so the same traffic gets the same 429s from both servers).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from memload import contract as C
from memload.config import Settings
from memload.identity import sha256_hex
from memory_api.errors import ApiError

SWEEP_EVERY_N = 500
TOKEN_EPSILON = 1e-9  # a refill computed as 0.9999999999 token after the exact wait is a whole token
LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_ms: int


class TokenBucketLimiter:
    """Buckets keyed by string; idle buckets older than ttl are swept every SWEEP_EVERY_N checks."""

    def __init__(self, rate_per_sec: float, burst: float, ttl_ms: int) -> None:
        self.rate = max(rate_per_sec, 1e-9)
        self.burst = burst
        self.ttl_s = ttl_ms / 1000.0
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last_refill_monotonic]
        self._checks = 0

    def check(self, key: str, cost: float = 1.0) -> Decision:
        now = time.monotonic()
        self._checks += 1
        if self._checks % SWEEP_EVERY_N == 0:
            self._sweep(now)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = [self.burst, now]
        else:
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
        if b[0] >= cost - TOKEN_EPSILON:
            b[0] -= cost
            return Decision(True, 0)
        return Decision(False, max(1, math.ceil((cost - b[0]) / self.rate * 1000)))

    def _sweep(self, now: float) -> None:
        stale = [k for k, (_, last) in self._buckets.items() if now - last > self.ttl_s]
        for k in stale:
            del self._buckets[k]


def is_loopback(ip: str | None) -> bool:
    return bool(ip) and (ip in LOOPBACK or ip.startswith("::ffff:127.0.0.1"))  # type: ignore[union-attr]


EMBED_KIND = "recall_text_embed"


class RateLimits:
    """Both layers for the kinds recall, write, debug_embeddings and recall_text_embed."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        ttl = s.rate_limit_ttl_ms
        self.ip = {
            "recall": TokenBucketLimiter(s.recall_rate_limit_rps, s.recall_rate_limit_burst, ttl),
            "write": TokenBucketLimiter(s.write_rate_limit_rps, s.write_rate_limit_burst, ttl),
            "debug_embeddings": TokenBucketLimiter(s.debug_embed_rate_limit_rps, s.debug_embed_rate_limit_burst, ttl),
            EMBED_KIND: TokenBucketLimiter(s.recall_text_embed_rate_limit_rps, s.recall_text_embed_rate_limit_burst,
                                           ttl),
        }
        self.tenant = {
            "recall": TokenBucketLimiter(s.tenant_recall_rate_limit_rps, s.tenant_recall_rate_limit_burst, ttl),
            "write": TokenBucketLimiter(s.tenant_write_rate_limit_rps, s.tenant_write_rate_limit_burst, ttl),
            "debug_embeddings": TokenBucketLimiter(s.tenant_debug_embed_rate_limit_rps,
                                                   s.tenant_debug_embed_rate_limit_burst, ttl),
            EMBED_KIND: TokenBucketLimiter(s.tenant_recall_text_embed_rate_limit_rps,
                                           s.tenant_recall_text_embed_rate_limit_burst, ttl),
        }
        self.ip_max_wait_ms = {"write": s.write_rate_limit_max_wait_ms,
                               EMBED_KIND: s.recall_text_embed_rate_limit_max_wait_ms}
        self.tenant_max_wait_ms = {"write": s.tenant_write_rate_limit_max_wait_ms,
                                   EMBED_KIND: s.tenant_recall_text_embed_rate_limit_max_wait_ms}

    def _client_key(self, kind: str, ip: str, admin_token: str | None) -> str:
        if self.s.admin_token and admin_token and admin_token == self.s.admin_token:
            return f"{kind}:admin:{sha256_hex(admin_token)[:16]}"
        return f"{kind}:ip:{ip or 'unknown'}"

    async def enforce_client(self, kind: str, ip: str, admin_token: str | None) -> None:
        """Per-client layer: 429 rate_limited_<kind>."""
        if not self.s.rate_limit_enabled:
            return
        bypass = self.s.rate_limit_bypass_loopback and self.s.app_env != "prod" and kind != EMBED_KIND
        if bypass and is_loopback(ip):
            return
        limiter = self.ip[kind]
        key = self._client_key(kind, ip, admin_token)
        max_wait = self.ip_max_wait_ms.get(kind, 0)
        res, waited = await _check_with_wait(limiter, key, max_wait)
        if not res.allowed:
            raise _too_many(kind, tenant=None, res=res, waited=waited)

    async def enforce_tenant(self, kind: str, tenant_id: str) -> None:
        """Per-tenant layer (no loopback bypass): 429 tenant_rate_limited_<kind>."""
        if not self.s.tenant_quota_enabled:
            return
        limiter = self.tenant[kind]
        max_wait = self.tenant_max_wait_ms.get(kind, 0)
        res, waited = await _check_with_wait(limiter, f"tenant:{tenant_id}:{kind}", max_wait)
        if not res.allowed:
            raise _too_many(kind, tenant=tenant_id, res=res, waited=waited)


async def _check_with_wait(limiter: TokenBucketLimiter, key: str, max_wait_ms: int) -> tuple[Decision, int]:
    res = limiter.check(key)
    waited = 0
    if not res.allowed and max_wait_ms > 0:
        waited = min(max_wait_ms, max(1, res.retry_after_ms))
        # uvloop's timers count from the loop's cached clock and can fire early by the time the current iteration has
        # run: sleep until the monotonic clock says the wait is over, so the re-check sees the refill it waited for
        deadline = time.monotonic() + waited / 1000.0
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(left)
        res = limiter.check(key)
    return res, waited


def _too_many(kind: str, *, tenant: str | None, res: Decision, waited: int) -> ApiError:
    is_tenant = tenant is not None
    details: dict[str, object] = {"retry_after_ms": res.retry_after_ms, "waited_ms": waited}
    if is_tenant:
        details = {"tenant_id": tenant, **details}
    return ApiError(
        429,
        C.rate_limited_code(kind, tenant=is_tenant),
        C.rate_limited_message(kind, tenant=is_tenant),
        details=details,
        headers={"retry-after": str(max(1, math.ceil(res.retry_after_ms / 1000)))},
    )


def check_prod_safety(s: Settings) -> None:
    """APP_ENV=prod refuses auth off, loopback bypass on, or a limiter off (as an Aionis server does)."""
    from memload.errors import ConfigError

    if s.app_env != "prod":
        return
    problems = []
    if s.memory_auth_mode == "off":
        problems.append("MEMORY_AUTH_MODE=off")
    if s.rate_limit_bypass_loopback:
        problems.append("RATE_LIMIT_BYPASS_LOOPBACK=true")
    if not s.rate_limit_enabled:
        problems.append("RATE_LIMIT_ENABLED=false")
    if not s.tenant_quota_enabled:
        problems.append("TENANT_QUOTA_ENABLED=false")
    if problems:
        raise ConfigError(f"APP_ENV=prod refuses to start with {', '.join(problems)}")
