"""`cost_<scale>.json` in the report: figures equal those computed by hand from the counters (interpolated at the
window bounds of the canonical run's Locust summary), the Scale Cost section and its rules say what a scale cost the
server, and whatever cannot be measured is said with its reason — without ever changing the SLO verdict.

The counters below are chosen so each figure is a short hand computation (written beside it); the samples do not fall
on the window bounds, so a figure read from the nearest samples instead of interpolated ones would differ.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from analysis import cost as C
from analysis.metrics import collect_run
from analysis.plots import CPU_MACHINE_ONLY as MACHINE_ONLY
from analysis.report import build_report
from tests.support.cli import run_cli
from tests.support.report_fixtures import (
    EXPLAIN_HNSW,
    case,
    cost_relation,
    cost_samples,
    pixels,
    write_ann_check,
    write_benchmark,
    write_cost,
    write_json,
    write_locust_summary,
    write_seed,
    write_target_manifest,
    write_worker,
)

T = 1_790_000_000.0
TIMES = [T + x for x in (0.0, 1.0, 10.0, 11.0, 12.0, 16.0)]
RECALL_WINDOW = (1000, T + 0.25, T + 10.5)  # 10.25 s
WRITE_WINDOW = (400, T + 11.0, T + 15.0)  # 4 s
CPU = {"api": [10.0, 10.4, 19.4, 20.4, 20.9, 22.9],
       "postgres": [20.0, 20.2, 33.7, 35.2, 35.6, 37.2],
       "machine_busy": [100.0, 100.4, 127.4, 130.4, 131.6, 136.4],
       "machine_total": [1000.0, 1004.0, 1040.0, 1044.0, 1048.0, 1064.0]}
NODES, HNSW, PKEY = "memory_nodes_p_0a1b", "memory_nodes_p_0a1b_ready_hot_warm_hnsw", "memory_nodes_p_0a1b_pkey"
EDGES, EDGES_IDX = "memory_edges_p_0a1b", "memory_edges_p_0a1b_src_idx"
BLOCKS = {NODES: [(0, 0), (199, 1), (1990, 10), (2189, 11), (2689, 11), (4689, 11)],
          HNSW: [(0, 0), (100, 10), (9100, 910), (10100, 1010), (10100, 1010), (10100, 1010)],
          PKEY: [(0, 0), (0, 0), (0, 0), (0, 0), (100, 0), (500, 0)],
          EDGES: [(0, 0), (50, 1), (500, 10), (550, 11), (550, 11), (550, 11)],
          EDGES_IDX: [(0, 0), (30, 0), (300, 0), (330, 0), (330, 0), (330, 0)]}
RELATIONS = [cost_relation(NODES, "memory_nodes", "heap", "heap", 9000.0),
             cost_relation(HNSW, "memory_nodes", "index", "hnsw", 2500.0),
             cost_relation(PKEY, "memory_nodes", "index", "btree", 100.0),
             cost_relation(EDGES, "memory_edges", "heap", "heap", 300.0),
             cost_relation(EDGES_IDX, "memory_edges", "index", "btree", 50.0)]


def base_run(d: Path, scale: str = "1000", *, summary: str | None = None, windows: dict | None = None,
             manifest: bool = True) -> Path:
    """A clean run of one scale (PASS without any cost file) whose benchmark names its Locust summary."""
    d.mkdir(parents=True, exist_ok=True)
    name = summary or f"locust_{scale}_summary.json"
    write_seed(d, scale, 1010, 2000)
    write_ann_check(d, scale, 0.97, 0.9)  # a halfvec index
    write_benchmark(d, scale, [case("recall_text", [4.0 + 0.001 * i for i in range(1000)], {"200": 1000}),
                               case("write", [9.0 + 0.01 * i for i in range(400)], {"200": 400})],
                    artifacts={"csv_prefix": f"locust_{scale}", "summary": name})
    write_locust_summary(d, name, windows or {"recall_text": RECALL_WINDOW, "write": WRITE_WINDOW})
    (d / f"explain_{scale}.txt").write_text(EXPLAIN_HNSW)
    if manifest:
        write_worker(d, [(100, 100, 800.0), (100, 100, 800.0)])
        write_target_manifest(d, "reference")
    return d


def cost_run(d: Path, *, blocks: dict | None = None, cpu: dict | None = None, times: list[float] | None = None,
             **kw) -> Path:
    base_run(d)
    write_cost(d, "1000", cost_samples(times or TIMES, CPU if cpu is None else cpu, BLOCKS if blocks is None
                                       else blocks), RELATIONS, **kw)
    return d


def _section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.S | re.M)
    assert m, f"no section {title!r}"
    return m.group(1)


# ------------------------------------------------------------------------------------------ figures
def test_counters_are_interpolated_at_the_window_bounds() -> None:
    pts = [(T, 10.0), (T + 1.0, 10.4), (T + 10.0, 19.4), (T + 11.0, 20.4)]
    assert C.counter_at(pts, T + 0.25) == pytest.approx(10.1)  # a quarter of the way from 10.0 to 10.4
    assert C.counter_at(pts, T + 10.0) == 19.4  # on a sample: the sample
    assert C.counter_at(pts, T - 0.01) is None and C.counter_at(pts, T + 11.5) is None
    assert C.window_delta(pts, T + 0.25, T + 10.5, "x") == (pytest.approx(9.8), None)  # 19.9 − 10.1
    value, why = C.window_delta(pts, T + 0.25, T + 11.5, "cpu_s.api")
    assert value is None and why == "window not covered: the last sample of cpu_s.api is 0.50 s before the case's " \
                                    "last_end"
    value, why = C.window_delta([(T, 5.0), (T + 1, 9.0), (T + 2, 1.0), (T + 3, 2.0)], T + 0.5, T + 2.5, "cpu_s.api")
    assert value is None and "went backwards inside the window" in why


def test_recall_and_write_figures_equal_the_hand_computation(tmp_path: Path) -> None:
    sm = collect_run(cost_run(tmp_path / "run")).scales[0]
    assert sm.cost_failed is None and sm.cost is not None
    c = sm.cost
    assert c.summary == "locust_1000_summary.json" and "cost_1000.json" in sm.used
    assert c.sizes_mb == {"nodes_heap": 9000.0, "embeddings": None, "hnsw": 2500.0, "nodes_indexes": 100.0,
                          "edges": 350.0, "total": 11950.0}
    assert c.size_why["embeddings"] == "no such relation in cost_1000.json"  # a layout without TOASTed vectors
    assert c.hot_mb == 11500.0 and c.of_shared_buffers(c.hot_mb) == pytest.approx(11500 / 8192)
    r = c.cases["recall"]
    assert (r.endpoint, r.requests, r.window_s) == ("recall_text", 1000, pytest.approx(10.25))
    # Δ over [0.25, 10.5]: api 19.9 − 10.1 = 9.8 s; postgres 34.45 − 20.05 = 14.4 s; busy 128.9 − 100.1 = 28.8 s
    assert r.cpu_ms == {"api": pytest.approx(9.8), "postgres": pytest.approx(14.4), "other": pytest.approx(4.6),
                        "machine": pytest.approx(28.8)}
    assert r.cores_busy == pytest.approx(28.8 / 10.25)
    assert r.busy_share == pytest.approx(28.8 / 41.0)  # machine_total 1042 − 1001
    # nodes heap: hit 2089.5 − 49.75, read 10.5 − 0.25; HNSW: hit 9600 − 25, read 960 − 2.5
    assert r.hit_ratio["nodes_heap"] == pytest.approx(2039.75 / 2050.0)
    assert r.hit_ratio["hnsw"] == pytest.approx(9575 / 10532.5)
    assert r.hit_ratio["edges_heap"] == pytest.approx(512.5 / 522.75)
    assert r.hit_ratio["edges_indexes"] == 1.0
    assert r.hit_ratio["nodes_indexes"] is None  # the pkey was not touched while recalls ran: no ratio, not 0 or 1
    assert r.why["hit.nodes_indexes"] == "no block of it was accessed in the window"
    assert r.read_kb == pytest.approx((10.25 + 957.5 + 10.25) * 8 / 1000)  # 7.824 kB per recall
    w = c.cases["write"]
    assert (w.requests, w.window_s) == (400, 4.0)
    assert w.cpu_ms == {"api": pytest.approx(5.0), "postgres": pytest.approx(4.0), "other": pytest.approx(3.0),
                        "machine": pytest.approx(12.0)}
    assert w.cores_busy == pytest.approx(1.2) and w.read_kb == 0.0  # a measured zero: no block read
    assert w.hit_ratio["nodes_heap"] == 1.0 and w.hit_ratio["nodes_indexes"] == 1.0 and w.hit_ratio["hnsw"] is None


def test_scale_cost_section_states_the_figures(tmp_path: Path) -> None:
    result = build_report(cost_run(tmp_path / "run"))
    md = result.output.read_text()
    sec = _section(md, "Scale Cost")
    assert md.index("## ANN Recall") < md.index("## Scale Cost") < md.index("## Conclusion")
    assert "| scale | recalls (window) | MB: nodes heap / embeddings / HNSW / other nodes idx / edges = all | " \
           "nodes heap + embeddings + HNSW ÷ shared_buffers | all ÷ shared_buffers | shared_buffers / host RAM (MB) " \
           "| hit %: nodes heap / embeddings / HNSW / other nodes idx / edges heap / edges idx | kB read per recall " \
           "| CPU ms per recall: API / PostgreSQL / other = machine | cores busy |" in sec
    assert "| 1000 | 1,000 in 10.2 s (recall_text) | 9,000 / – / 2,500 / 100 / 350 = 11,950 | 1.40× | 1.46× | " \
           "8,192 / 32,000 | 99.50 / – / **90.91** / – / **98.04** / 100.00 | 7.82 | 9.80 / 14.40 / 4.60 = 28.80 | " \
           "2.81 of 4 (70 %) |" in sec
    assert "- Scale 1000, write (400 writes in 4.0 s): CPU ms per write 5.00 / 4.00 / 3.00 = 12.00 (API / " \
           "PostgreSQL / other = machine); cores busy 1.20 of 4 (30 %); 0.00 kB read per write from outside " \
           "shared_buffers; hit % nodes heap 100.00, other nodes indexes 100.00" in sec
    assert "- Scale 1000, not measured: hit % other nodes indexes (recall), hit % HNSW (write), hit % edges heap " \
           "(write), hit % edges indexes (write) — no block of it was accessed in the window" in sec
    assert "windows from `locust_1000_summary.json`" in sec and "also hold other scopes" not in sec
    assert "`cost_1000.json`" in _section(md, "Inputs")
    s = result.summary()["scales"][0]["cost"]
    assert s["cases"]["recall"]["read_kb_per_request"] == pytest.approx(7.824)
    assert s["sizes_mb"]["total"] == 11950.0 and s["cases"]["write"]["cpu_ms_per_request"]["api"] == \
        pytest.approx(5.0)


def test_the_cost_never_changes_the_slo_verdict(tmp_path: Path) -> None:
    """Same run without a cost file, with one that fires a rule, and with a malformed one: the same verdict."""
    plain = build_report(base_run(tmp_path / "plain"), plots=False)
    costly = build_report(cost_run(tmp_path / "costly"), plots=False)
    bad = cost_run(tmp_path / "bad")
    (bad / "cost_1000.json").write_text("{")
    broken = build_report(bad, plots=False)
    assert plain.verdict.status == costly.verdict.status == broken.verdict.status == "PASS"
    assert [vars(c) for c in plain.verdict.checks] == [vars(c) for c in costly.verdict.checks]
    assert plain.run.not_measured == costly.run.not_measured == broken.run.not_measured == []
    assert "buffer_cache" in {r.id for r in costly.diagnosis.fired}


# ------------------------------------------------------------------------------------------ rules
def test_buffer_cache_finding_names_scale_reads_sizes_and_remedy(tmp_path: Path) -> None:
    diag = build_report(cost_run(tmp_path / "run"), plots=False).diagnosis
    (f,) = diag.findings["buffer_cache"]
    assert (f.scale, f.subject) == ("1000", "recall_text")
    assert f.evidence == ("recall window: buffer hit ratio HNSW 90.91 % < 99.00 %; 7.8 kB per recall read from "
                          "outside shared_buffers; HNSW 2,500 MB + nodes heap 9,000 MB = 11,500 MB > shared_buffers "
                          "8,192 MB (1.40×)")
    assert f.action == ("raise shared_buffers above 11,500 MB so the HNSW graph, the nodes heap and the embeddings "
                        "stay cached, if RAM allows (host RAM 32,000 MB: they are 35.94 % of it); the index is already "
                        "halfvec, so only memory (or a smaller scope) helps")


def test_buffer_cache_finding_suggests_halfvec_for_a_float32_index(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run")
    doc = json.loads((d / "ann_check_1000.json").read_text())
    doc["precision"] = "vector"
    write_json(d / "ann_check_1000.json", doc)
    (f,) = build_report(d, plots=False).diagnosis.findings["buffer_cache"]
    assert f.action.endswith("; or build the HNSW index on halfvec (`memload seed --precision halfvec`): half the "
                             "graph")


@pytest.mark.parametrize(("hnsw_reads", "shared_buffers", "fires"), [
    (True, 8192.0, True),
    (False, 8192.0, False),  # HNSW hit 100 %, nodes heap 99.50 %: both at or above 99 %
    (True, 11500.0, False),  # HNSW + nodes heap = shared_buffers: they fit
    (True, 11499.0, True),
])
def test_buffer_cache_finding_needs_misses_and_an_oversized_hot_set(tmp_path: Path, hnsw_reads: bool,
                                                                    shared_buffers: float, fires: bool) -> None:
    blocks = dict(BLOCKS)
    if not hnsw_reads:
        blocks[HNSW] = [(h, 0) for h, _ in BLOCKS[HNSW]]
    d = cost_run(tmp_path / "run", blocks=blocks, shared_buffers_mb=shared_buffers)
    diag = build_report(d, plots=False).diagnosis
    assert bool(diag.findings["buffer_cache"]) is fires


def _second_scale(d: Path, busy: float) -> None:
    """Scale 10000: 500 recalls in [0, 10] s, samples on the bounds: API 10 s, PostgreSQL 20 s, machine `busy` s."""
    base_run(d, "10000", windows={"recall_text": (500, T, T + 10.0), "write": (100, T + 10.0, T + 11.0)},
             manifest=False)
    cpu = {"api": [0.0, 10.0, 10.5], "postgres": [0.0, 20.0, 20.5], "machine_busy": [0.0, busy, busy + 1.5],
           "machine_total": [0.0, 40.0, 44.0]}
    write_cost(d, "10000", cost_samples([T, T + 10.0, T + 11.0], cpu), [])


def test_cpu_growth_finding_names_where_the_cpu_went(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run")
    _second_scale(d, 35.0)  # 70 ms per recall: API 20, PostgreSQL 40, other 10
    diag = build_report(d, plots=False).diagnosis
    (f,) = diag.findings["cpu_growth"]
    assert (f.scale, f.subject) == ("10000", "recall_text")
    assert f.evidence == ("CPU per recall 28.80 ms at scale 1000 → 70.00 ms at scale 10000 (2.43× > 1.5×); API 9.80 "
                          "→ 20.00 ms (+10.20); PostgreSQL 14.40 → 40.00 ms (+25.60); other 4.60 → 10.00 ms (+5.40)")
    assert f.action.startswith("most of the growth is PostgreSQL (62.14 % of it)")  # 25.6 / 41.2


def test_cpu_growth_finding_absent_below_the_factor(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run")
    _second_scale(d, 20.0)  # 40 ms per recall ≤ 1.5 × 28.8 ms
    run = build_report(d, plots=False)
    assert run.diagnosis.findings["cpu_growth"] == []
    assert run.run.scales[1].cost.cases["recall"].cpu_ms["machine"] == pytest.approx(40.0)


# ------------------------------------------------------------------------------------------ an external target
AIONIS_CPU = {"api": None, "postgres": None, "machine": "all cores of this machine (/proc/stat)"}
AIONIS_WHY = {"api": "the target is an external server: its processes are not known to the matrix",
              "postgres": "the target's database is not on this machine"}


def test_external_target_shared_tables_and_no_process_cpu(tmp_path: Path) -> None:
    """An Aionis-like target: one plain table per kind (shared with every other scope), only the machine's CPU."""
    d = base_run(tmp_path / "run")
    write_target_manifest(d, "external", health={"ok": True, "service": "aionis-memory"})
    rels = [cost_relation("memory_nodes", "memory_nodes", "heap", "heap", 5000.0, shared=True),
            cost_relation("memory_nodes_embedding_hnsw_idx", "memory_nodes", "index", "hnsw", 3000.0, shared=True),
            cost_relation("memory_edges", "memory_edges", "heap", "heap", 400.0, shared=True)]
    cpu = {k: CPU[k] for k in ("machine_busy", "machine_total")}
    blocks = {"memory_nodes": BLOCKS[NODES], "memory_nodes_embedding_hnsw_idx": BLOCKS[HNSW],
              "memory_edges": BLOCKS[EDGES]}
    write_cost(d, "1000", cost_samples(TIMES, cpu, blocks), rels, cpu=AIONIS_CPU, not_measured=AIONIS_WHY)
    result = build_report(d)
    r = result.run.scales[0].cost.cases["recall"]
    assert r.cpu_ms == {"api": None, "postgres": None, "other": None, "machine": pytest.approx(28.8)}
    assert r.why["cpu.api"] == AIONIS_WHY["api"] and r.why["cpu.postgres"] == AIONIS_WHY["postgres"]
    assert r.read_kb == pytest.approx((10.25 + 957.5 + 10.25) * 8 / 1000)
    sec = _section(result.output.read_text(), "Scale Cost")
    assert "| 1000 | 1,000 in 10.2 s (recall_text) | 5,000 / – / 3,000 / – / 400 = 8,400 | 0.98× | 1.03× | " \
           "8,192 / 32,000 | 99.50 / – / **90.91** / – / **98.04** / – | 7.82 | – / – / – = 28.80 | " \
           "2.81 of 4 (70 %) |" \
           in sec
    assert "- Scale 1000: `memory_edges`, `memory_nodes` also hold other scopes (`\"shared\": true`): their counters " \
           "and sizes are the whole table's, other scopes included, not this scope's alone" in sec
    assert "- Scale 1000, not measured: API CPU (recall), API CPU (write) — the target is an external server: its " \
           "processes are not known to the matrix" in sec
    assert "- Scale 1000, not measured: other CPU (recall), other CPU (write) — machine busy − API − PostgreSQL " \
           "needs all three (API: the target is an external server" in sec
    assert "CPU: machine = all cores of this machine (/proc/stat)" in sec
    # 5,000 + 3,000 MB fit in 8,192 MB: no buffer_cache finding although HNSW misses
    assert result.diagnosis.findings["buffer_cache"] == []
    plot = next(p for p in result.plots if p.key == "cpu_per_recall")
    assert plot.path.is_file() and pixels(plot.path, MACHINE_ONLY) > 500  # the hatched machine-only bar


