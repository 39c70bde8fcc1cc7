"""The suite's request path: one HTTP exchange on the user's own connection pool, without the layers it never uses.

A `FastHttpUser`'s `self.client.request` goes through geventhttpclient's `UserAgent` (request object and URL
re-parsed per request, cookie jar, redirect and retry loops, response wrappers) and Locust's
`ResponseContextManager`. The suite needs none of that: the target is a JSON API on fixed paths with no cookies,
no redirects and no retries (a retry would hide a failure and change the request count). A `Route` resolves the
URL once (Locust's base URL joined with the path, basic auth from its user-info) and then sends on the same
`HTTPClient` and connection pool the user's `FastHttpSession` would use, with the headers Locust would send
(geventhttpclient's `User-Agent`, `Accept-Encoding`), so the target sees the same requests. That saves more CPU
per request than validating and recording the response costs (see `benchmarks/bench_generator.py`).
"""

from __future__ import annotations

import zlib
from typing import Any

import gevent
from geventhttpclient.url import URL

ACCEPT_ENCODING = "gzip, deflate"  # both decoded here, as Locust's client does


class Exchange:
    """What came back: HTTP status (0 = no response), headers (case-insensitive `get`), body, error."""

    __slots__ = ("body", "error", "headers", "status")

    def __init__(self, status: int, headers: Any, body: bytes | None, error: BaseException | None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error


class Route:
    """One method + path of the target, resolved once for a user's `FastHttpSession`."""

    __slots__ = ("client", "headers", "method", "uri", "url")

    def __init__(self, session: Any, method: str, path: str, headers: dict[str, str]) -> None:
        self.url = session._build_url(path)
        split = URL(self.url)
        self.client = session.client.clientpool.get_client(split)
        self.uri = getattr(split, "quoted_uri", split.request_uri)
        self.method = method
        merged = {"Accept-Encoding": ACCEPT_ENCODING, **headers}
        if session.auth_header:
            merged["Authorization"] = session.auth_header
        self.headers = merged

    def exchange(self, body: bytes | None) -> Exchange:
        """Send and read the whole response; a transport failure is returned (status 0), never raised."""
        try:
            resp = self.client.request(self.method, self.uri, body=body, headers=self.headers)
        except (Exception, gevent.Timeout) as exc:  # refused/reset, timeout, parse error: a transport error
            return Exchange(0, None, None, exc)
        try:
            status = resp.get_code()
            content = resp.read()
            headers = resp._headers_index
            encoding = headers.get("content-encoding")
            if encoding and encoding.lower() != "identity":
                content = _decode(content, encoding.lower())
        except (Exception, gevent.Timeout) as exc:  # a broken body or encoding: a transport error too
            return Exchange(0, None, None, exc)
        finally:
            resp.release()
        return Exchange(status, headers, content, None)


def _decode(content: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return zlib.decompress(content, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(content, -zlib.MAX_WBITS)
        except zlib.error:
            return zlib.decompress(content)
    raise ValueError(f"unsupported content-encoding {encoding!r}")

