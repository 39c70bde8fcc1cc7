"""Configuration of `memload matrix`: every variable of the Aionis kit's matrix script, validated, profiles applied.

The Aionis kit set BENCH_PACE_MS and MAX_RATE_LIMIT_RETRIES before its profile `case`, so profile values were never
applied. Here a profile supplies defaults for every variable the user did not set, and the resolved value of each
variable (with where it came from: env, profile or default) is echoed first and stored in manifest.json. An invalid
value is refused before anything runs, with a one-line error naming the variable.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from memload.bench_settings import BY_ENV, PROFILES, SettingValueError, convert, matrix_profile_defaults
from memload.config import parse_bool
from memload.contract import TENANT_ID_RE
from memload.errors import ConfigError
from memload.limits import LIMIT_PROFILES
from scripts.options import bounded_float, bounded_int, int_list

# Profile defaults (the Aionis kit's profiles), applied for real: the Aionis kit's matrix script sets pace and
# retries before the profile, so its profile values never apply. Declared with each setting in memload.bench_settings.
PROFILE_DEFAULTS: dict[str, dict[str, str]] = {p: matrix_profile_defaults(p) for p in PROFILES}


@dataclass(frozen=True)
class Var:
    name: str
    default: str
    parse: Callable[[str, str], Any]
    help: str


def _table(name: str) -> Var:
    """A benchmark setting's variable, as declared in memload.bench_settings (one bound, one default, one help)."""
    setting = BY_ENV[name]

    def parse(var: str, raw: str) -> Any:
        if raw == "" and setting.matrix_default_raw() == "":
            return None
        try:
            return convert(setting, raw)
        except SettingValueError as exc:
            raise ConfigError(f"{var}: {exc}") from None

    return Var(name, setting.matrix_default_raw(), parse, setting.help)


def _named(parse: Callable[[str], Any]) -> Callable[[str, str], Any]:
    """Reuse a CLI flag type (scripts/options.py) for a variable: its error message then names the variable."""

    def parse_var(name: str, raw: str) -> Any:
        try:
            return parse(raw)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    return parse_var


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    return _named(bounded_int(lo, hi))


def _float(lo: float, hi: float) -> Callable[[str, str], float]:
    return _named(bounded_float(lo, hi))


def _opt_float(lo: float, hi: float) -> Callable[[str, str], float | None]:
    inner = _float(lo, hi)
    return lambda name, raw: None if raw == "" else inner(name, raw)


def _opt_int(lo: int, hi: int) -> Callable[[str, str], int | None]:
    inner = _int(lo, hi)
    return lambda name, raw: None if raw == "" else inner(name, raw)


def _bool(name: str, raw: str) -> bool:
    return parse_bool(raw, name=name)