def test_shared_tables_are_named_in_the_buffer_cache_evidence(tmp_path: Path) -> None:
    d = base_run(tmp_path / "run")
    rels = [dict(r, shared=True) if r["table"] == "memory_nodes" else r for r in RELATIONS]
    write_cost(d, "1000", cost_samples(TIMES, CPU, BLOCKS), rels)
    (f,) = build_report(d, plots=False).diagnosis.findings["buffer_cache"]
    assert f.evidence.endswith("(1.40×) (whole-table sizes and counters: memory_nodes also hold other scopes)")


# ------------------------------------------------------------------------------------------ not measured
def test_no_cost_file_is_one_line_and_no_plot(tmp_path: Path) -> None:
    result = build_report(base_run(tmp_path / "run"))
    md = result.output.read_text()
    assert _section(md, "Scale Cost").strip() == (
        "Not measured: no `cost_<scale>.json` in the run directory (the matrix samples CPU and buffer counters while "
        "the benchmark runs).")
    assert all(p.key != "cpu_per_recall" for p in result.plots) and "### CPU per recall" not in md
    assert not (tmp_path / "run" / "plots" / "cpu_per_recall.png").exists()
    assert result.summary()["scales"][0]["cost"] is None and "`cost_1000.json`" in _section(md, "Inputs")


