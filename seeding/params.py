"""What a seed run is asked to do: the Aionis kit's perf-seed flags, bounds and defaults, plus ours.

Validation lives here (not only in argparse) so the library entry point refuses the same inputs as the CLI, with a
message that names the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from memload import precision
from memload.contract import TENANT_ID_RE
from memload.errors import ConfigError, SafetyRefusal
from memload.identity import scope_key

EVENTS_MIN, EVENTS_MAX, EVENTS_DEFAULT = 100, 1_000_000, 50_000
TOPICS_MIN, TOPICS_MAX = 1, 100_000
RESET_BATCH_MIN, RESET_BATCH_MAX, RESET_BATCH_DEFAULT = 100, 50_000, 5_000
NOISE_MIN, NOISE_MAX = 0.0, 10.0
# Relative noise: ||event - centroid|| ≈ NOISE_DEFAULT·||centroid||, i.e. cos(event, centroid) ≈ 0.89 and
# cos(event, sibling event) ≈ 0.8, while centroids of different topics are ~orthogonal (|cos| < 0.1). Measured here:
# recall@10 = 1.0 at 10^4 and ≥ 0.95 at 10^5 with ef_search 100; every event vector distinct. The noise spans all
# 1536 dimensions, which HNSW finds harder than text embeddings: at 10^6 the recall path gave 0.93-0.95 at
# ef_search 100 and needed 400 on one build to reach 0.95 (the matrix measures it before each benchmark).
NOISE_DEFAULT = 0.5
VECTOR_MODES = ("clustered", "copy")
PRECISION_DEFAULT = precision.HALFVEC  # see the seed benchmark: recall@10 kept, the build about twice as fast
_MEM_RE = re.compile(r"^[1-9][0-9]*(kB|MB|GB)$")


def default_topics(events: int) -> int:
    """The Aionis kit's default topic count: max(50, min(5000, floor(E/100)))."""
    return max(50, min(5000, events // 100))


def check_tenant_id(value: str, flag: str = "--tenant-id") -> str:
    if not TENANT_ID_RE.match(value):
        raise ConfigError(f"{flag}: invalid tenant id {value!r} (must match {TENANT_ID_RE.pattern})")
    return value


def check_scope(value: str, flag: str = "--scope") -> str:
    if not value or not value.strip():
        raise ConfigError(f"{flag}: scope must not be empty")
    if value.startswith("tenant:"):
        raise ConfigError(f"{flag}: scope must not start with 'tenant:' (that prefix is reserved for scope keys)")
    return value


def check_mem(value: str, flag: str = "--maintenance-work-mem") -> str:
    if value != "auto" and not _MEM_RE.match(value):
        raise ConfigError(f"{flag}: expected auto or a PostgreSQL memory size like 512MB or 2GB, got {value!r}")
    return value


@dataclass(frozen=True)
class Tenancy:
    """A (tenant, scope) pair and its storage key."""

    scope: str
    tenant_id: str
    scope_key: str

    @classmethod
    def resolve(cls, scope: str, tenant_id: str, default_tenant_id: str, *, flags: tuple[str, str]) -> Tenancy:
        check_scope(scope, flags[0])
        check_tenant_id(tenant_id, flags[1])
        return cls(scope, tenant_id, scope_key(scope, tenant_id, default_tenant_id))


@dataclass(frozen=True)
class SeedParams:
    target: Tenancy
    source: Tenancy
    events: int = EVENTS_DEFAULT
    topics: int | None = None
    reset: bool = False
    allow_reset_active_scope: bool = False
    reset_batch: int = RESET_BATCH_DEFAULT
    seed: int = 0
    vectors: str = "clustered"
    noise: float = NOISE_DEFAULT
    query_set_out: Path | None = None
    maintenance_work_mem: str = "auto"  # auto: sized from the graph and the machine (seeding.build_sizing)
    parallel_workers: int | None = None  # None: from the cores
    precision: str = PRECISION_DEFAULT  # the scope's ready hot/warm HNSW index (partitioned layout only)
    progress: bool = True

    @property
    def topic_count(self) -> int:
        return self.topics if self.topics is not None else default_topics(self.events)

    def validate(self) -> SeedParams:
        if not EVENTS_MIN <= self.events <= EVENTS_MAX:
            raise ConfigError(f"--events: {self.events} is out of range [{EVENTS_MIN}, {EVENTS_MAX}]")
        if not TOPICS_MIN <= self.topic_count <= TOPICS_MAX:
            raise ConfigError(f"--topics: {self.topic_count} is out of range [{TOPICS_MIN}, {TOPICS_MAX}]")
        if not RESET_BATCH_MIN <= self.reset_batch <= RESET_BATCH_MAX:
            raise ConfigError(
                f"--reset-batch: {self.reset_batch} is out of range [{RESET_BATCH_MIN}, {RESET_BATCH_MAX}]")
        if self.vectors not in VECTOR_MODES:
            raise ConfigError(f"--vectors: expected one of {', '.join(VECTOR_MODES)}, got {self.vectors!r}")
        if not NOISE_MIN <= self.noise <= NOISE_MAX:
            raise ConfigError(f"--noise: {self.noise} is out of range [{NOISE_MIN}, {NOISE_MAX}]")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed: {self.seed} is out of range [0, 2^63)")
        if self.parallel_workers is not None and not 0 <= self.parallel_workers <= 64:
            raise ConfigError(f"--parallel-workers: {self.parallel_workers} is out of range [0, 64]")
        if self.maintenance_work_mem != "auto":
            check_mem(self.maintenance_work_mem)
        precision.check(self.precision, "--precision")
        if self.reset and not self.allow_reset_active_scope and self.target.scope_key == self.source.scope_key:
            raise SafetyRefusal(
                f"--scope: refusing to reset the source scope {self.target.scope_key!r} (it is also --src-scope); "
                "pick another --scope, or pass --allow-reset-active-scope if you really mean it")
        return self