def _choice(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in options:
            raise ConfigError(f"{name}: must be one of {', '.join(options)}, got {raw!r}")
        return raw

    return parse


def _scales(name: str, raw: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"[\s,]+", raw.strip()):
        if not part:
            continue
        if not part.isdigit() or not 100 <= int(part) <= 1_000_000:
            raise ConfigError(f"{name}: each scale must be an integer in [100, 1000000], got {part!r}")
        out.append(int(part))
    if not out:
        raise ConfigError(f"{name}: at least one scale is required")
    return out


_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _ident(name: str, raw: str) -> str:
    if not _IDENT.match(raw):
        raise ConfigError(f"{name}: must match {_IDENT.pattern}, got {raw!r}")
    return raw


def _ident_or_empty(name: str, raw: str) -> str:
    return raw if raw == "" else _ident(name, raw)


def _tenant(name: str, raw: str) -> str:
    if not TENANT_ID_RE.match(raw):
        raise ConfigError(f"{name}: invalid tenant id {raw!r} (pattern {TENANT_ID_RE.pattern})")
    return raw


def _text(name: str, raw: str) -> str:
    return raw


def _file_or_empty(name: str, raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ConfigError(f"{name}: no such file: {raw!r}")
    return os.path.abspath(raw) if raw else raw


def _url(name: str, raw: str) -> str:
    if raw and not re.match(r"^https?://[^/\s]+", raw):
        raise ConfigError(f"{name}: expected an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


VARS: list[Var] = [
    Var("SCALES", "100000", _scales,
        'event counts, space- or comma-separated (the 10^6 ramp: "100000 300000 1000000")'),
    Var("TOPIC_RATIO", "100", _int(1, 100_000), "topics = scale / TOPIC_RATIO"),
    _table("PERF_PROFILE"),
    Var("BASE_URL", "", _url, "target API; empty = start the local stack"),
    Var("TENANT_ID", "default", _tenant, "tenant of the perf scopes"),
    Var("SRC_TENANT_ID", "default", _tenant, "tenant of the source scope"),
    Var("SRC_SCOPE", "default", _ident, "source scope (seed's source vector; worker benchmark scope)"),
    Var("SCOPE_PREFIX", "perf_d", _ident, "prefix of perf scope names"),
    Var("SCOPE_STRATEGY", "isolated", _choice("isolated", "fixed"), "isolated = unique scope per run"),
    Var("RESET_MODE", "auto", _choice("auto", "always", "never"), "auto resets only fixed scopes"),
    Var("RESET_IMPL", "scope_purge", _choice("scope_purge", "perf_seed"), "purge job, or seed --reset"),
    Var("RESET_PURGE_MODE", "partition", _choice("auto", "partition", "delete"), "purge mode"),
    Var("RESET_PURGE_ALLOW_FALLBACK_DELETE", "false", _bool, "partition mode may fall back to DELETE"),
    Var("RESET_PURGE_FAIL_ON_DELETE", "true", _bool, "refuse (before deleting) when purge would DELETE"),
    Var("PERF_OFFLINE_WINDOW", "false", _bool, "required for any reset of a fixed scope"),
    _table("BENCH_MODE"),
    _table("BENCH_WARMUP"),
    _table("EMBED_ON_WRITE"),
    _table("BENCH_DURATION_S"),
    _table("RECALL_REQUESTS"),
    _table("RECALL_CONCURRENCY"),
    _table("WRITE_REQUESTS"),
    _table("WRITE_CONCURRENCY"),
    Var("REPEAT", "1", _int(1, 100), "benchmark runs per scale (benchmark_<scale>_rep<k>.json; for compare)"),
    _table("BENCH_PACE_MS"),
    _table("BENCH_TIMEOUT_MS"),
    _table("BENCH_FAIL_ON_TRANSPORT_ERROR_RATE"),
    _table("RUN_EXPLAIN"),
    _table("RUN_WORKER_BENCHMARK"),
    Var("RUN_ANN_CHECK", "true", _bool, "after each seed, recall@10 of the recall path against exact search "
        "(ann_check_<scale>.json; reported and gated by SLO_MIN_RECALL)"),
    Var("ANN_QUERIES", "100", _int(10, 10_000), "sampled queries of the recall check"),
    Var("ANN_EF_SWEEP", "150,200,300,400", _named(int_list(1, 1000)), "hnsw.ef_search values the recall check also "
        "measures (local stack: the API's ef_search is raised to the smallest that reaches SLO_MIN_RECALL)"),
    Var("TUNE_EF_SEARCH", "true", _bool, "local stack only: when recall@10 at the API's hnsw.ef_search misses "
        "SLO_MIN_RECALL, restart the API with the smallest swept value that reaches it before the benchmark"),
    Var("SAMPLE_COST", "true", _bool, "while each benchmark runs, sample the CPU of the API, PostgreSQL and the "
        "machine and the recall path's shared-buffer hits and reads (cost_<scale>.json; the report's Scale Cost)"),
    Var("WORKER_ITERATIONS", "8", _int(1, 1000), "worker benchmark iterations"),
    _table("WORKER_BACKLOG_WRITES"),
    Var("WORKER_BACKLOG_CONCURRENCY", "1", _int(1, 64), "concurrency of the backlog writes"),
    Var("WORKER_SCOPE", "", _text, "worker_slo: scope of the backlog (default: first scale's scope)"),
    _table("AUTO_ADAPT_RATE_LIMIT"),
    _table("MAX_RATE_LIMIT_RETRIES"),
    Var("PACE_STEP_MS", "25", _int(0, 10_000), "pace added per adaptive step (× 4/3/2/1 by 429 ratio)"),
    Var("PACE_MAX_MS", "2000", _int(0, 60_000), "pace cap"),
    _table("SLO_RECALL_P95_MS"),
    _table("SLO_WRITE_P95_MS"),
    _table("SLO_MAX_ERROR_RATE"),
    Var("SLO_WORKER_MIN_JOBS_PER_SEC", "50", _float(0.0, 1e9), "worker throughput target"),
    Var("SLO_MIN_RECALL", "0.95", _float(0.0, 1.0), "recall@10 of the recall path (ties counted) at the ef_search "
        "the benchmark ran with"),
    Var("MATRIX_TAG", "", _ident_or_empty, "run tag; default timestamp"),
    Var("OUT_DIR", "", _text, "artifact directory; default artifacts/perf/<MATRIX_TAG>"),
    Var("SEED_COMMAND", "", _text, "the target's own seeder, run by `memload seed --command` (its JSON output "
        "becomes seed_<scale>.json); empty = memload's seeder"),
    Var("EXPLAIN_SQL", "", _file_or_empty, "the target's explain script for `memload explain --sql`; empty = "
        "memload's reference SQL (an external target's explain stage is then NOT MEASURED)"),
    Var("WORKER_COMMAND", "", _text, "the target's worker, run once per iteration by `memload worker-bench "
        "--worker-command`"),
    Var("WORKER_OBSERVE", "false", _bool, "the target's worker already runs: `memload worker-bench --observe` "
        "measures the drain (an external target's worker stage needs this or WORKER_COMMAND)"),
    Var("KEEP_RUNS", "2", _int(0, 10_000), "keep the scopes of the last N matrix runs, purge older ones "
        "(partition drop); 0 = keep all"),
    Var("SEED_VECTORS", "clustered", _choice("clustered", "copy"), "seeded vectors (copy = the Aionis kit's dataset)"),
    Var("SEED_PRECISION", "halfvec", _choice("halfvec", "vector"),
        "seeder --precision: the scopes' HNSW index (halfvec: half the graph); the embedded server is sized for it"),
    Var("SEED_RANDOM_SEED", "42", _int(0, 2**31 - 1), "seeder --seed"),
    Var("LOCAL_RATE_LIMIT_PROFILE", "off", _choice(*LIMIT_PROFILES, "default"),
        "local stack only: rate limits of the API it starts. off: the reference API's capacity (time-based cases "
        "send as fast as their users can); benchmark: the Aionis kit's benchmark.env limits (a 30 s write case at 4 "
        "users then measures the 120 req/s tenant write quota); contract (or default): the API's defaults"),
]

@dataclass(frozen=True)
class MatrixConfig:
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def scope_for(self, scale: int) -> str:
        if self["SCOPE_STRATEGY"] == "isolated":
            return f"{self['SCOPE_PREFIX']}_{scale}_{self['MATRIX_TAG']}"
        return f"{self['SCOPE_PREFIX']}_{scale}"

    def topics_for(self, scale: int) -> int:
        return max(1, scale // self["TOPIC_RATIO"])

    def should_reset(self) -> bool:
        mode = self["RESET_MODE"]
        return mode == "always" or (mode == "auto" and self["SCOPE_STRATEGY"] == "fixed")

    def echo(self) -> str:
        width = max(len(v.name) for v in VARS)
        lines = ["memload matrix configuration:"]
        for v in VARS:
            lines.append(f"  {v.name:<{width}} = {self.values[v.name]!s:<24} ({self.sources[v.name]})")
        return "\n".join(lines)


def resolve(env: Mapping[str, str] | None = None) -> MatrixConfig:
    """Resolve every variable: env beats profile beats default. Errors name the variable."""
    env = os.environ if env is None else env
    profile_raw = env.get("PERF_PROFILE", "balanced") or "balanced"
    profile = _choice(*PROFILES)("PERF_PROFILE", profile_raw)
    profile_defaults = PROFILE_DEFAULTS[profile]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for var in VARS:
        if env.get(var.name) not in (None, ""):
            raw, src = env[var.name], "env"
        elif var.name in profile_defaults:
            raw, src = profile_defaults[var.name], f"profile {profile}"
        else:
            raw, src = var.default, "default"
        values[var.name] = var.parse(var.name, raw)
        sources[var.name] = src
    if not values["MATRIX_TAG"]:
        values["MATRIX_TAG"] = time.strftime("%Y%m%d_%H%M%S")
        sources["MATRIX_TAG"] = "generated"
    cfg = MatrixConfig(values, sources)
    from memload.errors import SafetyRefusal  # (local: keeps this module's import block as other branches have it)

    if cfg.should_reset() and not cfg["PERF_OFFLINE_WINDOW"]:
        raise SafetyRefusal(
            f"PERF_OFFLINE_WINDOW: a reset (SCOPE_STRATEGY={cfg['SCOPE_STRATEGY']}, RESET_MODE={cfg['RESET_MODE']}) "
            "requires PERF_OFFLINE_WINDOW=true; nothing was touched"
        )
    if cfg["RESET_PURGE_MODE"] == "partition" and cfg["RESET_PURGE_ALLOW_FALLBACK_DELETE"] and cfg[
            "RESET_PURGE_FAIL_ON_DELETE"]:
        raise ConfigError("RESET_PURGE_ALLOW_FALLBACK_DELETE=true contradicts RESET_PURGE_FAIL_ON_DELETE=true")
    if cfg["WORKER_COMMAND"] and cfg["WORKER_OBSERVE"]:
        raise ConfigError("WORKER_OBSERVE=true contradicts WORKER_COMMAND: observe the target's running worker, or "
                          "run WORKER_COMMAND per iteration, not both")
    for scale in cfg["SCALES"]:
        if cfg.scope_for(scale) in (cfg["SRC_SCOPE"],) and cfg["TENANT_ID"] == cfg["SRC_TENANT_ID"]:
            raise SafetyRefusal(f"SCOPE_PREFIX: perf scope {cfg.scope_for(scale)!r} equals SRC_SCOPE; nothing was "
                                "touched")
    return cfg
