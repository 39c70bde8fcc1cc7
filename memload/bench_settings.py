"""The benchmark's settings, each declared once: flag, environment variable, type, bounds, help, profile defaults.

`memload bench` builds its argparse options from this table, `memload matrix` its benchmark variables, and the Locust
file its parser options, so a bound or a name cannot drift between them: a new setting or a new profile is one edit
here. Each surface reports a bad value in its own style (argparse error, ConfigError, OptionError) with the message
`convert` gives, prefixed by the flag or variable it came from.

Zero where a count means "not set": `memload bench` and the matrix leave an unset count empty (a time-based case, a
closed model); Locust's options need a value, so there 0 spells "not set" (`LocustTwin.zero_is_unset`). Everywhere
else a count starts at 1.

Locust is never imported here (its import patches the process with gevent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from memload.config import parse_bool
from memload.contract import RECALL_INT_BOUNDS
from memload.errors import ConfigError

PROFILES = ("balanced", "recall_slo", "write_slo", "worker_slo")  # the Aionis kit's PERF_PROFILE values
MODES = ("all", "recall", "write")
RECALL_ENDPOINTS = ("recall_text", "recall", "mixed")

# The scope every benchmark command reads and writes by default: the one `memload seed` fills and the compose Locust
# services load. `MEMLOAD_SCOPE` sets it for every command; a command's own older variable still wins for it.
SCOPE_ENV = "MEMLOAD_SCOPE"
SCOPE_DEFAULT = "perf"
SCOPE_ENV_ALIASES: dict[str, str] = {
    "seed": "MEMLOAD_SEED_SCOPE", "ann-check": "MEMLOAD_ANN_SCOPE",
    "explain": "MEMLOAD_EXPLAIN_SCOPE",
}


def scope_envs(command: str) -> tuple[str, ...]:
    """Variables `command` reads its scope from, first set wins: its own older name, then MEMLOAD_SCOPE."""
    own = SCOPE_ENV_ALIASES.get(command)
    return (own, SCOPE_ENV) if own else (SCOPE_ENV,)


class SettingValueError(ValueError):
    """A value outside a setting's type or bounds; the message does not name the flag (each surface adds it)."""


@dataclass(frozen=True)
class LocustTwin:
    """How a setting appears among the Locust file's options."""

    env: str  # the MEMLOAD_* twin Locust reads
    flag: str | None = None  # when Locust's flag differs from the bench flag
    default: Any = None  # Locust's own default (a value is always needed there)
    zero_is_unset: bool = False  # 0 spells "not set": no request limit, users by weight, the closed model
    own_flag: bool = False  # Locust already has the flag (`--profile`): only the env twin is added


@dataclass(frozen=True)
class Setting:
    """One benchmark setting. `env` is both its environment variable and, with `matrix`, its matrix variable."""

    name: str  # attribute name (argparse dest)
    flag: str
    env: str
    kind: str  # int | float | str | choice | bool
    help: str
    default: Any = None  # None = unset
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    profiles: Mapping[str, Any] = field(default_factory=dict)  # per-profile defaults (bench and matrix)
    matrix_profiles: Mapping[str, Any] = field(default_factory=dict)  # the matrix's own presets, over `profiles`
    bench: bool = True  # an option of `memload bench`
    matrix: bool = False  # a variable of `memload matrix`
    matrix_default: Any = ...  # when the matrix default differs (... = same as `default`)
    locust: LocustTwin | None = None

    @property
    def locust_flag(self) -> str:
        return (self.locust.flag if self.locust and self.locust.flag else None) or self.flag

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return self.lo, self.hi

    def matrix_default_raw(self) -> str:
        value = self.default if self.matrix_default is ... else self.matrix_default
        return "" if value is None else _raw(value)

    def profile_value(self, profile: str, *, matrix: bool = False) -> Any:
        """The profile's default for this setting (`...` when the profile leaves it alone)."""
        if matrix and profile in self.matrix_profiles:
            return self.matrix_profiles[profile]
        return self.profiles.get(profile, ...)


def _raw(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def convert(s: Setting, raw: Any) -> Any:
    """`raw` (a string from a flag or variable, or an already typed default) as the setting's type, in bounds.

    Floats given as integers stay ints (`30`, not `30.0`, in echoes and child command lines)."""
    if s.kind == "bool":
        if isinstance(raw, bool):
            return raw
        try:
            return parse_bool(str(raw), name="")
        except ConfigError:
            raise SettingValueError(f"expected true/false, got {str(raw)!r}") from None
    if s.kind in ("str", "choice"):
        value = str(raw)
        if s.kind == "choice" and value not in s.choices:
            raise SettingValueError(f"invalid choice: {value!r} (choose from {', '.join(s.choices)})")
        return value
    num: float
    if s.kind == "int":
        try:
            num = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw).strip())
        except ValueError:
            raise SettingValueError(f"invalid int value: {str(raw)!r}") from None
    else:
        num = _number(raw)
    if not _in_bounds(num, s.lo, s.hi):
        raise SettingValueError(f"{num} is out of range [{_fmt(s.lo)}, {_fmt(s.hi)}]")
    return num


