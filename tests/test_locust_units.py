"""Unit tests of the suite's pure parts: pacing controller, open-model schedule, validation, exact stats, budgets.

No server and no Locust runner: the controller and schedule run on a fake clock, budgets on direct transports.
"""

from __future__ import annotations

import itertools
import math
import random

import gevent
import numpy as np
import pytest

from locustfiles.budget import TokenDispenser, TokenPool
from locustfiles.exact_stats import HIGHEST_US, Aggregate, CaseStats, Recorder, new_histogram, record_many
from locustfiles.open_model import ArrivalSchedule
from locustfiles.options import OptionError, SuiteConfig, load_queries
from locustfiles.pacing import PacingController, parse_retry_after
from locustfiles.records import CATEGORY, parse_server_timing
from locustfiles.validation import (
    CLIENT_4XX,
    EMPTY_RECALL,
    INVALID_BODY,
    OK,
    RATE_LIMITED,
    SERVER_5XX,
    TRANSPORT,
    classify,
)
from memload.client import auth_headers

SEED = {"id": "a", "type": "event", "title": None, "text_summary": "x", "tier": "hot", "salience": 0.5,
        "confidence": 0.8, "similarity": 0.9}
FULL_RECALL = (b'{"tenant_id":"default","scope":"s","seeds":[%s],"subgraph":{"nodes":[],"edges":[]},"ranked":[],'
               b'"context":{"text":"","items":[],"citations":[]}}')
EMPTY_RECALL_BODY = b'{"scope":"s","seeds":[],"subgraph":{"nodes":[],"edges":[]},"ranked":[]}'
WRITE_OK = (b'{"tenant_id":"default","scope":"s","commit_id":"c1","commit_hash":"' + b"a" * 64
            + b'","nodes":[{"id":"n1","client_id":"x","type":"event"}],"edges":[]}')


# --- validation ---------------------------------------------------------------------------------------------------

def test_classify_recall_bodies() -> None:
    import json

    full = FULL_RECALL % json.dumps(SEED).encode()
    assert classify("recall_text", 200, full, expected_min_seeds=1).category == OK
    assert classify("recall_text", 200, EMPTY_RECALL_BODY, expected_min_seeds=0).category == OK
    v = classify("recall_text", 200, EMPTY_RECALL_BODY, expected_min_seeds=1)
    assert (v.category, v.status_key) == (EMPTY_RECALL, "empty_recall")
    assert classify("recall", 200, b"not json").status_key == INVALID_BODY
    assert classify("recall", 200, b'{"seeds": 3}').category == INVALID_BODY
    bad_seed = FULL_RECALL % b'{"id": "a"}'
    assert classify("recall", 200, bad_seed).category == INVALID_BODY


def test_classify_write_and_errors() -> None:
    assert classify("write", 200, WRITE_OK).category == OK
    assert classify("write", 200, WRITE_OK.replace(b'"a' + b"a" * 63, b'"zz')).category == INVALID_BODY
    assert classify("write", 200, WRITE_OK, expected_nodes=2).category == INVALID_BODY
    v = classify("write", 429, b'{"error":"tenant_rate_limited_write","details":{"retry_after_ms":120}}')
    assert (v.category, v.status_key, v.retry_after_ms) == (RATE_LIMITED, "429", 120.0)
    assert classify("write", 400, b'{"error":"invalid_request"}').category == CLIENT_4XX
    assert classify("write", 503, b"").category == SERVER_5XX
    v = classify("write", 0, None, ConnectionRefusedError("refused"))
    assert (v.category, v.status_key) == (TRANSPORT, "error:ConnectionRefusedError")
    assert classify("health", 200, b'{"ok":true}').category == OK
    assert classify("health", 200, b'{"ok":false}').category == INVALID_BODY


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None, 250) == 0.25
    assert parse_retry_after("garbage", None) is None
    assert parse_retry_after(None, None) is None


# --- options ------------------------------------------------------------------------------------------------------

