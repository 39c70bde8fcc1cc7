"""`memload bench`: the seed's `job:perf-benchmark`, run by Locust (headless, as a subprocess).

One Locust run per benchmark. Each case (recall, then write) runs `--duration-s` seconds (default 30) after the
warm-up, so its percentiles rest on thousands of samples; `--recall-requests` / `--write-requests` make that case
count-based instead (exactly N requests, as the seed document's kit). Concurrency = users of that class, and with
`--mode all` the write case starts only when every recall request has completed (two sequential cases in one run,
so Locust's CSV files, the exact-latency file, the records file and the pacing timeline each cover the whole
benchmark). The warmup is the Aionis kit's: sequential recall_text calls before the users start, excluded from every
statistic (also in write mode).

Before any load the suite's preflight checks `GET /health` and runs one recall on the scope: a dead or failing
target stops the run (exit 2), a scope with no recallable memories too (exit 1; `--allow-empty-scope` to measure it
anyway).

Output: the Aionis kit's JSON schema on stdout (and `--out`), extended with 429/empty-recall categories, sample counts,
server-side time (`Server-Timing`), open-model counts, the preflight and the pacing history; Locust's CSV files
plus `_requests.csv` (one row per measured request), `_exact.json`, `_pacing.csv`, `_summary.json` and
`_locust.log` under the `--csv` prefix. Exit codes: 0 ok; 1 the run failed, did not finish, or the scope is
empty; 2 the target is dead or failed under load (transport errors above `--fail-on-transport-error-rate` or 5xx
above `--max-5xx-rate`, 1 % each by default); 3 SLO breach (`--slo-*`); 4 `--verify-writes` found a lost or
half-applied write; 64 a bad flag. Locust is never imported here (gevent patching).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from locustfiles.records import SUFFIX as RECORDS_SUFFIX
from memload.bench_settings import BY_NAME, PROFILES, bench_settings
from memload.errors import ConfigError, ExitCode, MemloadError
from memload.net import free_port, is_loopback_host
from scripts.common import log, print_json, settings_from_args
from scripts.options import add_setting
from scripts.stack import spawn

LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "memory_users.py"
# The seed document's job defaults and its profiles' mode/concurrency presets (memload.bench_settings); explicit flags
# win. Cases are time-based unless a request count is given (no preset forces one: a few hundred requests make no p99).
_PRESET = ("mode", "warmup", "duration_s", "recall_concurrency", "write_concurrency", "embed_on_write")
DEFAULTS = {name: BY_NAME[name].default for name in _PRESET if name != "embed_on_write"}
PROFILE_PRESETS: dict[str, dict[str, Any]] = {
    p: {n: v for n in _PRESET if (v := BY_NAME[n].profile_value(p)) is not ...} for p in PROFILES}
CASE_ORDER = ("recall_text", "recall", "write")
RUN_SLACK_S = 60  # start-up, preflight, warm-up and wind-down on top of the cases' windows, for --max-run-s


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="the Aionis kit's perf benchmark (recall then write) on Locust, exact latencies, JSON to stdout",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for setting in bench_settings():
        if setting.profiles and setting.kind != "bool":  # None: the profile preset applies unless given
            add_setting(p, setting, default=None, help=f"{setting.help} [profile default: {setting.default}]")
        else:
            add_setting(p, setting)
    p.set_defaults(func=run_bench)


@dataclass(frozen=True)
class Plan:
    """Resolved parameters of one benchmark."""

    base_url: str
    scope: str
    tenant_id: str
    profile: str
    mode: str
    warmup: int
    duration_s: float
    recall_requests: int | None  # None: the case is time-based
    recall_concurrency: int
    write_requests: int | None
    write_concurrency: int
    allow_empty_scope: bool
    timeout_ms: int
    pace_ms: float
    embed_on_write: bool
    adaptive: str
    query_set: str | None
    query_count: int
    recall_endpoint: str
    recall_limit: int
    arrival_rate: float | None
    csv_prefix: Path
    workers: int
    processes: int
    max_run_s: int

    @property
    def runs_recall(self) -> bool:
        return self.mode in ("all", "recall")

    @property
    def runs_write(self) -> bool:
        return self.mode in ("all", "write")

    def case_limit(self, cls: str) -> str:
        n = self.recall_requests if cls == "recall" else self.write_requests
        return f"{n} requests" if n is not None else f"{self.duration_s:g}s"

    def params(self, locust_version: str | None) -> dict[str, Any]:
        return {
            "mode": self.mode, "warmup": self.warmup, "duration_s": _num(self.duration_s),
            "recall_requests": self.recall_requests,
            "recall_concurrency": self.recall_concurrency, "write_requests": self.write_requests,
            "write_concurrency": self.write_concurrency, "timeout_ms": self.timeout_ms,
            "pace_ms": _num(self.pace_ms), "embed_on_write": self.embed_on_write, "adaptive": self.adaptive,
            "arrival_rate": self.arrival_rate, "profile": self.profile, "locust_version": locust_version,
            "recall_endpoint": self.recall_endpoint, "recall_limit": self.recall_limit,
            "query_set": self.query_set, "query_count": self.query_count,
            "workers": self.workers, "processes": self.processes, "allow_empty_scope": self.allow_empty_scope,
        }


def resolve_plan(args: argparse.Namespace) -> Plan:
    """Flags > env twins > profile presets > the Aionis kit's defaults: a ConfigError names the flag of any problem."""
    from locustfiles.options import OptionError, load_queries
    from memload.contract import TENANT_ID_RE
    from memload.identity import scope_key

    settings = settings_from_args(args)
    preset = {**DEFAULTS, **PROFILE_PRESETS[args.profile]}

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset[name] if value is None else value

    base_url = (args.base_url or f"http://127.0.0.1:{os.environ.get('PORT') or 3001}").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--base-url: expected http(s)://host[:port], got {base_url!r}")
    try:
        parts.port  # noqa: B018  (validates the port)
    except ValueError as exc:
        raise ConfigError(f"--base-url: {exc}") from None
    if not is_loopback_host(parts.hostname) and not args.allow_remote:
        raise ConfigError(f"--base-url: {parts.hostname} is not a loopback address (pass --allow-remote to load it)")
    if not args.scope.strip():
        raise ConfigError("--scope: must not be empty")
    if not TENANT_ID_RE.match(args.tenant_id):
        raise ConfigError(f"--tenant-id: {args.tenant_id!r} does not match {TENANT_ID_RE.pattern}")
    if args.workers and args.processes:
        raise ConfigError("--workers and --processes: give one of them")

    query_set = args.query_set
    if query_set is None:
        key = scope_key(args.scope, args.tenant_id, settings.memory_tenant_id)
        default = settings.memload_home / "query_sets" / f"{key}.json"
        query_set = str(default) if default.is_file() else None
    query_count = 1
    if query_set:
        query_set = str(Path(query_set).resolve())
        try:
            query_count = len(load_queries(query_set, args.scope, args.tenant_id))
        except OptionError as exc:
            raise ConfigError(str(exc)) from None

    duration_s = float(pick("duration_s"))
    recall_requests = None if args.recall_requests is None else int(args.recall_requests)
    write_requests = None if args.write_requests is None else int(args.write_requests)
    mode = pick("mode")
    timed = [c for c, n in (("recall", recall_requests), ("write", write_requests))
             if n is None and mode in ("all", c)]
    if timed and args.max_run_s < len(timed) * duration_s + RUN_SLACK_S:
        raise ConfigError(f"--max-run-s: {args.max_run_s}s cannot hold {len(timed)} case(s) of --duration-s "
                          f"{duration_s:g}s plus {RUN_SLACK_S}s of start-up and warm-up; raise it or shorten the cases")
    csv_prefix = Path(args.csv) if args.csv else (
        settings.memload_home / "bench" / time.strftime("%Y%m%dT%H%M%S") / "locust")
    return Plan(
        base_url=base_url, scope=args.scope, tenant_id=args.tenant_id, profile=args.profile, mode=mode,
        warmup=int(pick("warmup")), duration_s=duration_s, recall_requests=recall_requests,
        recall_concurrency=int(pick("recall_concurrency")), write_requests=write_requests,
        write_concurrency=int(pick("write_concurrency")), allow_empty_scope=bool(args.allow_empty_scope),
        timeout_ms=int(args.timeout_ms),
        pace_ms=float(args.pace_ms), embed_on_write=bool(args.embed_on_write or preset.get("embed_on_write")),
        adaptive=args.adaptive, query_set=query_set, query_count=query_count, recall_endpoint=args.recall_endpoint,
        recall_limit=int(args.recall_limit), arrival_rate=args.arrival_rate, csv_prefix=csv_prefix.resolve(),
        workers=int(args.workers), processes=int(args.processes), max_run_s=int(args.max_run_s),
    )


