"""Helpers for tests of `memload bench`: run it and parse its JSON, read Locust's CSV and the per-request records,
seed answers a query set finds, and a stand-in target that fails on purpose (to exercise the error gates).
"""

from __future__ import annotations

import csv
import json
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from memload.embedder import fake_embed
from tests.support.cli import run_cli

# tenant quotas high enough that no bench in a test meets a 429
HIGH_LIMITS = {"tenant_recall_rps": "100000", "tenant_recall_burst": "100000", "tenant_write_rps": "100000",
               "tenant_write_burst": "100000"}

def bench(*args: str, timeout: float = 180) -> tuple[int, dict[str, Any] | None, str]:
    proc = run_cli("bench", *args, timeout=timeout)
    data = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, data, proc.stderr


def locust_rows(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def seed_answers(base_url: str, scope: str, texts: list[str]) -> None:
    """Ready nodes whose vectors are the fake embedding of each text: recall_text of a text finds seeds."""
    post(f"{base_url}/v1/memory/write", {
        "tenant_id": "default", "scope": scope, "input_text": f"answers for {scope}", "auto_embed": False,
        "memory_lane": "shared",
        "nodes": [{"client_id": f"answer_{i}", "type": "event", "text_summary": t, "embedding": fake_embed(t)}
                  for i, t in enumerate(texts)],
    })


def query_set(path: Path, scope: str, texts: list[str]) -> Path:
    path.write_text(json.dumps({"scope": scope, "tenant_id": "default", "scope_key": scope,
                                "queries": [{"text": t, "topic_id": str(uuid.uuid4()), "expected_min_seeds": 1}
                                            for t in texts]}))
    return path


RECORD_HEADER = ["t_s", "endpoint", "latency_ms", "status", "category", "server_ms", "db_ms"]
SEED = {"id": "a", "type": "event", "title": None, "text_summary": "x", "tier": "hot", "salience": 0.5,
        "confidence": 0.8, "similarity": 0.9}
GOOD_RECALL = json.dumps({"tenant_id": "default", "scope": "s", "seeds": [SEED],
                          "subgraph": {"nodes": [], "edges": []}, "ranked": [],
                          "context": {"text": "", "items": [], "citations": []}}).encode()
EMPTY_RECALL = b'{"scope": "s", "seeds": [], "subgraph": {"nodes": [], "edges": []}, "ranked": []}'


def records(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_requests.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == RECORD_HEADER
        return list(reader)


class FlakyTarget(ThreadingHTTPServer):
    """Healthy; answers the first recall (the preflight) with a seed, then every other recall with `later`."""

    daemon_threads = True

    def __init__(self, later: tuple[int, bytes] = (500, b'{"error": "internal_error"}')) -> None:
        self.later = later
        self.recalls = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _FlakyHandler(BaseHTTPRequestHandler):
    server: FlakyTarget

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b'{"ok": true}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            n = self.server.recalls
            self.server.recalls += 1
        if n > 0 and n % 2 == 0:
            self._send(*self.server.later)
        else:
            self._send(200, GOOD_RECALL)
