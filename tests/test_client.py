"""memload.client: one auth behaviour, the Locust users' exact bodies, and a JSON client that waits out 429s as told
and names the route and status when it gives up. Every HTTP test talks to a real server on a loopback port."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from memload import contract as C
from memload.client import (
    ApiClient,
    RequestFailed,
    api_key,
    auth_headers,
    json_headers,
    recall_text_body,
    write_body,
    write_client_id,
)
from memload.config import REPO_ROOT
from memload.net import free_port

AUTH_VARS = ("PERF_API_KEY", "MEMORY_API_KEYS_JSON", "PERF_AUTH_BEARER")


# ------------------------------------------------------------------------------------------------ a scripted server
@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Script:
    """Answers per path, in order (the last one repeats); every request is recorded."""

    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    require_key: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.seen.append(Seen(method, path, headers, body, time.monotonic()))
            if self.require_key is not None and headers.get("x-api-key") != self.require_key:
                return 401, {}, json.dumps({"error": C.E_UNAUTHORIZED, "message": "missing or invalid key"}).encode()
            queue = self.answers.get(path) or [(404, {}, b'{"error": "not_found"}')]
            return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, out = script.answer(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def no_auth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


OK_WRITE = (200, {}, json.dumps({"commit_id": "c1", "nodes": [], "edges": []}).encode())
TOO_MANY = (429, {"retry-after": "1"}, json.dumps({"error": "rate_limited_write"}).encode())


# ------------------------------------------------------------------------------------------------ auth
def test_auth_one_behaviour_key_fallback_and_stripping() -> None:
    assert auth_headers({}) == ({}, "none")
    assert auth_headers({"PERF_API_KEY": " k1\n", "PERF_AUTH_BEARER": "tok \n"}) == (
        {"x-api-key": "k1", "authorization": "Bearer tok"}, "api_key")
    keys = json.dumps({" k2\n": {"tenant_id": "t"}, "k3": {"tenant_id": "u"}})
    assert auth_headers({"MEMORY_API_KEYS_JSON": keys}) == ({"x-api-key": "k2"}, "api_key")  # the first key
    assert api_key({"PERF_API_KEY": "  ", "MEMORY_API_KEYS_JSON": keys}) == "k2"  # a blank key falls back
    assert api_key({"PERF_API_KEY": "k1", "MEMORY_API_KEYS_JSON": keys}) == "k1"  # the explicit key wins
    for bad in ("{oops", "[]", '"k"', "{}", ""):
        assert api_key({"MEMORY_API_KEYS_JSON": bad}) == ""
    assert auth_headers({"PERF_AUTH_BEARER": "tok"}) == ({"authorization": "Bearer tok"}, "bearer")
    assert json_headers({"MEMORY_API_KEYS_JSON": keys}) == {"x-api-key": "k2", "content-type": "application/json"}


# ------------------------------------------------------------------------------------------------ bodies
def test_bodies_are_the_locust_users_bytes() -> None:
    assert write_body("t", "s", "run", 7, False) == (
        b'{"tenant_id":"t","scope":"s","input_text":"perf write run #7","auto_embed":false,"memory_lane":"shared",'
        b'"nodes":[{"client_id":"perf_write_run_7","type":"event","text_summary":"perf write payload #7"}]}')
    assert write_client_id("run", 7) == "perf_write_run_7"
    assert recall_text_body("t", "s", "q", 20) == b'{"tenant_id":"t","scope":"s","query_text":"q","limit":20}'


# ------------------------------------------------------------------------------------------------ the client
def test_client_sends_auth_from_memory_api_keys_json_and_returns_json(server: tuple[str, Script],
                                                                      no_auth_env: pytest.MonkeyPatch) -> None:
    base, script = server
    no_auth_env.setenv("MEMORY_API_KEYS_JSON", '{"k1 ": {"tenant_id": "default"}}')
    script.require_key = "k1"
    script.answers[C.WRITE] = [OK_WRITE]
    script.answers[C.HEALTH] = [(200, {}, b'{"ok": true}')]
    client = ApiClient(base + "/")
    assert client.post(C.WRITE, {"input_text": "x"}) == {"commit_id": "c1", "nodes": [], "edges": []}
    assert client.get(C.HEALTH) == {"ok": True}
    post, get = script.seen
    assert (post.method, post.path, post.headers["content-type"], post.body) == (
        "POST", C.WRITE, "application/json", b'{"input_text":"x"}')
    assert get.method == "GET" and "content-type" not in get.headers and get.headers["x-api-key"] == "k1"


def test_client_waits_out_429_as_told_bounded(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers[C.WRITE] = [
        (429, {"retry-after": "0.3"}, b'{"error": "rate_limited_write"}'),
        (429, {}, json.dumps({"error": "rate_limited_write", "retry_after_ms": 200}).encode()),
        (429, {"retry-after": "60"}, b'{"error": "rate_limited_write"}'),  # capped by max_retry_wait_s
        OK_WRITE,
    ]
    client = ApiClient(base, headers={}, max_429_retries=3, max_retry_wait_s=0.4)
    t0 = time.monotonic()
    reply = client.request("POST", C.WRITE, b"{}")
    assert reply.status == 200 and reply.retries_429 == 3 and reply.json()["commit_id"] == "c1"
    gaps = [b.at - a.at for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert len(gaps) == 3 and gaps[0] >= 0.29 and gaps[1] >= 0.19 and 0.39 <= gaps[2] < 5, gaps
    assert time.monotonic() - t0 < 10


def test_client_gives_up_after_bounded_429s_naming_route_and_status(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers[C.RECALL_TEXT] = [(429, {"retry-after": "0"}, b'{"error": "rate_limited_recall"}')]
    with pytest.raises(RequestFailed) as info:
        ApiClient(base, headers={}, max_429_retries=2).post(C.RECALL_TEXT, b"{}")
    err = info.value
    assert (err.status, err.route, err.retries_429, len(script.seen)) == (429, C.RECALL_TEXT, 2, 3)
    assert str(err).startswith(f"POST {C.RECALL_TEXT} -> 429 after 2 retries: ") and "rate_limited_recall" in str(err)


@pytest.mark.parametrize("status", [400, 401, 500, 503])
def test_client_error_status_is_a_clear_error_without_retry(server: tuple[str, Script], status: int) -> None:
    base, script = server
    script.answers[C.WRITE] = [(status, {"retry-after": "0"}, b'{"error": "boom",\n "message": "bad thing"}')]
    with pytest.raises(RequestFailed) as info:
        ApiClient(base, headers={}).post(C.WRITE, {"x": 1})
    assert info.value.status == status and len(script.seen) == 1
    assert str(info.value) == f'POST {C.WRITE} -> {status}: {{"error": "boom", "message": "bad thing"}}'


def test_client_without_an_answer_is_status_0() -> None:
    with pytest.raises(RequestFailed) as info:
        ApiClient(f"http://127.0.0.1:{free_port()}", headers={}, timeout_s=2).get(C.HEALTH)
    assert info.value.status == 0 and isinstance(info.value.cause, ConnectionRefusedError)
    assert str(info.value).startswith(f"GET {C.HEALTH} failed: ")


def test_client_works_in_a_gevent_patched_process(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers[C.HEALTH] = [(429, {"retry-after": "0.1"}, b"{}"), (200, {}, b'{"ok": true}')]
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "from memload.client import ApiClient, HEALTH\n"
            f"r = ApiClient({base!r}, headers={{}}).request('GET', HEALTH)\n"
            "print(r.status, r.retries_429, r.json())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "200 1 {'ok': True}"


# ------------------------------------------------------------------------------------------------ its users
def test_matrix_source_vector_authenticates_with_only_memory_api_keys_json(server: tuple[str, Script],
                                                                         no_auth_env: pytest.MonkeyPatch) -> None:
    from scripts.matrix import StageError, ensure_source_vector

    base, script = server
    script.require_key = "k1"
    script.answers[C.WRITE] = [OK_WRITE]
    with pytest.raises(StageError) as info:  # no credentials at all: 401, and the hint names the variables
        ensure_source_vector(base, "src", "default")
    assert "-> 401" in str(info.value) and "MEMORY_API_KEYS_JSON" in info.value.hint
    no_auth_env.setenv("MEMORY_API_KEYS_JSON", '{"k1": {"tenant_id": "default"}}')
    ensure_source_vector(base, "src", "default")
    sent = script.seen[-1]
    assert sent.path == C.WRITE and sent.headers["x-api-key"] == "k1"
    assert json.loads(sent.body)["nodes"][0]["client_id"] == "memload_perf_source_anchor"


def test_worker_bench_backlog_writes_through_the_client(server: tuple[str, Script],
                                                       no_auth_env: pytest.MonkeyPatch) -> None:
    from scripts.worker_bench import BacklogSpec, build_http_backlog

    base, script = server
    no_auth_env.setenv("PERF_API_KEY", "k1\n")
    script.require_key = "k1"
    script.answers[C.WRITE] = [TOO_MANY, OK_WRITE]
    out = build_http_backlog(BacklogSpec(base, writes=3, concurrency=1, tenant_id="t", scope="s"))
    assert (out["ok"], out["by_status"], out["retries_429"]) == (3, {"200": 3}, 1)
    bodies = [json.loads(s.body) for s in script.seen]
    assert all(b["auto_embed"] is True and b["tenant_id"] == "t" and b["memory_lane"] == "shared" for b in bodies)
    assert [b["nodes"][0]["client_id"].rsplit("_", 1)[1] for b in bodies] == ["0", "0", "1", "2"]
