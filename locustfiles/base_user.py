"""`SuiteUser`: a FastHttpUser that sends one validated, paced, budgeted request per task.

The request is made with `catch_response=True`: the body is judged against the contract, the outcome is stored in
the request context with the status and the server's `Server-Timing` (the exact-latency and records listener
reads it), 429s are renamed `<endpoint> [429]` so they get their
own Locust stats row (out of the endpoint's percentiles), and the pacing controller of the endpoint class learns
every success and every 429.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from locust import FastHttpUser
from locust.exception import StopUser

from locustfiles.pacing import PacingController, parse_retry_after
from locustfiles.records import parse_server_timing
from locustfiles.runtime import REPORT_KEY, Suite, suite_of
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

    _halt = False  # invalid options or a failed preflight (both logged): stop at the first task, quietly

    def on_start(self) -> None:
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

    def send(self, endpoint: str, method: str, path: str, body: bytes | None = None, *,
             expected_min_seeds: int = 0, expected_nodes: int = 1, ack_client_id: str | None = None) -> None:
        """One budgeted request: take a token (or stop), wait for pace/schedule/Retry-After, send, judge."""
        suite, cls = self.suite, self.endpoint_class
        if self._limited and not suite.take(cls):
            raise StopUser()
        try:
            if self._first:  # the case starts with the first token taken (before its pace), as the peer's wall
                self._first = False
                suite.recorder.mark_start(endpoint, time.time())
            intended = suite.wait_turn(cls, endpoint, self.ctl)
            headers = suite.post_headers if body is not None else suite.headers
            with self.client.request(method, path, name=endpoint, data=body, headers=headers,
                                     catch_response=True) as resp:
                self._judge(resp, endpoint, intended, expected_min_seeds, expected_nodes, ack_client_id)
        finally:
            if self._limited:
                suite.complete(cls)

    def _judge(self, resp: Any, endpoint: str, intended: float | None, expected_min_seeds: int,
               expected_nodes: int, ack_client_id: str | None = None) -> None:
        status = resp.status_code or 0
        body = resp.content if status else None
        verdict = classify(endpoint, status, body, None if status else getattr(resp, "error", None),
                           expected_min_seeds=expected_min_seeds, expected_nodes=expected_nodes)
        if ack_client_id is not None:  # --verify-writes: record what the server told us about this write
            default_log().record(ack_client_id, status, verdict.status_key, body)
        meta = resp.request_meta
        headers = resp.headers if status else None
        server_ms, db_ms = parse_server_timing(headers.get("server-timing") if headers else None)
        meta["context"][REPORT_KEY] = (endpoint, verdict, intended, status, server_ms, db_ms)
        if verdict.category == OK:
            resp.success()
            self.ctl.on_ok(meta.get("response_time", 0.0))
        elif verdict.category == RATE_LIMITED:
            meta["name"] = f"{endpoint} [429]"
            resp.failure(RATE_LIMITED)
            self.ctl.on_429(parse_retry_after(headers.get("retry-after") if headers else None,
                                              verdict.retry_after_ms))
        else:
            resp.failure(f"{verdict.category}: {verdict.status_key}")
