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

from memload.bench_settings import PROFILES, Setting, SettingValueError, convert, locust_settings
from memload.contract import TENANT_ID_RE

FALLBACK_QUERY = "memory graph perf"  # the Aionis kit's constant recall query
WARMUP_QUERY = "perf warmup"  # the Aionis kit's warmup query


class OptionError(ValueError):
    """An option has an invalid value; the message names the flag."""


def add_arguments(parser: Any) -> None:
    """Register the suite's options on Locust's (configargparse) parser, in their own `--help` group, each help
    text naming its environment twin. Flags, variables, defaults and help come from memload.bench_settings; the
    bounds are checked by `SuiteConfig.from_options`, which also sees values from the web UI's start form."""
    group = parser.add_argument_group("memload suite options", "the suite's own options (env twin in brackets)")
    for s in locust_settings():
        twin = s.locust
        assert twin is not None
        if twin.own_flag:
            # Locust has its own free-form `--profile` ("group the testruns together"); the suite reads it as the
            # Aionis kit's PERF_PROFILE and gives it the env twin MEMLOAD_PROFILE.
            parser.set_defaults(**{s.name: os.environ.get(twin.env) or None})
            continue
        help = f"{s.help}{' (0 = not set)' if twin.zero_is_unset else ''} [env {twin.env}]"
        kw: dict[str, Any] = {"env_var": twin.env, "default": twin.default, "help": help}
        if s.kind == "bool":
            kw["action"] = "store_true"
        elif s.kind == "choice":
            kw["choices"] = s.choices
        elif s.kind in ("int", "float"):
            kw["type"] = int if s.kind == "int" else float
        group.add_argument(s.locust_flag, **kw)


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
        values: dict[str, Any] = {"profile": profile}
        for s in locust_settings():
            twin = s.locust
            assert twin is not None
            if not twin.own_flag:
                values[s.name] = _value(s, get(_dest(s), twin.default))
        recall_users, write_users = values.pop("recall_concurrency"), values.pop("write_concurrency")
        cfg = cls(
            scope=values["scope"], tenant_id=values["tenant_id"], profile=profile,
            recall_limit=values["recall_limit"], recall_endpoint=values["recall_endpoint"],
            embed_on_write=values["embed_on_write"] or profile == "worker_slo",
            pace_ms=float(values["pace_ms"]), adaptive=values["adaptive"] == "on",
            query_set=str(values["query_set"] or ""), timeout_ms=float(values["timeout_ms"]),
            recall_requests=values["recall_requests"], write_requests=values["write_requests"],
            duration_s=float(values["duration_s"]), allow_empty_scope=values["allow_empty_scope"],
            recall_users=recall_users, write_users=write_users, sequential=values["phases"] == "sequential",
            warmup=values["warmup"], arrival_rate=float(values["arrival_rate"]),
            arrival_late_ms=float(values["arrival_late_ms"]), arrival_drop_ms=float(values["arrival_drop_ms"]),
            run_tag=str(values["run_tag"] or ""),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """What the table's types and bounds do not say: a non-blank scope, a well-formed tenant id."""
        if not self.scope.strip():
            raise OptionError("--scope: must not be empty")
        if not TENANT_ID_RE.match(self.tenant_id):
            raise OptionError(f"--tenant-id: {self.tenant_id!r} does not match {TENANT_ID_RE.pattern}")

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


def _value(setting: Setting, raw: Any) -> Any:
    """`raw` checked against the setting's declared type and bounds; an error names Locust's flag.

    0 passes where it spells "not set" (no request limit, users by weight, the closed model)."""
    twin = setting.locust
    flag = setting.locust_flag
    try:
        if twin is not None and twin.zero_is_unset and not isinstance(raw, bool) and _is_zero(raw):
            return 0
        return convert(setting, raw)
    except SettingValueError as exc:
        unset = " (or 0 = not set)" if twin is not None and twin.zero_is_unset else ""
        raise OptionError(f"{flag}: {exc}{unset}") from None


def _dest(setting: Setting) -> str:
    """Attribute of Locust's parsed options (named after Locust's flag, as its web UI form shows it)."""
    return setting.locust_flag.lstrip("-").replace("-", "_")


def _is_zero(raw: Any) -> bool:
    try:
        return float(raw) == 0
    except (TypeError, ValueError):
        return False


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
