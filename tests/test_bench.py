"""`memload bench` against the reference API on the embedded PostgreSQL: fields and counts exact, response validation,
master + 2 workers, exact percentiles of an injected delay, open model, SLOs. (Preflight, error gates, time-based
runs, the records file and Server-Timing: tests/test_bench_gates.py.)
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

from locustfiles.exact_stats import SIGNIFICANT_DIGITS
from memload.config import REPO_ROOT
from memload.errors import ExitCode
from scripts.cli import build_parser
from scripts.cli import main as cli_main
from scripts.commands.bench import locust_commands, resolve_plan
from tests.support.bench import HIGH_LIMITS, bench, locust_rows, query_set, seed_answers
from tests.support.cli import PYTHON

CASE_KEYS = {"name", "total", "ok", "failed", "rps", "latency_ms", "by_status", "transport_error_count",
             "transport_error_rate", "errors", "open_model", "pacing", "samples", "duration_s", "server_timing"}



def test_bench_fields_counts_and_artifacts(start_api, db_url: str, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"bench_{uuid.uuid4().hex[:8]}"
    texts = ["perf topic #1", "perf topic #2", "perf topic #3"]
    seed_answers(api.base_url, scope, texts)
    qs = query_set(tmp_path / "query_set.json", scope, texts)
    prefix, out = tmp_path / "run" / "locust_t", tmp_path / "run" / "benchmark_t.json"
    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--tenant-id", "default", "--mode", "all",
                          "--warmup", "3", "--recall-requests", "41", "--recall-concurrency", "3",
                          "--write-requests", "17", "--write-concurrency", "2", "--query-set", str(qs),
                          "--csv", str(prefix), "--out", str(out))
    assert rc == 0, err
    assert data is not None and json.loads(out.read_text()) == data
    assert data["ok"] is True and data["base_url"] == api.base_url and data["auth_mode"] == "none"
    p = data["params"]
    assert (p["mode"], p["warmup"], p["recall_requests"], p["recall_concurrency"], p["write_requests"],
            p["write_concurrency"], p["timeout_ms"], p["pace_ms"], p["embed_on_write"]) == \
        ("all", 3, 41, 3, 17, 2, 15000, 0, False)
    assert p["locust_version"] == "2.47.0" and p["query_count"] == 3 and p["adaptive"] == "on"
    assert data["quality"]["transport_error_gate"] == {"enabled": True, "threshold": 0.01, "failed_cases": []}
    assert data["quality"]["server_error_gate"]["failed_cases"] == []
    assert data["preflight"]["health"]["status"] == 200 and data["preflight"]["scope_nonempty"] is True
    assert data["quality"]["slo"]["enabled"] is False
    assert data["warmup"]["requests"] == 3 and data["warmup"]["ok"] == 3
    recall, write = data["cases"]
    assert [recall["name"], write["name"]] == ["recall_text", "write"]
    for case, n in ((recall, 41), (write, 17)):
        assert CASE_KEYS <= case.keys()
        assert (case["total"], case["ok"], case["failed"], case["samples"]) == (n, n, 0, n)
        assert case["by_status"] == {"200": n}
        assert case["transport_error_count"] == 0 and case["transport_error_rate"] == 0.0
        assert set(case["errors"].values()) == {0}
        lat = case["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"] and case["rps"] > 0
    # Locust's own CSV agrees on counts; the exact file holds the successes; pacing.csv has the documented header
    rows = locust_rows(prefix)
    assert rows["recall_text"]["Request Count"] == "41" and rows["write"]["Request Count"] == "17"
    assert rows["Aggregated"]["Failure Count"] == "0"
    exact = json.loads(Path(f"{prefix}_exact.json").read_text())["endpoints"]
    assert exact["recall_text"]["count"] == 41 and exact["write"]["count"] == 17
    assert set(exact["write"]["percentiles_ms"]) == {"50", "66", "75", "90", "95", "99", "99.9"}
    assert exact["recall_text"]["percentiles_ms"]["95"] == recall["latency_ms"]["p95"]
    assert exact["recall_text"]["cdf"][-1][1] == 1.0
    with open(f"{prefix}_pacing.csv", newline="") as fh:
        pacing = list(csv.reader(fh))
    assert pacing[0] == ["timestamp", "endpoint_class", "pace_ms", "count_429", "count_ok"]
    assert sum(int(r[4]) for r in pacing[1:] if r[1] == "recall") == 41
    assert data["artifacts"] == {"csv_prefix": "locust_t", "exact": "locust_t_exact.json",
                                 "pacing": "locust_t_pacing.csv", "requests": "locust_t_requests.csv",
                                 "summary": "locust_t_summary.json", "locust_log": "locust_t_locust.log"}
    # the Aionis kit's cases are sequential: the first write started after the last recall answered
    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["cases"]["write"]["first_start"] >= summary["cases"]["recall_text"]["last_end"]
    # every write was a new node: unique input_text / client_id per request
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(DISTINCT client_id) FROM memory_nodes WHERE scope = %s AND client_id LIKE "
                         "'perf_write_%%'", (scope,)).fetchone()[0]
    assert n == 17


def test_empty_recall_is_a_failure_and_breaks_the_error_slo(start_api, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"bench_empty_{uuid.uuid4().hex[:8]}"
    qs = query_set(tmp_path / "qs.json", scope, ["perf topic #1", "perf topic #2"])
    rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--mode", "recall", "--warmup", "0",
                          "--recall-requests", "12", "--recall-concurrency", "2", "--query-set", str(qs),
                          "--slo-max-error-rate", "0", "--allow-empty-scope", "--csv", str(tmp_path / "locust_e"))
    assert rc == ExitCode.GATE_FAILED, err
    assert data is not None and data["ok"] is True  # the error gates decide `ok`; the SLO exits 3
    assert data["preflight"]["scope_nonempty"] is False  # measured anyway: --allow-empty-scope
    (case,) = data["cases"]
    assert (case["total"], case["ok"], case["failed"]) == (12, 0, 12)
    assert case["by_status"] == {"empty_recall": 12} and case["errors"]["empty_recall"] == 12
    assert case["latency_ms"]["p50"] is None  # failures never enter the latency figures
    assert data["quality"]["slo"]["breaches"] == [
        {"case": "recall_text", "metric": "error_rate", "value": 1.0, "threshold": 0.0}]
    assert "SLO breach" in err


def test_bad_flags_fail_with_one_line_naming_the_flag(tmp_path: Path, capsys) -> None:
    for args, flag in ((["--recall-concurrency", "0"], "--recall-concurrency"),
                       (["--base-url", "http://10.9.8.7:3001"], "--base-url"),
                       (["--base-url", "ftp://127.0.0.1"], "--base-url"),
                       (["--query-set", str(tmp_path / "missing.json")], "--query-set"),
                       (["--tenant-id", "no spaces"], "--tenant-id"),
                       (["--mode", "both"], "--mode"),
                       (["--slo-max-error-rate", "2"], "--slo-max-error-rate")):
        try:
            rc = cli_main(["bench", "--csv", str(tmp_path / "never"), *args])
        except SystemExit as exc:  # argparse
            rc = exc.code
        out, err = capsys.readouterr()
        assert rc in (ExitCode.USAGE, 2), (args, err)  # ConfigError: 64; argparse's own choices/type errors: 2
        last = err.strip().splitlines()[-1]  # (argparse's usage, then) one error line; no traceback
        assert flag in last and "error" in last and "Traceback" not in err and out == ""
    assert not list(tmp_path.glob("never*"))  # nothing ran


@pytest.mark.parametrize("profile,mode,concurrency", [("recall_slo", "recall", 6), ("write_slo", "write", 2),
                                                     ("worker_slo", "all", 4)])
def test_profile_presets_fill_the_flags_not_given(profile: str, mode: str, concurrency: int) -> None:
    args = build_parser().parse_args(["bench", "--profile", profile, "--write-requests", "5"])
    plan = resolve_plan(args)
    assert plan.mode == mode and plan.write_requests == 5  # explicit flags win over the preset
    assert plan.recall_requests is None and plan.duration_s == 30.0  # no preset forces a request count
    assert (plan.recall_concurrency if mode == "recall" else plan.write_concurrency) == concurrency
    assert plan.embed_on_write is (profile == "worker_slo")
    main, workers = locust_commands(plan, None)
    assert not workers and main[main.index("-u") + 1] == str(
        {"recall": 6, "write": 2, "all": 4 + 4}[mode])
    assert main[-(1 if mode != "all" else 2):] == {"recall": ["RecallUser"], "write": ["WriteUser"],
                                                   "all": ["RecallUser", "WriteUser"]}[mode]
    assert main[main.index("--duration-s") + 1] == "30.0" and main[main.index("--recall-requests") + 1] == "0"


@pytest.mark.slow
def test_distributed_master_and_two_workers_sum_up(start_api, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"bench_dist_{uuid.uuid4().hex[:8]}"
    for flags, label in ((["--workers", "2"], "w"), (["--processes", "2"], "p")):
        prefix = tmp_path / f"locust_{label}"
        rc, data, err = bench("--base-url", api.base_url, "--scope", scope, "--warmup", "2",
                              "--recall-requests", "64", "--recall-concurrency", "4", "--write-requests", "22",
                              "--write-concurrency", "2", "--allow-empty-scope", "--csv", str(prefix), *flags)
        assert rc == 0, err
        assert data is not None
        recall, write = data["cases"]
        assert (recall["total"], recall["ok"], write["total"], write["ok"]) == (64, 64, 22, 22)
        per_worker = data["run"]["per_worker"]
        assert data["run"]["workers"] == 2 and len(per_worker) == 2
        for name, case in (("recall_text", recall), ("write", write)):
            assert sum(w.get(name, {}).get("total", 0) for w in per_worker.values()) == case["total"]
            assert sum(w.get(name, {}).get("ok", 0) for w in per_worker.values()) == case["ok"]
        assert all(sum(ep["total"] for ep in w.values()) > 0 for w in per_worker.values())
        rows = locust_rows(prefix)
        assert rows["recall_text"]["Request Count"] == "64" and rows["write"]["Request Count"] == "22"
        exact = json.loads(Path(f"{prefix}_exact.json").read_text())["endpoints"]
        assert exact["recall_text"]["count"] == 64 and exact["write"]["count"] == 22
        # the workers shipped their per-request records to the master: one row per request
        with open(f"{prefix}_requests.csv", newline="") as fh:
            rec = list(csv.DictReader(fh))
        assert len(rec) == 64 + 22 and data["run"]["requests_file"] == f"locust_{label}_requests.csv"


def test_exact_p50_of_injected_delay_and_latency_slo(start_api, tmp_path: Path) -> None:
    """A 5 s server-side delay: the exact p50 is the median of the suite's own records, unrounded, where Locust's
    own buckets are 100 ms wide.

    The requests arrive staggered (open model, 3/s, one user each) so they do not queue behind each other in the
    server. How far beyond the delay they land depends on the machine's load, so only the records bound it."""
    delay = 5000.0
    api = start_api(memload_inject_delay_ms=str(delay), **HIGH_LIMITS)
    prefix = tmp_path / "locust_d"
    rc, data, err = bench("--base-url", api.base_url, "--scope", "bench_delay", "--mode", "recall", "--warmup", "0",
                          "--recall-requests", "6", "--recall-concurrency", "6", "--arrival-rate", "3",
                          "--slo-recall-p95-ms", "300", "--allow-empty-scope", "--csv", str(prefix))
    assert rc == ExitCode.GATE_FAILED, err  # p95 >= 300 ms: an SLO breach, distinct from the transport gate
    (case,) = data["cases"]
    assert case["ok"] == 6 and case["open_model"]["dropped"] == 0
    p50 = case["latency_ms"]["p50"]
    with open(f"{prefix}_requests.csv", newline="") as fh:
        measured = sorted(float(r["latency_ms"]) for r in csv.DictReader(fh) if r["endpoint"] == "recall_text")
    assert len(measured) == 6 and measured[0] >= delay
    # the median of 6 whatever the interpolation, within the exact histogram's resolution (3 significant digits)
    resolution = 10.0 ** -SIGNIFICANT_DIGITS
    assert measured[2] * (1 - resolution) <= p50 <= measured[3] * (1 + resolution), (p50, measured)
    assert p50 != round(p50, -2)  # an unrounded figure, not one of Locust's 100 ms buckets (1..10 s)
    assert int(locust_rows(prefix)["recall_text"]["50%"]) % 100 == 0  # Locust's CSV: 100 ms buckets in 1..10 s
    assert data["quality"]["slo"]["breaches"] == [
        {"case": "recall_text", "metric": "p95_ms", "value": case["latency_ms"]["p95"], "threshold": 300.0}]


