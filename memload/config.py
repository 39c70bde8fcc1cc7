"""One typed settings object, read from the environment (Aionis variable names where they exist).

Every component (API, worker, seeder, CLI) reads its knobs from `Settings.from_env()`; CLI flags override
individual fields. Keeping the names and defaults here is what makes an Aionis `.env` file work unchanged: one env
file throttles an Aionis server and the reference API alike. Older memload names stay readable as aliases
(`ENV_ALIASES`); when both are set, the Aionis name wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from memload.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = REPO_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: str, *, name: str) -> bool:
    """Parse an env-style boolean, naming the variable on error."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true/false, got {value!r}")


def _env(field_name: str) -> str:
    return field_name.upper()


# Earlier memload names of variables that now carry their Aionis name: Aionis name -> alias (read when the Aionis
# name is unset).
ENV_ALIASES: dict[str, str] = {
    "TENANT_RECALL_RATE_LIMIT_RPS": "TENANT_RECALL_RPS",
    "TENANT_RECALL_RATE_LIMIT_BURST": "TENANT_RECALL_BURST",
    "TENANT_WRITE_RATE_LIMIT_RPS": "TENANT_WRITE_RPS",
    "TENANT_WRITE_RATE_LIMIT_BURST": "TENANT_WRITE_BURST",
    "TENANT_WRITE_RATE_LIMIT_MAX_WAIT_MS": "TENANT_WRITE_MAX_WAIT_MS",
    "TENANT_DEBUG_EMBED_RATE_LIMIT_RPS": "TENANT_DEBUG_EMBED_RPS",
    "TENANT_DEBUG_EMBED_RATE_LIMIT_BURST": "TENANT_DEBUG_EMBED_BURST",
}
_ALIAS_OF: dict[str, str] = {alias: name for name, alias in ENV_ALIASES.items()}


def canonical_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with alias names renamed to their Aionis name (an Aionis name given in `env` itself wins).

    Needed wherever one mapping of variables overrides another (e.g. a child's environment built from
    `Settings.as_env()` plus overrides): an override spelled with an alias must still beat the rendered Aionis name.
    """
    out = {k: v for k, v in env.items() if k not in _ALIAS_OF}
    for alias, name in _ALIAS_OF.items():
        if alias in env and name not in env:
            out[name] = env[alias]
    return out


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Field name upper-cased is the environment variable."""

    # --- where things are ---
    database_url: str | None = None
    memload_home: Path = REPO_ROOT / ".memload"
    # --- API server (Aionis names and defaults) ---
    app_env: str = "dev"
    host: str = "127.0.0.1"
    port: int = 3001
    memory_scope: str = "default"
    memory_tenant_id: str = "default"
    memory_auth_mode: str = "off"
    memory_api_keys_json: str = "{}"
    memory_jwt_hs256_secret: str = ""
    admin_token: str = ""
    db_pool_max: int = 10
    api_workers: int = 1
    max_text_len: int = 8000
    pii_redaction: bool = True
    embedding_provider: str = "fake"
    embedding_dim: int = 1536
    recall_text_embed_cache_size: int = 2000
    recall_text_embed_cache_ttl_ms: int = 600_000
    allow_cross_scope_edges: bool = False
    topic_cluster_on_write: bool = True
    topic_cluster_async: bool = True
    topic_sim_threshold: float = 0.78
    topic_min_events_per_topic: int = 5
    # --- rate limits: per client (RATE_LIMIT_ENABLED; loopback bypass except recall_text embed) and per tenant ---
    rate_limit_enabled: bool = True
    rate_limit_bypass_loopback: bool = True
    rate_limit_ttl_ms: int = 600_000
    recall_rate_limit_rps: float = 10.0
    recall_rate_limit_burst: float = 20.0
    write_rate_limit_rps: float = 5.0
    write_rate_limit_burst: float = 10.0
    write_rate_limit_max_wait_ms: int = 200
    debug_embed_rate_limit_rps: float = 0.2
    debug_embed_rate_limit_burst: float = 2.0
    recall_text_embed_rate_limit_rps: float = 4.0
    recall_text_embed_rate_limit_burst: float = 8.0
    recall_text_embed_rate_limit_max_wait_ms: int = 600
    tenant_quota_enabled: bool = True
    tenant_recall_rate_limit_rps: float = 30.0
    tenant_recall_rate_limit_burst: float = 60.0
    tenant_write_rate_limit_rps: float = 10.0
    tenant_write_rate_limit_burst: float = 20.0
    tenant_write_rate_limit_max_wait_ms: int = 300
    tenant_debug_embed_rate_limit_rps: float = 1.0
    tenant_debug_embed_rate_limit_burst: float = 4.0
    tenant_recall_text_embed_rate_limit_rps: float = 8.0
    tenant_recall_text_embed_rate_limit_burst: float = 16.0
    tenant_recall_text_embed_rate_limit_max_wait_ms: int = 800
    # --- recall planner knobs (recorded in reports) ---
    hnsw_ef_search: int = 100
    hnsw_iterative_scan: str = "relaxed_order"
    hnsw_max_scan_tuples: int = 20_000
    # when false, stage 1 does not filter by scope inside the ANN scan (simulates a shared-index starvation)
    recall_scope_path: bool = True
    # artificial server-side delay for tests of exact percentiles (ms, 0 = off)
    memload_inject_delay_ms: float = 0.0
    # --- outbox worker ---
    outbox_poll_interval_ms: int = 1000
    outbox_batch_size: int = 20
    outbox_claim_timeout_ms: int = 300_000
    outbox_max_attempts: int = 25
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `env` (default: os.environ); unknown variables are ignored."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            var = _env(f.name)
            raw = env.get(var)
            if raw is None and var in ENV_ALIASES:
                var = ENV_ALIASES[var]
                raw = env.get(var)
            if raw is None or (raw == "" and f.name == "database_url"):
                continue
            values[f.name] = _coerce(var, f.type, raw)
        settings = cls(**values)
        return settings.with_overrides(**overrides) if overrides else settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None overrides applied (CLI flags win over env)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean)

    def as_env(self) -> dict[str, str]:
        """Render as environment variables, for child processes started by the orchestration."""
        out: dict[str, str] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[_env(f.name)] = str(value)
        return out

    @property
    def pgdata(self) -> Path:
        return self.memload_home / "pgdata"


def _coerce(var: str, annotation: Any, raw: str) -> Any:
    """`raw` as the field's type; an error names the variable `var` that was actually read."""
    kind = str(annotation)
    try:
        if "bool" in kind:
            return parse_bool(raw, name=var)
        if "int" in kind and "float" not in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        if "Path" in kind:
            return Path(raw).expanduser().resolve()
    except ValueError as exc:
        raise ConfigError(f"{var}: invalid value {raw!r} ({exc})") from None
    return raw
