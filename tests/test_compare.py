"""`memload compare`: runs drawn from one distribution are "no significant change", a 30 % slowdown is a regression.

Also REPEAT and the time-based default of `memload matrix`, the inputs compare relies on.

Runs are generated here as the bench writes them: a benchmark JSON naming its per-request records file, records of
a realistic size (a 30-second run at a few hundred req/s), latencies log-normal, request starts a Poisson stream.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

import analysis.compare as cmp
from analysis.artifacts import discover
from analysis.compare import (
    IMPROVEMENT,
    METHOD_RECORDS,
    METHOD_REPEATS,
    NOISE,
    NOT_EVIDENCE,
    REGRESSION,
    TOO_FEW,
    Thresholds,
    compare_dirs,
)
from memload.config import Settings
from memload.errors import ConfigError, ExitCode
from scripts import matrix as matrix_mod
from scripts.commands import report as cmd_report
from scripts.commands.bench import DEFAULTS as BENCH_DEFAULTS
from scripts.matrix import Matrix
from scripts.matrix_config import resolve
from tests.support.cli import run_cli
from tests.support.report_fixtures import case, write_json, write_manifest, write_worker

T0 = 1_790_000_000.0
RECALL_RPS, WRITE_RPS, DURATION_S = 200.0, 60.0, 30.0


def _endpoint_records(rng: np.random.Generator, endpoint: str, start: float, rps: float, median_ms: float,
                      slow: float, error_share: float = 0.0, share_429: float = 0.0, drift: float = 0.0) -> list[tuple]:
    """A Poisson stream of `rps` for DURATION_S seconds; a closed loop slowed by `slow` also starts fewer requests.
    `drift`: latency grows linearly within the run, by that fraction at its end."""
    rate = rps / slow
    n = int(rng.poisson(rate * DURATION_S))
    t = start + np.sort(rng.uniform(0.0, DURATION_S, n))
    lat = median_ms * slow * rng.lognormal(0.0, 0.45, n) * (1.0 + drift * (t - start) / DURATION_S)
    u = rng.uniform(size=n)
    cat = np.where(u < share_429, "429", np.where(u < share_429 + error_share, "5xx", "ok"))
    status = {"ok": 200, "429": 429, "5xx": 503}
    return [(round(float(ti), 3), endpoint, float(li), status[str(c)], str(c), "", "")
            for ti, li, c in zip(t, lat, cat, strict=True)]


def make_run(d: Path, seed: int, *, slow: float = 1.0, reps: int = 1, records: bool = True, scale: str = "1000",
             write_rps: float = WRITE_RPS, error_share: float = 0.0, share_429: float = 0.0, drift: float = 0.0,
             manifest: dict | None = None) -> Path:
    """A run directory with `reps` repeats of a recall_text + write benchmark (REPEAT naming when reps > 1)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(1, reps + 1):
        prefix = f"locust_{scale}_rep{k}" if reps > 1 else f"locust_{scale}"
        rows = (_endpoint_records(rng, "recall_text", T0, RECALL_RPS, 5.0, slow, error_share, share_429, drift)
                + _endpoint_records(rng, "write", T0 + DURATION_S + 1, write_rps, 8.0, slow))
        cases = []
        for name in ("recall_text", "write"):
            own = [r for r in rows if r[1] == name]
            ok = [r[2] for r in own if r[4] == "ok"]
            by_status: dict[str, int] = {}
            for r in own:
                by_status[str(r[3])] = by_status.get(str(r[3]), 0) + 1
            cases.append(case(name, ok, by_status, rps=len(own) / DURATION_S))
        doc = {"ok": True, "scope": f"perf_{scale}", "tenant_id": "default",
               "params": {"mode": "all", "recall_concurrency": 12, "write_concurrency": 4, "pace_ms": 0},
               "cases": cases, "artifacts": {"csv_prefix": prefix},
               "run": {"completed": True, "requests_file": f"{prefix}_requests.csv" if records else None}}
        if records:
            lines = ["t_s,endpoint,latency_ms,status,category,server_ms,db_ms"]
            lines += [f"{t:.3f},{e},{lat:.4f},{s},{c},," for t, e, lat, s, c, _, _ in rows]
            (d / f"{prefix}_requests.csv").write_text("\n".join(lines) + "\n")
        name = f"benchmark_{scale}_rep{k}.json" if reps > 1 else f"benchmark_{scale}.json"
        write_json(d / name, doc)
        if reps > 1 and k == reps:
            write_json(d / f"benchmark_{scale}.json", doc)  # canonical = last repeat
    write_manifest(d)
    if manifest:
        doc = json.loads((d / "manifest.json").read_text())
        for key, value in manifest.items():
            doc[key] = {**doc.get(key, {}), **value}
        write_json(d / "manifest.json", doc)
    return d


