"""Each bottleneck rule fires on a run built to trigger it and not otherwise; the SLO rule's boundaries are exact.

Every case writes a real run directory (the ARTIFACTS.md formats) and goes through the same loading as the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import rules as R
from analysis.metrics import collect_run
from tests.support.report_fixtures import (
    EXPLAIN_HNSW,
    EXPLAIN_SEQSCAN,
    EXPLAIN_SHORT,
    case,
    write_ann_check,
    write_benchmark,
    write_json,
    write_manifest,
    write_seed,
    write_worker,
)

FAST_RECALL = [4.0 + 0.01 * i for i in range(100)]
FAST_WRITE = [9.0 + 0.02 * i for i in range(50)]
GOOD_WORKER = [(100, 100, 800.0), (100, 100, 800.0)]  # 125 jobs/s


def run_dir(tmp_path: Path, *, recall: dict | None = None, write: dict | None = None,
            explain: str | None = EXPLAIN_HNSW, worker: list[tuple[int, int, float]] | None = GOOD_WORKER,
            worker_failed: int = 0, ann: dict | None = None, ann_file: bool = True) -> Path:
    """A clean run (fast, no errors, HNSW, recall@10 97 %, worker above SLO) unless a part is overridden; `ann` are
    write_ann_check's keyword arguments."""
    d = tmp_path / "run"
    d.mkdir(parents=True)
    write_seed(d, "1000", 1010, 2000)
    if ann_file:
        write_ann_check(d, "1000", **(ann or {}))
    cases = [recall if recall is not None else case("recall_text", FAST_RECALL, {"200": 100}),
             write if write is not None else case("write", FAST_WRITE, {"200": 50})]
    write_benchmark(d, "1000", cases)
    if explain is not None:
        (d / "explain_1000.txt").write_text(explain)
    if worker is not None:
        write_worker(d, worker, failed_marked=worker_failed)
    return d


def diagnose(d: Path, slo: R.SloTargets | None = None) -> tuple[R.Diagnosis, R.SloVerdict]:
    run = collect_run(d)
    slo = slo or R.SloTargets()
    return R.diagnose(run, slo), R.evaluate_slo(run, slo)


def fired(d: Path) -> set[str]:
    return {r.id for r in diagnose(d)[0].fired}


def test_rules_are_data_listed_in_order() -> None:
    ids = [r.id for r in R.RULES]
    assert ids == ["rate_limit", "transport", "server_errors", "client_errors", "ann_starvation", "ann_recall",
                   "index_planner", "generator", "api_db_latency", "rate_limit_minor", "worker", "cache_warming",
                   "buffer_cache", "cpu_growth"]
    assert all(r.condition and r.action and r.bottleneck for r in R.RULES)


def test_clean_run_fires_nothing_and_passes(tmp_path: Path) -> None:
    diag, verdict = diagnose(run_dir(tmp_path))
    assert diag.fired == [] and diag.primary.id == "none"
    assert verdict.status == "PASS"


@pytest.mark.parametrize(("statuses", "expected"), [
    ({"200": 95, "429": 5}, {"rate_limit"}),  # 5.0 % = threshold: fires
    ({"200": 96, "429": 4}, {"rate_limit_minor"}),  # 4 %: latency is evidence, but the error-rate SLO fails
])
def test_rate_limit_rule_threshold(tmp_path: Path, statuses: dict, expected: set) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL[:95], statuses))
    diag, verdict = diagnose(d)
    assert {r.id for r in diag.fired} == expected
    assert verdict.status == "FAIL"  # any 429 is a failed request against max error rate 0
    if expected == {"rate_limit"}:
        assert "5 of 100 requests were 429 (5.00 % ≥ 5.00 %)" in diag.primary_finding.evidence


def test_rate_limit_minor_only_when_the_error_slo_fails(tmp_path: Path) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL[:96], {"200": 96, "429": 4}))
    diag, verdict = diagnose(d, R.SloTargets(max_error_rate=0.04))
    assert diag.fired == [] and verdict.status == "PASS"


@pytest.mark.parametrize(("statuses", "rule"), [
    ({"200": 99, "error:ConnectError": 1}, "transport"),
    ({"200": 99, "503": 1}, "server_errors"),
    ({"200": 99, "400": 1}, "client_errors"),
    ({"200": 99, "invalid_body": 1}, "client_errors"),
    ({"200": 98, "empty_recall": 2}, "ann_starvation"),
])
def test_error_category_rules_fire_alone(tmp_path: Path, statuses: dict, rule: str) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL[:98], statuses))
    assert fired(d) == {rule}