def test_window_not_covered_is_not_measured_with_its_reason(tmp_path: Path) -> None:
    later = [t + 0.5 for t in TIMES]  # the first sample comes 0.25 s after the recall case's first_start
    result = build_report(cost_run(tmp_path / "run", times=later))
    c = result.run.scales[0].cost
    assert not c.cases["recall"].measured and c.cases["recall"].cpu_ms["machine"] is None
    assert c.cases["recall"].read_kb is None and c.cases["recall"].hit_ratio["hnsw"] is None
    assert c.cases["write"].measured  # the write window [11, 15] is covered by [0.5, 16.5]
    sec = _section(result.output.read_text(), "Scale Cost")
    assert "| 1000 | NOT MEASURED | 9,000 / – / 2,500 / 100 / 350 = 11,950 | 1.40× | 1.46× | 8,192 / 32,000 | – | " \
           "– | " \
           "– | – |" in sec
    assert "- Scale 1000, recall: NOT MEASURED — the samples do not cover the recall_text window (the first sample " \
           "is 0.25 s after its first_start)" in sec
    assert result.diagnosis.findings["buffer_cache"] == []  # no ratio, no finding
    assert next(p for p in result.plots if p.key == "cpu_per_recall").reason.startswith(
        "no scale has its CPU per recall measured: scale 1000 (the samples do not cover")
    assert not (tmp_path / "run" / "plots" / "cpu_per_recall.png").exists()


