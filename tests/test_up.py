"""`memload up` and scripts/stack.LocalStack: the stack starts, answers, drains writes, and stops without orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

from memload.config import REPO_ROOT, Settings
from memload.errors import ConfigError
from scripts.stack import LocalStack
from tests.conftest import PYTHON, free_port


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _up(url: str, port: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "OUTBOX_POLL_INTERVAL_MS": "100"}
    return subprocess.Popen([PYTHON, "-m", "scripts.cli", "up", "--port", str(port), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_banner(proc: subprocess.Popen) -> tuple[str, str]:
    base = proc.stdout.readline().strip()
    locust = proc.stdout.readline().strip()
    if not base:
        proc.wait(10)
        pytest.fail(f"memload up exited ({proc.returncode}) before printing its URL:\n{proc.stderr.read()}")
    return base, locust


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _kill_tree(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait(10)


def test_up_serves_drains_and_stops_every_child_on_sigint(empty_db_url: str) -> None:
    port = free_port()
    proc = _up(empty_db_url, port)  # an empty database: `up` applies the migrations itself
    try:
        base, locust = _read_banner(proc)
        assert base == f"http://127.0.0.1:{port}"
        assert locust == f"locust -f locustfiles/memory_users.py --host http://127.0.0.1:{port}"
        children = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        assert any("scripts.cli api" in c for c in cmdlines) and any("scripts.cli worker" in c for c in cmdlines)
        with urllib.request.urlopen(base + "/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}

        # the worker of the stack embeds what the API writes
        w = _post(base + "/v1/memory/write", {"input_text": "up test", "nodes": [
            {"client_id": "n1", "type": "event", "text_summary": "the stack drains its outbox"}]})
        node_id = w["nodes"][0]["id"]
        deadline = time.monotonic() + 30
        status = None
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                status = conn.execute("SELECT embedding_status::text FROM memory_nodes WHERE id = %s",
                                      (node_id,)).fetchone()[0]
                if status == "ready":
                    break
                time.sleep(0.1)
        assert status == "ready"

        pids = [c.pid for c in children]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert _gone(pids), f"children left behind: {pids}"
        err = proc.stderr.read()
        assert "worker stopped (exit 0)" in err and "api stopped" in err
    finally:
        _kill_tree(proc)


def test_up_stops_everything_and_fails_when_a_child_dies(fresh_db_url: str) -> None:
    port = free_port()
    proc = _up(fresh_db_url, port)
    try:
        _read_banner(proc)
        children = {(" ".join(c.cmdline())): c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        worker_pid = next(p for c, p in children.items() if "scripts.cli worker" in c)
        os.kill(worker_pid, signal.SIGKILL)
        assert proc.wait(30) == 1
        assert _gone(list(children.values()))
        assert "worker" in proc.stderr.read()
    finally:
        _kill_tree(proc)


def test_up_refuses_a_port_in_use(fresh_db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([PYTHON, "-m", "scripts.cli", "up", "--port", str(port)], cwd=REPO_ROOT,
                              env={**os.environ, "DATABASE_URL": fresh_db_url}, capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 2 and "--port" in proc.stderr and "in use" in proc.stderr
    assert proc.stdout == ""


def test_local_stack_context_manager(fresh_db_url: str, tmp_path: Path) -> None:
    settings = Settings.from_env(database_url=fresh_db_url)
    api_env = {"MEMORY_AUTH_MODE": "api_key", "MEMORY_API_KEYS_JSON": '{"k1": {"tenant_id": "default"}}'}
    with LocalStack(settings, port=0, worker=False, log_dir=tmp_path, api_env=api_env, log=lambda _m: None) as stack:
        assert stack.database_url == fresh_db_url and stack.base_url.startswith("http://127.0.0.1:")
        assert set(stack.pids) == {"api"}
        with urllib.request.urlopen(stack.base_url + "/health", timeout=5) as resp:
            assert resp.status == 200
        body = json.dumps({"input_text": "x", "nodes": [{"type": "event", "text_summary": "x"}]}).encode()
        req = urllib.request.Request(stack.base_url + "/v1/memory/write", data=body,
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as denied:  # api_env reached the API: auth is on
            urllib.request.urlopen(req, timeout=5)
        assert denied.value.code == 401
        req.add_header("x-api-key", "k1")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        pids = list(stack.pids.values())
    assert _gone(pids) and stack.children == []
    assert "memory API on" in (tmp_path / "api.log").read_text()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="--port"):
            LocalStack(settings, port=busy.getsockname()[1], log=lambda _m: None).start()


def test_children_die_with_a_sigkilled_up(fresh_db_url: str) -> None:
    proc = _up(fresh_db_url, free_port())
    try:
        _read_banner(proc)
        pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) == 2
        proc.kill()  # no chance to clean up: PR_SET_PDEATHSIG makes the children exit anyway
        proc.wait(10)
        assert _gone(pids, timeout=20), "orphans survived a SIGKILLed `memload up`"
    finally:
        _kill_tree(proc)


def test_worker_bench_builds_an_http_backlog_then_measures(db_url: str, start_api, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    api = start_api()
    scope = f"wb_http_{os.urandom(4).hex()}"
    out = tmp_path / "worker_baseline.json"
    # the matrix's worker_slo write pass: backlog only
    only = run_cli("worker-bench", "--scope", scope, "--iterations", "0", "--backlog-only", "--backlog-writes", "2",
                   "--base-url", api.base_url, env={"DATABASE_URL": db_url})
    assert only.returncode == 0, only.stderr
    first = json.loads(only.stdout)
    assert first["mode"] == "backlog_only" and first["backlog"]["ok"] == 2 and first["outbox"]["unpublished"] == 2
    proc = run_cli("worker-bench", "--scope", scope, "--iterations", "2", "--backlog-writes", "5",
                   "--backlog-concurrency", "2", "--base-url", api.base_url, "--out", str(out),
                   env={"DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["backlog"]["ok"] == 5 and data["backlog"]["by_status"] == {"200": 5}
    assert data["outbox_before"]["unpublished"] == 7  # one embed_nodes row per write (2 + 5)
    # iteration 1 embeds the 7 nodes and enqueues their topic_cluster jobs; iteration 2 clusters them
    assert [(r["embed_backfill_runs"], r["topic_cluster_runs"]) for r in data["per_iteration"]] == [(7, 0), (0, 7)]
    assert data["totals"]["nodes_embedded"] == 7 and data["outbox_after"]["unpublished"] == 0