def test_config_validation_names_the_flag(tmp_path) -> None:
    class Opts:
        scope, tenant_id, pace_ms, recall_limit = "s", "default", 0.0, 20

    SuiteConfig.from_options(Opts())
    for attr, value, flag in (("pace_ms", -1.0, "--pace-ms"), ("recall_limit", 500, "--recall-limit"),
                              ("tenant_id", "bad tenant!", "--tenant-id"), ("scope", " ", "--scope")):
        o = Opts()
        setattr(o, attr, value)
        with pytest.raises(OptionError, match=flag):
            SuiteConfig.from_options(o)
    qs = tmp_path / "qs.json"
    qs.write_text('{"scope": "other", "tenant_id": "default", "queries": [{"text": "q", "expected_min_seeds": 1}]}')
    with pytest.raises(OptionError, match="--query-set"):
        load_queries(str(qs), "s", "default")
    assert load_queries(str(qs), "other", "default") == [("q", 1)]
    assert load_queries("", "s", "default") == [("memory graph perf", 0)]
    with pytest.raises(OptionError, match="--query-set: file not found"):
        load_queries(str(tmp_path / "missing.json"), "s", "default")


def test_auth_headers_from_env() -> None:
    assert auth_headers({}) == ({}, "none")
    h, mode = auth_headers({"PERF_API_KEY": "k1", "PERF_AUTH_BEARER": "tok"})
    assert h == {"x-api-key": "k1", "authorization": "Bearer tok"} and mode == "api_key"
    assert auth_headers({"MEMORY_API_KEYS_JSON": '{"k2": {"tenant_id": "t"}}'})[0] == {"x-api-key": "k2"}


# --- pacing -------------------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_fixed_pacing_ignores_429() -> None:
    ctl = PacingController("recall", 20.0, adaptive=False, clock=FakeClock())
    ctl.register_user()
    ctl.on_429(1.0)
    assert ctl.pace_ms == 20.0 and ctl.release_delay() == 0.0 and ctl.count_429 == 1


# adaptive pacing: tests/test_pacing_convergence.py


# --- open model ---------------------------------------------------------------------------------------------------

def test_schedule_slots_late_and_dropped() -> None:
    clock = FakeClock()
    s = ArrivalSchedule(10.0, late_ms=5, drop_ms=1000, clock=clock)
    first = s.next_slot()
    assert first.intended == 1000.0 and first.dropped_before == 0
    assert s.next_slot().intended == pytest.approx(1000.1)
    clock.t = 1003.0  # 3 s behind: slots older than 1 s are dropped
    slot = s.next_slot()
    assert slot.intended >= clock.t - 1.0 - 1e-9
    assert slot.dropped_before == round((slot.intended - 1000.2) * 10)
    assert s.is_late(slot.intended, clock.t) and not s.is_late(clock.t, clock.t + 0.001)


# --- exact stats --------------------------------------------------------------------------------------------------

def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q)) - 1]


def test_exact_percentiles_match_nearest_rank_within_histogram_precision() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(1.5, 0.6) for _ in range(5000)]
    cs = CaseStats()
    ok = classify("health", 200, b'{"ok":true}')
    for v in values:
        cs.record(ok, v, 0.0, 1.0)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert cs.percentile_ms(q) == pytest.approx(_nearest_rank(values, q), rel=1e-3)
    assert cs.latency_summary()["mean"] == pytest.approx(float(np.mean(values)), abs=1e-4)  # 0.1 us rounding
    assert cs.latency_summary()["max"] == pytest.approx(max(values), abs=1e-4)
    cdf = cs.cdf()
    assert cdf[-1][1] == 1.0 and all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(cdf))


def test_vectorised_histogram_add_equals_record_value() -> None:
    rng = random.Random(11)
    values = [rng.randint(1, HIGHEST_US) for _ in range(5000)] + [int(rng.lognormvariate(8, 2)) % HIGHEST_US + 1
                                                                 for _ in range(5000)]
    values += [1, 2, 2047, 2048, 2049, 4095, 4096, HIGHEST_US]
    one_by_one, batched = new_histogram(), new_histogram()
    for v in values:
        one_by_one.record_value(v)
    record_many(batched, values)
    assert batched.encode() == one_by_one.encode()
    assert (batched.get_total_count(), batched.get_min_value(), batched.get_max_value()) == \
        (one_by_one.get_total_count(), one_by_one.get_min_value(), one_by_one.get_max_value())


