"""Remove every row of one scope (the Aionis kit's `scope-purge`), fast when the scope has partitions of its own.

Order is FK-safe: outbox → rule_feedback → rule_defs → recall_audit → edges → nodes → commits.
* `partition` strategy: DETACH the scope's partition, then DROP it (milliseconds at 10^5 rows). A DROP alone is
  refused by PostgreSQL while other tables' foreign keys still reference the partition; DETACH removes them after
  checking no row points into it, which holds because children are purged first.
* `delete` strategy: ctid-batched DELETE loops on the one leaf relation holding the scope's rows (its partition or
  the table's default partition): ctids are only unique inside a leaf. Commits go in one statement, because the
  parent_id chain makes a partial batch of commits unsafe to delete.
* The non-partitioned side tables (rule_feedback, rule_defs, recall_audit) are always DELETEd; they hold few rows,
  so `--fail-on-delete` and `--mode partition` judge only the four partitioned tables.

Unlike the Aionis kit's purge, `--fail-on-delete` refuses *before* deleting anything, and a partitioned table
with no rows and no partition of the scope is simply skipped (the Aionis kit's purge throws in partition mode
even then).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from memload.errors import ConfigError, MemloadError, SafetyRefusal
from seeding.params import Tenancy
from seeding.schema import PURGE_ORDER, quote_ident, scope_partitions, table_kind

MODES = ("auto", "partition", "delete")
LOCK_TIMEOUT = "60s"


@dataclass
class TablePurge:
    table: str
    exists: bool
    partitioned: bool
    strategy: str = "none"  # partition_drop | delete | none | skip
    partitions: list[str] = field(default_factory=list)
    leaf: str | None = None  # relation the delete strategy works on
    candidate_rows: int = 0
    deleted_rows: int = 0
    deleted_batches: int = 0
    applied: bool = False
    note: str | None = None


@dataclass
class PurgePlan:
    tenancy: Tenancy
    mode: str
    batch_size: int
    allow_fallback_delete: bool
    fail_on_delete: bool
    tables: list[TablePurge]
    warnings: list[str] = field(default_factory=list)

    @property
    def delete_on_partitioned(self) -> list[str]:
        """Partitioned tables that would be purged by DELETE (what --fail-on-delete guards against)."""
        return [t.table for t in self.tables if t.partitioned and t.strategy == "delete"]

    @property
    def refusal(self) -> str | None:
        if self.fail_on_delete and self.delete_on_partitioned:
            return (f"--fail-on-delete: purging scope {self.tenancy.scope_key!r} would DELETE rows from "
                    f"{', '.join(self.delete_on_partitioned)} (no partition of the scope); nothing was deleted")
        return None

    def stats(self) -> dict[str, int]:
        """Deleted rows per table, short names (the seed's reset_stats)."""
        return {t.table.removeprefix("memory_"): t.deleted_rows for t in self.tables}

    def summary(self, *, apply: bool, elapsed_ms: int) -> dict[str, Any]:
        totals = {
            "candidate_rows": sum(t.candidate_rows for t in self.tables),
            "deleted_rows": sum(t.deleted_rows for t in self.tables),
            "deleted_batches": sum(t.deleted_batches for t in self.tables),
            "partition_drop_tables": sum(1 for t in self.tables if t.applied and t.strategy == "partition_drop"),
            "delete_tables": sum(1 for t in self.tables if t.applied and t.strategy == "delete"),
            "delete_strategy_tables": len(self.delete_on_partitioned),
            "skipped_tables": sum(1 for t in self.tables if t.strategy == "skip"),
        }
        out: dict[str, Any] = {
            "ok": self.refusal is None, "apply": apply, "mode": self.mode,
            "allow_fallback_delete": self.allow_fallback_delete, "fail_on_delete": self.fail_on_delete,
            "tenant_id": self.tenancy.tenant_id, "scope": self.tenancy.scope, "scope_key": self.tenancy.scope_key,
            "batch_size": self.batch_size,
            "tables": [{k: v for k, v in asdict(t).items() if k != "leaf"} for t in self.tables],
            "totals": totals, "warnings": self.warnings, "elapsed_ms": elapsed_ms,
        }
        if self.refusal:
            out["error"] = "delete_strategy_detected"
            out["message"] = self.refusal
        return out


def plan_purge(conn: psycopg.Connection, tenancy: Tenancy, *, mode: str = "auto", batch_size: int = 5000,
               allow_fallback_delete: bool = False, fail_on_delete: bool = False) -> PurgePlan:
    """Inspect the scope and decide a strategy per table; changes nothing."""
    if mode not in MODES:
        raise ConfigError(f"--mode: expected one of {', '.join(MODES)}, got {mode!r}")
    key = tenancy.scope_key
    tables: list[TablePurge] = []
    for name in PURGE_ORDER:
        kind = table_kind(conn, name)
        t = TablePurge(name, exists=kind is not None, partitioned=kind == "p")
        tables.append(t)
        if kind is None:
            t.strategy, t.note = "skip", "table_not_found"
            continue
        t.candidate_rows = int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)} WHERE scope = %s",
                                            (key,)).fetchone()[0])
        if not t.partitioned:
            t.strategy, t.leaf = ("delete", name) if t.candidate_rows else ("none", None)
            continue
        t.partitions = scope_partitions(conn, name, key)
        if t.partitions and mode != "delete":
            t.strategy = "partition_drop"
            continue
        if t.candidate_rows == 0:
            t.strategy = "none"
            continue
        if mode == "partition" and not allow_fallback_delete:
            raise ConfigError(
                f"--mode partition: {name} holds {t.candidate_rows} rows of scope {key!r} outside any partition of "
                "its own; add --allow-fallback-delete or use --mode auto")
        t.strategy = "delete"
        leaves = conn.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {quote_ident(name)} WHERE scope = %s",
                              (key,)).fetchall()
        if len(leaves) != 1:  # a scope's rows sit in one leaf: its partition, or the default one
            raise ConfigError(f"--scope: rows of {key!r} in {name} are spread over {len(leaves)} partitions")
        t.leaf = leaves[0][0]
    plan = PurgePlan(tenancy, mode, batch_size, allow_fallback_delete, fail_on_delete, tables)
    if mode != "delete" and plan.delete_on_partitioned:
        plan.warnings.append(f"delete strategy on partitioned tables: {', '.join(plan.delete_on_partitioned)}")
    return plan


