"""`SuiteUser`: a FastHttpUser that sends one validated, paced, budgeted request per task.

Each request goes out on the user's own connection pool through a `Route` (locustfiles/transport.py: no cookie jar,
redirect or retry layer), its body is judged against the contract, and the outcome is recorded directly: the
exact latency, the verdict, the status and the server's `Server-Timing` into the process's `Recorder` (histograms
and the per-request records), and Locust's own statistics through its `request` event, as `self.client` would.
429s are reported to Locust as `<endpoint> [429]` so they get their own stats row (out of the endpoint's
percentiles), failures carry a `CatchResponseError` naming the category, and the pacing controller of the endpoint
class learns every success and every 429.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from locust import FastHttpUser
from locust.exception import CatchResponseError, StopUser

from locustfiles.pacing import PacingController, parse_retry_after
from locustfiles.records import parse_server_timing
from locustfiles.runtime import Suite, suite_of
from locustfiles.transport import Route
from locustfiles.validation import OK, RATE_LIMITED, classify
from locustfiles.write_ack import default_log


class SuiteUser(FastHttpUser):
    """Base of the suite's users; `endpoint_class` is the rate-limit kind: `recall`, `write` (or `health`)."""

    abstract = True
    endpoint_class: ClassVar[str] = ""
    network_timeout = 15.0
    connection_timeout = 15.0
    max_retries = 0  # a retry would hide failures and change the request count

    suite: Suite
    ctl: PacingController
    _limited = False  # this class has a request limit: take a token per request
    _first = True
    _routes: dict[tuple[str, str], Route]

    _halt = False  # invalid options or a failed preflight (both logged): stop at the first task, quietly

    def on_start(self) -> None:
        self._routes = {}
        self.suite = suite_of(self.environment)
        if self.suite.cfg is None or self.suite.refused:  # (StopUser from on_start is logged as an error)
            self._halt = True
            return
        self.ctl = self.suite.controller(self.endpoint_class)
        self.ctl.register_user()
        self._limited = self.suite.pool is not None and self.endpoint_class in self.suite.pool.limited

    def on_stop(self) -> None:
        ctl = getattr(self, "ctl", None)
        if ctl is not None:
            ctl.unregister_user()

    def check_running(self) -> None:
        """First line of every task: a user of a run that must not load the target stops here."""
        if self._halt:
            raise StopUser()

    def _route(self, method: str, path: str) -> Route:
        route = self._routes.get((method, path))
        if route is None:
            suite = self.suite
            headers = suite.post_headers if method in ("POST", "PUT", "PATCH") else suite.headers
            route = self._routes[(method, path)] = Route(self.client, method, path, headers)
        return route

    def send(self, endpoint: str, method: str, path: str, body: bytes | None = None, *,
             expected_min_seeds: int = 0, expected_nodes: int = 1, ack_client_id: str | None = None) -> None:
        """One budgeted request: take a token (or stop), wait for pace/schedule/Retry-After, send, judge, record."""
        suite, cls = self.suite, self.endpoint_class
        if self._limited and not suite.take(cls):
            raise StopUser()
        try:
            if self._first:  # the case starts with the first token taken (before its pace), as the Aionis kit's wall
                self._first = False
                suite.recorder.mark_start(endpoint, time.time())
            intended = suite.wait_turn(cls, endpoint, self.ctl)
            route = self._routes.get((method, path)) or self._route(method, path)
            start = time.time()
            t0 = time.perf_counter()
            x = route.exchange(body)
            latency_ms = (time.perf_counter() - t0) * 1000.0
            self._judge(x, endpoint, method, route.url, start, latency_ms, intended, expected_min_seeds,
                        expected_nodes, ack_client_id)
        finally:
            if self._limited:
                suite.complete(cls)

    def _judge(self, x: Any, endpoint: str, method: str, url: str, start: float, latency_ms: float,
               intended: float | None, expected_min_seeds: int, expected_nodes: int,
               ack_client_id: str | None = None) -> None:
        status, body, headers = x.status, x.body, x.headers
        verdict = classify(endpoint, status, body, x.error, expected_min_seeds=expected_min_seeds,
                           expected_nodes=expected_nodes)
        if ack_client_id is not None:  # --verify-writes: record what the server told us about this write
            default_log().record(ack_client_id, status, verdict.status_key, body)
        server_ms, db_ms = parse_server_timing(headers.get("server-timing") if headers is not None else None)
        self.suite.record(endpoint, verdict, start, latency_ms, intended, status, server_ms, db_ms)
        name, exception = endpoint, None
        category = verdict.category
        if category == OK:
            self.ctl.on_ok(latency_ms)
        elif category == RATE_LIMITED:
            name = f"{endpoint} [429]"
            exception = CatchResponseError(RATE_LIMITED)
            self.ctl.on_429(parse_retry_after(headers.get("retry-after") if headers is not None else None,
                                              verdict.retry_after_ms))
        else:
            exception = CatchResponseError(f"{category}: {verdict.status_key}")
        self.environment.events.request.fire(
            request_type=method, name=name, response_time=latency_ms, response_length=len(body) if body else 0,
            exception=exception, context=self.context(), response=None, start_time=start, url=url)
