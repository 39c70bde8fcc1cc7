"""A static Aionis-shaped target for the generator benchmark: pre-rendered answers on a raw asyncio (uvloop) socket.

    python -m benchmarks.static_target --port 18080 [--seeds 10]

It answers `GET /health`, `POST /v1/memory/recall_text` and `/v1/memory/recall` (a recall answer with `--seeds`
seeds, their subgraph, ranked list and context, with `Server-Timing`: 3.8 KB with 10 seeds) and
`POST /v1/memory/write` (a write acknowledgement), on HTTP/1.1 keep-alive, and nothing else (404). Every answer
is bytes rendered at start, so the server does almost no work per request: the load generator, not the target, is
what the benchmark measures. It reads only the request line and `Content-Length`; the bodies are valid against the
contract the suite checks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import uuid

from memload.contract import HEALTH, RECALL, RECALL_TEXT, WRITE
from memload.net import is_loopback_host

SERVER_TIMING = b"total;dur=3.412, db;dur=2.087"


def _uuid(i: int, salt: str) -> str:
    return str(uuid.UUID(bytes=hashlib.md5(f"{salt}{i}".encode()).digest()))


def recall_document(seeds: int, scope: str = "default", tenant_id: str = "default") -> dict:
    """A recall answer as an Aionis server gives it: seeds, their one-hop subgraph, ranked nodes and a context."""
    ids = [_uuid(i, "node") for i in range(seeds)]
    seed_rows = [{"id": ids[i], "type": "event", "title": None, "text_summary": f"perf seed event {i}",
                  "tier": "hot", "salience": 0.5, "confidence": 0.8, "similarity": round(0.93 - i * 0.011, 6)}
                 for i in range(seeds)]
    nodes = [{"id": ids[i], "type": "event", "tier": "hot"} for i in range(seeds)]
    edges = [{"from_id": ids[i], "to_id": ids[i + 1], "type": "related_to", "weight": 0.7} for i in range(3)
             if i + 1 < seeds]
    ranked = [{"id": ids[i], "activation": round(1.0 - i * 0.03, 4), "score": round(0.9 - i * 0.02, 4)}
              for i in range(seeds)]
    context = {"text": "; ".join(s["text_summary"] for s in seed_rows[:3]), "items": [], "citations": []}
    return {"scope": scope, "tenant_id": tenant_id, "seeds": seed_rows, "subgraph": {"nodes": nodes, "edges": edges},
            "ranked": ranked, "context": context}


def write_document(scope: str = "default", tenant_id: str = "default") -> dict:
    """A write acknowledgement of one event node."""
    return {"tenant_id": tenant_id, "scope": scope, "commit_id": _uuid(0, "commit"),
            "commit_hash": hashlib.sha256(b"commit").hexdigest(),
            "nodes": [{"id": _uuid(0, "written"), "client_id": "perf_write_static_1", "type": "event"}],
            "edges": []}


def response(status: bytes, body: bytes, server_timing: bool = True) -> bytes:
    head = [b"HTTP/1.1 " + status, b"content-type: application/json", b"content-length: %d" % len(body),
            b"x-request-id: " + _uuid(1, "request").encode()]
    if server_timing:
        head.append(b"server-timing: " + SERVER_TIMING)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def routes(seeds: int) -> dict[bytes, bytes]:
    recall = response(b"200 OK", json.dumps(recall_document(seeds), separators=(",", ":")).encode())
    return {HEALTH.encode(): response(b"200 OK", b'{"ok":true,"server":"static-target"}'),
            RECALL_TEXT.encode(): recall, RECALL.encode(): recall,
            WRITE.encode(): response(b"200 OK", json.dumps(write_document(), separators=(",", ":")).encode())}


NOT_FOUND = response(b"404 Not Found", b'{"error":"not_found"}', server_timing=False)


class _Conn(asyncio.Protocol):
    def __init__(self, table: dict[bytes, bytes]) -> None:
        self.table = table
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            i = head.lower().find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17:j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            sp = head.find(b" ")
            path = head[sp + 1:head.find(b" ", sp + 1)]
            out.append(self.table.get(path, NOT_FOUND))
            buf = buf[total:]
        self.buf = buf
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


async def serve(host: str, port: int, seeds: int) -> None:
    table = routes(seeds)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(table), host, port, backlog=1024)
    print(f"static target on http://{host}:{port} (recall body {len(table[RECALL_TEXT.encode()])} bytes)", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.static_target", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    ap.add_argument("--port", type=int, required=True, help="port to listen on")
    ap.add_argument("--seeds", type=int, default=10, help="seeds in the recall answer (default 10)")
    args = ap.parse_args(argv)
    if not is_loopback_host(args.host):
        ap.error("--host: loopback only (127.0.0.1 or ::1)")
    if args.seeds < 1:
        ap.error("--seeds: must be >= 1")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(serve(args.host, args.port, args.seeds))
    else:
        uvloop.run(serve(args.host, args.port, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
