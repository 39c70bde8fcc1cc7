"""The load generator is bounded and refuses bad runs before any traffic.

A counting stub server stands in for the API (it answers the contract's shapes and counts every request), so the
tests can tell exactly how many requests a run sent: a misconfigured `memload bench` (zero users, negative rates,
unknown profile, ...), `memload matrix` or plain `locust` with the suite must exit non-zero with a message naming the
flag and send nothing; a run sends exactly its request budget (plus the warmup); a run against a server that is too
slow for its budget stops at --max-run-s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memload.config import REPO_ROOT
from tests.support.cli import run_cli
from tests.support.reliability import report

WRITE_OK = {"tenant_id": "default", "scope": "stub", "commit_id": "00000000-0000-4000-8000-000000000001",
            "commit_hash": "0" * 64, "nodes": [{"id": "00000000-0000-4000-8000-000000000002", "type": "event"}],
            "edges": []}
RECALL_EMPTY = {"scope": "stub", "seeds": [], "subgraph": {"nodes": [], "edges": []}, "ranked": []}


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_s = delay_s
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client cut off by its run's time limit mid-response: expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.hits.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self) -> None:
        server: Stub = self.server  # type: ignore[assignment]
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with server.lock:
            server.hits[self.path] += 1
        if server.delay_s:
            time.sleep(server.delay_s)
        body = json.dumps(WRITE_OK if self.path.endswith("/write") else RECALL_EMPTY).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = _answer
    do_GET = _answer


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


BAD_RUNS = [
    (["--recall-concurrency", "0"], {}, "--recall-concurrency"),
    (["--write-concurrency", "0"], {}, "--write-concurrency"),
    ([], {"RECALL_CONCURRENCY": "0"}, "--recall-concurrency"),  # the env twin is checked like the flag
    (["--pace-ms", "-5"], {}, "--pace-ms"),
    (["--arrival-rate", "-1"], {}, "--arrival-rate"),
    (["--arrival-rate", "0"], {}, "--arrival-rate"),
    (["--arrival-rate", "nan"], {}, "--arrival-rate"),
    (["--profile", "turbo"], {}, "--profile"),
    ([], {"PERF_PROFILE": "turbo"}, "--profile"),
    (["--recall-requests", "0"], {}, "--recall-requests"),
    (["--write-requests", "-3"], {}, "--write-requests"),
    (["--timeout-ms", "0"], {}, "--timeout-ms"),
    (["--max-run-s", "0"], {}, "--max-run-s"),
    (["--recall-limit", "0"], {}, "--recall-limit"),
    (["--mode", "both"], {}, "--mode"),
    (["--warmup", "-1"], {}, "--warmup"),
    (["--tenant-id", "bad tenant"], {}, "--tenant-id"),
    (["--base-url", "http://192.0.2.1:3001"], {}, "--base-url"),  # not loopback
    (["--workers", "2", "--processes", "2"], {}, "--processes"),
    (["--verify-writes", "--mode", "recall"], {}, "--verify-writes"),
]


def test_misconfigured_bench_is_refused_before_any_traffic(stub: Stub, tmp_path: Path) -> None:
    """Each bad run: exit non-zero, the last stderr line names the flag, no Locust started, no request sent."""
    refused = 0
    for args, env, flag in BAD_RUNS:
        base = ["bench", "--base-url", stub.url, "--warmup", "1", "--recall-requests", "5", "--write-requests", "5",
                "--csv", str(tmp_path / f"r{refused}" / "locust")]
        if "--base-url" in args:
            base = base[:1] + base[3:]
        r = run_cli(*base, *args, env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, in_process=True)
        rc, err = r.returncode, r.stderr
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert rc != 0, f"{args} {env} was accepted: {err[-500:]}"
        assert flag in last and "Traceback" not in err, f"{args} {env}: {err[-500:]}"
        assert not (tmp_path / f"r{refused}" / "locust_locust.log").exists()  # Locust never started
        assert stub.total == 0, f"{args} {env} sent {stub.hits}"
        refused += 1
    report("bounded_refusals", bench_runs_refused=refused, requests_reached_server=stub.total)


def test_matrix_and_plain_locust_refuse_bad_options(stub: Stub, tmp_path: Path) -> None:
    for env, name in (({"RECALL_CONCURRENCY": "0"}, "RECALL_CONCURRENCY"), ({"BENCH_PACE_MS": "-1"}, "BENCH_PACE_MS"),
                      ({"PERF_PROFILE": "turbo"}, "PERF_PROFILE"), ({"WRITE_REQUESTS": "-5"}, "WRITE_REQUESTS")):
        r = run_cli("matrix", env={**env, "BASE_URL": stub.url, "SCALES": "1000", "OUT_DIR": str(tmp_path / "m"),
                                   "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}, in_process=True)
        rc, err = r.returncode, r.stderr
        assert rc != 0 and name in err.strip().splitlines()[-1], err[-400:]
    for args, flag in ((["--recall-users", "-1"], "--recall-users"), (["--arrival-rate", "-2"], "--arrival-rate")):
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "memory_users.py"), "--headless",
             "-u", "2", "-r", "2", "-t", "5s", "--host", stub.url, *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and flag in proc.stderr.strip().splitlines()[-1], proc.stderr[-400:]
    assert stub.total == 0, stub.hits


def test_a_run_sends_exactly_its_budget(stub: Stub, tmp_path: Path) -> None:
    proc = run_cli("bench", "--base-url", stub.url, "--warmup", "3", "--recall-requests", "37",
                   "--recall-concurrency", "5", "--write-requests", "11", "--write-concurrency", "3",
                   "--csv", str(tmp_path / "b" / "locust"), "--max-run-s", "120", "--allow-empty-scope", timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    doc = json.loads(proc.stdout)
    assert doc["run"]["completed"] and doc["run"]["requests"] == {"recall": 37, "write": 11}
    # + the preflight: one GET /health and one recall_text
    assert stub.hits["/v1/memory/recall_text"] == 37 + 3 + 1 and stub.hits["/v1/memory/write"] == 11, stub.hits
    assert stub.hits["/health"] == 1, stub.hits
    report("bounded_budget", budget_recall=37, budget_write=11, warmup=3, server_saw=dict(stub.hits))


def test_a_run_stops_at_its_time_limit(tmp_path: Path) -> None:
    slow = Stub(delay_s=0.2)  # 2 users x 5 req/s: a budget of 10^6 would take a day
    thread = threading.Thread(target=slow.serve_forever, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        proc = run_cli("bench", "--base-url", slow.url, "--mode", "recall", "--warmup", "0", "--recall-requests",
                       "1000000", "--recall-concurrency", "2", "--max-run-s", "4", "--allow-empty-scope",
                       "--csv", str(tmp_path / "t" / "l"),
                       timeout=300)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        sent = slow.total - 2  # the preflight's /health and recall_text
    finally:
        slow.shutdown()
        slow.server_close()
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and not doc["run"]["completed"], proc.stderr[-800:]
    assert "run incomplete" in proc.stderr
    assert 0 < doc["run"]["requests"]["recall"] <= sent <= doc["run"]["requests"]["recall"] + 2  # + in flight
    assert sent < 2 * 5 * 6 and elapsed < 60, (sent, elapsed)
    report("bounded_time", max_run_s=4, budget=1_000_000, sent=sent, elapsed_s=round(elapsed, 1))