def locust_commands(plan: Plan, master_port: int | None) -> tuple[list[str], list[list[str]]]:
    """(master or single command, worker commands)."""
    py = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    recall_users = plan.recall_concurrency if plan.runs_recall else 0
    write_users = plan.write_concurrency if plan.runs_write else 0
    users = recall_users + write_users
    suite = [
        "--scope", plan.scope, "--tenant-id", plan.tenant_id, "--profile", plan.profile,
        "--recall-limit", str(plan.recall_limit), "--recall-endpoint", plan.recall_endpoint,
        "--pace-ms", repr(plan.pace_ms), "--adaptive", plan.adaptive, "--timeout-ms", str(plan.timeout_ms),
        "--warmup", str(plan.warmup), "--phases", "sequential",
        "--recall-users", str(recall_users), "--write-users", str(write_users),
        "--recall-requests", str(plan.recall_requests or 0), "--write-requests", str(plan.write_requests or 0),
        "--duration-s", repr(plan.duration_s),
        "--query-set", plan.query_set or "", "--arrival-rate", repr(plan.arrival_rate or 0.0),
    ]
    if plan.embed_on_write:
        suite.append("--embed-on-write")
    if plan.allow_empty_scope:
        suite.append("--allow-empty-scope")
    classes = [c for c, n in (("RecallUser", recall_users), ("WriteUser", write_users)) if n]
    main = [*py, "--headless", "--host", plan.base_url, "-u", str(users), "-r", str(users),
            "-t", f"{plan.max_run_s}s", "--csv", str(plan.csv_prefix), "--csv-full-history", "--only-summary",
            "--exit-code-on-error", "0",
            *suite]
    workers: list[list[str]] = []
    if plan.workers:
        assert master_port is not None
        main += ["--master", "--expect-workers", str(plan.workers), "--expect-workers-max-wait", "60",
                 "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
        workers = [[*py, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port), *classes]
                   for _ in range(plan.workers)]
    elif plan.processes:
        main += ["--processes", str(plan.processes)]
    return [*main, *classes], workers


