"""The reliability tests' keep-alive client against a real API: reconnects after the server closes, checks envelopes."""

from __future__ import annotations

from typing import Any

from tests.support.reliability import Client, Response


def test_client_reconnects_and_envelope_check(start_api: Any) -> None:
    api = start_api()
    c = Client(api.base_url)
    r = c.request("GET", "/health")
    assert r.status == 200 and r.json()["ok"] is True and "x-request-id" in r.headers
    r = c.request("GET", "/nope")
    assert r.status == 404 and r.envelope_problem() is None
    assert Response(400, {}, b"plain").envelope_problem() is not None
    c.close()
    assert c.request("GET", "/health").status == 200
