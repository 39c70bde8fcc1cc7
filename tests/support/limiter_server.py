"""A rate-limited stand-in server for the pacing tests and benchmark, and the token bucket it (and the simulation)
uses.

The limiter behaves like the Aionis recall_text limiter: a token bucket of rate r and burst b, full at start,
refilled continuously, cost 1. A request that finds it empty is held `min(max_wait, time to the next token)` and
checked once more; if it still finds no token it is answered 429 with an integer `Retry-After` (seconds, at least
1) and `details.retry_after_ms`. Per-client mode keys the bucket by the client's address (every connection of one
load generator shares it), per-tenant mode by the body's `tenant_id` (every client of the tenant shares it).

The server answers `POST /v1/memory/recall_text` and `/v1/memory/recall` with a small contract-shaped body (one
seed) and `GET /health`; `GET /_limiter` returns its own counters (granted, 429, held, and when each
grant and 429 happened, in seconds since the first request) so tests judge a run by what
the server saw, not by wall-clock rates. Stdlib only, threaded, loopback only.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECALL_BODY = json.dumps({
    "tenant_id": "default", "scope": "s",
    "seeds": [{"id": "00000000-0000-0000-0000-000000000001", "type": "event", "title": "t",
               "text_summary": "t", "tier": "hot", "salience": 0.5, "confidence": 0.5,
               "similarity": 0.9}],
    "subgraph": {"nodes": [], "edges": []}, "ranked": [], "context": {"text": "", "items": [], "citations": []},
    "debug": None, "query": {"embedding_provider": "fixture"},
}).encode()


@dataclass
class TokenBucket:
    """Token bucket with an explicit clock: `take(now)` -> (granted, ms until the next token)."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    last: float | None = None

    def take(self, now: float) -> tuple[bool, int]:
        if self.last is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0
        return False, max(1, math.ceil((1.0 - self.tokens) / self.rate * 1000.0))


def retry_after_header(retry_after_ms: int) -> int:
    """Integer seconds, at least 1, as Aionis sends."""
    return max(1, math.ceil(retry_after_ms / 1000.0))


@dataclass
class LimiterStats:
    granted: int = 0
    rejected: int = 0
    held: int = 0  # requests the limiter held before answering (granted late or 429)
    first_t: float | None = None
    grants: list[float] = field(default_factory=list)  # monotonic time of each grant ...
    rejections: list[float] = field(default_factory=list)  # ... and of each 429

    def as_dict(self) -> dict[str, object]:
        return {"granted": self.granted, "rejected_429": self.rejected, "held": self.held,
                "grant_times": [round(t - (self.first_t or 0.0), 4) for t in self.grants],
                "reject_times": [round(t - (self.first_t or 0.0), 4) for t in self.rejections]}


class LimiterState:
    """Buckets by key plus counters; one lock, because the HTTP server is threaded."""

    def __init__(self, rate: float, burst: float, max_wait_ms: float, per: str) -> None:
        if per not in ("client", "tenant"):
            raise ValueError("per must be 'client' or 'tenant'")
        self.rate, self.burst, self.max_wait_s, self.per = rate, burst, max_wait_ms / 1000.0, per
        self.buckets: dict[str, TokenBucket] = {}
        self.stats = LimiterStats()
        self.lock = threading.Lock()

    def _take(self, key: str) -> tuple[bool, int]:
        with self.lock:
            bucket = self.buckets.setdefault(key, TokenBucket(self.rate, self.burst))
            return bucket.take(time.monotonic())

    def admit(self, key: str) -> tuple[bool, int]:
        """Check, hold up to max-wait and check once more (blocking the calling thread)."""
        ok, retry_ms = self._take(key)
        held = False
        if not ok and self.max_wait_s > 0:
            held = True
            time.sleep(min(self.max_wait_s, retry_ms / 1000.0))
            ok, retry_ms = self._take(key)
        with self.lock:
            now = time.monotonic()
            if self.stats.first_t is None:
                self.stats.first_t = now
            self.stats.held += held
            if ok:
                self.stats.granted += 1
                self.stats.grants.append(now)
            else:
                self.stats.rejected += 1
                self.stats.rejections.append(now)
        return ok, retry_ms


class _Handler(BaseHTTPRequestHandler):
    server: LimiterServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_: object) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write: no Nagle/delayed-ACK stall
        self.flush_headers()

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b'{"ok":true,"server":"limiter-fixture"}')
        elif self.path == "/_limiter":
            with self.server.state.lock:
                body = json.dumps(self.server.state.stats.as_dict()).encode()
            self._send(200, body)
        else:
            self._send(404, b'{"error":"not_found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path not in ("/v1/memory/recall_text", "/v1/memory/recall"):
            self._send(404, b'{"error":"not_found"}')
            return
        state = self.server.state
        if state.per == "tenant":
            try:
                key = "tenant:" + str(json.loads(raw or b"{}").get("tenant_id", "default"))
            except ValueError:
                key = "tenant:default"
        else:
            key = "ip:" + self.client_address[0]
        ok, retry_ms = state.admit(key)
        if ok:
            self._send(200, RECALL_BODY)
            return
        code = "tenant_rate_limited_recall" if state.per == "tenant" else "rate_limited_recall"
        body = json.dumps({"error": code, "message": "rate limited (recall); retry later",
                           "details": {"retry_after_ms": retry_ms, "waited_ms": 0}}).encode()
        self._send(429, body, {"retry-after": str(retry_after_header(retry_ms))})


class LimiterServer(ThreadingHTTPServer):
    """`LimiterServer(rate, burst, max_wait_ms, per)`; `.url`; `start()` / `stop()` run it in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, rate: float, burst: float, max_wait_ms: float = 600.0, per: str = "client",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the limiter fixture serves loopback only")
        super().__init__((host, port), _Handler)
        self.state = LimiterState(rate, burst, max_wait_ms, per)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def start(self) -> LimiterServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, object]:
        with self.state.lock:
            return self.state.stats.as_dict()


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.support.limiter_server RATE [PER]
    import sys

    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    srv = LimiterServer(rate, 2 * rate, 600.0, sys.argv[2] if len(sys.argv) > 2 else "client", port=0).start()
    print(srv.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
