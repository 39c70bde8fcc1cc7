"""`memload report`: numbers equal numbers computed independently from the same files; plots are real PNGs;
missing inputs are reported; malformed inputs give one line naming the file and the column or key.

Locust CSVs come from a short real headless Locust 2.47.0 run against a loopback server started here; the JSON
artifacts are built by the tests with known values.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
import struct
from pathlib import Path

import pytest

from analysis.errors import MalformedArtifact, TemplateError
from analysis.metrics import classify_failure_message
from analysis.report import build_report
from analysis.rules import SloTargets
from tests.support.cli import run_cli
from tests.support.report_fixtures import (
    EXPLAIN_HNSW,
    case,
    case_from_records,
    nearest_rank,
    pixels,
    real_locust_run,
    records,
    write_adapt,
    write_ann_check,
    write_benchmark,
    write_exact,
    write_json,
    write_manifest,
    write_pacing,
    write_requests,
    write_seed,
    write_target_manifest,
    write_worker,
)

RECALL_LAT = [1.5 + 0.01 * i for i in range(400)] + [9.75, 12.5, 30.25]
WRITE_LAT = [4.0 + 0.05 * i for i in range(120)]
WORKER_ITER = [(100, 100, 800.0), (100, 98, 750.0), (60, 60, 500.0)]
ANN_SWEEP = [(100, 0.97, 0.9, 37.5, 3.5), (200, 0.985, 0.95, 60.125, 6.25)]  # ef_search, recall path, index, ms, ms
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def locust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_locust_run(tmp_path_factory.mktemp("locust"))


def _copy_csvs(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.glob("locust_*.csv"):
        shutil.copy(p, dst / p.name)
    return dst


@pytest.fixture(scope="module")
def full_dir(locust_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Locust CSVs + every JSON/text artifact of a matrix run, for scale 1000; scale 3000 has seed+bench only."""
    d = _copy_csvs(locust_dir, tmp_path_factory.mktemp("full"))
    write_seed(d, "1000", 1010, 2000)
    write_benchmark(d, "1000", [
        case("recall_text", RECALL_LAT, {"200": len(RECALL_LAT)}, rps=81.25,
             errors={"rate_limited_429": 0, "client_4xx": 0, "server_5xx": 0, "transport": 0, "empty_recall": 0,
                     "invalid_body": 0}),
        case("write", WRITE_LAT, {"200": len(WRITE_LAT)}, rps=20.5)])
    write_exact(d, "1000", {"recall_text": RECALL_LAT, "write": WRITE_LAT})
    write_pacing(d, "1000", [(1_790_000_000 + t, cls, 10.0 * (t % 3), int(t == 2), 40)
                             for t in range(6) for cls in ("recall", "write")])
    write_adapt(d, "1000")
    write_requests(d, "1000", [(1_790_000_000 + 6 * i / len(lat), name, v, 200, "ok", None, None)
                               for name, lat in (("recall_text", RECALL_LAT), ("write", WRITE_LAT))
                               for i, v in enumerate(lat)])
    (d / "explain_1000.txt").write_text(EXPLAIN_HNSW)
    write_ann_check(d, "1000", 0.97, 0.9, sweep=ANN_SWEEP)
    write_seed(d, "3000", 3030, 6000)
    write_benchmark(d, "3000", [case("recall_text", [x * 2 for x in RECALL_LAT], {"200": len(RECALL_LAT)}),
                                case("write", [x * 2 for x in WRITE_LAT], {"200": len(WRITE_LAT)})])
    write_ann_check(d, "3000", 0.955, 0.88)
    write_worker(d, WORKER_ITER)
    write_manifest(d)
    return d


@pytest.fixture(scope="module")
def full_report(full_dir: Path):
    return build_report(full_dir)