def row(result, metric: str, case_name: str = "recall_text") -> dict:
    return next(r for r in result.to_json()["rows"] if r["metric"] == metric and r["case"] == case_name)


# ------------------------------------------------------------------------------------------------ CLI verdicts
def test_two_runs_of_one_distribution_are_no_significant_change(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "base", seed=1), make_run(tmp_path / "cand", seed=2)
    proc = run_cli("compare", str(base), str(cand), timeout=120)
    assert proc.returncode == ExitCode.OK, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == NOISE and out["regressions"] == 0 and out["ok"] is True
    rows = [r for r in out["rows"] if r["case"] != "worker"]
    assert {(r["case"], r["metric"]) for r in rows} == {(c, m) for c in ("recall_text", "write")
                                                        for m in ("p50_ms", "p95_ms", "p99_ms", "rps", "error_rate")}
    for r in rows:
        assert r["method"] == METHOD_RECORDS and r["verdict"] == NOISE, r
        assert r["ci"][0] <= r["ci"][1]
    p50 = row_of(out, "p50_ms")
    assert p50["samples"]["baseline"] > 5000 and p50["ci"][0] < 0 < p50["ci"][1]
    rps = row_of(out, "rps")
    assert rps["samples"] == {"baseline": 29, "candidate": 29}  # full 1-second windows of a 30-s run
    assert out["warnings"] == []  # same commit, host and config; enough samples
    # ten intervals at once: each at 99.5 %, so all ten hold together with 95 % (Bonferroni)
    assert out["thresholds"]["family"] == 10 and out["thresholds"]["ci_level"] == pytest.approx(0.995)
    assert "no significant change" in proc.stderr and "99.5 % CI of Δ" in proc.stderr  # the readable table
    assert "| 1000 | recall_text | p95_ms |" in (cand / "COMPARE.md").read_text()


def row_of(out: dict, metric: str, case_name: str = "recall_text") -> dict:
    return next(r for r in out["rows"] if r["metric"] == metric and r["case"] == case_name)


def test_a_30_percent_slowdown_is_a_regression(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "base", seed=1), make_run(tmp_path / "cand", seed=2, slow=1.3)
    proc = run_cli("compare", str(base), str(cand), "--json-output", str(tmp_path / "cmp.json"), timeout=120)
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == REGRESSION and out["ok"] is False
    for case_name in ("recall_text", "write"):
        for metric in ("p50_ms", "p95_ms", "p99_ms", "rps"):
            r = row_of(out, metric, case_name)
            assert r["verdict"] == REGRESSION and r["significant"] is True, r
            assert abs(r["delta"]) > r["noise_floor"]
        assert row_of(out, "error_rate", case_name)["verdict"] == NOISE
    p50 = row_of(out, "p50_ms")
    assert p50["delta_pct"] == pytest.approx(30.0, abs=5.0) and p50["ci"][0] > 0
    assert json.loads((tmp_path / "cmp.json").read_text())["regressions"] == out["regressions"] == 8


def test_the_same_slowdown_is_an_improvement_the_other_way(tmp_path: Path) -> None:
    r = compare_dirs(make_run(tmp_path / "b", seed=1, slow=1.3), make_run(tmp_path / "c", seed=2))
    assert r.verdict == IMPROVEMENT and not r.regressions
    assert row(r, "p95_ms")["verdict"] == IMPROVEMENT and row(r, "rps")["verdict"] == IMPROVEMENT