def run_locust(plan: Plan) -> tuple[int, float]:
    """Run the Locust process(es) to completion; (exit code of the master/single process, elapsed seconds)."""
    prefix = plan.csv_prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("_summary.json", "_exact.json", "_pacing.csv", RECORDS_SUFFIX):
        Path(f"{prefix}{suffix}").unlink(missing_ok=True)
    port = free_port() if plan.workers else None
    main_cmd, worker_cmds = locust_commands(plan, port)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    procs: list[subprocess.Popen] = []
    logs = []
    started = time.monotonic()
    try:
        main_log = open(f"{prefix}_locust.log", "w")
        logs.append(main_log)
        # Each Locust process in a session of its own, told to die with this process however it ends (a SIGKILL
        # included): a run bounded in time must not leave load running behind it.
        procs.append(spawn("locust", main_cmd, cwd=Path.cwd(), env=env, stdout=main_log,
                           stderr=subprocess.STDOUT).proc)
        for i, cmd in enumerate(worker_cmds):
            wlog = open(f"{prefix}_locust_worker{i}.log", "w")
            logs.append(wlog)
            procs.append(spawn(f"locust worker {i}", cmd, cwd=Path.cwd(), env=env, stdout=wlog,
                               stderr=subprocess.STDOUT).proc)
        try:
            rc = procs[0].wait(timeout=plan.max_run_s + 90)
        except subprocess.TimeoutExpired:
            raise MemloadError(f"locust did not stop within {plan.max_run_s + 90}s; see {prefix}_locust.log") from None
        for p in procs[1:]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        return rc, time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                _terminate(p)
        for fh in logs:
            fh.close()