def test_open_model_counts_late_requests_and_measures_from_intended_start(start_api, tmp_path: Path) -> None:
    """2 users cannot keep 40 req/s at >= 100 ms each: requests start late, and the latency measured from the
    intended start grows past the service time instead of hiding it (coordinated omission)."""
    delay = 100.0
    api = start_api(memload_inject_delay_ms=str(delay), **HIGH_LIMITS)
    prefix = tmp_path / "locust_o"
    rc, data, err = bench("--base-url", api.base_url, "--scope", "bench_open", "--mode", "recall", "--warmup", "0",
                          "--recall-requests", "24", "--recall-concurrency", "2", "--arrival-rate", "40",
                          "--allow-empty-scope", "--csv", str(prefix))
    assert rc == 0, err
    (case,) = data["cases"]
    om = case["open_model"]
    assert case["total"] == 24 and om["intended"] == 24 + om["dropped"] and om["late"] >= 12
    assert om["lag_ms_max"] > 2 * delay
    assert case["latency_ms"]["p95"] > 3 * delay
    assert data["params"]["arrival_rate"] == 40.0
    assert json.loads(Path(f"{prefix}_exact.json").read_text())["latency_from"] == "intended_start"


def test_locust_dies_with_a_sigkilled_bench(start_api, tmp_path: Path) -> None:
    """Load bounded in time: Locust runs in a session of its own, yet a `memload bench` killed without a chance to
    clean up (SIGKILL) takes its Locust process with it."""
    api = start_api(**HIGH_LIMITS)
    scope = f"bench_{uuid.uuid4().hex[:8]}"
    texts = ["perf topic #1", "perf topic #2"]
    seed_answers(api.base_url, scope, texts)
    qs = query_set(tmp_path / "query_set.json", scope, texts)
    proc = subprocess.Popen([PYTHON, "-m", "scripts.cli", "bench", "--base-url", api.base_url, "--scope", scope,
                             "--tenant-id", "default", "--mode", "recall", "--duration-s", "600", "--pace-ms", "50",
                             "--query-set", str(qs), "--csv", str(tmp_path / "locust_k")],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locust: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not locust and time.monotonic() < deadline and proc.poll() is None:
            locust = [c for c in psutil.Process(proc.pid).children(recursive=True) if "locust" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert locust, "bench never started Locust"
        proc.kill()
        proc.wait(30)
        _, alive = psutil.wait_procs(locust, timeout=60)
        assert alive == [], f"Locust outlived a SIGKILLed bench: {[p.pid for p in alive]}"
    finally:
        proc.kill()
        for p in locust:
            if p.is_running():
                p.kill()