def test_extended_errors_object_wins_over_by_status(tmp_path: Path) -> None:
    errors = {"rate_limited_429": 0, "client_4xx": 0, "server_5xx": 0, "transport": 0, "empty_recall": 3,
              "invalid_body": 0}
    # by_status alone would say 5xx; the suite's `errors` object classifies the same 3 responses as empty recalls
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL, {"200": 97, "503": 3}, errors=errors))
    assert fired(d) == {"ann_starvation"}


def test_ann_starvation_from_explain_short_result(tmp_path: Path) -> None:
    diag, _ = diagnose(run_dir(tmp_path, explain=EXPLAIN_SHORT))
    assert {r.id for r in diag.fired} == {"ann_starvation"}
    assert "returned 40 rows for a LIMIT of 150" in diag.primary_finding.evidence


def test_index_planner_fires_on_seq_scan_only(tmp_path: Path) -> None:
    diag, _ = diagnose(run_dir(tmp_path, explain=EXPLAIN_SEQSCAN))
    assert {r.id for r in diag.fired} == {"index_planner"}
    assert "Seq Scan on memory_nodes_p_0a1b2c3d4e5f6a7b" in diag.primary_finding.evidence


@pytest.mark.parametrize(("ready", "required", "expected"), [(1050, 5000, set()), (20000, 5000, {"index_planner"})])
def test_index_planner_respects_the_explain_threshold(tmp_path: Path, ready: int, required: int,
                                                      expected: set) -> None:
    """`memload explain` states below how many vectors a seq scan is the right plan; the rule honours it."""
    header = (f"-- server: PostgreSQL 18.4, pgvector 0.8.5\n-- ready hot/warm vectors: {ready} (HNSW required from "
              f"{required})\n-- check: ok: stage 1 did not use an HNSW index\n\n")
    assert fired(run_dir(tmp_path, explain=header + EXPLAIN_SEQSCAN)) == expected


def test_index_planner_silent_without_explain(tmp_path: Path) -> None:
    assert fired(run_dir(tmp_path, explain=None)) == set()


@pytest.mark.parametrize(("open_model", "expected"), [
    ({"intended": 1000, "late": 5, "dropped": 0}, set()),  # 0.5 % late: below 1 %
    ({"intended": 1000, "late": 20, "dropped": 0}, {"generator"}),
    ({"intended": 1000, "late": 0, "dropped": 1}, {"generator"}),
])
def test_generator_rule(tmp_path: Path, open_model: dict, expected: set) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL, {"200": 100}, open_model=open_model))
    assert fired(d) == expected


def test_api_db_latency_fires_over_slo_without_429(tmp_path: Path) -> None:
    diag, verdict = diagnose(run_dir(tmp_path, recall=case("recall_text", [400.0] * 100, {"200": 100})))
    assert {r.id for r in diag.fired} == {"api_db_latency"}
    f = diag.primary_finding
    assert "p95 400.00 ms ≥ target 300 ms" in f.evidence
    assert "EXPLAIN stage1+stage2 execution 5.00 ms = 1.25 % of p95" in f.evidence
    assert "outside the two recall queries" in diag.next_action
    assert verdict.status == "FAIL"


def test_api_db_latency_uses_server_timing_and_db_share(tmp_path: Path) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", [8.0] * 100, {"200": 100},
                                      server_timing_ms={"db": 6.5, "app": 1.0}))
    diag, _ = diagnose(d, R.SloTargets(recall_p95_ms=8.0))  # p95 8.0 is not strictly below 8.0
    f = diag.findings["api_db_latency"][0]
    assert "Server-Timing: db 6.50 ms, app 1.00 ms" in f.evidence and "`db`" in diag.next_action
    diag, _ = diagnose(run_dir(tmp_path / "x", recall=case("recall_text", [8.0] * 100, {"200": 100})),
                       R.SloTargets(recall_p95_ms=8.0))
    assert "= 62.50 % of p95" in diag.primary_finding.evidence  # 5 ms of 8 ms: database-dominated
    assert diag.next_action.startswith("database-dominated")


def test_api_db_latency_not_evidence_when_429_dominated(tmp_path: Path) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", [400.0] * 90, {"200": 90, "429": 10}))
    diag, verdict = diagnose(d)
    assert {r.id for r in diag.fired} == {"rate_limit"}
    note = next(c.note for c in verdict.checks if c.subject == "recall_text" and c.metric == "p95 ms")
    assert "not evidence" in note


