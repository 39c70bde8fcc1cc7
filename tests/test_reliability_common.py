"""Helpers shared by the reliability tests (tests/test_reliability_*.py, tests/test_fuzz_api.py), plus their own test.

`Client` keeps one keep-alive HTTP connection (reconnecting after the server closes it), `row_counts` snapshots the
tables a request may change, `report` prints the one-line figures docs/RELIABILITY.md quotes (`pytest -s`).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from memload.config import REPO_ROOT

TABLES = ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox", "memory_rule_defs",
          "memory_recall_audit")
_COUNT_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
FIGURES_FILE = Path(os.environ.get("MEMLOAD_RELIABILITY_FIGURES", REPO_ROOT / ".memload" / "reliability.jsonl"))


def report(test: str, **figures: Any) -> None:
    """Print `[reliability] <test>: k=v ...` and append the figures to MEMLOAD_HOME-ish reliability.jsonl."""
    print(f"\n[reliability] {test}: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    try:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES_FILE.open("a") as fh:
            fh.write(json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}) + "\n")
    except OSError:
        pass


class Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def envelope_problem(self) -> str | None:
        """None if the body is the API's error envelope {"error": str, "message": str, ...}."""
        try:
            doc = self.json()
        except ValueError:
            return f"not JSON: {self.body[:120]!r}"
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), str) or not doc["error"]:
            return f"no error code: {self.body[:120]!r}"
        if not isinstance(doc.get("message"), str):
            return f"no message: {self.body[:120]!r}"
        return None


class Client:
    """A keep-alive HTTP/1.1 client for one base URL."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        hdrs = {"content-type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                data = resp.read()
                out = Response(resp.status, dict(resp.getheaders()), data)
                if resp.will_close:
                    self.close()
                return out
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()  # a kept-alive connection the server closed meanwhile: retry once on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, doc: Any, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("POST", path, json.dumps(doc).encode(), headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(_COUNT_SQL).fetchone()
    return dict(zip(TABLES, row, strict=True))


def start_cli(args: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """`memload ARGS` as a background process (own session, output to log_path)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], cwd=REPO_ROOT, env=full_env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
    """Signal one process we started (by pid) and wait; SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def test_client_reconnects_and_envelope_check(start_api: Any) -> None:
    api = start_api()
    c = Client(api.base_url)
    r = c.request("GET", "/health")
    assert r.status == 200 and r.json() == {"ok": True} and "x-request-id" in r.headers
    r = c.request("GET", "/nope")
    assert r.status == 404 and r.envelope_problem() is None
    assert Response(400, {}, b"plain").envelope_problem() is not None
    c.close()
    assert c.request("GET", "/health").status == 200