def test_a_significant_change_below_the_minimum_effect_is_noise(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2, slow=1.06)
    p50 = row(compare_dirs(base, cand), "p50_ms")
    assert p50["significant"] is True and p50["ci"][0] > 0  # 10^4 records see a 6 % shift …
    assert p50["verdict"] == NOISE and p50["noise_floor"] == pytest.approx(1.0)  # … smaller than max(10 %, 1 ms)
    strict = compare_dirs(base, cand, Thresholds(rel_pct=2.0, latency_floor_ms=0.0))
    assert row(strict, "p50_ms")["verdict"] == REGRESSION


def test_a_run_that_drifts_cannot_prove_a_change_smaller_than_its_drift(tmp_path: Path) -> None:
    """Latency climbing 60 % within the candidate run (a busy neighbour): its p50 is ~25 % higher, significant by
    the records alone, but no larger than the spread between the run's own thirds."""
    base = make_run(tmp_path / "b", seed=1, slow=1.2)
    drifting = make_run(tmp_path / "c", seed=2, slow=1.2, drift=0.6)
    p50 = row(compare_dirs(base, drifting), "p50_ms")
    assert p50["significant"] is True and p50["delta_pct"] > 20
    assert p50["noise_floor_source"] == "run thirds" and p50["noise_floor"] > p50["delta"]
    assert p50["verdict"] == NOISE
    steady = make_run(tmp_path / "s", seed=3, slow=1.5)  # the same shift without drift is a regression
    p50 = row(compare_dirs(base, steady), "p50_ms")
    assert p50["verdict"] == REGRESSION and p50["noise_floor_source"] == "minimum effect"


def test_error_rate_regression_and_429_dominated_latency(tmp_path: Path) -> None:
    r = compare_dirs(make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2, error_share=0.03))
    err = row(r, "error_rate")
    assert err["candidate"] == pytest.approx(0.03, abs=0.006) and err["verdict"] == REGRESSION
    limited = compare_dirs(make_run(tmp_path / "b2", seed=1), make_run(tmp_path / "c2", seed=2, slow=2.0,
                                                                        share_429=0.3))
    assert row(limited, "p95_ms")["verdict"] == NOT_EVIDENCE


def test_bootstrap_is_deterministic(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2)
    one, two = compare_dirs(base, cand).to_json(), compare_dirs(base, cand).to_json()
    assert one["rows"] == two["rows"]
    other = compare_dirs(base, cand, Thresholds(seed=7)).to_json()
    assert [r["ci"] for r in other["rows"]] != [r["ci"] for r in one["rows"]]


# ------------------------------------------------------------------------------------------------ warnings
def test_too_few_samples_warn(tmp_path: Path) -> None:
    """A small run: ~100 writes. Bootstrap keeps it 'no significant change' and says why."""
    base = make_run(tmp_path / "b", seed=1, write_rps=3.5)
    cand = make_run(tmp_path / "c", seed=2, write_rps=3.5)
    proc = run_cli("compare", str(base), str(cand), timeout=120)
    assert proc.returncode == ExitCode.OK, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == NOISE
    p99 = row_of(out, "p99_ms", "write")
    assert p99["samples"]["baseline"] < 1000 and "low confidence" in p99["note"]
    assert any("write p99_ms" in w and "fewer than 1000" in w for w in out["warnings"])
    assert not any("recall_text p99_ms" in w for w in out["warnings"])
    assert "⚠" in proc.stderr and "fewer than 1000" in proc.stderr


