"""A small synchronous JSON client for the target's API (stdlib `urllib`).

For the kit's one-off requests (the matrix's source vector, the worker benchmark's backlog writes, health probes),
not for timed load: the Locust users and the benchmarks' load loops keep their own transport. A 429 is waited out
as the server asks (`Retry-After`, else the body's `retry_after_ms`), each wait bounded and the number of retries
bounded; anything else that is not 2xx raises `RequestFailed` naming the method, the route and the status. Plain
sockets and `time.sleep` only, so it also runs in a gevent-patched (Locust) process.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from memload.client.auth import JSON_CONTENT_TYPE, auth_headers
from memload.client.bodies import dumps
from memload.errors import MemloadError

DEFAULT_RETRY_WAIT_S = 1.0  # a 429 that says nothing about when to come back


class RequestFailed(MemloadError):
    """A request answered with a non-2xx status (`status`), or not answered at all (`status` 0, `cause` says why)."""

    def __init__(self, method: str, route: str, status: int, detail: str = "", *,
                 cause: BaseException | None = None, retries_429: int = 0) -> None:
        self.method, self.route, self.status, self.detail = method, route, status, detail
        self.cause, self.retries_429 = cause, retries_429
        what = f"{method} {route} -> {status}" if status else f"{method} {route} failed"
        if status == 429 and retries_429:
            what += f" after {retries_429} retries"
        super().__init__(f"{what}: {detail}" if detail else what)


@dataclass(frozen=True)
class Reply:
    """A response: status, headers (case-insensitive `get`), raw body, and how many 429s were waited out before it."""

    status: int
    headers: Message
    body: bytes
    retries_429: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def snippet(self, limit: int = 200) -> str:
        """The body on one line, cut short: enough to name a server's error in a message."""
        return " ".join(self.body[:2000].decode("utf-8", "replace").split())[:limit]


def retry_after_s(reply: Reply) -> float | None:
    """Seconds a 429 asks to wait: `Retry-After` (delta-seconds or HTTP date), else the body's `retry_after_ms`."""
    value = (reply.headers.get("retry-after") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    try:
        doc = reply.json()
    except ValueError:
        return None
    ms = doc.get("retry_after_ms") if isinstance(doc, dict) else None
    return float(ms) / 1000.0 if isinstance(ms, (int, float)) and ms >= 0 else None


class ApiClient:
    """Requests to one target (`base_url`, a path prefix included), with the kit's auth headers by default."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 30.0,
                 max_429_retries: int = 5, min_retry_wait_s: float = 0.0, max_retry_wait_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(auth_headers()[0] if headers is None else headers)
        self.timeout_s = timeout_s
        self.max_429_retries = max(0, max_429_retries)
        self.min_retry_wait_s = min_retry_wait_s
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep

    def url(self, route: str) -> str:
        return self.base_url + route

    def request(self, method: str, route: str, body: bytes | object | None = None) -> Reply:
        """Send (a non-bytes body is serialised as compact JSON), wait out 429s, return the last reply whatever its
        status. Raises `RequestFailed` (status 0) when no response came back."""
        data = body if body is None or isinstance(body, bytes) else dumps(body)
        headers = {**self.headers, **JSON_CONTENT_TYPE} if data is not None else self.headers
        retries = 0
        while True:
            reply = self._once(method, route, data, headers, retries)
            if reply.status != 429 or retries >= self.max_429_retries:
                return reply
            wait = retry_after_s(reply)
            wait = DEFAULT_RETRY_WAIT_S if wait is None else wait
            self._sleep(min(self.max_retry_wait_s, max(self.min_retry_wait_s, wait)))
            retries += 1

    def call(self, method: str, route: str, body: bytes | object | None = None) -> Any:
        """The parsed JSON of a 2xx reply; any other status (429 once the retries are spent) raises `RequestFailed`."""
        reply = self.request(method, route, body)
        if not reply.ok:
            raise RequestFailed(method, route, reply.status, reply.snippet(), retries_429=reply.retries_429)
        try:
            return reply.json()
        except ValueError as exc:
            raise RequestFailed(method, route, reply.status, f"the body is not JSON ({exc})") from None

    def get(self, route: str) -> Any:
        return self.call("GET", route)

    def post(self, route: str, body: bytes | object) -> Any:
        return self.call("POST", route, body)

    def _once(self, method: str, route: str, data: bytes | None, headers: Mapping[str, str], retries: int) -> Reply:
        req = urllib.request.Request(self.url(route), data=data, headers=dict(headers), method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return Reply(resp.status, resp.headers, resp.read(), retries)
        except urllib.error.HTTPError as exc:
            try:
                return Reply(exc.code, exc.headers, exc.read(), retries)
            except (OSError, http.client.HTTPException):
                return Reply(exc.code, exc.headers, b"", retries)
            finally:
                exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            # refused, reset, timed out, a malformed URL or a broken response: nothing came back
            cause = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) \
                else exc
            raise RequestFailed(method, route, 0, str(cause) or type(cause).__name__, cause=cause,
                                retries_429=retries) from None
