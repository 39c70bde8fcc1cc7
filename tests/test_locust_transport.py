"""The suite's request path (locustfiles/transport.py) and what rides on it: the request the target sees, decoded
bodies, transport errors as status 0, and a contract-breaking 200 still judged a failure end to end (records and
Locust's statistics), since the suite no longer goes through Locust's `catch_response` machinery.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gevent
from locust.event import EventHook

from locustfiles.transport import Route
from memload.errors import ExitCode
from memload.net import free_port
from tests.support.bench import GOOD_RECALL, SEED, FlakyTarget, bench, locust_rows, records


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every POST with a gzip-encoded copy of what it received, and a Server-Timing header."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        seen = {"path": self.path, "body": body.decode(), "headers": {k.lower(): v for k, v in self.headers.items()}}
        payload = gzip.compress(json.dumps(seen).encode())
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-encoding", "gzip")
        self.send_header("Server-Timing", "total;dur=1.5, db;dur=0.5")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _session(base_url: str, **kw: Any) -> Any:
    from locust.contrib.fasthttp import FastHttpSession

    return FastHttpSession(base_url=base_url, request_event=EventHook(), user=None, **kw)


def test_route_sends_what_locust_sends_and_decodes_the_answer() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://user:pw@127.0.0.1:{server.server_address[1]}/prefix"
        route = Route(_session(base), "POST", "/v1/memory/write", {"content-type": "application/json"})
        first, second = route.exchange(b'{"a":1}'), route.exchange(b'{"a":2}')  # the second on the kept connection
    finally:
        server.shutdown()
        server.server_close()
    for x, sent in ((first, '{"a":1}'), (second, '{"a":2}')):
        assert (x.status, x.error) == (201, None)
        seen = json.loads(x.body)  # gzip decoded
        assert seen["path"] == "/prefix/v1/memory/write" and seen["body"] == sent
        h = seen["headers"]
        assert h["content-type"] == "application/json" and "gzip" in h["accept-encoding"]
        assert h["authorization"].startswith("Basic ") and h["user-agent"].startswith("python/gevent-http-client")
        assert x.headers.get("server-timing") == "total;dur=1.5, db;dur=0.5"  # case-insensitive


def test_route_returns_a_transport_error_as_status_zero() -> None:
    port = free_port()  # nothing listens there
    x = Route(_session(f"http://127.0.0.1:{port}"), "POST", "/v1/memory/recall_text", {}).exchange(b"{}")
    assert x.status == 0 and x.body is None and isinstance(x.error, OSError)


def test_route_times_out_as_a_transport_error() -> None:
    """A target that accepts the connection and never answers: the user's network timeout ends the request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the backlog; nobody reads or answers
        session = _session(f"http://127.0.0.1:{listener.getsockname()[1]}", network_timeout=0.3)
        x = Route(session, "POST", "/v1/memory/write", {}).exchange(b"{}")
    assert x.status == 0 and x.body is None and isinstance(x.error, (OSError, gevent.Timeout)), repr(x.error)


def test_a_contract_breaking_200_is_a_failure_in_records_summary_and_locust_stats(tmp_path: Path) -> None:
    """Every other recall answers 200 with a seed whose similarity is not a number: counted invalid_body, never ok."""
    broken = GOOD_RECALL.replace(json.dumps(SEED["similarity"]).encode(), b'"high"')
    assert broken != GOOD_RECALL
    target = FlakyTarget(later=(200, broken))
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        prefix = tmp_path / "l_b"
        rc, data, err = bench("--base-url", target.url, "--scope", "s", "--mode", "recall", "--warmup", "0",
                              "--recall-requests", "12", "--recall-concurrency", "2", "--csv", str(prefix))
    finally:
        target.shutdown()
        target.server_close()
    assert data is not None, err
    (case,) = data["cases"]
    assert case["total"] == 12 and case["ok"] == 6 and case["errors"]["invalid_body"] == 6, case
    assert case["by_status"] == {"200": 6, "invalid_body": 6}
    rows = records(prefix)
    assert len(rows) == 12 and sum(r["category"] == "5xx" and r["status"] == "200" for r in rows) == 6
    stats = locust_rows(prefix)
    assert stats["recall_text"]["Request Count"] == "12" and stats["recall_text"]["Failure Count"] == "6"
    assert rc == ExitCode.TARGET_FAILING, err  # a body that breaks the contract is the server failing