def test_a_counter_that_went_backwards_is_not_measured(tmp_path: Path) -> None:
    cpu = dict(CPU, api=[10.0, 10.4, 2.0, 3.0, 3.5, 5.5])  # the API restarted between 1 s and 10 s
    r = collect_run(cost_run(tmp_path / "run", cpu=cpu)).scales[0].cost.cases["recall"]
    assert r.cpu_ms["api"] is None and r.cpu_ms["other"] is None and r.cpu_ms["postgres"] == pytest.approx(14.4)
    assert r.why["cpu.api"] == ("cpu_s.api went backwards inside the window (a process restarted or the statistics "
                                "were reset)")


def test_missing_series_and_blocks_say_why(tmp_path: Path) -> None:
    cpu = {k: v for k, v in CPU.items() if k != "postgres"}
    d = base_run(tmp_path / "run")
    write_cost(d, "1000", cost_samples(TIMES, cpu), RELATIONS, cpu=dict(AIONIS_CPU, api="the local API (pid 1)"),
               not_measured={"postgres": "no postmaster.pid readable", "blocks": "pg_statio_* not readable"})
    r = collect_run(d).scales[0].cost.cases["recall"]
    assert r.cpu_ms["api"] == pytest.approx(9.8) and r.cpu_ms["postgres"] is None and r.cpu_ms["other"] is None
    assert r.why["cpu.postgres"] == "no postmaster.pid readable"
    assert r.hit_ratio == dict.fromkeys(C.GROUPS) and r.read_kb is None
    assert r.why["read_kb"] == r.why["hit.hnsw"] == "pg_statio_* not readable"