@pytest.mark.parametrize(("iters", "expected"), [
    ([(40, 40, 1000.0)], {"worker"}),  # 40 jobs/s
    ([(50, 50, 1000.0)], {"worker"}),  # exactly 50: the SLO is strictly above
    ([(5001, 5001, 100000.0)], set()),  # 50.01 jobs/s
])
def test_worker_rule(tmp_path: Path, iters: list, expected: set) -> None:
    assert fired(run_dir(tmp_path, worker=iters)) == expected


def test_worker_on_an_empty_outbox_is_not_measured(tmp_path: Path) -> None:
    diag, verdict = diagnose(run_dir(tmp_path, worker=[(0, 0, 10.0)]))
    assert diag.fired == []
    check = next(c for c in verdict.checks if c.subject == "worker")
    assert check.status == "not measured" and "no jobs to claim" in check.note
    assert verdict.status == "PARTIAL"


def test_worker_rule_action_names_the_cause(tmp_path: Path) -> None:
    diag, _ = diagnose(run_dir(tmp_path, worker=[(30, 20, 1000.0)], worker_failed=10))
    assert diag.primary.id == "worker" and "failing" in diag.next_action


def test_primary_is_the_first_rule_in_order(tmp_path: Path) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL[:80], {"200": 80, "429": 15, "503": 5}),
                worker=[(10, 10, 1000.0)], explain=EXPLAIN_SEQSCAN)
    diag, _ = diagnose(d)
    assert [r.id for r in diag.fired] == ["rate_limit", "server_errors", "index_planner", "worker"]
    assert diag.primary.id == "rate_limit"


@pytest.mark.parametrize(("lat", "status"), [(300.0, "fail"), (299.99, "pass")])
def test_slo_p95_strictly_below_target(tmp_path: Path, lat: float, status: str) -> None:
    _, verdict = diagnose(run_dir(tmp_path, recall=case("recall_text", [lat] * 100, {"200": 100})))
    check = next(c for c in verdict.checks if c.subject == "recall_text" and c.metric == "p95 ms")
    assert check.status == status


def test_slo_error_rate_at_max_passes(tmp_path: Path) -> None:
    d = run_dir(tmp_path, recall=case("recall_text", FAST_RECALL[:98], {"200": 98, "503": 2}))
    _, verdict = diagnose(d, R.SloTargets(max_error_rate=0.02))
    check = next(c for c in verdict.checks if c.subject == "recall_text" and c.metric == "error rate")
    assert check.value == pytest.approx(0.02) and check.status == "pass"
    _, verdict = diagnose(d, R.SloTargets(max_error_rate=0.0199))
    assert verdict.status == "FAIL"


def test_partial_when_worker_not_measured(tmp_path: Path) -> None:
    _, verdict = diagnose(run_dir(tmp_path, worker=None))
    assert verdict.status == "PARTIAL"


def test_write_429_flag_in_recommendations(tmp_path: Path) -> None:
    d = run_dir(tmp_path, write=case("write", FAST_WRITE[:40], {"200": 40, "429": 6, "500": 4}))
    run = collect_run(d)
    diag = R.diagnose(run, R.SloTargets())
    recs = R.recommendations(run, R.evaluate_slo(run, R.SloTargets()), diag)
    flags = [r.text for r in recs if r.status == "flag"]
    assert any("6 of 10 write failures are 429" in t for t in flags)
    d2 = run_dir(tmp_path / "b", write=case("write", FAST_WRITE[:40], {"200": 40, "429": 4, "500": 6}))
    run2 = collect_run(d2)
    recs2 = R.recommendations(run2, R.evaluate_slo(run2, R.SloTargets()), R.diagnose(run2, R.SloTargets()))
    assert not any("write failures are 429" in r.text for r in recs2)


# ------------------------------------------------------------------------------------------ ANN recall
SWEEP = [(100, 0.90, 0.85, 37.5, 3.5), (200, 0.96, 0.93, 60.1, 6.2), (400, 0.99, 0.97, 95.0, 9.0)]


def _recall_check(verdict: R.SloVerdict) -> R.SloCheck:
    (check,) = [c for c in verdict.checks if c.subject == "ann"]
    return check


def test_clean_run_has_a_passing_recall_check(tmp_path: Path) -> None:
    _, verdict = diagnose(run_dir(tmp_path))
    check = _recall_check(verdict)
    assert (check.scale, check.metric, check.value, check.target, check.op, check.status) == (
        "1000", "recall@10 of the recall path", 0.97, 0.95, ">=", "pass")
    assert check.note == "ann_check_1000.json `recall_at_k_distance` at hnsw.ef_search 100"