def apply_purge(conn: psycopg.Connection, plan: PurgePlan, *, commit_each_step: bool) -> None:
    """Execute a plan. `commit_each_step` (standalone purge): commit after every DELETE batch, so a big delete never
    holds one huge transaction (partition drops alone stay atomic: they commit together at the end). Otherwise
    everything stays in the caller's transaction (the seed's reset, which must vanish if the seed fails)."""
    if plan.refusal:
        raise SafetyRefusal(plan.refusal)
    conn.execute(f"SET {'' if commit_each_step else 'LOCAL '}lock_timeout = '{LOCK_TIMEOUT}'")
    key = plan.tenancy.scope_key
    for t in plan.tables:
        if t.strategy == "partition_drop":
            rows = t.candidate_rows
            for part in t.partitions:
                if t.table == "memory_commits":  # parent_id chains inside the partition would block DETACH
                    conn.execute(f"DELETE FROM {quote_ident(part)}")
                conn.execute(f"ALTER TABLE {quote_ident(t.table)} DETACH PARTITION {quote_ident(part)}")
                conn.execute(f"DROP TABLE {quote_ident(part)}")
            t.deleted_rows, t.deleted_batches, t.applied = rows, 1, True
        elif t.strategy == "delete" and t.leaf is not None:
            t.deleted_rows, t.deleted_batches = _delete_batches(conn, t, key, plan.batch_size, commit_each_step)
            t.applied = True
    if commit_each_step:
        conn.commit()


def _delete_batches(conn: psycopg.Connection, t: TablePurge, key: str, batch: int, commit: bool) -> tuple[int, int]:
    leaf = t.leaf or t.table  # regclass text: already quoted and qualified as SQL needs it
    if t.table == "memory_commits":
        n = conn.execute(f"DELETE FROM {leaf} WHERE scope = %s", (key,)).rowcount
        return n, 1
    total = batches = 0
    while True:
        n = conn.execute(
            f"DELETE FROM {leaf} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {leaf} WHERE scope = %s LIMIT %s))",
            (key, batch)).rowcount
        if n <= 0:
            return total, batches
        total, batches = total + n, batches + 1
        if commit:
            conn.commit()


def run_purge(url: str, tenancy: Tenancy, *, mode: str, batch_size: int, apply: bool,
              allow_fallback_delete: bool, fail_on_delete: bool) -> dict[str, Any]:
    """The `memload purge` job: plan, refuse or apply, and return the JSON summary."""
    started = time.monotonic()
    try:
        return _run_purge(url, tenancy, mode=mode, batch_size=batch_size, apply=apply,
                          allow_fallback_delete=allow_fallback_delete, fail_on_delete=fail_on_delete, started=started)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MemloadError(f"purge failed (DELETE batches already done stay committed): {first}") from None


def _run_purge(url: str, tenancy: Tenancy, *, mode: str, batch_size: int, apply: bool, allow_fallback_delete: bool,
               fail_on_delete: bool, started: float) -> dict[str, Any]:
    from memload.db import connection

    with connection(url) as conn:
        plan = plan_purge(conn, tenancy, mode=mode, batch_size=batch_size,
                          allow_fallback_delete=allow_fallback_delete, fail_on_delete=fail_on_delete)
        conn.rollback()
        if apply and plan.refusal is None:
            apply_purge(conn, plan, commit_each_step=True)
        if not apply:
            for t in plan.tables:
                t.note = t.note or "dry_run"
    return plan.summary(apply=apply, elapsed_ms=int((time.monotonic() - started) * 1000))