def test_the_nodes_toast_is_the_embeddings_group(tmp_path: Path) -> None:
    """The embeddings the recall path re-ranks by live in the nodes' TOAST: a group of their own, in the sizes, the
    hit ratios and the memory that must fit; counters of a relation the file does not list are left out."""
    d = base_run(tmp_path / "run")
    toast = f"{NODES} (toast)"
    rels = [*RELATIONS, cost_relation(toast, "memory_nodes", "toast", "toast", 1000.0)]
    blocks = dict(BLOCKS, **{toast: [(0, 0), (100, 0), (1000, 0), (1100, 0), (1100, 0), (1100, 0)],
                             "memory_topics": [(0, 0), (0, 5), (0, 50), (0, 55), (0, 55), (0, 55)]})
    write_cost(d, "1000", cost_samples(TIMES, CPU, blocks), rels)
    c = collect_run(d).scales[0].cost
    assert c.sizes_mb["nodes_heap"] == 9000.0 and c.sizes_mb["embeddings"] == 1000.0
    assert c.sizes_mb["nodes_indexes"] == 100.0 and c.hot_mb == 12500.0  # HNSW 2500 + heap 9000 + embeddings 1000
    r = c.cases["recall"]
    assert r.hit_ratio["nodes_heap"] == pytest.approx(2039.75 / 2050.0)  # the heap alone, as without a TOAST
    assert r.hit_ratio["embeddings"] == 1.0  # hit 1050 − 25, nothing read
    assert r.hit_ratio["nodes_indexes"] is None and r.read_kb == pytest.approx(7.824)  # memory_topics not counted