def _terminate(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass



def build_result(plan: Plan, summary: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The Aionis kit's JSON (ok, base_url, params, quality, cases[]) with the suite's extensions."""
    wanted = [c for c in CASE_ORDER if (c == "write" and plan.runs_write) or (c != "write" and plan.runs_recall)]
    if plan.runs_recall and plan.recall_endpoint != "mixed":
        wanted = [c for c in wanted if c == "write" or c == plan.recall_endpoint]
    pacing = summary.get("pacing", {})
    records_file = Path(f"{plan.csv_prefix}{RECORDS_SUFFIX}")
    timing = server_timing_by_case(records_file) if records_file.is_file() else {}
    cases = []
    for name in wanted:
        raw = summary.get("cases", {}).get(name)
        if raw is None:
            continue
        cls = "write" if name == "write" else "recall"
        pace = pacing.get(cls, {})
        cases.append({
            "name": name, "total": raw["total"], "ok": raw["ok"], "failed": raw["failed"], "rps": raw["rps"],
            "samples": raw["ok"], "duration_s": raw["wall_s"],
            "latency_ms": raw["latency_ms"], "by_status": raw["by_status"],
            "transport_error_count": raw["transport_error_count"], "transport_error_rate": raw["transport_error_rate"],
            "errors": raw["errors"],
            "server_timing": timing.get(name, NO_SERVER_TIMING),
            "open_model": {k: raw["open_model"][k] for k in ("intended", "late", "dropped", "lag_ms_mean",
                                                              "lag_ms_max")},
            "pacing": {"final_pace_ms": pace.get("final_pace_ms", _num(plan.pace_ms)),
                       "max_pace_ms": pace.get("max_pace_ms", _num(plan.pace_ms)),
                       "count_429": pace.get("count_429", raw["errors"].get("rate_limited_429", 0)),
                       "history": pace.get("history", [])},
            "ok_rps": raw["ok_rps"], "wall_s": raw["wall_s"],
        })
    preflight = summary.get("preflight")
    refused = bool(preflight and preflight.get("error"))
    gate = transport_gate(cases, args.fail_on_transport_error_rate)
    server_gate = server_error_gate(cases, args.max_5xx_rate)
    slo = slo_check(cases, args.slo_recall_p95_ms, args.slo_write_p95_ms, args.slo_max_error_rate)
    expected = {"write": (plan.write_requests if plan.runs_write else 0),
                "recall": (plan.recall_requests if plan.runs_recall else 0)}
    got = {"write": sum(c["total"] for c in cases if c["name"] == "write"),
           "recall": sum(c["total"] for c in cases if c["name"] != "write")}
    # a count-based case must send exactly its count; a time-based one must have run (its window was reached)
    runs = {"recall": plan.runs_recall, "write": plan.runs_write}
    complete = (bool(summary.get("completed")) and not refused
                and all(got[k] == n if n is not None else got[k] > 0 for k, n in expected.items() if runs[k]))
    prefix = plan.csv_prefix
    base = Path(args.out).resolve().parent if args.out else None
    records = summary.get("records") or {}
    return {
        "ok": not gate["failed_cases"] and not server_gate["failed_cases"] and complete and not refused,
        "base_url": plan.base_url, "auth_mode": summary.get("auth_mode", "none"),
        "scope": plan.scope, "tenant_id": plan.tenant_id,
        "params": plan.params(summary.get("locust_version")),
        "preflight": _preflight_block(preflight),
        "quality": {"transport_error_gate": gate, "server_error_gate": server_gate, "slo": slo},
        "cases": cases,
        "warmup": summary.get("warmup", {}),
        "run": {"completed": complete, "stop_reason": summary.get("stop_reason"), "expected_requests": expected,
                "requests": got, "duration_s": plan.duration_s,
                "requests_file": records_file.name if records_file.is_file() else None,
                "records": records.get("rows"),
                "workers": summary.get("workers", 0), "per_worker": summary.get("per_source", {})},
        "artifacts": {"csv_prefix": _rel(prefix, base), "exact": _rel(Path(f"{prefix}_exact.json"), base),
                      "pacing": _rel(Path(f"{prefix}_pacing.csv"), base),
                      "requests": _rel(records_file, base),
                      "summary": _rel(Path(f"{prefix}_summary.json"), base),
                      "locust_log": _rel(Path(f"{prefix}_locust.log"), base)},
    }


NO_SERVER_TIMING: dict[str, Any] = {"reported": False, "server_ms": None, "db_ms": None}


def _preflight_block(preflight: dict[str, Any] | None) -> dict[str, Any] | None:
    if preflight is None:
        return None
    return {"health": preflight.get("health"), "scope_nonempty": preflight.get("scope_nonempty"),
            "seeds_seen": preflight.get("seeds_seen", 0), "error": preflight.get("error")}


def server_timing_by_case(records_file: Path) -> dict[str, dict[str, Any]]:
    """Per endpoint: the target's own total and database time (`Server-Timing`) of its successful requests,
    nearest-rank p50/p95/p99 and mean from the exact per-request records; `reported: false` when it sends none."""
    values: dict[str, dict[str, list[float]]] = {}
    with open(records_file, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["category"] != "ok":
                continue
            per = values.setdefault(row["endpoint"], {"server_ms": [], "db_ms": []})
            for key in ("server_ms", "db_ms"):
                if row[key]:
                    per[key].append(float(row[key]))
    out = {}
    for endpoint, per in values.items():
        blocks = {key: _dist(v) for key, v in per.items()}
        out[endpoint] = {"reported": any(b is not None for b in blocks.values()), **blocks}
    return out


def _dist(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = sorted(values)
    n = len(v)

    def rank(q: float) -> float:
        return v[max(1, math.ceil(n * q)) - 1]

    return {"p50": round(rank(0.50), 3), "p95": round(rank(0.95), 3), "p99": round(rank(0.99), 3),
            "mean": round(sum(v) / n, 3), "samples": n}


def transport_gate(cases: list[dict[str, Any]], threshold: float | None) -> dict[str, Any]:
    failed = [] if threshold is None else [c["name"] for c in cases if c["transport_error_rate"] > threshold]
    return {"enabled": threshold is not None, "threshold": threshold, "failed_cases": failed}


def server_error_gate(cases: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """5xx answers (and 2xx answers whose body breaks the contract) over all requests of a case."""
    rates = {c["name"]: round((c["errors"].get("server_5xx", 0) + c["errors"].get("invalid_body", 0))
                              / c["total"], 6) if c["total"] else 0.0 for c in cases}
    return {"threshold": threshold, "rates": rates,
            "failed_cases": [name for name, rate in rates.items() if rate > threshold]}


def slo_check(cases: list[dict[str, Any]], recall_p95: float | None, write_p95: float | None,
              max_error_rate: float | None) -> dict[str, Any]:
    """The Aionis kit's report rule: pass = p95 strictly below the target AND failed/total <= the max error rate."""
    breaches = []
    for c in cases:
        target = write_p95 if c["name"] == "write" else recall_p95
        p95 = c["latency_ms"]["p95"]
        if target is not None and (p95 is None or p95 >= target):
            breaches.append({"case": c["name"], "metric": "p95_ms", "value": p95, "threshold": target})
        if max_error_rate is not None and c["total"]:
            rate = c["failed"] / c["total"]
            if rate > max_error_rate:
                breaches.append({"case": c["name"], "metric": "error_rate", "value": round(rate, 6),
                                 "threshold": max_error_rate})
    enabled = any(v is not None for v in (recall_p95, write_p95, max_error_rate))
    return {"enabled": enabled, "recall_p95_ms": recall_p95, "write_p95_ms": write_p95,
            "max_error_rate": max_error_rate, "breaches": breaches}


def run_bench(args: argparse.Namespace) -> int:
    plan = resolve_plan(args)
    verifier = _write_verifier(args, plan) if args.verify_writes else None
    mode_desc = {"all": "recall then write", "recall": "recall", "write": "write"}[plan.mode]
    cases = [f"recall {plan.case_limit('recall')}@{plan.recall_concurrency}"] if plan.runs_recall else []
    cases += [f"write {plan.case_limit('write')}@{plan.write_concurrency}"] if plan.runs_write else []
    log(f"bench {plan.base_url} scope={plan.scope} tenant={plan.tenant_id} ({mode_desc}: {', '.join(cases)}; "
        f"warmup {plan.warmup}, adaptive {plan.adaptive}, queries {plan.query_count}) -> {plan.csv_prefix}*",
        prefix="bench")
    rc, elapsed = run_locust(plan)
    summary_path = Path(f"{plan.csv_prefix}_summary.json")
    if not summary_path.is_file():
        tail = _tail(Path(f"{plan.csv_prefix}_locust.log"))
        raise MemloadError(f"locust exited with {rc} without a summary; last log lines:\n{tail}")
    summary = json.loads(summary_path.read_text())
    result = build_result(plan, summary, args)
    check = None
    if verifier is not None and not (result["preflight"] or {}).get("error"):
        check = verifier()
        result["verify_writes"] = check.as_json()
        result["ok"] = result["ok"] and check.ok
    result["run"]["locust_exit_code"] = rc
    result["run"]["elapsed_s"] = round(elapsed, 3)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    print_json(result)
    preflight_error = (result["preflight"] or {}).get("error")
    if preflight_error:
        log(f"preflight failed: {preflight_error['message']}", prefix="bench")
        return ExitCode.TARGET_FAILING if preflight_error["kind"] == "target" else ExitCode.ERROR
    for c in result["cases"]:
        lat = c["latency_ms"]
        log(f"{c['name']}: {c['ok']}/{c['total']} ok in {c['duration_s']}s, {c['rps']} req/s, p50 {lat['p50']} "
            f"p95 {lat['p95']} p99 {lat['p99']} ms ({c['samples']} samples), by_status {c['by_status']}",
            prefix="bench")
        if c["transport_error_count"]:
            kinds = ", ".join(k for k in c["by_status"] if k.startswith("error:"))
            log(f"{c['name']}: {c['transport_error_count']}/{c['total']} requests failed in transport ({kinds}): "
                f"is the server at {plan.base_url} running?", prefix="bench")
    if check is not None:
        log(f"verify-writes: {check.line()}", prefix="bench")
        if not check.ok:
            return ExitCode.WRITES_LOST
    gate, server_gate, slo = (result["quality"]["transport_error_gate"], result["quality"]["server_error_gate"],
                              result["quality"]["slo"])
    if gate["failed_cases"] or server_gate["failed_cases"]:
        if gate["failed_cases"]:
            log(f"transport-error gate failed (rate > {gate['threshold']}): {', '.join(gate['failed_cases'])} "
                f"at {plan.base_url}", prefix="bench")
        if server_gate["failed_cases"]:
            rates = ", ".join(f"{n} {server_gate['rates'][n]:.2%}" for n in server_gate["failed_cases"])
            log(f"server-error gate failed (5xx rate > {server_gate['threshold']}): {rates} at {plan.base_url}",
                prefix="bench")
        return ExitCode.TARGET_FAILING
    if not result["run"]["completed"]:
        log(f"run incomplete ({summary.get('stop_reason')}): {result['run']['requests']} of "
            f"{result['run']['expected_requests']} requests; see {plan.csv_prefix}_locust.log", prefix="bench")
        return ExitCode.ERROR
    if slo["breaches"]:
        for b in slo["breaches"]:
            log(f"SLO breach: {b['case']} {b['metric']} {b['value']} (threshold {b['threshold']})", prefix="bench")
        return ExitCode.GATE_FAILED
    return ExitCode.OK


def _write_verifier(args: argparse.Namespace, plan: Plan) -> Any:
    """Before any traffic: check the database is reachable and point the write users at an ack log; returns the
    post-run check (a callable giving a scripts.verify_writes.WriteCheck)."""
    from locustfiles.write_ack import ENV_VAR
    from memload.db import connect
    from memload.identity import scope_key
    from scripts import verify_writes
    from scripts.embedded_db import resolve_database_url

    if not plan.runs_write:
        raise ConfigError("--verify-writes: the run has no write case (use --mode all or write)")
    settings = settings_from_args(args)
    url = resolve_database_url(settings, autostart=False)
    connect(url).close()
    key = scope_key(plan.scope, plan.tenant_id, settings.memory_tenant_id)
    ack_path = Path(f"{plan.csv_prefix}_write_acks.jsonl")
    ack_path.parent.mkdir(parents=True, exist_ok=True)
    ack_path.unlink(missing_ok=True)
    os.environ[ENV_VAR] = str(ack_path)

    def check() -> Any:
        with connect(url) as conn:
            return verify_writes.verify(conn, key, verify_writes.read_acks(ack_path))

    return check


def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return str(path)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
