"""The suite's per-process state and its wiring into Locust's event hooks.

One `Suite` lives on each Locust environment (local runner, master or worker). It owns the pacing controllers,
the open-model schedules, the request budget (pool and/or dispenser, joined by `locustfiles.budget.BudgetLink`),
the exact-latency recorder and, on the master/local runner, the merged aggregate that `locustfiles.artifacts`
writes next to Locust's CSV files at quit, and, streamed during the run, `<csv prefix>_requests.csv` (one row per
measured request; workers ship theirs). The web UI's Pacing tab is `locustfiles.webui`.
Everything that depends on options happens at `test_start`, because workers get the master's options only then.
The master (or local runner) runs the preflight there, before any user starts; its verdict reaches the workers in
the options of the spawn message (`memload_refused`, `memload_expect_seeds`).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import Counter
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from locustfiles.artifacts import write_artifacts
from locustfiles.budget import BudgetLink, TokenDispenser, TokenPool
from locustfiles.exact_stats import Aggregate, Recorder
from locustfiles.open_model import ArrivalSchedule
from locustfiles.options import (
    FALLBACK_QUERY,
    WARMUP_QUERY,
    OptionError,
    SuiteConfig,
    add_arguments,
    load_queries,
)
from locustfiles.pacing import PacingController
from locustfiles.preflight import EXIT_KIND, run_preflight
from locustfiles.records import CATEGORY, RecordsWriter
from locustfiles.validation import Verdict
from locustfiles.webui import extend_web_ui
from memload.client import ApiClient, RequestFailed, auth_headers, recall_text_body
from memload.contract import RECALL_TEXT
from memload.errors import ExitCode

log = logging.getLogger("memload")

SUITE_ATTR = "memload_suite"
REPORT_KEY = "memload"
FINISH_DELAY_S = 1.2  # > Locust's 1 s CSV write interval, so the CSV files hold the final counts
TICK_S = 1.0


def suite_of(environment: Any) -> Suite:
    return getattr(environment, SUITE_ATTR)


class Suite:
    """Per-environment state of the suite (see the module docstring)."""

    def __init__(self, environment: Any) -> None:
        self.env = environment
        self.cfg: SuiteConfig | None = None
        self.recorder = Recorder()
        self.aggregate = Aggregate()
        self.controllers: dict[str, PacingController] = {}
        self.schedules: dict[str, ArrivalSchedule] = {}
        self._budget: BudgetLink | None = None
        self.queries: list[tuple[str, int]] = [(FALLBACK_QUERY, 0)]
        self._query_seq = itertools.count()
        self._write_seq = itertools.count(1)
        self.headers, self.auth_mode = auth_headers()
        self.post_headers = {**self.headers, "content-type": "application/json"}
        self.run_tag = ""
        self.warmup: dict[str, Any] = {"requests": 0}
        self.completed = False
        self.stop_reason = "stopped"
        self.started_at: float | None = None
        self._ticker: gevent.Greenlet | None = None
        self._finishing = False
        self._open_model = False
        self.preflight: dict[str, Any] | None = None
        self.refused = False  # the preflight stopped this run: users do not start
        self.records: RecordsWriter | None = None

    # --- roles ---
    @property
    def is_master(self) -> bool:
        return isinstance(self.env.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.env.runner, WorkerRunner)

    @property
    def role(self) -> str:
        return "master" if self.is_master else "worker" if self.is_worker else "local"

    # --- request budget (see locustfiles.budget) ---
    @property
    def budget(self) -> BudgetLink:
        if self._budget is None:
            self._budget = BudgetLink(self.env.runner, self.role, self._local_users, self._flush_stats,
                                      self._all_done)
        return self._budget

    @property
    def pool(self) -> TokenPool | None:
        return self._budget.pool if self._budget is not None else None

    @property
    def dispenser(self) -> TokenDispenser | None:
        return self._budget.dispenser if self._budget is not None else None

    # --- lifecycle ---
    def on_init(self) -> None:
        self.budget.register()
        if not self.is_worker:
            self._select_user_classes()

    def _select_user_classes(self) -> None:
        """Profile -> user classes (unless named on the command line); fixed user counts; worker_slo -> embed."""
        opts = self.env.parsed_options
        cfg = SuiteConfig.from_options(opts)  # validates the command line early (fatal in init)
        load_queries(cfg.query_set, cfg.scope, cfg.tenant_id)
        if opts is not None and cfg.profile == "worker_slo":
            opts.embed_on_write = True
        named = bool(getattr(opts, "user_classes", None))
        classes = self.env.user_classes
        enabled = set(cfg.enabled_classes()) if not named else {"recall", "write"}
        # tasks are tagged with their endpoint class: `-T recall` / `-E write` drop the other class entirely
        # (Locust itself would fail on a user class left without tasks)
        tags, excluded = set(getattr(opts, "tags", None) or ()), set(getattr(opts, "exclude_tags", None) or ())
        if tags:
            enabled &= tags
        enabled -= excluded
        keep = [c for c in classes
                if getattr(c, "endpoint_class", None) not in ("recall", "write") or c.endpoint_class in enabled]
        if keep and len(keep) != len(classes):
            classes[:] = keep
        for cls in classes:
            count = {"recall": cfg.recall_users, "write": cfg.write_users}.get(getattr(cls, "endpoint_class", ""), 0)
            if count > 0:
                cls.fixed_count = count

    def begin(self) -> None:
        """test_start: fresh state for a run, built from the (master's) options."""
        self.cfg = None
        cfg = SuiteConfig.from_options(self.env.parsed_options)
        self.recorder, self.aggregate = Recorder(), Aggregate()
        self.controllers = {c: PacingController(c, cfg.pace_ms, cfg.adaptive) for c in ("recall", "write", "health")}
        self.schedules = {}
        self.completed, self.stop_reason, self._finishing = False, "stopped", False
        self.started_at = time.time()
        self.run_tag = cfg.run_tag or f"{int(time.time() * 1000)}_{secrets.token_hex(3)}"
        self._query_seq, self._write_seq = itertools.count(), itertools.count(1)
        timeout_s = cfg.timeout_ms / 1000.0
        for cls in self.env.user_classes:
            if getattr(cls, "endpoint_class", None):
                cls.network_timeout = cls.connection_timeout = timeout_s
        budgets, durations = self._budgets(cfg)
        limited = set(budgets) | set(durations)
        opts = self.env.parsed_options
        self.preflight, self.refused = None, False
        if not self.is_worker:
            self._open_records()
            self._run_preflight(cfg)
            if opts is not None:  # travels to the workers with the spawn message
                opts.memload_refused = self.refused
                opts.memload_expect_seeds = int(bool(self.preflight and self.preflight.get("scope_nonempty")))
        else:
            self.refused = bool(getattr(opts, "memload_refused", False))
        expect_seeds = int(getattr(opts, "memload_expect_seeds", 0) or 0) if opts is not None else 0
        self.budget.start(budgets, durations, cfg.sequential)
        if not self.is_master:
            self.queries = load_queries(cfg.query_set, cfg.scope, cfg.tenant_id)
            if not cfg.query_set and expect_seeds:  # the scope has memories: a recall with no seeds is an anomaly
                self.queries = [(FALLBACK_QUERY, 1)]
            self._ticker = gevent.spawn(self._tick_loop)
        if not self.is_worker and cfg.warmup > 0 and not self.refused:
            self._run_warmup(cfg)
        self._open_model = cfg.open_model
        self.cfg = cfg
        if self.refused:
            self.stop_reason = f"preflight: {self.preflight['error']['message']}" if self.preflight else "preflight"
            if not self.is_worker:
                kind = (self.preflight or {}).get("error", {}).get("kind")
                self.env.process_exit_code = EXIT_KIND.get(kind, int(ExitCode.ERROR))
                gevent.spawn(self._finish)
            return
        if limited:
            phases = "sequential" if cfg.sequential else "concurrent"
            log.info("memload: request limits %s, time limits %s (%s phases)", budgets,
                     {c: f"{s:g}s" for c, s in durations.items()}, phases)

    def _run_preflight(self, cfg: SuiteConfig) -> None:
        """Master/local runner: probe the target before any load (see locustfiles.preflight)."""
        host = self.env.host or ""
        if not host:
            log.warning("memload: no --host, preflight skipped")
            return
        present = {getattr(c, "endpoint_class", None) for c in self.env.user_classes}
        query = load_queries(cfg.query_set, cfg.scope, cfg.tenant_id)[0][0]
        self.preflight = run_preflight(host, scope=cfg.scope, tenant_id=cfg.tenant_id, query=query,
                                       limit=cfg.recall_limit, headers=self.headers,
                                       timeout_s=cfg.timeout_ms / 1000.0, check_scope="recall" in present,
                                       allow_empty_scope=cfg.allow_empty_scope)
        err = self.preflight.get("error")
        if err:
            self.refused = True
            log.error("memload: preflight failed: %s", err["message"])
        else:
            log.info("memload: preflight ok: health %s, scope %r has %s seeds for the first query",
                     self.preflight["health"]["status"], cfg.scope, self.preflight["seeds_seen"])

    def _open_records(self) -> None:
        """Master/local runner with a CSV prefix: (re)start `<prefix>_requests.csv` for this run."""
        if self.records is not None:
            self.records.close()
            self.records = None
        prefix = getattr(self.env.parsed_options, "csv_prefix", None)
        if prefix:
            self.records = RecordsWriter(prefix)
        self.aggregate.records = self.records

    def _budgets(self, cfg: SuiteConfig) -> tuple[dict[str, int], dict[str, float]]:
        """(request counts, time windows) of the endpoint classes that run."""
        present = {getattr(c, "endpoint_class", None) for c in self.env.user_classes}
        budgets = {c: n for c, n in cfg.budgets.items() if c in present}
        for c in set(cfg.budgets) - set(budgets):
            log.warning("memload: --%s-requests ignored: no %s user class runs", c, c)
        durations = {c: s for c, s in cfg.durations.items() if c in present}
        return budgets, durations

    def end(self) -> None:
        """test_stop: stop the ticker and fold the last samples in (local runner)."""
        if self._ticker is not None:
            self._ticker.kill(block=False)
            self._ticker = None
        self._tick()
        if not self.is_worker and not self.is_master:
            self.aggregate.merge("local", self.recorder.take_delta())
        if self.records is not None:
            self.records.flush()

    def _local_users(self, cls: str) -> int:
        counts = self.env.runner.user_classes_count
        return sum(n for name, n in counts.items()
                   if getattr(self.env.user_classes_by_name.get(name), "endpoint_class", None) == cls)

    def _flush_stats(self) -> None:
        """A worker's last pacing tick and stats, sent before it reports a class done."""
        self._tick()
        self.env.runner._send_stats()

    def _all_done(self) -> None:
        if self._finishing:
            return
        self._finishing = True
        self.completed, self.stop_reason = True, "case limits reached"
        gevent.spawn_later(FINISH_DELAY_S, self._finish)

    def _finish(self) -> None:
        opts = self.env.parsed_options
        runner = self.env.runner
        if opts is None or getattr(opts, "headless", False):
            runner.quit()
        else:
            runner.stop()

    # --- user-facing helpers ---
    def controller(self, cls: str) -> PacingController:
        return self.controllers[cls]

    def take(self, cls: str) -> bool:
        return self.budget.take(cls)

    def complete(self, cls: str) -> None:
        self.budget.complete(cls)

    def next_query(self) -> tuple[str, int]:
        return self.queries[next(self._query_seq) % len(self.queries)]

    def next_write_index(self) -> int:
        return next(self._write_seq)

    def wait_turn(self, cls: str, endpoint: str, ctl: PacingController) -> float | None:
        """Sleep until this user may send: the schedule's slot (open model) or its pace (closed), then any
        Retry-After hold. Returns the intended start (epoch s) in the open model, else None."""
        if not self._open_model:
            ctl.wait(gevent.sleep)  # the class's shared send schedule (or the user's fixed pace), holds included
            return None
        sched = self._schedule(cls)
        slot = sched.next_slot()
        case = self.recorder.case(endpoint)
        case.dropped += slot.dropped_before
        delay = slot.intended - time.time()
        if delay > 0:
            gevent.sleep(delay)
        while (hold := ctl.release_delay()) > 0:
            gevent.sleep(hold)
        sent = time.time()
        lag_ms = max(0.0, (sent - slot.intended) * 1000.0)
        case.intended += 1
        case.lag_sum_ms += lag_ms
        case.lag_max_ms = max(case.lag_max_ms, lag_ms)
        if sched.is_late(slot.intended, sent):
            case.late += 1
        return slot.intended

    def _schedule(self, cls: str) -> ArrivalSchedule:
        sched = self.schedules.get(cls)
        if sched is None:
            cfg = self.cfg
            assert cfg is not None
            sched = ArrivalSchedule(cfg.arrival_rate * self._rate_share(cls), cfg.arrival_late_ms, cfg.arrival_drop_ms)
            self.schedules[cls] = sched
        return sched

    def _rate_share(self, cls: str) -> float:
        """This process's share of --arrival-rate for `cls`: local users of the class over the users that run at
        the same time across all processes (fixed user counts when given; else this process is assumed alone)."""
        cfg = self.cfg
        assert cfg is not None
        local = {c: self._local_users(c) for c in ("recall", "write", "health")}
        fixed = {"recall": cfg.recall_users, "write": cfg.write_users}
        total = {c: fixed.get(c) or local[c] for c in local}
        phased = cls in cfg.budgets or cls in cfg.durations  # a case of its own under sequential phases
        concurrent = [cls] if (cfg.sequential and phased) else [c for c in total if total[c]]
        denominator = sum(total[c] for c in concurrent) or 1
        return max(local[cls], 1) / denominator

    # --- events ---
    def record(self, endpoint: str, verdict: Verdict, start: float, latency_ms: float, intended: float | None,
               status: int, server_ms: float | None, db_ms: float | None) -> None:
        """One finished request of a suite user (its exact latency, verdict and records row), called by the user
        itself rather than through Locust's `request` event, which every other listener would pay for too."""
        end = start + latency_ms / 1000.0
        if intended is not None:
            latency_ms = (end - intended) * 1000.0
        recorder = self.recorder
        (recorder.cases.get(endpoint) or recorder.case(endpoint)).record(verdict, latency_ms, start, end)
        recorder.rows.append((start if intended is None else intended, endpoint, latency_ms, status,
                              CATEGORY[verdict.category], server_ms, db_ms))

    def report_delta(self) -> dict[str, Any]:
        self.snapshot_states()
        return Recorder.delta_to_wire(self.recorder.take_delta())

    def merge_report(self, client_id: str, wire: dict[str, Any] | None) -> None:
        if wire:
            self.aggregate.merge(self._source_name(client_id), Recorder.delta_from_wire(wire))

    def _source_name(self, client_id: str) -> str:
        indexes = getattr(self.env.runner, "worker_indexes", {})
        return f"worker{indexes[client_id]}" if client_id in indexes else client_id

    # --- pacing timeline ---
    def _tick_loop(self) -> None:
        while True:
            gevent.sleep(TICK_S - (time.time() % TICK_S))
            self._tick()
            if not self.is_worker:
                self.aggregate.merge("local", self.recorder.take_delta())

    def _tick(self) -> None:
        ts = int(time.time())
        for name, ctl in self.controllers.items():
            pace, c429, cok = ctl.take_tick()
            if ctl.users or c429 or cok:
                self.recorder.pacing_rows.append((ts, name, pace, c429, cok))
        self.snapshot_states()

    def snapshot_states(self) -> None:
        for name, ctl in self.controllers.items():
            if ctl.users or ctl.count_ok or ctl.count_429:
                self.recorder.pacing_state[name] = ctl.snapshot()

    # --- warmup ---
    def _run_warmup(self, cfg: SuiteConfig) -> None:
        """The Aionis kit's warmup: sequential recall_text calls, outside every statistic."""
        host = self.env.host or ""
        by_status: Counter[str] = Counter()
        started = time.perf_counter()
        if not host:
            log.warning("memload: no --host, warmup skipped")
            return
        client = ApiClient(host, headers=self.headers, timeout_s=cfg.timeout_ms / 1000.0, max_429_retries=0)
        body = recall_text_body(cfg.tenant_id, cfg.scope, WARMUP_QUERY, 20)
        for _ in range(cfg.warmup):
            try:
                by_status[str(client.request("POST", RECALL_TEXT, body).status)] += 1
            except RequestFailed as exc:  # transport errors are counted, as in the run
                by_status[f"error:{type(exc.cause or exc).__name__}"] += 1
        ok = sum(n for k, n in by_status.items() if k.startswith("2"))
        self.warmup = {"requests": cfg.warmup, "ok": ok, "failed": cfg.warmup - ok, "by_status": dict(by_status),
                       "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 3)}
        log.info("memload: warmup %s", self.warmup)


def install(events: Any) -> None:
    """Register the suite's options and listeners on Locust's event hooks (called by each locustfile once)."""
    if getattr(events, "_memload_installed", False):
        return
    events._memload_installed = True

    @events.init_command_line_parser.add_listener
    def _parser(parser: Any, **_: Any) -> None:
        add_arguments(parser)

    @events.init.add_listener
    def _init(environment: Any, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
        suite = Suite(environment)
        setattr(environment, SUITE_ATTR, suite)
        _current_env[0] = environment  # request/report events carry no environment; one per process
        if runner is not None:
            try:
                suite.on_init()
            except OptionError as exc:  # a bad command-line value: one line, no traceback
                log.error("memload: %s", exc)
                raise SystemExit(int(ExitCode.USAGE)) from None
        if web_ui is not None:
            extend_web_ui(suite, web_ui)

    @events.test_start.add_listener
    def _start(environment: Any, **_: Any) -> None:
        suite = suite_of(environment)
        try:
            suite.begin()
        except OptionError as exc:  # e.g. a bad value typed into the web UI's form: stop, say why
            suite.cfg = None
            log.error("memload: %s; stopping", exc)
            environment.process_exit_code = int(ExitCode.USAGE)
            gevent.spawn(environment.runner.quit if suite.is_worker else environment.runner.stop)

    @events.test_stop.add_listener
    def _stop(environment: Any, **_: Any) -> None:
        suite_of(environment).end()

    @events.report_to_master.add_listener
    def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        env = _current_env[0]
        if env is not None:
            data[REPORT_KEY] = suite_of(env).report_delta()

    @events.worker_report.add_listener
    def _worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        env = _current_env[0]
        if env is not None:
            suite_of(env).merge_report(client_id, data.get(REPORT_KEY))

    @events.quitting.add_listener
    def _quitting(environment: Any, **_: Any) -> None:
        suite = suite_of(environment)
        if not suite.is_worker:
            suite.end()
            write_artifacts(suite)


_current_env: list[Any] = [None]
