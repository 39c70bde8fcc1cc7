"""`memload up` and scripts/stack.LocalStack: the stack starts, answers, drains writes, and stops without orphans."""

from __future__ import annotations

import json
import os
import re
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
from memload.errors import ConfigError, ExitCode
from memload.net import free_port
from scripts.stack import LocalStack, StackError, start_api
from tests.support.browser import CHROMIUM
from tests.support.cli import PYTHON, run_cli


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _up(url: str, port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "OUTBOX_POLL_INTERVAL_MS": "100", **(env or {})}
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
        assert locust.startswith(f"locust -f locustfiles/memory_users.py --host http://127.0.0.1:{port} "
                                 "--web-host 127.0.0.1")
        children = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        assert any("scripts.cli api" in c for c in cmdlines) and any("scripts.cli worker" in c for c in cmdlines)
        with urllib.request.urlopen(base + "/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["server"] == "memload-reference"

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
        stops = [line for line in err.splitlines() if " stopped" in line]
        # a normal stop reads as one: no exit code (the API ends by the SIGTERM it was sent: -15)
        assert any(line.endswith("] api stopped") for line in stops), err
        assert any(line.endswith("] worker stopped") for line in stops), err
        assert not any("exit" in line for line in stops), stops
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
        err = proc.stderr.read()
        assert "worker had already exited (exit -9)" in err  # an abnormal end keeps its code
        assert "] api stopped\n" in err
    finally:
        _kill_tree(proc)


def test_up_refuses_a_port_in_use(fresh_db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("up", "--port", str(port), env={"DATABASE_URL": fresh_db_url}, timeout=60)
    assert proc.returncode == ExitCode.USAGE and "--port" in proc.stderr and "in use" in proc.stderr
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


def test_start_api_alone_answers_then_stops_its_whole_group(db_url: str, tmp_path: Path) -> None:
    """The API by itself on a given database, port and worker count: healthy on return, env overrides reach it, and
    `stop()` leaves no process of its group; a busy fixed port is refused, a child that dies is reported."""
    port = free_port()
    log_path = tmp_path / "api.log"
    env = {"MEMORY_AUTH_MODE": "api_key", "MEMORY_API_KEYS_JSON": '{"k1": {"tenant_id": "default"}}'}
    with start_api(db_url, port=port, workers=2, env=env, log_path=log_path) as api:
        assert api.base_url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(api.base_url + "/health", timeout=5) as resp:
            assert resp.status == 200
        req = urllib.request.Request(api.base_url + "/v1/memory/write", data=b"{}",
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as denied:  # env reached the API: auth is on
            urllib.request.urlopen(req, timeout=5)
        assert denied.value.code == 401
        group = [api.pid, *(c.pid for c in psutil.Process(api.pid).children(recursive=True))]
        assert len(group) >= 3  # uvicorn's supervisor and its two workers
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            with pytest.raises(ConfigError, match="--port"):
                start_api(db_url, port=busy.getsockname()[1])
    assert _gone(group)
    assert "memory API on" in api.log()

    with pytest.raises(StackError, match="api exited with code"):
        start_api(db_url, api_args=["--workers", "0"], log_path=tmp_path / "bad.log", startup_timeout_s=30)


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


# Tight limits in the environment: `--limits contract` keeps them (the env file rules), `benchmark` replaces the recall
# and embedding ones with its profile, `off` disables both layers. Rates of 0.001/s make refill negligible, so the
# counts below are token-bucket arithmetic, whatever the machine's speed.
TIGHT_ENV = {
    "TENANT_RECALL_RATE_LIMIT_RPS": "0.001", "TENANT_RECALL_RATE_LIMIT_BURST": "5",
    "RECALL_TEXT_EMBED_RATE_LIMIT_RPS": "0.001", "RECALL_TEXT_EMBED_RATE_LIMIT_BURST": "3",
    "RECALL_TEXT_EMBED_RATE_LIMIT_MAX_WAIT_MS": "0",
    "TENANT_DEBUG_EMBED_RATE_LIMIT_RPS": "0.001", "TENANT_DEBUG_EMBED_RATE_LIMIT_BURST": "2",
}
# mode -> expected (status, error code) counts of: 10 recall, 10 recall_text, 4 debug-embedding recalls
EXPECTED = {
    "contract": ({"200": 5, "tenant_rate_limited_recall": 5},
                 {"200": 3, "rate_limited_recall_text_embed": 2, "tenant_rate_limited_recall": 5},
                 {"200": 2, "tenant_rate_limited_debug_embeddings": 2}),
    "benchmark": ({"200": 10}, {"200": 10}, {"200": 2, "tenant_rate_limited_debug_embeddings": 2}),
    "off": ({"200": 10}, {"200": 10}, {"200": 4}),
}


def _call(url: str, body: dict) -> str:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as e:
        assert e.code == 429 and e.headers["retry-after"].isdigit(), (e.code, e.read())
        return json.loads(e.read())["error"]


def _counts(codes: list[str]) -> dict[str, int]:
    return {c: codes.count(c) for c in sorted(set(codes))}


def _enforced(base: str) -> tuple[dict[str, int], ...]:
    vec = [0.001] * 1536
    recall = [_call(base + "/v1/memory/recall", {"tenant_id": "ta", "scope": "lim", "query_embedding": vec})
              for _ in range(10)]
    text = [_call(base + "/v1/memory/recall_text", {"tenant_id": "tb", "scope": "lim", "query_text": "q"})
            for _ in range(10)]
    debug = [_call(base + "/v1/memory/recall", {"tenant_id": "tc", "scope": "lim", "query_embedding": vec,
                                                "return_debug": True, "include_embeddings": True, "limit": 5})
             for _ in range(4)]
    return _counts(recall), _counts(text), _counts(debug)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    return proc.stderr.read()


def test_up_limits_modes_are_what_the_api_enforces(fresh_db_url: str, tmp_path: Path) -> None:
    from memload.identity import scope_key

    home = tmp_path / "home"
    env = {**TIGHT_ENV, "MEMLOAD_HOME": str(home)}
    seeded_scope = f"up_seeded_{os.urandom(3).hex()}"
    banners: dict[str, list[str]] = {}
    for mode in ("contract", "benchmark", "off"):
        port = free_port()
        proc = _up(fresh_db_url, port, "--no-worker", "--limits", mode, env=env)
        try:
            base, locust = _read_banner(proc)
            lines = [proc.stdout.readline().rstrip("\n")]
            while not lines[-1].startswith("web UI:") and len(lines) < 20:
                lines.append(proc.stdout.readline().rstrip("\n"))
            banners[mode] = [locust, *lines]
            assert lines[0].startswith(f"rate limits (--limits {mode}):"), lines
            assert _enforced(base) == EXPECTED[mode], mode
            if mode == "contract":  # rows for the query set found by the next run
                _post(base + "/v1/memory/write", {"scope": seeded_scope, "input_text": "s", "auto_embed": False,
                                                  "nodes": [{"client_id": "n", "type": "event", "text_summary": "s"}]})
            _stop(proc)
        finally:
            _kill_tree(proc)
        if mode == "contract":
            qs = home / "query_sets"
            qs.mkdir(parents=True)
            good = qs / f"{seeded_scope}.json"
            good.write_text(json.dumps({"scope": seeded_scope, "tenant_id": "default",
                                        "scope_key": scope_key(seeded_scope, "default"),
                                        "queries": [{"text": "perf topic #1"}]}))
            stale = qs / "purged.json"  # newer, but its scope has no rows left: skipped
            stale.write_text(json.dumps({"scope": "purged", "tenant_id": "default", "scope_key": "purged",
                                         "queries": [{"text": "perf topic #1"}]}))
            os.utime(good, (time.time() - 60, time.time() - 60))

    contract, benchmark, off = banners["contract"], banners["benchmark"], banners["off"]
    assert contract[0].endswith("--web-host 127.0.0.1")  # nothing seeded yet: the plain command
    assert benchmark[0].endswith(f"--web-host 127.0.0.1 --scope {seeded_scope} "
                                 f"--query-set {(home / 'query_sets' / f'{seeded_scope}.json').resolve()}")
    assert any(f"web UI: scope {seeded_scope}" in line for line in benchmark)

    def layers(banner: list[str]) -> dict[tuple[str, str], str]:
        found = [re.match(r"^\s+(per tenant|per client)\s+(recall_text embed|recall|write)\s{2,}(.*)$", line)
                 for line in banner]
        return {(m[1], m[2]): m[3] for m in found if m}

    c, b, o = layers(contract), layers(benchmark), layers(off)
    assert len(c) == len(b) == len(o) == 6
    assert c["per tenant", "recall"] == "0.001 req/s, burst 5"
    assert c["per client", "recall_text embed"] == "0.001 req/s, burst 3"  # no wait, and loopback not exempt
    assert c["per client", "recall"].endswith("(not applied to loopback callers: RATE_LIMIT_BYPASS_LOOPBACK)")
    assert c["per tenant", "write"] == "10 req/s, burst 20, waits up to 300 ms before a 429"
    assert b["per tenant", "recall"] == "400 req/s, burst 800"
    assert b["per client", "recall_text embed"] == "2000 req/s, burst 4000"
    assert set(o.values()) == {"off"}




@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing (apt-get install -y chromium)")
def test_printed_locust_command_gives_answered_recalls_in_the_web_ui(fresh_db_url: str, start_api,
                                                                     tmp_path: Path) -> None:
    """Seed a small scope, start `memload up --limits benchmark`, run the Locust command it prints as printed (plus a
    port and CSV files), drive the web UI: recalls are answered (no empty recall, no 429). MEMLOAD_UPDATE_SCREENSHOTS=1
    copies the screenshot to docs/img/locust_webui.png (the README's picture)."""
    import shlex
    import shutil

    from playwright.sync_api import sync_playwright

    from memload.embedder import fake_embed
    from tests.support.api import wait_http
    from tests.support.browser import DOCS_IMG, open_and_swarm, request_count

    home = tmp_path / "home"
    env = {"DATABASE_URL": fresh_db_url, "MEMLOAD_HOME": str(home)}
    api = start_api(database_url=fresh_db_url)  # the seeder copies its source vector from a READY node
    _post(api.base_url + "/v1/memory/write", {"input_text": "source", "nodes": [
        {"client_id": "src", "type": "event", "text_summary": "source vector", "embedding": fake_embed("source")}]})
    api.stop()
    seeded = run_cli("seed", "--scope", "webui_demo", "--events", "3000", "--topics", "30", "--seed", "7",
                     "--no-progress", env=env)
    assert seeded.returncode == 0, seeded.stderr

    up = _up(fresh_db_url, free_port(), "--no-worker", "--limits", "benchmark", env={"MEMLOAD_HOME": str(home)})
    ui_proc = None
    try:
        _, command = _read_banner(up)
        assert " --scope webui_demo --query-set " in command
        web_port = free_port()
        prefix = tmp_path / "ui" / "locust"
        log = (tmp_path / "locust_ui.log").open("w")
        ui_proc = subprocess.Popen([*shlex.split(command), "--web-port", str(web_port), "--csv", str(prefix)],
                                   cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PATH": f"{Path(PYTHON).parent}:{os.environ['PATH']}"})
        ui = f"http://127.0.0.1:{web_port}"
        wait_http(ui + "/", proc=ui_proc)
        with sync_playwright() as pw:
            page = open_and_swarm(pw, ui)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (request_count(page, "recall_text") < 100
                                                   or request_count(page, "write") < 20):
                page.wait_for_timeout(500)
            assert request_count(page, "recall_text") >= 100 and request_count(page, "write") > 0, \
                page.inner_text("body")
            page.wait_for_timeout(8000)  # Locust's current RPS needs a few seconds of history
            page.screenshot(path=str(tmp_path / "locust_webui.png"))
            page.get_by_role("button", name="Stop").click()
            page.wait_for_selector("text=STOPPED", timeout=15000)
            page.context.browser.close()
        ui_proc.send_signal(signal.SIGTERM)  # Locust writes its files (and the suite's) on the way out
        ui_proc.wait(30)
        log.close()
        summary = json.loads(Path(f"{prefix}_summary.json").read_text())
        text = summary["cases"]["recall_text"]
        assert text["ok"] >= 100 and text["errors"]["empty_recall"] == 0 and text["errors"]["rate_limited_429"] == 0
        if os.environ.get("MEMLOAD_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(tmp_path / "locust_webui.png", DOCS_IMG / "locust_webui.png")
        _stop(up)
    finally:
        if ui_proc is not None and ui_proc.poll() is None:
            ui_proc.kill()
        _kill_tree(up)


def test_child_env_override_spelled_with_an_alias_beats_the_rendered_aionis_name() -> None:
    settings = Settings.from_env({"TENANT_RECALL_RATE_LIMIT_RPS": "3"})
    stack = LocalStack(settings, port=0, api_env={"TENANT_RECALL_RPS": "7", "TENANT_WRITE_RATE_LIMIT_RPS": "9",
                                                  "TENANT_WRITE_RPS": "1"}, log=lambda _m: None)
    api = stack.child_settings("api")
    assert api.tenant_recall_rate_limit_rps == 7  # the override, although as_env() rendered the Aionis name with 3
    assert api.tenant_write_rate_limit_rps == 9  # within one layer the Aionis name wins over its alias
    assert stack.child_settings("worker").tenant_recall_rate_limit_rps == 3


def test_stop_messages() -> None:
    from scripts.stack import stop_message

    assert stop_message("api", -15, was_running=True) == "api stopped"
    assert stop_message("api", 0, was_running=True) == "api stopped"
    assert stop_message("api", 3, was_running=True) == "api stopped (exit 3)"
    assert stop_message("worker", -9, was_running=False) == "worker had already exited (exit -9)"
    assert stop_message("api", -9, was_running=True, killed=True) == \
        "api stopped (killed: it ignored SIGTERM, exit -9)"
