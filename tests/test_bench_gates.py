"""`memload bench` never prints a green number from a run that measured nothing: the preflight (dead target, empty
scope), the transport and 5xx gates, time-based runs and the per-request records file, Server-Timing capture, and
the suite's options in `locust --help`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

from memload.config import REPO_ROOT
from memload.errors import ExitCode
from memload.net import free_port
from tests.support.bench import EMPTY_RECALL, HIGH_LIMITS, FlakyTarget, bench, records, seed_answers


def test_dead_target_exits_2_with_ok_false_and_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rc, data, err = bench("--base-url", url, "--scope", "nowhere", "--csv", str(tmp_path / "locust_dead"))
    assert rc == ExitCode.TARGET_FAILING, err
    assert data is not None and data["ok"] is False and data["cases"] == []
    assert data["preflight"]["health"]["status"] == 0 and data["preflight"]["error"]["kind"] == "target"
    last = err.strip().splitlines()[-1]
    assert url in last and "/health" in last and "Traceback" not in err
    assert records(tmp_path / "locust_dead") == []  # nothing was measured


def test_empty_scope_is_refused_unless_allowed(start_api, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"gate_empty_{uuid.uuid4().hex[:8]}"
    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--mode", "recall", "--warmup", "0",
                          "--recall-requests", "5", "--recall-concurrency", "1", "--csv", str(tmp_path / "l_e"))
    assert rc == ExitCode.ERROR, err
    assert data is not None and data["ok"] is False and data["cases"] == []
    pf = data["preflight"]
    assert pf["health"]["status"] == 200 and pf["health"]["body"]["ok"] is True
    assert (pf["scope_nonempty"], pf["seeds_seen"], pf["error"]["kind"]) == (False, 0, "empty_scope")
    assert "has no recallable memories" in err.strip().splitlines()[-1] and "--allow-empty-scope" in err

    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--mode", "recall", "--warmup", "0",
                          "--recall-requests", "5", "--recall-concurrency", "1", "--allow-empty-scope",
                          "--csv", str(tmp_path / "l_a"))
    assert rc == ExitCode.OK, err
    assert data is not None and data["ok"] is True and data["preflight"]["scope_nonempty"] is False
    assert data["cases"][0]["total"] == 5


def test_empty_recall_without_query_set_on_a_scope_found_nonempty(tmp_path: Path) -> None:
    """The constant query found seeds in the preflight: later recalls of it with no seeds are `empty_recall`."""
    target = FlakyTarget(later=(200, EMPTY_RECALL))
    thread = threading.Thread(target=target.serve_forever, daemon=True)
    thread.start()
    try:
        prefix = tmp_path / "l_f"
        rc, data, err = bench("--base-url", target.url, "--scope", "s", "--mode", "recall", "--warmup", "0",
                              "--recall-requests", "8", "--recall-concurrency", "1", "--csv", str(prefix))
    finally:
        target.shutdown()
        target.server_close()
    assert rc == ExitCode.OK, err  # not a target failure; `--slo-max-error-rate` would make it one
    assert data["preflight"]["scope_nonempty"] is True and data["preflight"]["seeds_seen"] == 1
    (case,) = data["cases"]
    assert (case["ok"], case["errors"]["empty_recall"]) == (4, 4), case["by_status"]
    assert sum(r["category"] == "empty_recall" for r in records(prefix)) == 4


def test_5xx_above_the_threshold_exits_2(tmp_path: Path) -> None:
    target = FlakyTarget()
    thread = threading.Thread(target=target.serve_forever, daemon=True)
    thread.start()
    try:
        prefix = tmp_path / "l_5"
        rc, data, err = bench("--base-url", target.url, "--scope", "flaky", "--mode", "recall", "--warmup", "0",
                              "--recall-requests", "20", "--recall-concurrency", "2", "--csv", str(prefix))
    finally:
        target.shutdown()
        target.server_close()
    assert rc == ExitCode.TARGET_FAILING, err
    assert data is not None and data["ok"] is False
    (case,) = data["cases"]
    assert case["total"] == 20 and case["by_status"]["500"] == 10 and case["errors"]["server_5xx"] == 10
    gate = data["quality"]["server_error_gate"]
    assert gate["failed_cases"] == ["recall_text"] and gate["rates"]["recall_text"] == 0.5
    assert "server-error gate failed" in err and target.url in err
    assert case["server_timing"] == {"reported": False, "server_ms": None, "db_ms": None}  # it sends none
    rows = records(prefix)
    assert len(rows) == 20 and sum(r["category"] == "5xx" and r["status"] == "500" for r in rows) == 10
    assert all(r["server_ms"] == "" for r in rows)


def test_time_based_run_records_every_request_and_server_timing(start_api, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"gate_time_{uuid.uuid4().hex[:8]}"
    seed_answers(api.base_url, scope, ["perf topic #1", "perf topic #2"])
    prefix = tmp_path / "run" / "locust_2s"
    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--duration-s", "2", "--warmup", "2",
                          "--recall-concurrency", "2", "--write-concurrency", "1", "--csv", str(prefix),
                          "--out", str(tmp_path / "run" / "benchmark_t.json"))
    assert rc == ExitCode.OK, err
    assert data["params"]["duration_s"] == 2 and data["params"]["recall_requests"] is None
    assert data["run"]["requests_file"] == "locust_2s_requests.csv" and data["run"]["completed"] is True
    rows = records(prefix)
    recall, write = data["cases"]
    assert recall["total"] > 0 and write["total"] > 0
    assert len(rows) == recall["total"] + write["total"] == data["run"]["records"]
    for case in (recall, write):
        mine = [r for r in rows if r["endpoint"] == case["name"]]
        assert len(mine) == case["total"] and sum(r["category"] == "ok" for r in mine) == case["ok"] == case["samples"]
        assert case["duration_s"] > 0
        # the reference API sends `Server-Timing: total;dur=…, db;dur=…`: captured per request and summarised
        st = case["server_timing"]
        assert st["reported"] is True and st["server_ms"]["samples"] == case["ok"] == st["db_ms"]["samples"]
        assert 0 < st["server_ms"]["p50"] <= st["server_ms"]["p99"]
        assert all(r["server_ms"] and r["db_ms"] for r in mine if r["category"] == "ok")
    # sequential cases: every write starts after the last recall started
    assert min(float(r["t_s"]) for r in rows if r["endpoint"] == "write") > \
        max(float(r["t_s"]) for r in rows if r["endpoint"] == "recall_text")

    # a count-based case keeps its exact count, and its records match too
    prefix = tmp_path / "run" / "locust_n"
    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--mode", "all", "--warmup", "0",
                          "--recall-requests", "23", "--write-requests", "9", "--recall-concurrency", "2",
                          "--write-concurrency", "2", "--csv", str(prefix))
    assert rc == ExitCode.OK, err
    rows = records(prefix)
    assert [c["total"] for c in data["cases"]] == [23, 9] and len(rows) == 32
    assert data["run"]["expected_requests"] == {"recall": 23, "write": 9}


def test_locust_help_lists_the_suite_options() -> None:
    """Locust prints --help before importing the locustfile; the hook `make venv` installs fixes that."""
    assert "-m locustfiles.help_hook install" in (REPO_ROOT / "Makefile").read_text()
    proc = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f",
                           str(REPO_ROOT / "locustfiles" / "memory_users.py"), "--help"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "memload suite options" in proc.stdout, "run `make venv` (installs locustfiles/help_hook.py's .pth)"
    for flag in ("--scope", "--duration-s", "--allow-empty-scope", "--query-set", "MEMLOAD_SCOPE"):
        assert flag in proc.stdout, flag
