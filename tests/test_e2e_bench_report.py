"""A real `memload bench` against the reference API, then `memload report` on the directory it wrote (shaped like a
matrix run: `benchmark_<scale>.json` beside `locust_<scale>_*`): the latency-over-time and throughput plots are
drawn from the run's own per-request records for a 2-second run and a longer one, and the report shows the sample
count behind every percentile."""

from __future__ import annotations

import csv
import json
import re
import uuid
from pathlib import Path

import pytest

from memload.limits import OFF_RATE_LIMITS
from tests.support.bench import query_set, seed_answers
from tests.support.cli import run_cli
from tests.support.report_fixtures import pixels

SCALE = 1000
TEXTS = [f"perf topic #{i}" for i in range(1, 9)]


def _windows_per_endpoint(requests_csv: Path) -> dict[str, int]:
    """Distinct 1-second windows (since the first measured request) in which each endpoint's requests started."""
    with requests_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    start = min(float(r["t_s"]) for r in rows)
    out: dict[str, set[int]] = {}
    for r in rows:
        out.setdefault(r["endpoint"], set()).add(int(float(r["t_s"]) - start))
    return {name: len(ws) for name, ws in out.items()}


@pytest.mark.parametrize("seconds", [2, pytest.param(20, marks=pytest.mark.slow)])
def test_bench_then_report_draws_plots_from_the_records(start_api, tmp_path: Path, seconds: int) -> None:
    api = start_api(**OFF_RATE_LIMITS)  # the server's capacity, so every request is a latency sample
    scope = f"e2e_plots_{uuid.uuid4().hex[:8]}"
    seed_answers(api.base_url, scope, TEXTS)
    qs = query_set(tmp_path / "query_set.json", scope, TEXTS)
    run = tmp_path / "run"
    proc = run_cli("bench", "--base-url", api.base_url, "--scope", scope, "--tenant-id", "default", "--mode", "all",
                   "--warmup", "3", "--duration-s", str(seconds), "--recall-concurrency", "2",
                   "--write-concurrency", "1", "--query-set", str(qs), "--csv", str(run / f"locust_{SCALE}"),
                   "--out", str(run / f"benchmark_{SCALE}.json"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((run / f"benchmark_{SCALE}.json").read_text())
    requests_csv = run / bench["run"]["requests_file"]
    samples = {c["name"]: c["samples"] for c in bench["cases"]}
    assert set(samples) == {"recall_text", "write"} and all(n > 0 for n in samples.values())
    # the data the over-time plots are built from spans the measured window of each case
    windows = _windows_per_endpoint(requests_csv)
    assert windows["recall_text"] >= seconds and windows["write"] >= seconds, windows

    proc = run_cli("report", "--dir", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lat, rps = run / "plots" / f"latency_over_time_{SCALE}.png", run / "plots" / f"rps_failures_{SCALE}.png"
    assert lat.is_file() and rps.is_file(), sorted(p.name for p in (run / "plots").glob("*"))
    # the p50, p95 and p99 lines were drawn, in that order: p99 is on top and fully visible; where p95 equals p99 (or
    # p50 equals p95) the line above hides it, so the lower two must show, not span the plot
    assert pixels(lat, "#d62728") > 150
    assert pixels(lat, "#1f77b4") > 0 and pixels(lat, "#ff7f0e") > 0
    assert pixels(rps, "#1f77b4") > 150 and pixels(rps, "#ff7f0e") > 150  # recall_text and write req/s
    md = (run / "PERFORMANCE_REPORT_V1.md").read_text()
    assert f"From `{requests_csv.name}`: nearest-rank p50/p95/p99" in md
    assert "Not drawn" not in md.split("### RPS and failures over time")[0].split("### p50/p95/p99 over time")[-1]
    for name, n in samples.items():  # the sample count behind each endpoint's percentiles
        assert re.search(rf"\({re.escape(name)}, exact, n={n:,}\)", md), (name, n)
        row = re.search(rf"^\| {SCALE} \| {re.escape(name)} \| \d+ \| \d+ \| {n:,} \|.*$", md, re.M)
        assert row, (name, n)
        # a p99 from fewer than 1,000 samples is marked, and only then
        assert ("low confidence" in row.group(0)) == (n < 1000), row.group(0)
