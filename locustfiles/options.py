"""The suite's custom Locust options (each with an env-var twin) and their validated, typed form.

Options are registered on Locust's parser so they work on the command line, in `locust.conf`, from the environment
and in the web UI's start form. Workers receive the master's values in the spawn message, so nodes read them at
`test_start`, never at import or `init`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memload.client import auth_headers as auth_headers  # one home: memload.client (re-exported for old imports)
from memload.contract import RECALL_INT_BOUNDS, TENANT_ID_RE

PROFILES = ("balanced", "recall_slo", "write_slo", "worker_slo")
RECALL_ENDPOINTS = ("recall_text", "recall", "mixed")
FALLBACK_QUERY = "memory graph perf"  # the Aionis kit's constant recall query
WARMUP_QUERY = "perf warmup"  # the Aionis kit's warmup query


class OptionError(ValueError):
    """An option has an invalid value; the message names the flag."""


def add_arguments(parser: Any) -> None:
    """Register the suite's options on Locust's (configargparse) parser, in their own `--help` group, each help
    text naming its environment twin."""
    group = parser.add_argument_group("memload suite options", "the suite's own options (env twin in brackets)")

    def a(flag: str, *, env_var: str, help: str, **kw: Any) -> None:
        group.add_argument(flag, env_var=env_var, help=f"{help} [env {env_var}]", **kw)

    a("--scope", env_var="MEMLOAD_SCOPE", default="default", help="memory scope the users read and write")
    a("--tenant-id", env_var="MEMLOAD_TENANT_ID", default="default", help="tenant id sent in every body")
    a("--recall-limit", env_var="MEMLOAD_RECALL_LIMIT", type=int, default=20, help="`limit` of recall requests")
    a("--recall-endpoint", env_var="MEMLOAD_RECALL_ENDPOINT", default="recall_text", choices=RECALL_ENDPOINTS,
      help="recall users call /recall_text, /recall (client-side fake-embedder vectors) or alternate (mixed)")
    a("--embed-on-write", env_var="MEMLOAD_EMBED_ON_WRITE", action="store_true", default=False,
      help="send auto_embed=true on writes (enqueues embed + topic_cluster jobs)")
    a("--pace-ms", env_var="MEMLOAD_PACE_MS", type=float, default=0.0,
      help="wait of each user before every request (ms); adaptive pacing never goes below it")
    a("--adaptive", env_var="MEMLOAD_ADAPTIVE", default="on", choices=("on", "off"),
      help="on: honour Retry-After and send each endpoint class at the rate the server grants; off: fixed --pace-ms")
    a("--query-set", env_var="MEMLOAD_QUERY_SET", default="",
      help="JSON query set written by `memload seed` (questions that have answers); empty = the Aionis kit's constant"
           " query")
    a("--timeout-ms", env_var="MEMLOAD_TIMEOUT_MS", type=float, default=15000.0, help="per-request timeout (ms)")
    a("--recall-requests", env_var="MEMLOAD_RECALL_REQUESTS", type=int, default=0,
      help="stop recall users after exactly this many requests in total (0 = no limit)")
    a("--write-requests", env_var="MEMLOAD_WRITE_REQUESTS", type=int, default=0,
      help="stop write users after exactly this many requests in total (0 = no limit)")
    a("--recall-users", env_var="MEMLOAD_RECALL_USERS", type=int, default=0,
      help="fixed number of recall users (0 = by weight, 3 recall : 1 write)")
    a("--write-users", env_var="MEMLOAD_WRITE_USERS", type=int, default=0,
      help="fixed number of write users (0 = by weight)")
    a("--duration-s", env_var="MEMLOAD_DURATION_S", type=float, default=0.0,
      help="time-based cases: each endpoint class without a request count runs this many seconds, from its first "
           "request (after the warm-up; with sequential phases, after the previous case) (0 = no limit)")
    a("--allow-empty-scope", env_var="MEMLOAD_ALLOW_EMPTY_SCOPE", action="store_true", default=False,
      help="run even when the preflight recall finds no memories in --scope (default: stop with an error)")
    a("--phases", env_var="MEMLOAD_PHASES", default="sequential", choices=("sequential", "concurrent"),
      help="with request limits: run recall then write (the Aionis kit's cases) or both at once")
    a("--warmup", env_var="MEMLOAD_WARMUP", type=int, default=0,
      help="sequential recall_text warmup calls before the users start (excluded from all stats)")
    a("--arrival-rate", env_var="MEMLOAD_ARRIVAL_RATE", type=float, default=0.0,
      help="open model: total requests/s on a fixed schedule, latency from the intended start (0 = closed model)")
    a("--arrival-late-ms", env_var="MEMLOAD_ARRIVAL_LATE_MS", type=float, default=5.0,
      help="open model: a request sent more than this after its intended start counts as late")
    a("--arrival-drop-ms", env_var="MEMLOAD_ARRIVAL_DROP_MS", type=float, default=1000.0,
      help="open model: a slot still unsent this long after its intended start is dropped (never sent)")
    a("--run-tag", env_var="MEMLOAD_RUN_TAG", default="", help="tag in write texts/client ids (default: time+random)")
    # Locust has its own free-form `--profile` ("group the testruns together"); the suite reads it as the Aionis kit's
    # PERF_PROFILE (balanced | recall_slo | write_slo | worker_slo) and gives it the env twin MEMLOAD_PROFILE.
    parser.set_defaults(profile=os.environ.get("MEMLOAD_PROFILE") or None)


@dataclass(frozen=True)
class SuiteConfig:
    """Validated options of one run."""

    scope: str
    tenant_id: str
    profile: str
    recall_limit: int
    recall_endpoint: str
    embed_on_write: bool
    pace_ms: float
    adaptive: bool
    query_set: str
    timeout_ms: float
    recall_requests: int
    write_requests: int
    duration_s: float
    allow_empty_scope: bool
    recall_users: int
    write_users: int
    sequential: bool
    warmup: int
    arrival_rate: float
    arrival_late_ms: float
    arrival_drop_ms: float
    run_tag: str

    @classmethod
    def from_options(cls, opts: Any) -> SuiteConfig:
        """Build from Locust's parsed options, raising OptionError (naming the flag) on bad values."""

        def get(name: str, default: Any = None) -> Any:
            return getattr(opts, name, default) if opts is not None else default

        profile = str(get("profile", None) or "balanced")
        if profile not in PROFILES:  # Locust's own free-form label: run everything, as `balanced`
            profile = "balanced"
        cfg = cls(
            scope=str(get("scope", "default")),
            tenant_id=str(get("tenant_id", "default")),
            profile=profile,
            recall_limit=_int(get("recall_limit", 20), "--recall-limit"),
            recall_endpoint=str(get("recall_endpoint", "recall_text")),
            embed_on_write=_bool(get("embed_on_write", False)) or profile == "worker_slo",
            pace_ms=_float(get("pace_ms", 0.0), "--pace-ms"),
            adaptive=str(get("adaptive", "on")).lower() in ("on", "true", "1", "yes"),
            query_set=str(get("query_set", "") or ""),
            timeout_ms=_float(get("timeout_ms", 15000.0), "--timeout-ms"),
            recall_requests=_int(get("recall_requests", 0), "--recall-requests"),
            write_requests=_int(get("write_requests", 0), "--write-requests"),
            duration_s=_float(get("duration_s", 0.0), "--duration-s"),
            allow_empty_scope=_bool(get("allow_empty_scope", False)),
            recall_users=_int(get("recall_users", 0), "--recall-users"),
            write_users=_int(get("write_users", 0), "--write-users"),
            sequential=str(get("phases", "sequential")) == "sequential",
            warmup=_int(get("warmup", 0), "--warmup"),
            arrival_rate=_float(get("arrival_rate", 0.0), "--arrival-rate"),
            arrival_late_ms=_float(get("arrival_late_ms", 5.0), "--arrival-late-ms"),
            arrival_drop_ms=_float(get("arrival_drop_ms", 1000.0), "--arrival-drop-ms"),
            run_tag=str(get("run_tag", "") or ""),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.scope.strip():
            raise OptionError("--scope: must not be empty")
        if not TENANT_ID_RE.match(self.tenant_id):
            raise OptionError(f"--tenant-id: {self.tenant_id!r} does not match {TENANT_ID_RE.pattern}")
        _, lo, hi = RECALL_INT_BOUNDS["limit"]
        if not lo <= self.recall_limit <= hi:
            raise OptionError(f"--recall-limit: {self.recall_limit} is out of range [{lo}, {hi}]")
        if self.recall_endpoint not in RECALL_ENDPOINTS:
            raise OptionError(f"--recall-endpoint: must be one of {', '.join(RECALL_ENDPOINTS)}")
        for flag, value, lo_f in (("--pace-ms", self.pace_ms, 0.0), ("--timeout-ms", self.timeout_ms, 1.0),
                                  ("--arrival-rate", self.arrival_rate, 0.0),
                                  ("--duration-s", self.duration_s, 0.0),
                                  ("--arrival-late-ms", self.arrival_late_ms, 0.0),
                                  ("--arrival-drop-ms", self.arrival_drop_ms, 1.0)):
            if not value >= lo_f or value != value or value == float("inf"):
                raise OptionError(f"{flag}: must be a finite number >= {lo_f:g}, got {value}")
        for flag, value in (("--recall-requests", self.recall_requests), ("--write-requests", self.write_requests),
                            ("--recall-users", self.recall_users), ("--write-users", self.write_users),
                            ("--warmup", self.warmup)):
            if value < 0:
                raise OptionError(f"{flag}: must be >= 0, got {value}")

    @property
    def budgets(self) -> dict[str, int]:
        """Request limits per endpoint class (only the limited ones)."""
        return {k: v for k, v in (("recall", self.recall_requests), ("write", self.write_requests)) if v > 0}

    @property
    def durations(self) -> dict[str, float]:
        """Time windows per endpoint class (the classes without a request count, when --duration-s is given)."""
        if self.duration_s <= 0:
            return {}
        return {c: self.duration_s for c in ("recall", "write") if c not in self.budgets}

    @property
    def open_model(self) -> bool:
        return self.arrival_rate > 0

    def enabled_classes(self) -> tuple[str, ...]:
        """Endpoint classes the profile runs when the user did not name user classes."""
        return {"recall_slo": ("recall",), "write_slo": ("write",)}.get(self.profile, ("recall", "write"))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adaptive"] = "on" if self.adaptive else "off"
        return d


def _int(value: Any, flag: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OptionError(f"{flag}: invalid int value: {value!r}") from None


def _float(value: Any, flag: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{flag}: invalid number: {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def load_queries(query_set: str, scope: str, tenant_id: str) -> list[tuple[str, int]]:
    """(text, expected_min_seeds) pairs of the query set, or the Aionis kit's constant query (no seed expectation)."""
    if not query_set:
        return [(FALLBACK_QUERY, 0)]
    path = Path(query_set)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise OptionError(f"--query-set: file not found: {path}") from None
    except ValueError as exc:
        raise OptionError(f"--query-set: {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("queries"), list):
        raise OptionError(f"--query-set: {path} has no `queries` list")
    for key, want in (("scope", scope), ("tenant_id", tenant_id)):
        if doc.get(key) not in (None, want):
            raise OptionError(f"--query-set: {path} was written for {key} {doc.get(key)!r}, this run uses {want!r}")
    queries = [(str(q["text"]), int(q.get("expected_min_seeds", 1)))
               for q in doc["queries"] if isinstance(q, dict) and q.get("text")]
    if not queries:
        raise OptionError(f"--query-set: {path} contains no queries")
    return queries