def test_differing_commit_host_and_config_warn(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", seed=1)
    cand = make_run(tmp_path / "c", seed=2, manifest={"host": {"git_commit": "def5678", "hostname": "other"},
                                                    "config": {"RECALL_CONCURRENCY": 6, "MATRIX_TAG": "t2"}})
    out = compare_dirs(base, cand).to_json()
    warnings = "\n".join(out["warnings"])
    assert "commits differ: abc1234 vs def5678" in warnings
    assert "hosts differ: hostname 'h' vs 'other'" in warnings
    assert "configs differ: RECALL_CONCURRENCY None vs 6" in warnings and "MATRIX_TAG" not in warnings
    assert out["runs"]["candidate"]["git_commit"] == "def5678"
    assert out["verdict"] == NOISE  # a warning, not a verdict


def test_missing_manifest_and_records_warn(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2)
    (cand / "manifest.json").unlink()
    (cand / "locust_1000_requests.csv").unlink()
    r = compare_dirs(base, cand)
    assert r.warnings[0] == "c/benchmark_1000.json names per-request records locust_1000_requests.csv, which is missing"
    assert "candidate has no manifest.json" in r.warnings[1]
    assert row(r, "p95_ms")["method"] == METHOD_REPEATS and row(r, "p95_ms")["verdict"] == TOO_FEW


# ------------------------------------------------------------------------------------------------ repeats
def test_repeats_without_records_bootstrap_over_the_repeats(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", seed=1, reps=4, records=False)
    same = make_run(tmp_path / "c", seed=2, reps=4, records=False)
    slow = make_run(tmp_path / "s", seed=3, reps=4, records=False, slow=1.3)
    r = compare_dirs(base, same)
    assert r.verdict == NOISE and r.warnings == []
    p95 = row(r, "p95_ms")
    assert p95["method"] == METHOD_REPEATS and p95["samples"] == {"baseline": 4, "candidate": 4}
    assert r.to_json()["runs"]["baseline"]["repeats"] == {"1000": 4}
    s = compare_dirs(base, slow)
    assert row(s, "p50_ms")["verdict"] == REGRESSION and row(s, "p50_ms")["method"] == METHOD_REPEATS


def test_one_run_without_records_gives_no_latency_verdict(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", seed=1, records=False)
    cand = make_run(tmp_path / "c", seed=2, records=False, slow=1.5)
    r = compare_dirs(base, cand)
    assert row(r, "p95_ms")["verdict"] == TOO_FEW and r.verdict == NOISE
    assert any("too few to tell a change from noise" in w for w in r.warnings)
    two = compare_dirs(make_run(tmp_path / "b2", seed=1, reps=2, records=False),
                       make_run(tmp_path / "c2", seed=2, reps=2, records=False, slow=1.5))
    assert {r["verdict"] for r in two.to_json()["rows"]} == {TOO_FEW}  # a bootstrap over two values is too narrow


def test_repeats_with_records_pool_records_and_raise_the_floor_to_their_spread(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", seed=1, reps=3)
    cand = make_run(tmp_path / "c", seed=2, reps=3)
    r = compare_dirs(base, cand)
    p99 = row(r, "p99_ms")
    assert p99["method"] == METHOD_RECORDS and p99["samples"]["baseline"] > 15000  # three repeats pooled
    assert row(r, "rps")["samples"] == {"baseline": 87, "candidate": 87}
    # a repeat that wandered off raises the noise floor to the spread between repeats
    doc = json.loads((cand / "benchmark_1000_rep2.json").read_text())
    path = cand / doc["run"]["requests_file"]
    lines = path.read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:]]
    path.write_text("\n".join([lines[0]] + [",".join([*x[:2], f"{float(x[2]) * 3:.4f}", *x[3:]]) for x in rows])
                    + "\n")
    wobbly = row(compare_dirs(base, cand), "p50_ms")
    assert wobbly["noise_floor_source"] == "repeats" and wobbly["verdict"] == NOISE


def test_worker_throughput_is_bootstrapped_over_iterations(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "b", seed=1), make_run(tmp_path / "c", seed=2)
    write_worker(base, [(100, 100, 1000.0 + 20 * i) for i in range(8)])
    write_worker(cand, [(100, 100, 1500.0 + 20 * i) for i in range(8)])
    w = row(compare_dirs(base, cand), "processed_per_sec", "worker")
    assert w["verdict"] == REGRESSION and w["method"] == "iterations" and w["ci"][1] < 0


def test_unmatched_cases_are_listed(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b", seed=1)
    cand = make_run(tmp_path / "c", seed=2)
    extra = make_run(tmp_path / "x", seed=3, scale="3000")
    for f in extra.glob("*3000*"):
        f.rename(cand / f.name)
    r = compare_dirs(base, cand)
    assert r.unmatched == ["3000/recall_text: only in candidate", "3000/write: only in candidate"]


def test_cli_defaults_are_the_analysis_defaults() -> None:
    parser = argparse.ArgumentParser()
    cmd_report.register(parser.add_subparsers())
    args = parser.parse_args(["compare", "a", "b"])
    cli = Thresholds(args.threshold_pct, args.latency_floor_ms, args.error_rate_pp, args.confidence, args.resamples,
                     args.seed)
    assert cli == Thresholds()


def test_compare_refuses_a_missing_directory(tmp_path: Path) -> None:
    proc = run_cli("compare", str(tmp_path), str(tmp_path / "nope"))
    assert proc.returncode == ExitCode.USAGE and "candidate: not a directory" in proc.stderr


# ------------------------------------------------------------------------------------------------ the statistics
def test_percentile_bootstrap_matches_resampling() -> None:
    """The Beta shortcut draws the same distribution as resampling the records."""
    rng = np.random.default_rng(5)
    x = np.sort(rng.lognormal(1.5, 0.5, 2000))
    fast = cmp.boot_percentile(x, 0.95, np.random.default_rng(1), 20000)
    idx = np.random.default_rng(2).integers(0, len(x), size=(4000, len(x)))
    slow = np.sort(x[idx], axis=1)[:, math.ceil(len(x) * 0.95) - 1]
    assert fast.mean() == pytest.approx(slow.mean(), rel=0.002) and fast.std() == pytest.approx(slow.std(), rel=0.05)
    for q in (0.025, 0.5, 0.975):  # within half a standard deviation (both are discrete: values of x)
        assert abs(np.quantile(fast, q) - np.quantile(slow, q)) < 0.5 * slow.std()
    assert cmp.nearest_rank(x, 0.95) == x[math.ceil(2000 * 0.95) - 1]


def test_throughput_windows_count_full_seconds() -> None:
    t = np.array([0.1, 0.2, 0.9, 1.0, 1.5, 2.2, 3.05])
    assert cmp.throughput_windows(t + T0).tolist() == [4.0, 1.0]  # from the first start; [2, 2.95] is partial


# ------------------------------------------------------------------------------------------------ REPEAT in the matrix
def test_repeat_and_time_based_defaults_resolve() -> None:
    cfg = resolve({"SCALES": "1000"})
    got = (cfg["REPEAT"], cfg["BENCH_DURATION_S"], cfg["RECALL_REQUESTS"], cfg["WRITE_REQUESTS"])
    assert got == (1, 30, None, None)
    for name in ("BENCH_WARMUP", "RECALL_CONCURRENCY", "WRITE_CONCURRENCY"):  # one default per setting
        assert cfg[name] == BENCH_DEFAULTS[name.removeprefix("BENCH_").lower()], name
    for profile in ("recall_slo", "write_slo", "worker_slo"):  # profiles do not turn the benchmark count-based
        prof = resolve({"SCALES": "1000", "PERF_PROFILE": profile})
        assert (prof["RECALL_REQUESTS"], prof["WRITE_REQUESTS"]) == (None, None)
    cfg = resolve({"SCALES": "1000", "REPEAT": "5", "BENCH_DURATION_S": "60", "RECALL_REQUESTS": "300"})
    assert (cfg["REPEAT"], cfg["BENCH_DURATION_S"], cfg["RECALL_REQUESTS"]) == (5, 60, 300)
    assert cfg.sources["REPEAT"] == "env" and cfg.sources["BENCH_DURATION_S"] == "env"
    for env, needle in (({"REPEAT": "0"}, "REPEAT"), ({"REPEAT": "x"}, "REPEAT"),
                        ({"BENCH_DURATION_S": "0"}, "BENCH_DURATION_S"), ({"WRITE_REQUESTS": "-5"}, "WRITE_REQUESTS")):
        with pytest.raises(ConfigError, match=needle):
            resolve({"SCALES": "1000", **env})


def test_matrix_dry_run_shows_repeat_and_duration() -> None:
    proc = run_cli("matrix", "--dry-run", env={"SCALES": "1000", "REPEAT": "3"}, check=True)
    lines = {ln.split("=")[0].strip(): ln.split("=", 1)[1].strip() for ln in proc.stdout.splitlines() if "=" in ln}
    assert lines["REPEAT"].startswith("3") and lines["REPEAT"].endswith("(env)")
    assert lines["BENCH_DURATION_S"].startswith("30") and lines["BENCH_DURATION_S"].endswith("(default)")
    assert lines["RECALL_REQUESTS"].startswith("None")
    bad = run_cli("matrix", "--dry-run", env={"SCALES": "1000", "REPEAT": "0"})
    assert bad.returncode == ExitCode.USAGE and "REPEAT" in bad.stderr


def _fake_bench(calls: list[list[str]]):
    """Stands in for the `memload bench` subprocess: records its arguments, writes the JSON it would write."""
    def run(args: list[str], *, env: dict[str, str], out: Path | None = None, timeout: float = 3600,
            ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        prefix = Path(args[args.index("--csv") + 1]).name
        doc = {"ok": True, "cases": [{"name": "recall_text", "total": 10, "by_status": {"200": 10}}],
               "artifacts": {"csv_prefix": prefix}, "run": {"requests_file": f"{prefix}_requests.csv"}}
        Path(args[args.index("--out") + 1]).write_text(json.dumps(doc))
        return subprocess.CompletedProcess(args, 0, "", None)
    return run


@pytest.mark.parametrize(("env", "duration", "recall", "write"), [
    ({}, "30", None, None),
    ({"BENCH_DURATION_S": "45", "RECALL_REQUESTS": "300"}, "45", "300", None),
    ({"RECALL_REQUESTS": "300", "WRITE_REQUESTS": "100"}, None, "300", "100"),  # every case counted: no duration
])
def test_matrix_benchmark_passes_duration_and_only_explicit_counts(
        env: dict[str, str], duration: str | None, recall: str | None, write: str | None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(matrix_mod, "_memload", _fake_bench(calls))
    cfg = resolve({"SCALES": "1000", "OUT_DIR": str(tmp_path), "MATRIX_TAG": "t", **env})
    m = Matrix(cfg, Settings())
    with m.state.phase("benchmark_1000"):
        m._benchmark(1000, "perf_d_1000_t")
    (args,) = calls

    def value(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args else None

    assert (value("--duration-s"), value("--recall-requests"), value("--write-requests")) == (duration, recall, write)
    assert value("--csv") == str(tmp_path / "locust_1000") and not list(tmp_path.glob("*_rep*"))


def test_matrix_repeat_runs_each_benchmark_n_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(matrix_mod, "_memload", _fake_bench(calls))
    cfg = resolve({"SCALES": "1000", "OUT_DIR": str(tmp_path), "MATRIX_TAG": "t", "REPEAT": "3"})
    m = Matrix(cfg, Settings())
    with m.state.phase("benchmark_1000"):
        m._benchmark(1000, "perf_d_1000_t")
    assert [Path(a[a.index("--csv") + 1]).name for a in calls] == [f"locust_1000_rep{k}" for k in (1, 2, 3)]
    reps = sorted(p.name for p in tmp_path.glob("benchmark_1000_rep*.json"))
    assert reps == [f"benchmark_1000_rep{k}.json" for k in (1, 2, 3)]
    canonical = json.loads((tmp_path / "benchmark_1000.json").read_text())
    assert canonical["artifacts"]["csv_prefix"] == "locust_1000_rep3"  # canonical = the last repeat
    adapt = json.loads((tmp_path / "benchmark_adapt_1000.json").read_text())
    assert adapt["repeat"] == 3 and adapt["canonical"] == "benchmark_1000_rep3.json"
    # the report's discovery sees one scale with three repeats, not four scales
    files = discover(tmp_path)
    assert list(files.scales) == ["1000"] and [p.name for p in files.scales["1000"].reps] == reps