def test_merged_workers_equal_one_recorder() -> None:
    """Deltas of two 'workers', through the wire format, merge into exactly what one recorder would hold."""
    rng = random.Random(3)
    ok = classify("health", 200, b'{"ok":true}')
    r429 = classify("recall", 429, b"{}")
    single, w1, w2 = CaseStats(), Recorder(), Recorder()
    for i in range(3000):
        v = rng.expovariate(1 / 8)
        verdict = r429 if i % 17 == 0 else ok
        single.record(verdict, v, i, i + 1)
        (w1 if i % 3 else w2).case("recall_text").record(verdict, v, i, i + 1)
    agg = Aggregate()
    for name, rec in (("worker0", w1), ("worker1", w2)):
        agg.merge(name, Recorder.delta_from_wire(Recorder.delta_to_wire(rec.take_delta())))
    merged = agg.cases["recall_text"]
    assert merged.total == single.total and merged.ok == single.ok
    assert merged.by_status == single.by_status and merged.errors == single.errors
    for q in (0.5, 0.95, 0.99):
        assert merged.percentile_ms(q) == single.percentile_ms(q)
    assert sum(c["recall_text"]["total"] for c in agg.per_source.values()) == 3000
    assert merged.summary()["by_status"]["429"] == len(range(0, 3000, 17))


# --- budgets ------------------------------------------------------------------------------------------------------

def test_budget_exact_counts_and_sequential_phases_across_nodes() -> None:
    """Three 'workers' with batching, a master dispenser, sequential phases: exact totals, write after recall."""
    log: list[tuple[str, float]] = []
    finished: list[str] = []
    pools: dict[str, TokenPool] = {}

    def grant(node: str, cls: str, n: int, until: float | None) -> None:
        gevent.spawn_later(0.001, pools[node].on_grant, cls, n, until)  # a message hop

    disp = TokenDispenser({"recall": 57, "write": 13}, True, grant, finished.append, lambda: finished.append("ALL"))
    for node in ("w0", "w1", "w2"):
        pools[node] = TokenPool(
            ["recall", "write"],
            request=lambda c, n, node=node: gevent.spawn_later(0.001, disp.on_request, node, c, n),
            done=lambda c, node=node: gevent.spawn_later(0.001, disp.on_done, node, c),
            batch=lambda c: 3)

    def user(node: str, cls: str) -> None:
        pool = pools[node]
        while pool.take(cls):
            log.append((cls, 0.0))
            if cls == "recall":
                assert "write" not in [c for c, _ in log[:-1]], "write ran before recall finished"
            gevent.sleep(random.random() * 0.002)
            pool.complete(cls)

    greenlets = [gevent.spawn(user, node, cls) for node in pools for cls in ("recall", "recall", "write")]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert all(g.dead for g in greenlets)
    assert [c for c, _ in log].count("recall") == 57 and [c for c, _ in log].count("write") == 13
    first_write = next(i for i, (c, _) in enumerate(log) if c == "write")
    assert all(c == "write" for c, _ in log[first_write:])
    gevent.sleep(0.05)
    assert finished == ["recall", "write", "ALL"]


def test_duration_budget_opens_each_window_at_its_first_grant_and_closes_it() -> None:
    """Fake clock: recall runs 10 s from its first grant, write 10 s from the moment recall has finished; no token
    is handed out after a window closed, and a class ends only when every node that got tokens is done."""
    now = [1000.0]
    timers: list[tuple[float, object]] = []
    grants: list[tuple[str, str, int, float | None]] = []
    finished: list[str] = []
    disp = TokenDispenser({}, True, lambda node, c, n, until: grants.append((node, c, n, until)), finished.append,
                          lambda: finished.append("ALL"), durations={"recall": 10.0, "write": 10.0},
                          clock=lambda: now[0], call_later=lambda delay, fn: timers.append((now[0] + delay, fn)))
    disp.on_request("a", "write", 1)  # write's phase has not started: queued, no window yet
    assert grants == [] and "write" not in disp.deadline
    now[0] = 1003.0
    disp.on_request("a", "recall", 2)
    assert grants[-1][:2] == ("a", "recall") and grants[-1][2] >= 2 and grants[-1][3] == 1013.0
    now[0] = 1012.0
    disp.on_request("b", "recall", 1)  # window still open
    assert grants[-1][3] == 1013.0 and grants[-1][2] > 0
    now[0] = 1013.5
    disp.on_request("a", "recall", 1)  # closed: nothing more
    assert grants[-1][2] == 0
    due, fire = timers.pop(0)
    assert due == 1013.0
    fire()
    assert finished == []  # a and b still have requests in flight
    disp.on_done("a", "recall")
    disp.on_done("b", "recall")
    assert finished == ["recall"]
    # the queued write request is granted now, and write's own window starts here
    assert grants[-1][:2] == ("a", "write") and grants[-1][3] == 1023.5
    timers.pop(0)[1]()
    disp.on_done("a", "write")
    assert finished == ["recall", "write", "ALL"]


