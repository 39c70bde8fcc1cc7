"""A loopback proxy that makes memload's reference API look like someone else's server, for end-to-end tests of what
memload does against an external target.

`GET /health` answers `{"ok": true}` (an Aionis server's answer) instead of the reference API's identity, and every
`x-memload-*` response header is dropped; everything else is forwarded as is (method, path, body, the other headers,
status), so load, preflight and Server-Timing behave as the API behind it does.

    with external_proxy("http://127.0.0.1:3001") as url: ...
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HEALTH_BODY = b'{"ok":true}'
SERVER_NAME = "stand-in-aionis"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


def _handler(upstream_host: str, upstream_port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as load generators expect

        def version_string(self) -> str:
            return SERVER_NAME

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and not name.lower().startswith("x-memload-"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            if self.command == "GET" and self.path.split("?")[0] == "/health":
                self._reply(200, [("content-type", "application/json")], HEALTH_BODY)
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self._reply(resp.status, resp.getheaders(), data)
            except OSError as exc:
                self._reply(502, [("content-type", "text/plain")], f"proxy: {exc}".encode())
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def external_proxy(upstream_url: str) -> Iterator[str]:
    """Serve the proxy on a free loopback port in front of `upstream_url`; yields the proxy's base URL."""
    parts = urlsplit(upstream_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(parts.hostname or "127.0.0.1", parts.port or 80))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="external-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
