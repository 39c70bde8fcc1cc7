"""`memload compare`: a planted regression is flagged (exit 4), an identical run is not; deltas and thresholds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.compare import IMPROVEMENT, NOISE, NOT_EVIDENCE, REGRESSION, Thresholds, compare_dirs
from tests.conftest import run_cli
from tests.test_report_support import case, nearest_rank, write_benchmark, write_exact, write_seed, write_worker

RECALL = [4.0 + 0.02 * i for i in range(200)]
WRITE = [10.0 + 0.05 * i for i in range(80)]


def make_run(d: Path, *, recall_factor: float = 1.0, write_factor: float = 1.0, recall_status: dict | None = None,
             rps: float = 80.0, worker_ms: float = 1000.0, extra_scale: bool = False) -> Path:
    d.mkdir(parents=True)
    rec = [x * recall_factor for x in RECALL]
    wr = [x * write_factor for x in WRITE]
    write_seed(d, "1000", 1010, 2000)
    write_benchmark(d, "1000", [case("recall_text", rec, recall_status or {"200": len(rec)}, rps=rps),
                                case("write", wr, {"200": len(wr)}, rps=20.0)])
    write_exact(d, "1000", {"recall_text": rec, "write": wr})
    write_worker(d, [(100, 100, worker_ms)])
    if extra_scale:
        write_benchmark(d, "3000", [case("recall_text", rec, {"200": len(rec)})])
    return d


def rows(result, metric: str, case_name: str = "recall_text") -> dict:
    return next(r for r in result.to_json()["rows"] if r["metric"] == metric and r["case"] == case_name)


def test_identical_runs_are_within_noise_cli(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    cand = tmp_path / "cand"
    shutil.copytree(base, cand)
    proc = run_cli("compare", str(base), str(cand), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == NOISE and out["regressions"] == 0 and out["ok"] is True
    assert all(r["delta"] == 0 for r in out["rows"])
    assert {(r["case"], r["metric"]) for r in out["rows"]} >= {("recall_text", "p95_ms"), ("write", "p99_ms"),
                                                              ("recall_text", "rps"), ("write", "error_rate"),
                                                              ("worker", "processed_per_sec")}
    md = (cand / "COMPARE.md").read_text()
    assert "Verdict: **within noise**" in md and "max(10 % of baseline, 1 ms)" in md


def test_planted_regression_is_flagged_cli(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    cand = make_run(tmp_path / "cand", recall_factor=1.5)
    md_path = tmp_path / "cmp.md"
    proc = run_cli("compare", str(base), str(cand), "--output", str(md_path), "--json-output",
                   str(tmp_path / "cmp.json"), timeout=120)
    assert proc.returncode == 4, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == REGRESSION and out["ok"] is False
    p95 = next(r for r in out["rows"] if r["case"] == "recall_text" and r["metric"] == "p95_ms")
    b, c = nearest_rank(RECALL, .95), nearest_rank([x * 1.5 for x in RECALL], .95)
    assert p95["baseline"] == pytest.approx(b) and p95["candidate"] == pytest.approx(c)
    assert p95["delta_pct"] == pytest.approx(50.0) and p95["verdict"] == REGRESSION
    write_p95 = next(r for r in out["rows"] if r["case"] == "write" and r["metric"] == "p95_ms")
    assert write_p95["verdict"] == NOISE
    assert json.loads((tmp_path / "cmp.json").read_text())["regressions"] == out["regressions"] == 3  # p50/p95/p99
    md = md_path.read_text()
    assert "| 1000 | recall_text | p95_ms |" in md and "**regression**" in md and "+50.0 %" in md


def test_improvement_is_not_a_regression(tmp_path: Path) -> None:
    r = compare_dirs(make_run(tmp_path / "b"), make_run(tmp_path / "c", recall_factor=0.5, rps=120.0))
    assert r.verdict == IMPROVEMENT and not r.regressions
    assert rows(r, "p95_ms")["verdict"] == IMPROVEMENT and rows(r, "rps")["verdict"] == IMPROVEMENT


def test_latency_floor_keeps_small_absolute_changes_in_noise(tmp_path: Path) -> None:
    base, cand = make_run(tmp_path / "b"), make_run(tmp_path / "c", recall_factor=1.12)
    r = compare_dirs(base, cand)  # +12 % but < 1 ms absolute: p50 ≈ 6 ms moves 0.72 ms
    p50 = rows(r, "p50_ms")
    assert p50["delta_pct"] == pytest.approx(12.0) and p50["delta"] < 1.0 and p50["verdict"] == NOISE
    strict = compare_dirs(base, cand, Thresholds(latency_floor_ms=0.0))
    assert rows(strict, "p50_ms")["verdict"] == REGRESSION


def test_small_relative_change_is_noise(tmp_path: Path) -> None:
    r = compare_dirs(make_run(tmp_path / "b"), make_run(tmp_path / "c", recall_factor=1.05, rps=77.0))
    assert r.verdict == NOISE and not r.regressions


def test_error_rate_and_worker_regressions(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b")
    cand = make_run(tmp_path / "c", recall_status={"200": 198, "503": 2}, worker_ms=1500.0)
    r = compare_dirs(base, cand)
    err = rows(r, "error_rate")
    assert err["candidate"] == pytest.approx(0.01) and err["verdict"] == REGRESSION  # +1 pp > 0.5 pp
    w = rows(r, "processed_per_sec", "worker")
    assert w["baseline"] == pytest.approx(100.0) and w["candidate"] == pytest.approx(100 / 1.5)
    assert w["verdict"] == REGRESSION
    loose = compare_dirs(base, cand, Thresholds(rel_pct=50.0, error_rate_pp=2.0))
    assert not loose.regressions


def test_rate_limited_latency_is_not_evidence(tmp_path: Path) -> None:
    base = make_run(tmp_path / "b")
    cand = make_run(tmp_path / "c", recall_factor=3.0, recall_status={"200": 180, "429": 20})
    r = compare_dirs(base, cand)
    assert rows(r, "p95_ms")["verdict"] == NOT_EVIDENCE
    assert rows(r, "error_rate")["verdict"] == REGRESSION


def test_unmatched_cases_are_listed(tmp_path: Path) -> None:
    r = compare_dirs(make_run(tmp_path / "b"), make_run(tmp_path / "c", extra_scale=True))
    assert r.unmatched == ["3000/recall_text: only in candidate"] and r.verdict == NOISE


def test_compare_refuses_a_missing_directory(tmp_path: Path) -> None:
    proc = run_cli("compare", str(tmp_path), str(tmp_path / "nope"))
    assert proc.returncode == 2 and "candidate: not a directory" in proc.stderr