def _stats_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def _png_ok(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG"
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82"), f"{path.name}: truncated PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert len(data) > 5000, f"{path.name}: suspiciously small ({len(data)} bytes)"
    return width, height


# ------------------------------------------------------------------------------------------ numbers
def test_locust_only_numbers_equal_the_csv(locust_dir: Path, tmp_path: Path) -> None:
    """With only Locust's CSVs, every figure comes from them (bucketed) and says so."""
    d = _copy_csvs(locust_dir, tmp_path / "run")
    proc = run_cli("report", "--dir", str(d), "--no-plots", timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    md = (d / "PERFORMANCE_REPORT_V1.md").read_text()
    stats = _stats_rows(d / "locust_1000_stats.csv")
    with (d / "locust_1000_failures.csv").open(newline="") as fh:
        failures = list(csv.DictReader(fh))
    eps = summary["scales"][0]["endpoints"]
    assert set(eps) == {"recall_text", "write"}  # "write [429]" is the write endpoint's 429 row
    assert set(stats) == {"recall_text", "write", "write [429]", "Aggregated"}
    for name in ("recall_text", "write"):
        rows = [r for n, r in stats.items() if n == name or n.startswith(f"{name} [")]
        row, ep = stats[name], eps[name]
        req = sum(int(r["Request Count"]) for r in rows)
        fail = sum(int(r["Failure Count"]) for r in rows)
        assert req > 20, "the Locust run must have produced traffic"
        assert (ep["requests"], ep["failed"], ep["ok"]) == (req, fail, req - fail)
        assert ep["latency_source"] == "Locust CSV (bucketed)"
        p50, p95, p99 = (int(row[c]) for c in ("50%", "95%", "99%"))  # the main row: no 429 latencies in it
        assert (ep["latency_ms"]["p50"], ep["latency_ms"]["p95"], ep["latency_ms"]["p99"]) == (p50, p95, p99)
        assert ep["rps"] == pytest.approx(sum(float(r["Requests/s"]) for r in rows))
        assert ep["error_rate"] == pytest.approx(fail / req)
        n = int(row["Request Count"])  # the samples behind the main row's percentiles
        assert ep["samples"] == n and ep["p99_low_confidence"] is (n < 1000)
        low = " ⚠ low confidence" if n < 1000 else ""
        assert f"| 1000 | {name} | {req} | {req - fail} | {n:,} | {p50} ms | {p95} ms | {p99} ms{low} |" in md
    n429 = sum(int(f["Occurrences"]) for f in failures if "rate_limited_429" in f["Error"])
    assert n429 > 0 and eps["write"]["errors"]["rate_limited_429"] == n429
    assert n429 == int(stats["write [429]"]["Request Count"])
    assert eps["write"]["failed"] == n429  # the server's only failure is the 429 of every 4th write
    assert f"{n429} of {eps['write']['requests']} requests were 429" in md
    assert summary["primary_bottleneck"]["rule"] == "rate_limit"  # 25 % of writes are 429
    assert "Locust buckets" in md and "windowed (~10 s, --csv-full-history)" in md
    hist_rows = sum(1 for _ in (d / "locust_1000_stats_history.csv").open()) - 1
    assert f"Locust history is windowed (~10 s, --csv-full-history), {hist_rows} rows." in md


def test_full_run_numbers_equal_independent_computation(full_dir: Path, full_report) -> None:
    md = full_report.output.read_text()
    s = full_report.summary()
    assert "{{" not in md and "}}" not in md
    by_scale = {x["scale"]: x for x in s["scales"]}
    assert list(by_scale) == ["1000", "3000"]
    rec = by_scale["1000"]["endpoints"]["recall_text"]
    # exact percentiles: nearest rank over the successful latencies
    exp = [nearest_rank(RECALL_LAT, q) for q in (.5, .95, .99)]
    assert [rec["latency_ms"][k] for k in ("p50", "p95", "p99")] == pytest.approx(exp)
    assert rec["latency_source"] == "exact (suite listener)"
    assert f"- Recall p50/p95/p99: `1000`: {exp[0]:.2f} ms / {exp[1]:.2f} ms / {exp[2]:.2f} ms ⚠ low confidence " \
           f"(recall_text, exact, n={len(RECALL_LAT)})" in md
    wexp = [nearest_rank(WRITE_LAT, q) for q in (.5, .95, .99)]
    assert f"`1000`: {wexp[0]:.2f} ms / {wexp[1]:.2f} ms / {wexp[2]:.2f} ms ⚠ low confidence (write, exact, " \
           f"n={len(WRITE_LAT)})" in md
    # scale 3000 has no exact file: the benchmark JSON's (exact) block is used
    r3 = by_scale["3000"]["endpoints"]["recall_text"]
    assert r3["latency_source"] == "exact (benchmark JSON)"
    assert r3["latency_ms"]["p95"] == pytest.approx(nearest_rank([x * 2 for x in RECALL_LAT], .95))
    # RPS, requests and errors from the benchmark JSON (not from Locust's CSV, which has 429s)
    assert rec["rps"] == 81.25 and "81.2 req/s (recall_text)" in md
    assert by_scale["1000"]["endpoints"]["write"]["failed"] == 0
    # dataset, scope
    assert "`1000`: 1,010 nodes, 2,000 edges" in md and "`3000`: 3,030 nodes, 6,000 edges" in md
    # worker: processed / Σ elapsed, backlog delta = after - before
    processed = sum(p for _, p, _ in WORKER_ITER)
    tput = processed / (sum(e for _, _, e in WORKER_ITER) / 1000)
    assert s["worker"]["throughput_processed_per_sec"] == pytest.approx(tput)
    assert f"- Processed/sec: {tput:.2f} jobs/s" in md
    assert f"- Claimed total: {sum(c for c, _, _ in WORKER_ITER):,}" in md
    assert "- Outbox backlog delta: -480 unpublished (500 → 20; negative = drained)" in md
    # explain: min/avg/max of the Execution Time lines, stage 1 on HNSW
    times = [float(m) for m in re.findall(r"Execution Time: ([\d.]+) ms", EXPLAIN_HNSW)]
    assert f"| 1000 | explain_1000.txt | {len(times)} | {min(times):.2f} ms | {statistics.fmean(times):.2f} ms | " \
           f"{max(times):.2f} ms | yes |" in md
    assert "stage 1 1.25 ms + stage 2 3.75 ms = 5.00 ms" in md
    assert "Index Scan using memory_nodes_p_0a1b2c3d4e5f6a7b_embedding_idx" in md
    # metadata from manifest.json
    for text in ("Branch/commit: main @ abc1234 (manifest.json)", "PostgreSQL version: 18.0 (manifest.json)",
                 "pgvector version: 0.8.5 (manifest.json)", "Test CPU 9000, 2 logical cores, 23.5 GiB RAM",
                 "`shared_buffers=128MB`", "| seed_1000 | 2.5 s | ok |", "Sum of phase times: 9.8 s."):
        assert text in md, text
    # verdict: every check passes, but scale 3000 has no explain file: PARTIAL, never PASS, and it says why
    assert s["slo"]["status"] == "PARTIAL" and "- Pass/Fail against SLO: **PARTIAL**" in md
    assert s["not_measured"] == [{"stage": "explain_3000", "reason": "no explain_3000.txt"}]
    assert "- **explain_3000**: NOT MEASURED — no explain_3000.txt" in md
    assert s["primary_bottleneck"]["rule"] == "none"
    # ANN recall: per scale in the summary table, the sweep of scale 1000 in its section
    assert "| 1000 | perf_1000 | 1,010 | 2,000 | 97.00 % | 90.00 % | 100 | " in md
    assert "| 3000 | perf_3000 | 3,030 | 6,000 | 95.50 % | 88.00 % | 100 | " in md
    assert "| 100 | 97.00 % | 90.00 % | 37.50 ms | 3.50 ms | benchmark, check |" in md
    assert "| 200 | 98.50 % | 95.00 % | 60.12 ms | 6.25 ms | – |" in md
    assert by_scale["3000"]["ann"]["recall_at_k"] == 0.955 and by_scale["3000"]["ann"]["ef_sweep"] == []
    # adaptive: attempts and the live pacing summary
    assert "| 1000 | True | 2 | 1 | False | 12 / 4 / 0 | 6 / 2 / 50 |" in md
    assert "| 1000 | recall | 0 | 20 | 20 | 1 | 240 |" in md


@pytest.mark.parametrize(("message", "category"), [
    ("rate_limited_429", "rate_limited_429"),  # the suite's own messages: "<category>[: status]"
    ("server_5xx: 503", "server_5xx"),
    ("transport: error:RemoteDisconnected", "transport"),
    ("empty_recall: empty_recall", "empty_recall"),
    ("CatchResponseError('server_5xx: 503')", "server_5xx"),  # as Locust's failures CSV stores them
    ("CatchResponseError('client_4xx: 429-like 404')", "client_4xx"),
    ("HTTPError('429 Client Error: Too Many Requests for url: write')", "rate_limited_429"),  # plain HttpUser
    ("HTTPError('500 Server Error: Internal Server Error for url: x')", "server_5xx"),
    ("HTTPError('404 Client Error: Not Found for url: x')", "client_4xx"),
    ("ConnectionRefusedError(111, 'Connection refused')", "transport"),
    ("something odd", "other"),
])
def test_failure_messages_are_classified(message: str, category: str) -> None:
    assert classify_failure_message(message) == category


def test_failure_attribution_top3_shares(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    write_benchmark(d, "500", [case("recall_text", [2.0] * 80, {"200": 80, "429": 12, "503": 5, "error:Timeout": 2,
                                                                "400": 1}),
                               case("write", [3.0] * 40, {"200": 40, "429": 6})])
    result = build_report(d, plots=False)
    md = result.output.read_text()
    failures = {"recall_text 429": 12, "write 429": 6, "recall_text 503": 5, "recall_text error:Timeout": 2,
                "recall_text 400": 1}
    total_fail, total_req = sum(failures.values()), 80 + 12 + 5 + 2 + 1 + 46
    assert f"Scale 500: {total_fail} failed of {total_req} requests." in md
    for rank, (key, n) in enumerate(sorted(failures.items(), key=lambda kv: -kv[1])[:3], start=1):
        assert f"| {rank} | {key} | {n} | {100 * n / total_fail:.2f} % | {100 * n / total_req:.2f} % |" in md
    ep = result.summary()["scales"][0]["endpoints"]["recall_text"]
    assert ep["errors"] == {"rate_limited_429": 12, "client_4xx": 1, "server_5xx": 5, "transport": 2,
                            "empty_recall": 0, "invalid_body": 0, "other": 0}
    assert ep["errors_source"] == "benchmark JSON `by_status`"


# ------------------------------------------------------------------------------------------ plots
def test_every_plot_is_a_valid_png_linked_from_the_report(full_dir: Path, full_report) -> None:
    s = full_report.summary()
    names = sorted(Path(p).name for p in s["plots"])
    assert names == sorted(["latency_over_time_1000.png", "rps_failures_1000.png", "latency_cdf_1000.png",
                            "pace_1000.png", "status_codes.png", "p95_vs_dataset_size.png", "worker_throughput.png"])
    md = full_report.output.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(Path(x).name for x in links) == names
    for link in links:
        assert not Path(link).is_absolute()
        w, h = _png_ok(full_report.output.parent / link)
        assert w >= 600 and h >= 200
    # scale 3000 has no CSVs: its over-time plots are named as not drawn, with the reason
    assert "### p50/p95/p99 over time — scale 3000\n\nNot drawn: no request records and no " \
           "locust_3000_stats_history.csv." in md


def test_report_to_another_output_links_plots_relatively(full_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "R.md"
    result = build_report(full_dir, output=out, slo=SloTargets(recall_p95_ms=1.0))
    md = out.read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out.parent / link).is_file() and link.startswith("plots/")
    assert result.verdict.status == "FAIL"
    assert "1000/recall_text p95 ms" in md and "(target < 1)" in md


# ------------------------------------------------------------------------------------------ robustness
def test_empty_directory_gives_a_report_saying_what_is_missing(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    proc = run_cli("report", "--dir", str(d), timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (d / "PERFORMANCE_REPORT_V1.md").read_text()
    assert "**No per-scale artifacts were found**" in md
    assert "`worker_baseline.json`, `manifest.json`" in md
    assert json.loads(proc.stdout)["slo"]["status"] == "NOT MEASURED"


def test_partial_directory_lists_missing_files(tmp_path: Path) -> None:
    d = tmp_path / "partial"
    d.mkdir()
    write_seed(d, "1000", 1010, 2000)
    (d / "explain_1000.txt").write_text(EXPLAIN_HNSW)
    result = build_report(d, plots=False)
    md = result.output.read_text()
    for name in ("benchmark_1000.json", "locust_1000_stats.csv", "locust_1000_exact.json", "worker_baseline.json",
                 "manifest.json"):
        assert f"`{name}`" in md
    # without manifest.json the versions and session settings come from `memload explain`'s header
    assert "PostgreSQL version: 18.1 (explain_1000.txt header)" in md
    assert "pgvector version: 0.8.5 (explain_1000.txt header)" in md
    # memload's own session settings are shown only for a run that identified memload's reference API as target
    assert "EXPLAIN session" not in md and "hnsw.iterative_scan=relaxed_order" not in md
    assert "Settings of memload's reference API: not shown — the run did not identify its target" in md
    assert "`explain_1000.txt` check: ok: stage 1 uses the HNSW index" in md
    assert "Dataset size: 1,010 nodes, 2,000 edges" in md
    assert "Recall p50/p95/p99: not recorded" in md


def _break(d: Path, name: str, fn) -> None:
    p = d / name
    p.write_text(fn(p.read_text()))


MALFORMED = [
    ("locust_1000_stats.csv", lambda t: t.replace(",95%,", ",95pct,", 1), "column '95%'"),
    ("locust_1000_stats_history.csv", lambda t: t.replace("Total Request Count", "Total Requests", 1),
     "column 'Total Request Count'"),
    ("locust_1000_stats.csv", lambda t: re.sub(r"(\nPOST,recall_text,)\d+", r"\1lots", t, count=1),
     "column 'Request Count' line"),
    ("benchmark_1000.json", lambda t: t.replace('"total": ', '"total": "x", "_": ', 1), "key cases[0].total"),
    ("benchmark_1000.json", lambda t: t[:-3], "invalid JSON"),
    ("locust_1000_exact.json", lambda t: t.replace('"95"', '"95.5"', 1), "percentiles_ms.95: missing"),
    ("worker_baseline.json", lambda t: t.replace('"processed"', '"processd"', 1), "key totals.processed: missing"),
    ("locust_1000_pacing.csv", lambda t: t.replace("pace_ms", "pace", 1), "column 'pace_ms'"),
    ("ann_check_1000.json", lambda t: t.replace('"recall_at_k": 0.97', '"recall_at_k": 97', 1),
     "key recall_at_k: expected a fraction 0..1, got 97"),
    ("ann_check_1000.json", lambda t: t.replace('"recall_at_k": 0.97', '"recall_at_k": "high"', 1),
     "key recall_at_k: expected a number, got 'high'"),
    ("ann_check_1000.json", lambda t: t.replace('"hnsw"', '"hnsw_settings"', 1), "key hnsw: missing"),
    ("ann_check_1000.json", lambda t: t.replace('"ef_search": 200', '"ef_search": 0', 1),
     "key ef_sweep[1].ef_search: expected an integer ≥ 1, got 0"),
    ("ann_check_1000.json", lambda t: t[:-3], "invalid JSON"),
]


@pytest.mark.parametrize(("name", "fn", "expect"), MALFORMED, ids=[f"{m[0]}:{m[2]}" for m in MALFORMED])
def test_malformed_input_names_file_and_column(full_dir: Path, tmp_path: Path, name, fn, expect) -> None:
    d = tmp_path / "bad"
    shutil.copytree(full_dir, d, ignore=shutil.ignore_patterns("plots", "*.md"))
    _break(d, name, fn)
    with pytest.raises(MalformedArtifact) as err:
        build_report(d, plots=False)
    msg = str(err.value)
    assert msg.startswith(f"{name}: ") and expect in msg and "\n" not in msg
    assert not (d / "PERFORMANCE_REPORT_V1.md").exists()


def test_cli_malformed_input_is_one_line_and_exit_1(full_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    shutil.copytree(full_dir, d, ignore=shutil.ignore_patterns("plots", "*.md"))
    _break(d, "locust_1000_stats.csv", lambda t: t.replace(",95%,", ",95pct,", 1))
    proc = run_cli("report", "--dir", str(d), timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert lines == ["memload: error: locust_1000_stats.csv: missing column '95%' (percentile columns are needed)"]


def test_cli_bad_flags_are_refused_naming_the_flag(tmp_path: Path) -> None:
    proc = run_cli("report", "--dir", str(tmp_path / "nope"))
    assert proc.returncode == 64 and "--dir: not a directory" in proc.stderr
    proc = run_cli("report", "--dir", str(tmp_path), "--slo-max-error-rate", "2")
    assert proc.returncode in (2, 64) and "--slo-max-error-rate" in proc.stderr and "out of range" in proc.stderr
    proc = run_cli("report", "--dir", str(tmp_path), env={"SLO_RECALL_P95_MS": "fast"})
    assert proc.returncode in (2, 64) and ("SLO_RECALL_P95_MS" in proc.stderr or "--slo-recall-p95-ms" in proc.stderr)
    assert not (tmp_path / "PERFORMANCE_REPORT_V1.md").exists()


def test_fail_on_slo_exit_code(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    write_benchmark(d, "100", [case("recall_text", [400.0] * 10, {"200": 10})])
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--fail-on-slo", timeout=120)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["slo"]["status"] == "FAIL"
    assert out["primary_bottleneck"]["rule"] == "api_db_latency"
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--slo-recall-p95-ms", "500", "--fail-on-slo",
                   timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["slo"]["status"] == "PARTIAL"
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--slo-recall-p95-ms", "500", "--fail-on-partial",
                   timeout=120)
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False


def test_unknown_template_field_is_named(tmp_path: Path) -> None:
    tpl = tmp_path / "t.md"
    tpl.write_text("# {{ title }}\n{{ recall_latency }} {{ no_such_field }}\n")
    with pytest.raises(TemplateError, match=r"t\.md: unknown field\(s\) no_such_field"):
        build_report(tmp_path, template=tpl, plots=False)
    tpl.write_text("<!-- a {{ field }} in the comment is fine -->\n# {{ title }}\np95: {{ recall_latency }}\n")
    result = build_report(tmp_path, template=tpl, plots=False)
    assert result.output.read_text().startswith("# ")


def test_bench_synthetic_run_is_a_valid_full_history_run(tmp_path: Path) -> None:
    """The benchmark's synthetic one-hour run (here 2 minutes) has Locust's shape and renders every plot."""
    from benchmarks.bench_report import synthesize

    synthesize(tmp_path, seconds=120)
    rows = list(csv.DictReader((tmp_path / "locust_100000_stats_history.csv").open()))
    assert len(rows) == 120 * 4 and {r["Name"] for r in rows} == {"recall_text", "recall", "write", "Aggregated"}
    result = build_report(tmp_path)
    s = result.summary()
    # one scale: the p95-vs-size trend is the one figure without data, and it is named, not drawn empty
    assert len(s["plots"]) == 6 and list(s["plots_skipped"]) == ["p95_vs_size"]
    assert s["scales"][0]["endpoints"]["write"]["server_timing"]["reported"] is True
    assert result.run.scales[0].locust.full_history
    assert s["rules_fired"].keys() == {"server_errors"}  # the synthetic 503s (0.2 %)


# ------------------------------------------------------------------------------------------ plots from the records
@pytest.mark.parametrize("seconds", [2, 60])
def test_latency_and_throughput_plots_from_records_of_any_length(tmp_path: Path, seconds: int) -> None:
    """A 2 s run and a 60 s run (records only, no Locust history) both give drawn latency and throughput plots."""
    d = tmp_path / "run"
    d.mkdir()
    rows = sorted(records(seconds, fail_every=10, endpoints=("recall_text",), rate=40)
                  + records(seconds, endpoints=("write",), rate=15, seed=2))
    write_requests(d, "1000", rows)
    write_benchmark(d, "1000", [case_from_records("recall_text", rows), case_from_records("write", rows)],
                    run={"requests_file": "locust_1000_requests.csv"})
    result = build_report(d)
    drawn = {Path(p).name for p in result.summary()["plots"]}
    assert {"latency_over_time_1000.png", "rps_failures_1000.png"} <= drawn
    lat, rps = d / "plots" / "latency_over_time_1000.png", d / "plots" / "rps_failures_1000.png"
    _png_ok(lat)
    _png_ok(rps)
    for color in ("#1f77b4", "#ff7f0e", "#d62728"):  # p50, p95, p99 lines with their markers
        assert pixels(lat, color) > 150, color
    assert pixels(rps, "#1f77b4") > 150 and pixels(rps, "#ff7f0e") > 150  # recall_text and write req/s
    md = result.output.read_text()
    assert "From `locust_1000_requests.csv`: nearest-rank p50/p95/p99" in md
    assert "failures/s (dashed)" in md


def _write_history(d: Path, prefix: str, seconds: int) -> None:
    """A Locust history of a run shorter than Locust's 10 s window: every Requests/s and percentile is 0."""
    pcts = ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
    head = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", *pcts, "Total Request Count",
            "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
            "Total Min Response Time", "Total Max Response Time", "Total Average Content Size"]
    lines = [",".join(head)]
    for t in range(seconds):
        for typ, name in (("POST", "recall_text"), ("", "Aggregated")):
            lines.append(",".join([str(1_790_000_000 + t), "4", typ, name, "0.000000", "0.000000", *["0"] * 11,
                                   str(100 * (t + 1)), "0", "3", "3.2", "1", "9", "150.0"]))
    (d / f"{prefix}_stats_history.csv").write_text("\n".join(lines) + "\n")


def test_a_figure_without_data_is_a_sentence_not_an_empty_png(tmp_path: Path) -> None:
    """The short run of `make bench` as it was: a history of zeros and a pacing file of zeros. No PNG is drawn for
    them; each is replaced by one sentence saying why, in place."""
    d = tmp_path / "run"
    d.mkdir()
    write_benchmark(d, "1000", [case("recall_text", RECALL_LAT[:200], {"200": 200})])
    _write_history(d, "locust_1000", 2)
    write_pacing(d, "1000", [(1_790_000_000 + t, "recall", 0.0, 0, 40) for t in range(2)])
    result = build_report(d)
    s = result.summary()
    drawn = {Path(p).name for p in s["plots"]}
    assert drawn == {"status_codes.png"}  # the only figure with data
    assert not any((d / "plots" / n).exists() for n in ("latency_over_time_1000.png", "rps_failures_1000.png",
                                                         "pace_1000.png", "p95_vs_dataset_size.png",
                                                         "worker_throughput.png"))
    md = result.output.read_text()
    for title, why in (
            ("p50/p95/p99 over time — scale 1000", "locust_1000_stats_history.csv has no non-zero percentile"),
            ("RPS and failures over time — scale 1000", "locust_1000_stats_history.csv shows 0 req/s in every row"),
            ("Adaptive pace over time — scale 1000", "pacing never engaged: locust_1000_pacing.csv has pace 0 ms "
                                                     "and no 429 in all 2 rows"),
            ("p95 against dataset size across scales", "only one dataset size (1,000) has a p95"),
            ("Worker throughput per iteration", "no worker_baseline.json")):
        assert f"### {title}\n\nNot drawn: {why}" in md, title


def test_status_codes_plot_is_not_mostly_whitespace(full_dir: Path, full_report) -> None:
    import matplotlib.image as mpimg

    img = mpimg.imread(full_report.output.parent / "plots" / "status_codes.png")[:, :, :3]
    _, h = _png_ok(full_report.output.parent / "plots" / "status_codes.png")
    assert h <= 0.42 * 4 * 100 + 145 + 1  # 4 bars: height follows the rows, no fixed blank area
    inked = (img.min(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert inked > 0.30, f"{inked:.2%} of the figure carries ink"


# ------------------------------------------------------------------------------------------ sample counts
@pytest.mark.parametrize(("samples", "low"), [(999, True), (1000, False)])
def test_p99_from_fewer_than_1000_samples_is_marked_low_confidence(tmp_path: Path, samples: int, low: bool) -> None:
    d = tmp_path / "run"
    d.mkdir()
    lat = [2.0 + (i % 97) * 0.01 for i in range(samples)]
    c = case("recall_text", lat, {"200": samples})
    c["samples"] = samples
    write_benchmark(d, "1000", [c])
    result = build_report(d, plots=False)
    md = result.output.read_text()
    ep = result.summary()["scales"][0]["endpoints"]["recall_text"]
    assert ep["samples"] == samples and ep["p99_low_confidence"] is low
    p99 = f"{nearest_rank(lat, .99):.2f} ms" + (" ⚠ low confidence" if low else "")
    assert f"| 1000 | recall_text | {samples} | {samples} | {samples:,} | " in md
    assert f" | {p99} | " in md
    assert ("p99 rests on 999 samples (< 1,000)" in md) is low  # and a recommendation says what to do


def test_samples_fall_back_to_ok_and_say_so(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    write_benchmark(d, "1000", [case("recall_text", [3.0] * 40, {"200": 40, "429": 2})])  # no `samples` key
    ep = build_report(d, plots=False).summary()["scales"][0]["endpoints"]["recall_text"]
    assert (ep["samples"], ep["samples_source"]) == (40, "benchmark JSON `ok` (no `samples`)")


# ------------------------------------------------------------------------------------------ target, stages, verdict
def _clean_run(d: Path, *, worker: bool = True, explain: str | None = EXPLAIN_HNSW, ann: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    write_seed(d, "1000", 1010, 2000)
    if ann:
        write_ann_check(d, "1000", 0.97, 0.9)
    write_benchmark(d, "1000", [case("recall_text", RECALL_LAT, {"200": len(RECALL_LAT)}),
                                case("write", WRITE_LAT, {"200": len(WRITE_LAT)})])
    if explain is not None:
        (d / "explain_1000.txt").write_text(explain)
    if worker:
        write_worker(d, WORKER_ITER)
    return d


def test_external_target_is_named_and_never_credited_with_memloads_settings(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run", explain="-- memload explain: memload reference SQL (not the target's own "
                                             "queries)\n" + EXPLAIN_HNSW)
    write_target_manifest(d, "external", base_url="http://127.0.0.1:3999",
                          health={"ok": True, "service": "aionis-memory", "version": "0.1.4"},
                          headers={"server": "uvicorn", "x-powered-by": "aionis"})
    result = build_report(d, plots=False)
    md = result.output.read_text()
    for observed in ("- Base URL: http://127.0.0.1:3999 (manifest.json)", "- Kind: external server",
                     '`/health`: HTTP 200, `{"ok": true, "service": "aionis-memory", "version": "0.1.4"}`',
                     "`server: uvicorn`, `x-powered-by: aionis`"):
        assert observed in md, observed
    for own in ("hnsw_iterative_scan", "db_pool_max", "api_workers", "EXPLAIN session", "in_process worker as"):
        assert own not in md, own
    # memload's in-process worker and memload's reference SQL are not the target's: NOT MEASURED, never credited
    s = result.summary()
    stages = {n["stage"]: n["reason"] for n in s["not_measured"]}
    assert "memload's own in-process worker ran, not the target's" in stages["worker"]
    assert "memload's reference SQL, not the target's own queries" in stages["explain_1000"]
    worker_check = next(c for c in s["slo"]["checks"] if c["subject"] == "worker")
    assert worker_check["status"] == "not measured"
    assert s["slo"]["status"] == "PARTIAL"
    assert "**NOT MEASURED for the target**" in md
    assert "- Stage-1 uses the HNSW index: NOT MEASURED for the target — explained memload's reference SQL" in md
    assert s["target"] == {"kind": "external", "base_url": "http://127.0.0.1:3999"}


def test_reference_target_shows_its_settings(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run")
    write_target_manifest(d, "reference", base_url="http://127.0.0.1:3001",
                          health={"ok": True, "server": "memload-reference", "version": "1.0"},
                          headers={"x-memload-api": "1.0"})
    result = build_report(d, plots=False)
    md = result.output.read_text()
    assert "- Kind: memload's reference API" in md and "`db_pool_max=16`" in md
    assert result.summary()["slo"]["status"] == "PASS" and "Every stage ran." in md


@pytest.mark.parametrize("manifest", [False, True])
def test_missing_worker_stage_makes_the_verdict_partial_with_its_reason(tmp_path: Path, manifest: bool) -> None:
    d = _clean_run(tmp_path / "run", worker=False)
    reason = "no worker_baseline.json"
    if manifest:
        reason = "failed: worker-bench exited 1 (set WORKER_COMMAND)"
        write_target_manifest(d, "reference", failed_phases=[  # the matrix lists a failed phase in both lists
            {"name": "worker_benchmark", "reason": "worker-bench exited 1", "hint": "set WORKER_COMMAND"}],
            not_measured=[{"stage": "worker_benchmark", "reason": "worker_benchmark failed: worker-bench exited 1"}])
    result = build_report(d, plots=False)
    s = result.summary()
    assert s["slo"]["status"] == "PARTIAL"
    nm = s["not_measured"]
    assert len(nm) == 1 and nm[0]["stage"] in ("worker", "worker_benchmark") and nm[0]["reason"] == reason
    md = result.output.read_text()
    assert f"NOT MEASURED — {reason}" in md and "- Pass/Fail against SLO: **PARTIAL**" in md


def test_empty_seed_json_renders_with_seed_not_measured(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run")
    (d / "seed_1000.json").write_text("")
    proc = run_cli("report", "--dir", str(d), "--no-plots", timeout=120)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["slo"]["status"] == "PARTIAL"
    assert s["not_measured"] == [{"stage": "seed_1000", "reason": "seed failed: seed_1000.json is empty: the seed "
                                                                   "failed before writing its result"}]
    md = (d / "PERFORMANCE_REPORT_V1.md").read_text()
    assert "Dataset size: NOT MEASURED (seed failed: seed_1000.json is empty" in md
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--fail-on-partial", timeout=120)
    assert proc.returncode == 1


def test_empty_benchmark_and_worker_files_are_stages_that_failed(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run")
    (d / "benchmark_1000.json").write_text("")
    (d / "worker_baseline.json").write_text("\n")
    (d / "ann_check_1000.json").write_text("")
    s = build_report(d, plots=False).summary()
    assert s["slo"]["status"] == "NOT MEASURED"
    assert {n["stage"]: n["reason"] for n in s["not_measured"]} == {
        "ann_check_1000": "ANN recall check failed: ann_check_1000.json is empty: the check failed before writing "
                          "its result",
        "benchmark_1000": "benchmark failed: benchmark_1000.json is empty: the stage failed before writing its result",
        "worker": "worker benchmark failed: worker_baseline.json is empty: the stage failed before writing its result"}


def test_a_run_that_measured_nothing_gives_no_advice(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    write_target_manifest(d, "external", failed_phases=[
        {"name": "seed_1000", "reason": "Connection refused", "hint": "check BASE_URL"}],
        not_measured=[{"stage": "benchmark_1000", "reason": "seed failed"}])
    md = build_report(d, plots=False).output.read_text()
    assert "raise the offered load" not in md and "find the knee" not in md
    assert "- Next tuning action: none follows from this run (nothing was measured)" in md
    assert "- **seed_1000**: NOT MEASURED — failed: Connection refused (check BASE_URL)" in md
    assert "- **benchmark_1000**: NOT MEASURED — seed failed" in md
    assert "- **worker**: NOT MEASURED — no worker_baseline.json" in md
    assert "_None: nothing in this run's numbers calls for one._" in md


def test_recommendations_follow_from_the_numbers_and_never_repeat_pass(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "clean")
    write_target_manifest(d, "reference")
    big = [2.0 + (i % 50) * 0.01 for i in range(1200)]
    write_benchmark(d, "1000", [dict(case("recall_text", big, {"200": 1200}), samples=1200),
                                dict(case("write", big, {"200": 1200}), samples=1200)])
    result = build_report(d, plots=False)
    assert result.verdict.status == "PASS"
    md = result.output.read_text()
    recs = md.split("## Recommendations", 1)[1].split("##", 1)[0]
    assert recs.strip() == "_None: nothing in this run's numbers calls for one._"
    assert "PASS" not in recs and "meets the SLO" not in recs
    d2 = _clean_run(tmp_path / "limited")
    write_benchmark(d2, "1000", [case("recall_text", RECALL_LAT[:300], {"200": 300, "429": 100})])
    recs = build_report(d2, plots=False).output.read_text().split("## Recommendations", 1)[1].split("##", 1)[0]
    assert "rate limiter (429-dominated run) — scale 1000, recall_text: 100 of 400 requests were 429" in recs
    assert "p99 rests on 300 samples" in recs


# ------------------------------------------------------------------------------------------ pacing, worker, timing
def test_pacing_last_requests_come_from_the_last_attempt(tmp_path: Path) -> None:
    """With AUTO_ADAPT_RATE_LIMIT off the matrix leaves `final.last_*` at 0 whatever ran; the table counts the
    last attempt's requests from its benchmark file instead of printing 0 after 300 requests."""
    d = _clean_run(tmp_path / "run")
    write_benchmark(d, "1000", [case("recall_text", RECALL_LAT[:190], {"200": 190, "429": 10}),
                                case("write", WRITE_LAT[:100], {"200": 100})])
    write_json(d / "benchmark_adapt_1000.json", {
        "scale": "1000", "auto_adapt": False, "max_rate_limit_retries": 4, "retries_used": 0, "attempts_total": 1,
        "exhausted": False, "initial": {"recall_concurrency": 12, "write_concurrency": 4, "pace_ms": 0},
        "final": {"recall_concurrency": 12, "write_concurrency": 4, "pace_ms": 0, "last_429": 0,
                  "last_total_requests": 0, "last_allowed_429": 0, "last_429_rate": 0}})
    md = build_report(d, plots=False).output.read_text()
    assert "| 1000 | False | 1 | 0 | False | 12 / 4 / 0 | 12 / 4 / 0 | 10 | 300 | 3.33 % |" in md


def test_worker_section_states_unit_scope_mode_and_job_types(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run", worker=False)
    write_worker(d, [(800, 800, 1000.0), (174, 174, 1000.0), (80, 80, 1000.0)], before=1054, after=120,
                 scope="default", scope_nodes=120, mode="command",
                 job_types=[{"embed_nodes": 800}, {"topic_cluster": 120, "embed_nodes": 54}, {"topic_cluster": 80}],
                 enqueued={"topic_cluster": 120})
    result = build_report(d)
    md = result.output.read_text()
    section = md.split("## Worker Throughput", 1)[1].split("## Planner Notes", 1)[0]
    assert "- Worker measured: the worker command given with `--worker-command`" in section
    assert "- Scope: `default` (120 nodes at start); not the benchmark's scope `perf_1000`" in section
    assert section.count("one outbox row is one job") == 1 and "rows/s" not in section and "nodes/s" not in section
    assert "- 1,054 jobs handled = 934 drained from the backlog + 120 enqueued during the run (topic_cluster 120)" \
        in section
    assert "| 2 | 174 | 174 | 0 | 1,000.0 | 174.00 | topic_cluster 120, embed_nodes 54 |" in section
    assert "a change of mix is not a degradation" in section
    assert (d / "plots" / "worker_throughput.png").is_file()


def test_server_time_split_or_the_sentence_that_it_is_not_reported(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    rows = records(3, server_timing=True, endpoints=("recall_text",)) + \
        records(3, server_timing=False, endpoints=("write",))
    write_requests(d, "1000", rows)
    write_benchmark(d, "1000", [case_from_records("recall_text", rows), case_from_records("write", rows)])
    result = build_report(d, plots=False)
    md = result.output.read_text()
    ok = sorted(r for r in rows if r[1] == "recall_text")
    client = [r[2] for r in ok]
    server = [r[5] for r in ok]
    db = [r[6] for r in ok]
    expect = [f"{nearest_rank(v, .5):.2f}/{nearest_rank(v, .95):.2f}/{nearest_rank(v, .99):.2f}"
              for v in (client, server, db)]
    outside = statistics.fmean(client) - statistics.fmean(server)
    assert f"| 1000 | recall_text | {len(ok):,} | {expect[0]} | {expect[1]} | {expect[2]} | {outside:.2f} ms | " \
           "request records |" in md
    assert "The target does not report `Server-Timing` (no response carried it) for 1000/write" in md
    st = result.summary()["scales"][0]["endpoints"]["write"]["server_timing"]
    assert st["reported"] is False


# ------------------------------------------------------------------------------------------ ANN recall
def _section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.S | re.M)
    assert m, f"no section {title!r}"
    return m.group(1)


def _recall_run(d: Path, **ann) -> Path:
    _clean_run(d, ann=False)
    write_target_manifest(d, "reference")
    write_ann_check(d, "1000", **ann)
    return d


def test_ann_recall_names_the_plan_and_says_when_no_index_was_scanned(tmp_path: Path) -> None:
    """A small scope can be sorted whole instead of scanned through HNSW: recall is then exact by construction, and
    the report must not let it pass for the index's."""
    md = build_report(_recall_run(tmp_path / "seq", recall=1.0, index_used=None), plots=False).output.read_text()
    assert "Plan: **no index**" in _section(md, "ANN Recall")
    md = build_report(_recall_run(tmp_path / "hnsw", recall=0.97, index_used="memory_nodes_p_x_ready_hot_warm_hnsw"),
                      plots=False).output.read_text()
    ann = _section(md, "ANN Recall")
    assert "Plan: index `memory_nodes_p_x_ready_hot_warm_hnsw`" in ann and "no index" not in ann


def test_ann_recall_is_shown_per_scale_and_passes(tmp_path: Path) -> None:
    sweep = [(100, 0.93, 0.9, 37.5, 3.5, 0.97), (200, 0.96, 0.95, 60.125, 6.25, 0.985)]
    d = _recall_run(tmp_path / "run", recall=0.93, recall_distance=0.97, index_recall=0.9, sweep=sweep)
    result = build_report(d, plots=False)
    md = result.output.read_text()
    assert result.verdict.status == "PASS" and "- Pass/Fail against SLO: **PASS**" in md
    summary = _section(md, "Summary Table")
    assert "| scale | scope | nodes | edges | recall@10 (recall path) | index recall@10 | ef_search used | " \
           "recall p95 |" in summary
    assert "| 1000 | perf_1000 | 1,010 | 2,000 | 97.00 % | 90.00 % | 100 | " in summary and "↑ raised" not in summary
    assert "- Recall@k of the recall path ≥ 95.00 %" in md
    assert "| 1000 | ann | recall@10 of the recall path | 97.00 % | >= 95.00 % | PASS | ann_check_1000.json " \
           "`recall_at_k_distance` at hnsw.ef_search 100 |" in md
    ann = _section(md, "ANN Recall")
    assert ann.lstrip().startswith(
        "- Scale 1000 (`ann_check_1000.json`): recall@10 of the recall path **97.00 %** (ties counted; 93.00 % with "
        "the same ids) at hnsw.ef_search 100 (the benchmark's); bare index (`LIMIT 10`) 90.00 % — PASS against "
        "≥ 95.00 %\n")
    assert "100 sampled queries over 1,010 vectors; halfvec index; exact top-10 by numpy; the recall path reads 150 " \
           "candidates for a limit of 30; hnsw.iterative_scan relaxed_order; hnsw.max_scan_tuples 20,000" in ann
    assert "| ef_search | recall@10 (recall path, ties counted) | recall@10 (recall path, same ids) | " \
           "index recall@10 | recall path mean | index mean | used by |" in ann
    assert "| 100 | 97.00 % | 93.00 % | 90.00 % | 37.50 ms | 3.50 ms | benchmark, check |" in ann
    assert "| 200 | 98.50 % | 96.00 % | 95.00 % | 60.12 ms | 6.25 ms | – |" in ann
    s = result.summary()["scales"][0]["ann"]
    assert (s["recall_at_k"], s["recall_figure"], s["recall_at_k_ids"], s["index_recall_at_k"], s["ef_search_used"],
            s["ef_search_raised"]) == (0.97, "recall_at_k_distance", 0.93, 0.9, 100, False)
    assert [r["ef_search"] for r in s["ef_sweep"]] == [100, 200]
    assert "Every stage ran." in md and "Recall@k** (`ann_check_<scale>.json`" in md


def test_ann_section_without_a_sweep_draws_no_table(tmp_path: Path) -> None:
    md = build_report(_recall_run(tmp_path / "run", recall=0.97), plots=False).output.read_text()
    ann = _section(md, "ANN Recall")
    assert "recall@10 of the recall path **97.00 %**" in ann
    assert "|" not in ann and "_none_" not in ann and "sweep" not in ann


def test_recall_below_target_fails_the_slo_naming_the_check(tmp_path: Path) -> None:
    sweep = [(100, 0.9, 0.85, 37.5, 3.5), (200, 0.96, 0.93, 60.1, 6.2)]
    d = _recall_run(tmp_path / "run", recall=0.9, index_recall=0.85, sweep=sweep)
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--fail-on-slo", timeout=120)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["slo"]["status"] == "FAIL" and out["scales"][0]["slo"] == "FAIL"
    assert out["primary_bottleneck"]["rule"] == "ann_recall"
    assert out["primary_bottleneck"]["next_action"].startswith("raise hnsw.ef_search to 200 (HNSW_EF_SEARCH): the "
                                                               "sweep reached the target at ef_search 200")
    md = (d / "PERFORMANCE_REPORT_V1.md").read_text()
    assert "- Pass/Fail against SLO: **FAIL** — failing: 1000/ann recall@10 of the recall path 90.00 % (target >= " \
           "95.00 %)" in md
    assert "| 1000 | perf_1000 | 1,010 | 2,000 | 90.00 % | 85.00 % | 100 | " in md
    # the same run against a minimum of 0.90 (inclusive) passes, from the flag and from the environment
    proc = run_cli("report", "--dir", str(d), "--no-plots", "--fail-on-slo", "--slo-min-recall", "0.9", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["slo"]["status"] == "PASS"
    assert "- Recall@k of the recall path ≥ 90.00 %" in (d / "PERFORMANCE_REPORT_V1.md").read_text()
    proc = run_cli("report", "--dir", str(d), "--no-plots", env={"SLO_MIN_RECALL": "0.9"}, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["slo"]["status"] == "PASS"
    proc = run_cli("report", "--dir", str(d), "--slo-min-recall", "1.5")
    assert proc.returncode in (2, 64) and "--slo-min-recall" in proc.stderr and "out of range" in proc.stderr


def test_raised_ef_search_uses_its_sweep_row_and_is_marked(tmp_path: Path) -> None:
    """The matrix raised the API's ef_search from 100 to 200 before the benchmark: recall is the sweep's at 200."""
    sweep = [(100, 0.9, 0.85, 37.5, 3.5), (200, 0.96, 0.93, 60.1, 6.2), (400, 0.99, 0.97, 95.0, 9.0)]
    d = _recall_run(tmp_path / "run", recall=0.9, index_recall=0.85, sweep=sweep, ef_search_used=200, tuned=True)
    result = build_report(d, plots=False)
    md = result.output.read_text()
    assert result.verdict.status == "PASS"
    assert "| 1000 | perf_1000 | 1,010 | 2,000 | 96.00 % | 93.00 % | 200 ↑ raised from 100 | " in md
    ann = _section(md, "ANN Recall")
    assert "recall@10 of the recall path **96.00 %** at hnsw.ef_search 200 (the benchmark's)" in ann
    assert "  - ↑ raised: the matrix raised hnsw.ef_search from 100 to 200 before the benchmark (recall@10 90.00 % " \
           "at 100, 96.00 % at 200)" in ann
    assert "| 100 | 90.00 % | 85.00 % | 37.50 ms | 3.50 ms | check |" in ann
    assert "| 200 | 96.00 % | 93.00 % | 60.10 ms | 6.20 ms | benchmark |" in ann
    recs = _section(md, "Recommendations")
    assert "- scale 1000: the matrix raised hnsw.ef_search from 100 to 200 before the benchmark" in recs
    s = result.summary()["scales"][0]["ann"]
    assert (s["recall_at_k"], s["recall_at_k_measured"], s["ef_search_measured"], s["ef_search_used"],
            s["ef_search_raised"], s["ef_search_tuned"]) == (0.96, 0.9, 100, 200, True, True)


def test_missing_ann_check_is_not_measured_and_partial(tmp_path: Path) -> None:
    d = _clean_run(tmp_path / "run", ann=False)
    write_target_manifest(d, "reference")
    result = build_report(d, plots=False)
    md = result.output.read_text()
    s = result.summary()
    assert s["slo"]["status"] == "PARTIAL" and "- Pass/Fail against SLO: **PARTIAL**" in md
    assert s["not_measured"] == [{"stage": "ann_check_1000", "reason": "no ann_check_1000.json"}]
    assert "- **ann_check_1000**: NOT MEASURED — no ann_check_1000.json" in md
    assert "not measured: 1000/ann recall@k of the recall path" in md
    assert "| 1000 | perf_1000 | 1,010 | 2,000 | NOT MEASURED | – | – | " in md
    assert "- Scale 1000: NOT MEASURED — no ann_check_1000.json" in _section(md, "ANN Recall")
    assert "`ann_check_1000.json`" in _section(md, "Inputs") and s["scales"][0]["ann"] is None
    # a run configured without the check names the variable
    doc = json.loads((d / "manifest.json").read_text())
    doc["config"]["RUN_ANN_CHECK"] = False
    write_json(d / "manifest.json", doc)
    result = build_report(d, plots=False)
    md = result.output.read_text()
    assert result.verdict.status == "PARTIAL"
    assert "- **ann_check_1000**: NOT MEASURED — not run: RUN_ANN_CHECK=False" in md
    assert "`ann_check_1000.json` (not run: RUN_ANN_CHECK=False)" in md