@pytest.mark.parametrize(("recall", "status", "verdict_status"), [
    (0.95, "pass", "PASS"),  # at the minimum: inclusive
    (0.9499, "fail", "FAIL"),
])
def test_recall_check_is_inclusive_and_counts_in_the_verdict(tmp_path: Path, recall: float, status: str,
                                                              verdict_status: str) -> None:
    diag, verdict = diagnose(run_dir(tmp_path, ann={"recall": recall}))
    assert _recall_check(verdict).status == status
    assert verdict.status == verdict_status and verdict.for_scale("1000") == verdict_status
    assert ({r.id for r in diag.fired} == {"ann_recall"}) is (status == "fail")


def test_recall_target_is_configurable(tmp_path: Path) -> None:
    d = run_dir(tmp_path, ann={"recall": 0.9})
    _, verdict = diagnose(d, R.SloTargets(min_recall_at_k=0.9))
    assert _recall_check(verdict).status == "pass" and verdict.status == "PASS"
    _, verdict = diagnose(d, R.SloTargets(min_recall_at_k=0.91))
    assert _recall_check(verdict).status == "fail" and verdict.status == "FAIL"


def test_recall_below_target_names_the_swept_ef_search_that_reaches_it(tmp_path: Path) -> None:
    diag, _ = diagnose(run_dir(tmp_path, ann={"recall": 0.90, "index_recall": 0.85, "sweep": SWEEP}))
    assert diag.primary.id == "ann_recall"
    f = diag.primary_finding
    assert f.evidence == ("recall@10 of the recall path (ties counted) 90.00 % < target 95.00 % at hnsw.ef_search 100 "
                          "(100 queries, halfvec); bare index (LIMIT 10) 85.00 %")
    assert diag.next_action.startswith("raise hnsw.ef_search to 200 (HNSW_EF_SEARCH): the sweep reached the target "
                                       "at ef_search 200 (recall@10 96.00 %, recall path mean 60.10 ms per query)")
    # a stricter target: only 400 reaches it
    diag, _ = diagnose(run_dir(tmp_path / "b", ann={"recall": 0.90, "sweep": SWEEP}),
                       R.SloTargets(min_recall_at_k=0.98))
    assert "reached the target at ef_search 400" in diag.next_action


def test_recall_below_target_when_no_swept_ef_search_reaches_it(tmp_path: Path) -> None:
    sweep = [(100, 0.80, 0.7, 30.0, 3.0), (200, 0.88, 0.8, 50.0, 5.0), (400, 0.93, 0.9, 90.0, 9.0)]
    diag, verdict = diagnose(run_dir(tmp_path, ann={"recall": 0.80, "sweep": sweep}))
    assert verdict.status == "FAIL"
    assert diag.next_action.startswith("no swept ef_search reached the target (best: 93.00 % at ef_search 400, "
                                       "swept up to 400)")
    # without a sweep the rule's own action says to measure one
    diag, _ = diagnose(run_dir(tmp_path / "b", ann={"recall": 0.80}))
    assert diag.primary.id == "ann_recall" and diag.next_action.startswith("measure an ef_search sweep")


@pytest.mark.parametrize(("used_row", "status"), [(0.96, "pass"), (0.94, "fail")])
def test_recall_is_read_at_the_ef_search_the_benchmark_used(tmp_path: Path, used_row: float, status: str) -> None:
    """The matrix raised ef_search from 100 to 200: the check reads the sweep row of 200, not the file's top-level
    recall (measured at 100)."""
    sweep = [(100, 0.97 if status == "fail" else 0.90, 0.85, 37.5, 3.5), (200, used_row, 0.93, 60.1, 6.2),
             (400, 0.99, 0.97, 95.0, 9.0)]
    top = sweep[0][1]
    run = collect_run(run_dir(tmp_path, ann={"recall": top, "sweep": sweep, "ef_search_used": 200, "tuned": True}))
    verdict = R.evaluate_slo(run, R.SloTargets())
    check = _recall_check(verdict)
    assert check.value == used_row and check.status == status
    assert "`ef_sweep` row of ef_search 200" in check.note
    diag = R.diagnose(run, R.SloTargets())
    if status == "fail":  # only a value above the one the benchmark ran with is advice (100 reached it, lower)
        assert diag.next_action.startswith("raise hnsw.ef_search to 400 (HNSW_EF_SEARCH)")
    recs = R.recommendations(run, verdict, diag)
    info = [r.text for r in recs if r.profile == "ann_ef_search"]
    assert info == [f"scale 1000: the matrix raised hnsw.ef_search from 100 to 200 before the benchmark (recall@10 of "
                    f"the recall path {100 * top:.2f} % at 100, {100 * used_row:.2f} % at 200): the latencies are "
                    "those of ef_search 200"]