def _number(raw: Any) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise SettingValueError(f"invalid number: {str(raw)!r}") from None


def _in_bounds(value: float, lo: float | None, hi: float | None) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _fmt(bound: float | None) -> str:
    return "-inf" if bound is None else f"{bound:g}" if isinstance(bound, float) else str(bound)


_, RECALL_LIMIT_MIN, RECALL_LIMIT_MAX = RECALL_INT_BOUNDS["limit"]
_MAX_COUNT = 100_000_000
_MAX_USERS = 10_000
_MAX_MS = 3_600_000

SETTINGS: tuple[Setting, ...] = (
    Setting("base_url", "--base-url", "BASE_URL", "str",
            "server to load (loopback unless --allow-remote); default http://127.0.0.1:$PORT (3001)"),
    Setting("scope", "--scope", SCOPE_ENV, "str", "memory scope the users read and write", default=SCOPE_DEFAULT,
            locust=LocustTwin(SCOPE_ENV, default=SCOPE_DEFAULT)),
    Setting("tenant_id", "--tenant-id", "MEMLOAD_TENANT_ID", "str", "tenant id sent in every body", default="default",
            locust=LocustTwin("MEMLOAD_TENANT_ID", default="default")),
    Setting("profile", "--profile", "PERF_PROFILE", "choice",
            "the Aionis kit's profile: presets for the flags not given", default="balanced",
            choices=PROFILES, matrix=True,
            locust=LocustTwin("MEMLOAD_PROFILE", own_flag=True)),
    Setting("mode", "--mode", "BENCH_MODE", "choice", "cases to run (all = recall then write)", default="all",
            choices=MODES, matrix=True, profiles={"recall_slo": "recall", "write_slo": "write"},
            matrix_profiles={"worker_slo": "recall"}),
    Setting("warmup", "--warmup", "BENCH_WARMUP", "int",
            "sequential recall_text warmup calls before the users start, excluded from the stats", default=20,
            lo=0, hi=100_000, matrix=True, profiles={"write_slo": 10},
            locust=LocustTwin("MEMLOAD_WARMUP", default=0)),
    Setting("duration_s", "--duration-s", "BENCH_DURATION_S", "float",
            "seconds each case without a request count runs, from its first request after the warm-up "
            "(time-based, the default mode)", default=30, lo=0.1, hi=86_400, matrix=True,
            locust=LocustTwin("MEMLOAD_DURATION_S", default=0.0, zero_is_unset=True)),
    Setting("recall_requests", "--recall-requests", "RECALL_REQUESTS", "int",
            "recall requests in total: makes the recall case count-based [default: time-based]", lo=1, hi=_MAX_COUNT,
            matrix=True, locust=LocustTwin("MEMLOAD_RECALL_REQUESTS", default=0, zero_is_unset=True)),
    Setting("recall_concurrency", "--recall-concurrency", "RECALL_CONCURRENCY", "int", "recall users", default=12,
            lo=1, hi=_MAX_USERS, matrix=True, profiles={"recall_slo": 6, "worker_slo": 4},
            locust=LocustTwin("MEMLOAD_RECALL_USERS", flag="--recall-users", default=0, zero_is_unset=True)),
    Setting("write_requests", "--write-requests", "WRITE_REQUESTS", "int",
            "write requests in total: makes the write case count-based [default: time-based]", lo=1, hi=_MAX_COUNT,
            matrix=True, locust=LocustTwin("MEMLOAD_WRITE_REQUESTS", default=0, zero_is_unset=True)),
    Setting("write_concurrency", "--write-concurrency", "WRITE_CONCURRENCY", "int", "write users", default=4,
            lo=1, hi=_MAX_USERS, matrix=True, profiles={"write_slo": 2},
            locust=LocustTwin("MEMLOAD_WRITE_USERS", flag="--write-users", default=0, zero_is_unset=True)),
    Setting("timeout_ms", "--timeout-ms", "BENCH_TIMEOUT_MS", "int", "per-request timeout (ms)", default=15000,
            lo=1, hi=_MAX_MS, matrix=True, locust=LocustTwin("MEMLOAD_TIMEOUT_MS", default=15000)),
    Setting("pace_ms", "--pace-ms", "BENCH_PACE_MS", "float",
            "wait of each user before every request (ms); the adaptive wait never goes below it", default=0,
            lo=0, hi=_MAX_MS, matrix=True, matrix_profiles={"recall_slo": 50, "write_slo": 150, "worker_slo": 40},
            locust=LocustTwin("MEMLOAD_PACE_MS", default=0.0)),
    Setting("fail_on_transport_error_rate", "--fail-on-transport-error-rate", "BENCH_FAIL_ON_TRANSPORT_ERROR_RATE",
            "float",
            "transport-error gate: ok=false and exit 2 when a case's transport error rate exceeds it (1 = off)",
            default=0.01, lo=0.0, hi=1.0, matrix=True, matrix_default=None,
            matrix_profiles={"recall_slo": 0, "write_slo": 0}),
    Setting("max_5xx_rate", "--max-5xx-rate", "BENCH_MAX_5XX_RATE", "float",
            "server-error gate: ok=false and exit 2 when a case's share of 5xx answers (and 2xx answers whose body "
            "breaks the contract) exceeds it (1 = off)", default=0.01, lo=0.0, hi=1.0),
    Setting("allow_empty_scope", "--allow-empty-scope", "MEMLOAD_ALLOW_EMPTY_SCOPE", "bool",
            "measure even when the preflight recall finds no memories in --scope (default: stop with an error)",
            default=False, locust=LocustTwin("MEMLOAD_ALLOW_EMPTY_SCOPE", default=False)),
    Setting("embed_on_write", "--embed-on-write", "EMBED_ON_WRITE", "bool",
            "send auto_embed=true on writes (enqueues embed + topic_cluster jobs) [worker_slo: on]", default=False,
            matrix=True, profiles={"worker_slo": True}, matrix_profiles={"worker_slo": False},
            locust=LocustTwin("MEMLOAD_EMBED_ON_WRITE", default=False)),
    Setting("adaptive", "--adaptive", "MEMLOAD_ADAPTIVE", "choice",
            "on: honour Retry-After and send each endpoint class at the rate the server is measured to grant; off: the "
            "Aionis kit's fixed pacing", default="on", choices=("on", "off"),
            locust=LocustTwin("MEMLOAD_ADAPTIVE", default="on")),
    Setting("query_set", "--query-set", "MEMLOAD_QUERY_SET", "str",
            "JSON query set written by `memload seed` (questions that have answers); bench's default: "
            "MEMLOAD_HOME/query_sets/<scope key>.json if present, else the Aionis kit's constant query",
            locust=LocustTwin("MEMLOAD_QUERY_SET", default="")),
    Setting("recall_endpoint", "--recall-endpoint", "MEMLOAD_RECALL_ENDPOINT", "choice",
            "recall users call /recall_text, /recall (client-side fake-embedder vectors) or alternate (mixed)",
            default="recall_text", choices=RECALL_ENDPOINTS,
            locust=LocustTwin("MEMLOAD_RECALL_ENDPOINT", default="recall_text")),
    Setting("recall_limit", "--recall-limit", "MEMLOAD_RECALL_LIMIT", "int", "`limit` of recall requests", default=20,
            lo=RECALL_LIMIT_MIN, hi=RECALL_LIMIT_MAX, locust=LocustTwin("MEMLOAD_RECALL_LIMIT", default=20)),
    Setting("arrival_rate", "--arrival-rate", "MEMLOAD_ARRIVAL_RATE", "float",
            "open model: requests/s on a fixed schedule, latency from the intended start [default: closed model]",
            lo=0.001, hi=1e6, locust=LocustTwin("MEMLOAD_ARRIVAL_RATE", default=0.0, zero_is_unset=True)),
    Setting("arrival_late_ms", "--arrival-late-ms", "MEMLOAD_ARRIVAL_LATE_MS", "float",
            "open model: a request sent more than this after its intended start counts as late", default=5.0,
            lo=0.0, hi=_MAX_MS, bench=False, locust=LocustTwin("MEMLOAD_ARRIVAL_LATE_MS", default=5.0)),
    Setting("arrival_drop_ms", "--arrival-drop-ms", "MEMLOAD_ARRIVAL_DROP_MS", "float",
            "open model: a slot still unsent this long after its intended start is dropped (never sent)",
            default=1000.0, lo=1.0, hi=_MAX_MS, bench=False,
            locust=LocustTwin("MEMLOAD_ARRIVAL_DROP_MS", default=1000.0)),
    Setting("phases", "--phases", "MEMLOAD_PHASES", "choice",
            "with request limits: run recall then write (the Aionis kit's cases) or both at once",
            default="sequential", choices=("sequential", "concurrent"), bench=False,
            locust=LocustTwin("MEMLOAD_PHASES", default="sequential")),
    Setting("run_tag", "--run-tag", "MEMLOAD_RUN_TAG", "str", "tag in write texts/client ids (default: time+random)",
            bench=False, locust=LocustTwin("MEMLOAD_RUN_TAG", default="")),
    Setting("slo_recall_p95_ms", "--slo-recall-p95-ms", "SLO_RECALL_P95_MS", "float",
            "SLO: recall p95 must be strictly below (exit 3 otherwise)", lo=0.001, hi=1e9, matrix=True,
            matrix_default=300),
    Setting("slo_write_p95_ms", "--slo-write-p95-ms", "SLO_WRITE_P95_MS", "float",
            "SLO: write p95 must be strictly below (exit 3 otherwise)", lo=0.001, hi=1e9, matrix=True,
            matrix_default=500),
    Setting("slo_max_error_rate", "--slo-max-error-rate", "SLO_MAX_ERROR_RATE", "float",
            "SLO: failed/total of every case (429s included) must not exceed (exit 3 otherwise)", lo=0.0, hi=1.0,
            matrix=True, matrix_default=0),
    Setting("csv", "--csv", "MEMLOAD_BENCH_CSV", "str",
            "prefix of Locust's CSV files and the suite's files; default MEMLOAD_HOME/bench/<time>/locust"),
    Setting("out", "--out", "MEMLOAD_BENCH_OUT", "str", "also write the JSON result to this file"),
    Setting("workers", "--workers", "MEMLOAD_BENCH_WORKERS", "int",
            "distributed: a Locust master plus this many `--worker` processes (0 = one process)", default=0,
            lo=0, hi=64),
    Setting("processes", "--processes", "MEMLOAD_BENCH_PROCESSES", "int",
            "Locust's --processes (forked workers; -1 = one per core; 0 = off)", default=0, lo=-1, hi=64),
    Setting("max_run_s", "--max-run-s", "MEMLOAD_BENCH_MAX_RUN_S", "int",
            "hard time limit of the whole Locust run (a run cut short exits 1)", default=900, lo=1, hi=86_400),
    Setting("allow_remote", "--allow-remote", "MEMLOAD_ALLOW_REMOTE", "bool", "allow a non-loopback --base-url",
            default=False),
    Setting("verify_writes", "--verify-writes", "MEMLOAD_VERIFY_WRITES", "bool",
            "after the run, check in the database (DATABASE_URL) that every acknowledged write is there with its "
            "commit and no rejected one is (exit 4 otherwise)", default=False),
    # the matrix's run settings that profiles preset
    Setting("run_explain", "", "RUN_EXPLAIN", "bool", "run EXPLAIN after each scale", default=True, bench=False,
            matrix=True, profiles={"recall_slo": False, "write_slo": False}),
    Setting("run_worker_benchmark", "", "RUN_WORKER_BENCHMARK", "bool", "run the worker benchmark", default=True,
            bench=False, matrix=True, profiles={"recall_slo": False, "write_slo": False, "worker_slo": True}),
    Setting("worker_backlog_writes", "", "WORKER_BACKLOG_WRITES", "int",
            "auto_embed writes made before the worker benchmark", default=120, lo=0, hi=1_000_000, bench=False,
            matrix=True, profiles={"worker_slo": 200}),
    Setting("auto_adapt_rate_limit", "", "AUTO_ADAPT_RATE_LIMIT", "bool",
            "re-run the benchmark with halved concurrency on 429s", default=False, bench=False, matrix=True,
            profiles={"recall_slo": True, "write_slo": True}),
    Setting("max_rate_limit_retries", "", "MAX_RATE_LIMIT_RETRIES", "int", "adaptive attempts after the first",
            default=4, lo=0, hi=100, bench=False, matrix=True,
            profiles={"recall_slo": 10, "write_slo": 10, "worker_slo": 10}),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}


def bench_settings() -> Iterator[Setting]:
    return (s for s in SETTINGS if s.bench)


def matrix_settings() -> Iterator[Setting]:
    return (s for s in SETTINGS if s.matrix)


def locust_settings() -> Iterator[Setting]:
    return (s for s in SETTINGS if s.locust is not None)


def bench_presets(profile: str) -> dict[str, Any]:
    """`memload bench`'s defaults under `profile`: setting name -> value."""
    return {s.name: (s.default if (v := s.profile_value(profile)) is ... else v) for s in bench_settings()}


def matrix_profile_defaults(profile: str) -> dict[str, str]:
    """The matrix variables `profile` presets, as raw strings (as if given in the environment)."""
    out: dict[str, str] = {}
    for s in matrix_settings():
        value = s.profile_value(profile, matrix=True)
        if value is not ...:
            out[s.env] = _raw(value)
    return out