def test_block_counters_that_stopped_part_way(tmp_path: Path) -> None:
    """The sampler stopped reading the statistics after 11 s: the recall window is measured, the write window is
    not covered and says why the counters stopped."""
    d = base_run(tmp_path / "run")
    samples = cost_samples(TIMES, CPU, BLOCKS)
    for sample in samples[4:]:
        del sample["blocks"]
    write_cost(d, "1000", samples, RELATIONS, not_measured={"blocks": "stopped reading: connection lost"})
    c = collect_run(d).scales[0].cost
    assert c.cases["recall"].read_kb == pytest.approx(7.824) and c.cases["write"].read_kb is None
    assert c.cases["write"].why["hit.nodes_heap"] == (
        f"{NODES}: window not covered: the last sample of blocks.{NODES} is 4.00 s before the case's last_end "
        "(stopped reading: connection lost)")
    assert c.cases["write"].cpu_ms["machine"] == pytest.approx(12.0)  # the CPU series went on
    # relations dropped altogether: every block figure says why, the CPU figures stay
    write_cost(d, "1000", cost_samples(TIMES, CPU, BLOCKS), [], not_measured={"blocks": "stopped reading: gone"})
    r = collect_run(d).scales[0].cost.cases["recall"]
    assert r.read_kb is None and r.why["read_kb"] == r.why["hit.hnsw"] == "stopped reading: gone"
    assert r.cpu_ms["machine"] == pytest.approx(28.8)


