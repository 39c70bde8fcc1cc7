"""`memload matrix` when things go wrong or the target is not memload's: one-line failures, the manifest's account of
the target and of what was not measured, and the arguments the matrix hands to the other commands."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from memload.config import Settings
from memload.errors import ExitCode
from memload.net import free_port
from scripts import matrix as matrix_mod
from scripts.matrix import Matrix, RunLog, _StderrPump
from scripts.matrix_config import resolve
from scripts.target import probe_target
from tests.support.cli import run_cli

REFERENCE_HEALTH = {"ok": True, "server": "memload-reference", "version": "9.9.9"}


def _stub(status: int, body: bytes, headers: dict[str, str]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def reference_url() -> Iterator[str]:
    yield from _stub(200, json.dumps(REFERENCE_HEALTH).encode(), {"x-memload-api": "9.9.9"})


@pytest.fixture
def external_url() -> Iterator[str]:
    yield from _stub(200, b'{"ok":true}', {"server": "aionis-api", "x-powered-by": "node", "x-request-id": "abc"})


# ---------------------------------------------------------------------------------------------- target probe
def test_probe_names_the_reference_api(reference_url: str) -> None:
    target = probe_target(reference_url)
    assert (target["base_url"], target["kind"], target["health"], target["health_status"], target["probe_error"]) == (
        reference_url, "reference", REFERENCE_HEALTH, 200, None)
    assert target["headers"]["x-memload-api"] == "9.9.9"
    assert set(target["headers"]) <= {"x-memload-api", "server"}  # http.server adds its own Server header


def test_probe_keeps_only_identifying_headers_of_an_external_server(external_url: str) -> None:
    target = probe_target(external_url)
    assert target["kind"] == "external" and target["health"] == {"ok": True} and target["probe_error"] is None
    assert target["headers"] == {"server": "aionis-api", "x-powered-by": "node"}


def test_probe_of_a_dead_or_failing_target_says_why() -> None:
    dead = probe_target(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    assert dead["probe_error"] and "refused" in dead["probe_error"].lower() and dead["health_status"] is None
    with contextmanager(_stub)(503, b"down", {}) as url:
        target = probe_target(url)
    assert target["health_status"] == 503 and "503" in target["probe_error"]


# ------------------------------------------------------------------- what the matrix hands to other commands
def _matrix(env: dict[str, str], tmp_path: Path) -> Matrix:
    base = {"SCALES": "1000", "MATRIX_TAG": "t1", "OUT_DIR": str(tmp_path / "run")}
    return Matrix(resolve({**base, **env}), Settings.from_env({"MEMLOAD_HOME": str(tmp_path / "home")}))


def _manifest_for(m: Matrix, url: str) -> dict:
    m.base_url = url
    m.state.out_dir.mkdir(parents=True, exist_ok=True)
    m._probe()
    m._write_manifest()
    return json.loads((m.state.out_dir / "manifest.json").read_text())


def test_manifest_target_for_the_reference_api(reference_url: str, tmp_path: Path) -> None:
    m = _matrix({"BASE_URL": reference_url}, tmp_path)
    manifest = _manifest_for(m, reference_url)
    assert manifest["target"]["kind"] == "reference" and manifest["target"]["health"] == REFERENCE_HEALTH
    assert manifest["target"]["headers"]["x-memload-api"] == "9.9.9"
    assert set(manifest["api_settings"]) >= {"hnsw_ef_search", "db_pool_max"}
    assert manifest["failed_phases"] == [] and "failed" not in manifest
    # memload's own worker and reference SQL measure the reference API
    assert "--worker-command" not in m.worker_args() and "--observe" not in m.worker_args()
    assert "--sql" not in m.explain_args(1000)


def test_an_external_target_gets_no_memload_settings_and_no_memload_worker(external_url: str,
                                                                           tmp_path: Path) -> None:
    m = _matrix({"BASE_URL": external_url}, tmp_path)
    manifest = _manifest_for(m, external_url)
    assert manifest["target"]["kind"] == "external" and "api_settings" not in manifest
    assert m.worker_args() is None and m.explain_args(1000) is None
    m._worker_benchmark()
    m._explain(1000, m.cfg.scope_for(1000))
    assert not m.state.phases[1:]  # nothing ran after the probe
    why = {e["stage"]: e["reason"] for e in m.not_measured()}
    assert "WORKER_COMMAND or WORKER_OBSERVE=true" in why["worker_benchmark"]
    assert "EXPLAIN_SQL" in why["explain_1000"]


def test_target_commands_are_passed_through(external_url: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COMMAND", "node dist/jobs/outbox-worker.js --once")
    sql = tmp_path / "explain_baseline.sql"
    sql.write_text("SELECT 1;\n")
    m = _matrix({"BASE_URL": external_url, "WORKER_COMMAND": "node dist/jobs/outbox-worker.js --once",
                 "EXPLAIN_SQL": str(sql), "SEED_COMMAND": "npm run job:perf-seed --"}, tmp_path)
    _manifest_for(m, external_url)
    args = m.worker_args()
    assert args is not None and args[args.index("--worker-command") + 1] == "node dist/jobs/outbox-worker.js --once"
    explain = m.explain_args(1000)
    assert explain is not None and explain[explain.index("--sql") + 1] == str(sql)
    seed = m.seed_args(1000)
    assert seed[seed.index("--command") + 1] == "npm run job:perf-seed --"
    assert seed[seed.index("--precision") + 1] == "halfvec"  # the seed's default, spelled out
    assert "WORKER_COMMAND" not in m.env  # only as the flag, never inherited by e.g. the backlog writer
    observe = _matrix({"BASE_URL": external_url, "WORKER_OBSERVE": "true"}, tmp_path)
    _manifest_for(observe, external_url)
    assert "--observe" in (observe.worker_args() or [])


def test_the_embedded_server_is_sized_for_the_largest_scale(tmp_path: Path) -> None:
    m = _matrix({"SCALES": "1000 300000 20000", "SEED_PRECISION": "vector", "TOPIC_RATIO": "100"}, tmp_path)
    assert m.seed_args(1000)[m.seed_args(1000).index("--precision") + 1] == "vector"
    (tmp_path / "home").mkdir()  # an earlier, larger plan: this run declares its own largest scope
    (tmp_path / "home" / "embedded_dataset.json").write_text('{"nodes": 2000000, "precision": "halfvec"}')
    m._size_embedded_server()  # the server in this home is not running: sized at its next start
    assert m.server_sizing is not None and m.server_sizing.startswith("embedded server sized at its next start")
    assert "303,000 nodes (vector HNSW)" in m.server_sizing
    recorded = json.loads((tmp_path / "home" / "embedded_dataset.json").read_text())
    assert recorded["nodes"] == 303_000 and recorded["precision"] == "vector"


# --------------------------------------------------------------------------------------- child stderr pump
def test_child_traceback_goes_to_the_log_and_leaves_one_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    log = RunLog(tmp_path / "matrix.log")
    monkeypatch.setattr(matrix_mod, "_RUN_LOG", log)
    stderr = io.StringIO(
        "[memload seed] loading\n"
        "Traceback (most recent call last):\n"
        '  File "seeding/seed.py", line 1, in <module>\n'
        "    raise ValueError('x')\n"
        "ValueError: unexpected index definition for memory_nodes_id_scope_cover_idx\n")
    pump = _StderrPump(stderr, "seed")
    pump.run()
    log.close()
    console = capsys.readouterr().err
    assert console == "[memload seed] loading\n"
    assert pump.cause == "ValueError: unexpected index definition for memory_nodes_id_scope_cover_idx"
    assert "Traceback (most recent call last)" in (tmp_path / "matrix.log").read_text()


# ------------------------------------------------------------------------------------ a dead BASE_URL
def test_dead_base_url_fails_fast_in_one_line_with_a_partial_report(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "dead"
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "BASE_URL": dead, "DATABASE_URL": db_url, "SCALES": "1000", "OUT_DIR": str(out),
           "MATRIX_TAG": "dead", "MEMLOAD_HOME": str(tmp_path / "home")}
    proc = run_cli("matrix", env=env, timeout=300)
    assert proc.returncode == ExitCode.TARGET_FAILING, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # one line from the matrix (the report's own summary of what was not measured may repeat the cause)
    failure_lines = [line for line in proc.stderr.splitlines()
                     if "refused" in line.lower() and not line.startswith("[report]")]
    assert len(failure_lines) == 1 and "target_probe" in failure_lines[0] and "BASE_URL" in failure_lines[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["failed_phases"]] == ["target_probe"]
    assert manifest["failed_phases"][0]["hint"].startswith("BASE_URL")
    assert manifest["target"]["probe_error"] and manifest["target"]["base_url"] == dead
    assert {e["stage"] for e in manifest["not_measured"]} == {"seed_1000", "ann_check_1000", "benchmark_1000",
                                                               "explain_1000", "worker_benchmark"}
    assert all("target_probe" in e["reason"] for e in manifest["not_measured"])
    assert manifest["complete"] is False and "api_settings" not in manifest
    assert (out / "PERFORMANCE_REPORT_V1.md").exists()
    assert "Traceback (most recent call last)" in (out / "logs" / "matrix.log").read_text()


# ---------------------------------------------------------------------------------------- disk hygiene rule
def test_to_purge_keeps_the_last_runs_of_this_database_only(tmp_path: Path) -> None:
    from scripts import matrix_runs

    home = tmp_path / "home"
    for i, (tag, db) in enumerate([("r1", "A"), ("r2", "A"), ("x1", "B"), ("r3", "A"), ("r4", "A")]):
        matrix_runs.record(home, matrix_runs.RunEntry(tag, 1000.0 + i, db, "default", "perf_d", [1000], ""))
    entries = matrix_runs.load(home)
    pick = matrix_runs.to_purge
    assert [e.matrix_tag for e in pick(entries, database="A", current_tag="r4", keep_runs=2)] == ["r1", "r2"]
    assert [e.matrix_tag for e in pick(entries, database="A", current_tag="r4", keep_runs=1)] == ["r1", "r2", "r3"]
    assert pick(entries, database="A", current_tag="r4", keep_runs=0) == []  # 0 keeps all
    assert pick(entries, database="B", current_tag="x1", keep_runs=1) == []  # another database's runs: untouched
    assert entries[0].scopes() == ["perf_d_1000_r1"]
    (home / "matrix_runs.json").write_text("{not json")
    assert matrix_runs.load(home) == []  # a damaged registry purges nothing