def test_pool_voids_its_tokens_when_the_window_closes() -> None:
    now = [0.0]
    done: list[str] = []
    pool = TokenPool(["recall"], request=lambda c, n: None, done=done.append, batch=lambda c: 1,
                     clock=lambda: now[0])
    pool.on_grant("recall", 50, until=5.0)
    assert pool.take("recall")
    pool.complete("recall")
    now[0] = 5.0
    assert pool.take("recall") is False and done == ["recall"]


def test_server_timing_and_record_categories() -> None:
    assert parse_server_timing("total;dur=12.5, db;dur=3.25") == (12.5, 3.25)
    assert parse_server_timing('app;desc="x";dur=7, sql;dur=1') == (7.0, 1.0)
    assert parse_server_timing("cache;desc=hit") == (None, None) and parse_server_timing(None) == (None, None)
    assert {CATEGORY[c] for c in (OK, RATE_LIMITED, CLIENT_4XX, SERVER_5XX, TRANSPORT, EMPTY_RECALL, INVALID_BODY)} \
        == {"ok", "429", "4xx", "5xx", "transport", "empty_recall"}


def test_records_travel_with_the_worker_report() -> None:
    rec = Recorder()
    verdict = classify("recall_text", 200, FULL_RECALL % b"")
    rec.case("recall_text").record(verdict, 1.5, 10.0, 10.0015)
    rec.rows.append((10.0, "recall_text", 1.5, 200, "ok", 1.2, 0.4))
    agg = Aggregate()
    written: list[list[tuple]] = []
    agg.records = type("Sink", (), {"write": lambda self, rows: written.append(list(rows))})()
    agg.merge("worker0", Recorder.delta_from_wire(Recorder.delta_to_wire(rec.take_delta())))
    assert written == [[(10.0, "recall_text", 1.5, 200, "ok", 1.2, 0.4)]] and agg.record_count == 1
    assert rec.take_delta()["rows"] == []


def test_server_timing_spellings_and_records_lines_as_csv_writes_them(tmp_path) -> None:
    """The per-request parser and line formatter are hand-written for speed: same results as the plain ways."""
    import csv

    from locustfiles.records import HEADER, RecordsWriter, read_records

    assert parse_server_timing("Total;DUR=1.5,DB; dur = 2") == (1.5, 2.0)  # names and `dur` case-insensitive
    assert parse_server_timing('x;dur=1;desc="a", total ; dur=4') == (4.0, None)  # a dur belongs to its metric
    assert parse_server_timing("app;desc=x, db;desc=y") == (None, None)
    rows = [(1733333333.123456, "recall_text", 1.23456789, 200, "ok", 3.412, 2.087),
            (1.0, "write", 2.0, 0, "transport", None, None)]
    w = RecordsWriter(tmp_path / "l")
    w.write(rows)
    w.close()
    expected = tmp_path / "expected.csv"
    with open(expected, "w", newline="") as fh:
        cw = csv.writer(fh)
        cw.writerow(HEADER)
        cw.writerows((f"{t:.3f}", e, f"{lat:.4f}", str(s), c, "" if a is None else f"{a:.3f}",
                      "" if b is None else f"{b:.3f}") for t, e, lat, s, c, a, b in rows)
    assert w.path.read_bytes() == expected.read_bytes() and w.rows == 2
    back = read_records(w.path)
    assert [(r["status"], r["category"], r["server_ms"], r["db_ms"]) for r in back] == [
        (200, "ok", 3.412, 2.087), (0, "transport", None, None)]