def test_one_scale_without_a_cost_file_is_named(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run")
    base_run(d, "3000", manifest=False)
    sec = _section(build_report(d, plots=False).output.read_text(), "Scale Cost")
    assert "- Scale 3000: NOT MEASURED — no cost_3000.json" in sec and "| 1000 | 1,000 in 10.2 s" in sec


MALFORMED = [
    (lambda doc: "{", "cost_1000.json: invalid JSON: Expecting property name enclosed in double quotes at line 1 "
                      "column 2"),
    (lambda doc: doc["samples"][2]["blocks"].update({HNSW: [5]}) or doc,
     f"cost_1000.json: key samples[2].blocks.{HNSW}: expected [blks_hit, blks_read] (integers ≥ 0), got [5]"),
    (lambda doc: doc["samples"][3].update(t=T) or doc,
     f"cost_1000.json: key samples[3].t: {T!r} is not after the previous sample's"),
    (lambda doc: doc["relations"][0].update(kind="table") or doc,
     "cost_1000.json: key relations[0].kind: expected heap, toast or index, got 'table'"),
    (lambda doc: doc.pop("samples") and doc, "cost_1000.json: key samples: missing"),
    (lambda doc: "", "cost_1000.json is empty: the stage failed before writing its result"),
]


@pytest.mark.parametrize(("breaks", "message"), MALFORMED, ids=[m[1][15:60] for m in MALFORMED])
def test_a_malformed_cost_file_is_named_and_the_report_is_still_written(tmp_path: Path, breaks, message) -> None:
    d = cost_run(tmp_path / "run")
    broken = breaks(json.loads((d / "cost_1000.json").read_text()))
    (d / "cost_1000.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
    proc = run_cli("report", "--dir", str(d), "--fail-on-partial", timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["slo"]["status"] == "PASS" and out["scales"][0]["cost_not_measured"] == message
    sec = _section((d / "PERFORMANCE_REPORT_V1.md").read_text(), "Scale Cost")
    assert f"- Scale 1000: NOT MEASURED — {message}" in sec
    assert "Not drawn: no scale has its CPU per recall measured: scale 1000 (" + message in \
        (d / "PERFORMANCE_REPORT_V1.md").read_text()


# ------------------------------------------------------------------------------------------ the summary file
def test_the_summary_the_benchmark_names_is_the_one_used(tmp_path: Path) -> None:
    """REPEAT=3: the canonical run is the last repeat; a `locust_<scale>_summary.json` beside it is not read."""
    d = base_run(tmp_path / "run", summary="locust_1000_rep3_summary.json")
    write_locust_summary(d, "locust_1000_summary.json", {"recall_text": (10, T + 1.0, T + 10.0),
                                                         "write": (10, T + 11.0, T + 12.0)})
    write_cost(d, "1000", cost_samples(TIMES, CPU, BLOCKS), RELATIONS)
    c = collect_run(d).scales[0].cost
    assert c.summary == "locust_1000_rep3_summary.json"
    assert c.cases["recall"].requests == 1000 and c.cases["recall"].cpu_ms["api"] == pytest.approx(9.8)


@pytest.mark.parametrize(("change", "why"), [
    ("no_field", "benchmark_1000.json has no `artifacts.summary` (the Locust summary with the case windows)"),
    ("no_file", "locust_1000_summary.json (named by benchmark_1000.json `artifacts.summary`) is not in the run "
                "directory"),
    ("no_benchmark", "no Locust summary to take the windows from (no benchmark_1000.json; its `artifacts.summary` "
                     "names it)"),
    ("bad_summary", "locust_1000_summary.json: key cases.write.total: expected a number, got 'many'"),
    ("no_write_case", "locust_1000_summary.json has no write case"),
])
def test_without_a_summary_the_windows_are_not_measured(tmp_path: Path, change: str, why: str) -> None:
    d = cost_run(tmp_path / "run")
    bench = json.loads((d / "benchmark_1000.json").read_text())
    summary = json.loads((d / "locust_1000_summary.json").read_text())
    if change == "no_field":
        del bench["artifacts"]["summary"]
        write_json(d / "benchmark_1000.json", bench)
    elif change == "no_file":
        (d / "locust_1000_summary.json").unlink()
    elif change == "no_benchmark":
        (d / "benchmark_1000.json").unlink()
    elif change == "bad_summary":
        summary["cases"]["write"]["total"] = "many"
        write_json(d / "locust_1000_summary.json", summary)
    else:
        del summary["cases"]["write"]
        write_json(d / "locust_1000_summary.json", summary)
    result = build_report(d, plots=False)
    c = result.run.scales[0].cost
    assert c.cases["write"].why["window"] == why and c.cases["write"].cpu_ms["machine"] is None
    assert c.cases["recall"].measured is (change == "no_write_case")
    assert c.sizes_mb["total"] == 11950.0  # the sizes do not need a window
    assert f"- Scale 1000, write: NOT MEASURED — {why}" in _section(result.output.read_text(), "Scale Cost")


# ------------------------------------------------------------------------------------------ the plot
def test_cpu_per_recall_plot_is_drawn_and_linked(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run")
    _second_scale(d, 35.0)
    result = build_report(d)
    plot = next(p for p in result.plots if p.key == "cpu_per_recall")
    assert plot.path == d / "plots" / "cpu_per_recall.png" and plot.path.read_bytes()[:4] == b"\x89PNG"
    assert "### CPU per recall by scale\n\n![CPU per recall by scale](plots/cpu_per_recall.png)" in \
        result.output.read_text()
    for color in ("#1f77b4", "#2ca02c", "#7f7f7f"):  # API, PostgreSQL and other are all drawn
        assert pixels(plot.path, color) > 500, color
    assert pixels(plot.path, MACHINE_ONLY) == 0  # every scale is split: no machine-only bar


def test_cost_files_without_cpu_draw_no_plot(tmp_path: Path) -> None:
    d = base_run(tmp_path / "run")
    write_cost(d, "1000", cost_samples(TIMES, {}, BLOCKS), RELATIONS, cpu=dict.fromkeys(("api", "postgres",
                                                                                          "machine")))
    result = build_report(d)
    skipped = next(p for p in result.plots if p.key == "cpu_per_recall")
    assert skipped.reason == "no scale has its CPU per recall measured: scale 1000 (`cpu.machine` is null: not " \
                             "sampled)"
    assert not (d / "plots" / "cpu_per_recall.png").exists()
    assert "### CPU per recall by scale\n\nNot drawn: no scale has its CPU per recall measured" in \
        result.output.read_text()
    shutil.rmtree(d / "plots")


# ------------------------------------------------------------------------------------------ a cache still warming
HALVES = [T + x for x in (0.0, 0.25, 5.375, 10.5, 11.0, 16.0)]  # samples on the recall window's bounds and middle


def _halves_blocks(first: tuple[int, int], second: tuple[int, int]) -> dict:
    """Blocks (hit, read) of the nodes heap and of HNSW alike: `first` in the recall case's first half, `second` in
    its second; nothing else is read."""
    (h1, r1), (h2, r2) = first, second
    hot = [(0, 0), (0, 0), (h1, r1), (h1 + h2, r1 + r2), (h1 + h2, r1 + r2), (h1 + h2, r1 + r2)]
    idle = [(0, 0)] * 6
    return {NODES: hot, HNSW: hot, PKEY: idle, EDGES: idle, EDGES_IDX: idle}


@pytest.mark.parametrize(("first", "second", "fires"), [
    ((900, 100), (1000, 0), True),  # 90 % → 100 %
    ((970, 30), (990, 10), True),  # +2.0 points: the threshold
    ((971, 29), (990, 10), False),  # +1.9 points
    ((950, 50), (950, 50), False),  # steady, even if low (that is buffer_cache's business)
    ((1000, 0), (900, 100), False),  # falling is not warming
])
def test_a_hit_ratio_rising_within_the_recall_case_is_a_cache_still_warming(
        tmp_path: Path, first: tuple[int, int], second: tuple[int, int], fires: bool) -> None:
    d = cost_run(tmp_path / "run", blocks=_halves_blocks(first, second), times=HALVES)
    rc = collect_run(d).scales[0].cost.cases["recall"]
    assert rc.hot_hit_halves == (pytest.approx(first[0] / sum(first)), pytest.approx(second[0] / sum(second)))
    result = build_report(d, plots=False)
    found = result.diagnosis.findings["cache_warming"]
    assert bool(found) == fires
    if first == (900, 100):
        (f,) = found
        assert (f.scale, f.subject) == ("1000", "recall_text")
        assert f.evidence == ("recall window: buffer hit ratio of the nodes heap, embeddings and HNSW together "
                              "90.00 % in its first half → 100.00 % in its second (+10.00 points ≥ 2): the cache was "
                              "still filling while the case ran, so its latency, throughput and CPU per recall are "
                              "not the steady state")
        assert result.verdict.status == "PASS"  # it says what the figures are; the gates judge them
        assert "REPEAT=2" in result.output.read_text()


def test_warming_is_not_judged_without_block_counters(tmp_path: Path) -> None:
    d = cost_run(tmp_path / "run", blocks={}, times=HALVES)
    rc = collect_run(d).scales[0].cost.cases["recall"]
    assert rc.hot_hit_halves == (None, None)
    assert build_report(d, plots=False).diagnosis.findings["cache_warming"] == []