def test_no_information_line_when_ef_search_was_not_raised(tmp_path: Path) -> None:
    run = collect_run(run_dir(tmp_path, ann={"sweep": SWEEP, "recall": 0.96, "ef_search": 200,
                                             "ef_search_used": 200, "tuned": False}))
    verdict = R.evaluate_slo(run, R.SloTargets())
    assert not [r for r in R.recommendations(run, verdict, R.diagnose(run, R.SloTargets()))
                if r.profile == "ann_ef_search"]
    assert _recall_check(verdict).note == "ann_check_1000.json `recall_at_k_distance` at hnsw.ef_search 200"


def test_the_ties_counted_recall_is_judged_when_the_file_has_it(tmp_path: Path) -> None:
    """On duplicate vectors every id at the k-th exact distance is an exact neighbour: the SLO judges
    `recall_at_k_distance` (as `memload ann-check --target-recall` does), and `recall_at_k` only in a file without
    it."""
    d = run_dir(tmp_path, ann={"recall": 0.80, "recall_distance": 0.97})
    check = _recall_check(diagnose(d)[1])
    assert (check.value, check.status) == (0.97, "pass") and "`recall_at_k_distance`" in check.note
    doc = json.loads((d / "ann_check_1000.json").read_text())
    del doc["recall_at_k_distance"]
    write_json(d / "ann_check_1000.json", doc)
    check = _recall_check(diagnose(d)[1])
    assert (check.value, check.status) == (0.80, "fail") and "`recall_at_k` at" in check.note
    # a sweep row's own ties-counted figure, at the raised ef_search
    sweep = [(100, 0.70, 0.6, 30.0, 3.0, 0.90), (200, 0.80, 0.7, 50.0, 5.0, 0.96)]
    d = run_dir(tmp_path / "b", ann={"recall": 0.70, "recall_distance": 0.90, "sweep": sweep, "ef_search_used": 200})
    check = _recall_check(diagnose(d)[1])
    assert (check.value, check.status) == (0.96, "pass")
    assert "row of ef_search 200, `recall_at_k_distance`" in check.note


def test_ef_search_used_without_its_sweep_row_is_not_measured(tmp_path: Path) -> None:
    d = run_dir(tmp_path, ann={"recall": 0.97, "sweep": SWEEP, "ef_search_used": 300})
    run = collect_run(d)
    verdict = R.evaluate_slo(run, R.SloTargets())
    check = _recall_check(verdict)
    assert check.status == "not measured" and check.value is None
    assert "ran with hnsw.ef_search 300" in check.note and "no row for 300 (swept: 100, 200, 400)" in check.note
    assert verdict.status == "PARTIAL"
    (nm,) = run.not_measured
    assert nm.stage == "ann_check_1000" and "no row for 300" in nm.reason


def test_missing_ann_check_is_not_measured_and_partial(tmp_path: Path) -> None:
    d = run_dir(tmp_path, ann_file=False)
    run = collect_run(d)
    verdict = R.evaluate_slo(run, R.SloTargets())
    assert [(n.stage, n.reason) for n in run.not_measured] == [("ann_check_1000", "no ann_check_1000.json")]
    check = _recall_check(verdict)
    assert (check.status, check.note) == ("not measured", "no ann_check_1000.json")
    assert verdict.status == "PARTIAL" and verdict.for_scale("1000") == "PARTIAL"
    assert "ann_check_1000.json" in run.scales[0].missing
    # a run configured without the check says so
    manifest = write_manifest(d)
    doc = json.loads(manifest.read_text())
    doc["config"]["RUN_ANN_CHECK"] = False
    write_json(manifest, doc)
    run = collect_run(d)
    assert [(n.stage, n.reason) for n in run.not_measured] == [("ann_check_1000", "not run: RUN_ANN_CHECK=False")]
    assert R.evaluate_slo(run, R.SloTargets()).status == "PARTIAL"


def test_empty_ann_check_is_a_check_that_failed(tmp_path: Path) -> None:
    d = run_dir(tmp_path)
    (d / "ann_check_1000.json").write_text("")
    run = collect_run(d)
    assert [(n.stage, n.reason) for n in run.not_measured] == [
        ("ann_check_1000", "ANN recall check failed: ann_check_1000.json is empty: the check failed before writing "
                           "its result")]
    assert R.evaluate_slo(run, R.SloTargets()).status == "PARTIAL"
