"""`memload seed`: the Aionis kit's perf-seed with distinct clustered vectors, built fast and atomically.

One transaction holds the whole seed — reset included — so a failed or killed seed leaves the scope exactly as it
was (PostgreSQL DDL is transactional). Three load paths:

* **partition** (a new scope, or `--reset`): nodes and edges go into standalone tables by binary COPY, get their
  indexes (HNSW last, the slow part), are ANALYZEd, and only then — in a short final window holding the parents'
  locks — the old scope is purged, the commits/outbox partitions are created, the commit row inserted and the two
  tables attached as the scope's partitions.
* **append** (no reset, the scope already has rows): COPY into the parent tables, so rows land where the scope's
  rows already are (its partition, or the default partition when it was written through the API) and the existing
  indexes are maintained row by row (slow for 10^5 vectors: reset, or use a new scope, to get the fast path).
* **shared_table** (the target keeps every scope in one plain table, as an Aionis server does; seeding.layout reads
  that from the catalog): the reset (if asked) by batched DELETE, then the commit row and a binary COPY of nodes and
  edges into the live tables, all in the one transaction. The target's indexes stay and are maintained row by row
  (its HNSW indexes included: that is the time a seed of such a server really takes), its constraints are checked,
  rows of other scopes are never touched. Only the columns the target has are written; a NOT NULL column the seeder
  does not know must have a default (else a one-line refusal naming it, before anything is written).

The commit row (SQLAlchemy Core) is chained to the scope's head with the contract's commit hash
(memload.identity.commit_hash, actor `job:perf_seed`); its input hash covers the parameters, not the wall clock, so
the same seed on the same scope state reproduces ids, vectors and hash.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from memload.config import Settings
from memload.db import connect
from memload.embedder import EMBEDDING_DIM
from memload.errors import ConfigError, MemloadError
from memload.identity import commit_hash, sha256_hex, stable_stringify
from memload.precision import INDEX_FUNCTION, VECTOR, scope_precision
from seeding import query_set
from seeding.build_sizing import BuildPlan, ServerCpu, plan_build, server_is_local, unfilled_pool_mb
from seeding.layout import PARTITIONED, SHARED_TABLE, Layout, check_columns, detect
from seeding.params import SeedParams
from seeding.partitions import StandaloneTable, create_empty_partition, unattached_index_count
from seeding.progress import CopyProgress, IndexProgress, log
from seeding.purge import apply_purge, plan_purge
from seeding.rows import ACTOR, COMMIT_COLUMNS, EDGE_COLUMNS, EDGE_TYPES, NODE_COLUMNS, NODE_TYPES, IdScheme, RowFactory
from seeding.schema import PARTITIONED_PURGE_ORDER, commits, nodes, quote_ident, scope_partitions
from seeding.vectors import CHUNK, VectorPlan

APP_NAME = "memload-seed"
LOCK_TIMEOUT = "60s"


PHASES = ("reset", "load", "index", "attach", "analyze")
# The setting that changes the outcome when a phase fails (the end of the one-line error).
PHASE_HINTS = {
    "prepare": "DATABASE_URL names the database",
    "reset": "--reset / MEMLOAD_SEED_RESET, or a new --scope",
    "load": "--command / SEED_COMMAND seeds with the target's own seeder instead",
    "index": "--maintenance-work-mem / MEMLOAD_SEED_MAINTENANCE_WORK_MEM, --precision / MEMLOAD_SEED_PRECISION",
    "attach": "a new --scope, or --reset",
    "analyze": "DATABASE_URL names the database",
}


@dataclass
class Timings:
    """Seconds per phase; `ran` keeps the phases this run went through (in order), `current` the one running."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    ran: list[str] = field(default_factory=list)
    current: str = "prepare"

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.current = name
        if name not in self.ran:
            self.ran.append(name)
        try:
            yield
        finally:
            self.seconds[name] += time.monotonic() - t0

    def as_ms(self) -> dict[str, int]:
        return {k: round(v * 1000) for k, v in self.seconds.items()}

    def as_s(self) -> dict[str, float]:
        """Only the phases that ran (a shared-table seed has no index or attach phase)."""
        return {k: round(self.seconds[k], 3) for k in PHASES if k in self.ran}


@dataclass
class SeedRun:
    """State of one run, filled in as phases complete."""

    params: SeedParams
    url: str
    timings: Timings = field(default_factory=Timings)
    reset_stats: dict[str, int] | None = None
    load_path: str = "partition"
    layout: Layout | None = None
    index_seconds: dict[str, float] = field(default_factory=dict)
    attach_seconds: dict[str, float] = field(default_factory=dict)  # per table: ATTACH and its foreign-key checks
    warnings: list[str] = field(default_factory=list)
    build: BuildPlan | None = None
    precision: str = VECTOR  # the scope's ready hot/warm index, read back from the catalog after the seed
    hnsw_seconds: float | None = None
    hnsw_cpu_s: float | None = None  # the server's CPU for the ready hot/warm HNSW build (leader + workers)
    spilled_at: int | None = None  # pgvector's notice: the graph outgrew maintenance_work_mem after this many tuples
    index_mb: float | None = None  # size of the ready hot/warm HNSW index


def engine_for(url: str, application_name: str = APP_NAME) -> Any:
    """A one-connection SQLAlchemy engine whose connect errors are memload's one-line DatabaseUnavailable."""
    return create_engine("postgresql+psycopg://", creator=lambda: connect(url, application_name=application_name),
                         poolclass=NullPool)


def run_seed(url: str, params: SeedParams, settings: Settings) -> dict[str, Any]:
    """Seed the scope; returns the JSON summary. Raises MemloadError (one line) with nothing changed on failure."""
    from pgvector.psycopg import register_vector

    params.validate()
    started = time.monotonic()
    run = SeedRun(params, url)
    target, source = params.target, params.source
    topics, events = params.topic_count, params.events
    engine = engine_for(url)
    try:
        with engine.connect() as sa, sa.begin():
            raw: psycopg.Connection = sa.connection.driver_connection  # type: ignore[assignment]
            register_vector(raw)
            raw.add_notice_handler(lambda diag: _notice(run, diag))
            local = server_is_local(raw)
            run.build = plan_build(topics + events, EMBEDDING_DIM, params.precision,
                                   requested_mem=params.maintenance_work_mem,
                                   requested_workers=params.parallel_workers, local=local,
                                   pool_mb=unfilled_pool_mb(raw) if local else 0)
            raw.execute(f"SET LOCAL maintenance_work_mem = '{run.build.maintenance_work_mem}'")
            raw.execute(f"SET LOCAL max_parallel_maintenance_workers = {int(run.build.parallel_workers)}")
            raw.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            run.layout = layout = detect(raw)
            if layout.kind == SHARED_TABLE:
                run.load_path = SHARED_TABLE
                _check_shared_columns(layout)
            source_vector = _source_vector(sa, params)
            if layout.kind == PARTITIONED:
                empty = _scope_is_empty(raw, target.scope_key)
                run.load_path = "partition" if params.reset or empty else "append"
                if params.precision != VECTOR and not _per_partition_ready_index(raw):
                    raise ConfigError("--precision: this database keeps the ready HNSW index on the parent "
                                      "(float32 only); run memload migrate, or use --precision vector")
            elif params.precision != VECTOR:
                log(f"--precision {params.precision} applies to memload's partitioned layout only: the target's "
                    "own indexes are kept")
            parent_id, parent_hash = (None, "") if params.reset else _head_commit(sa, target.scope_key)
            ids = IdScheme(target.scope_key, params.seed, parent_hash, topics, events)
            input_sha = sha256_hex(stable_stringify(_input_payload(params)))
            diff = _diff(params)
            chash = commit_hash(parent_hash=parent_hash, input_sha256=input_sha, diff=diff,
                                scope_key=target.scope_key, actor=ACTOR, model_version=None, prompt_version=None)
            ready_at: datetime = sa.execute(select(func.now())).scalar_one()
            factory = RowFactory(ids, target.scope_key, ready_at)
            commit_id = factory.commit_id
            plan = VectorPlan(params.vectors, topics, events, params.seed, params.noise, source_vector)
            commit_row = {"id": commit_id, "scope": target.scope_key, "parent_id": parent_id,
                          "input_sha256": input_sha, "diff_json": diff, "actor": ACTOR, "commit_hash": chash}
            log(f"begin scope_key={target.scope_key!r} source_scope_key={source.scope_key!r} events={events} "
                f"topics={topics} vectors={params.vectors} noise={params.noise} seed={params.seed} "
                f"reset={params.reset} layout={layout.kind} path={run.load_path}")
            if layout.unknown_indexes:
                log(f"indexes memload's schema does not define (kept, maintained as they are): "
                    f"{', '.join(layout.unknown_indexes)}")
            if run.load_path == "partition":
                _seed_partition(run, sa, raw, factory, plan, commit_row)
            elif run.load_path == SHARED_TABLE:
                _seed_shared(run, sa, raw, factory, plan, commit_row)
            else:
                _seed_append(run, sa, raw, factory, plan, commit_row)
            totals = _totals(raw, target.scope_key)
            run.precision = scope_precision(raw, target.scope_key)
            if layout.kind == PARTITIONED and run.precision != params.precision:
                run.warnings.append(f"--precision {params.precision}: the scope's existing partition keeps its "
                                    f"{run.precision} index (rows appended); --reset rebuilds it")
        log("committed")
    except DBAPIError as exc:
        raise _failure(run, exc.orig or exc) from None
    except psycopg.Error as exc:
        raise _failure(run, exc) from None
    except ValueError as exc:  # a catalog shape this code did not foresee: still one line
        raise _failure(run, exc) from None
    finally:
        engine.dispose()

    qs_path = params.query_set_out or query_set.default_path(settings.memload_home, target.scope_key)
    try:
        query_set.write(qs_path, query_set.build(target, factory.topic_uuids()))
    except OSError as exc:
        raise MemloadError(f"--query-set-out: the seed is committed, but writing {qs_path} failed: {exc}") from None
    with run.timings.phase("analyze"):
        try:
            _analyze_after_commit(url, run.load_path, target.scope_key)
        except psycopg.Error as exc:  # the seed is committed; stale statistics are worth a warning, not a failure
            run.warnings.append(f"ANALYZE after the commit failed: {_first_line(exc)}")
    log(f"done in {time.monotonic() - started:.1f}s; query set {qs_path}")
    return {
        "ok": True,
        "scope": target.scope, "tenant_id": target.tenant_id, "scope_key": target.scope_key,
        "source_scope": source.scope, "source_tenant_id": source.tenant_id, "source_scope_key": source.scope_key,
        "reset": params.reset, "reset_stats": run.reset_stats,
        "inserted": {"topics": topics, "events": events, "edges": 2 * events},
        "totals_in_scope": totals,
        "commit_id": str(commit_id), "commit_hash": chash,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
        "vectors": params.vectors, "seed": params.seed, "noise": params.noise,
        "layout": layout.kind,
        "seeded_by": "memload",
        "timings_s": run.timings.as_s(),
        "timings_ms": run.timings.as_ms(),
        "unknown_indexes": layout.unknown_indexes,
        "query_set": str(qs_path),
        "load_path": run.load_path,
        "precision": run.precision,
        "attach_seconds": run.attach_seconds,
        "index_build": {**(run.build.as_json() if run.build else {}), "seconds": run.index_seconds,
                        "hnsw_seconds": run.hnsw_seconds, "hnsw_cpu_s": run.hnsw_cpu_s,
                        "spilled_at_tuples": run.spilled_at, "index_mb": run.index_mb},
        "warnings": run.warnings,
    }


# ----------------------------------------------------------------------------------------------------- the paths
def _seed_partition(run: SeedRun, sa: Connection, raw: psycopg.Connection, factory: RowFactory, plan: VectorPlan,
                    commit_row: dict[str, Any]) -> None:
    key, t = run.params.target.scope_key, run.timings
    token = secrets.token_hex(3)  # random: only names the build relations, never the data
    node_t, edge_t = StandaloneTable("memory_nodes", key, token), StandaloneTable("memory_edges", key, token)
    with t.phase("load"):
        node_t.create(raw)
        edge_t.create(raw)
        _copy_nodes(raw, node_t.build_name, factory, plan, run)
        _copy_edges(raw, edge_t.build_name, factory, run)
    with t.phase("index"):
        pid = raw.info.backend_pid
        total = factory.topics + factory.events

        def around(idx: Any) -> Any:
            if not idx.is_vector:
                return None
            return IndexProgress(run.url, pid, f"{idx.name} ({idx.method})", total, enabled=run.params.progress)

        log("index: building btree/gin indexes, then HNSW (the slow part)")
        node_t.build_indexes(raw, around)
        edge_t.build_indexes(raw)
        if _per_partition_ready_index(raw):
            _build_ready_index(run, raw, node_t.build_name, total)
        run.index_seconds = {**node_t.index_seconds, **edge_t.index_seconds,
                             **({READY_INDEX: run.hnsw_seconds} if run.hnsw_seconds is not None else {})}
        for tbl in (node_t, edge_t):
            if tbl.left_to_attach:
                run.warnings.append(f"no twin built for {', '.join(tbl.left_to_attach)} (unexpected definition): "
                                    "ATTACH builds it")
    with t.phase("analyze"):
        raw.execute(f"ANALYZE {quote_ident(node_t.build_name)}")
        raw.execute(f"ANALYZE {quote_ident(edge_t.build_name)}")
    if run.params.reset:
        with t.phase("reset"):
            purge = plan_purge(raw, run.params.target, mode="auto", batch_size=run.params.reset_batch)
            apply_purge(raw, purge, commit_each_step=False)
            run.reset_stats = purge.stats()
            log(f"reset: {run.reset_stats}")
    with t.phase("attach"):
        create_empty_partition(raw, "memory_commits", key)
        sa.execute(insert(commits).values(**commit_row))
        node_t.attach(raw)
        edge_t.attach(raw)
        run.attach_seconds = {t.parent: t.attach_seconds for t in (node_t, edge_t) if t.attach_seconds is not None}
        create_empty_partition(raw, "memory_outbox", key)
        for tbl in (node_t, edge_t):
            missing = unattached_index_count(raw, tbl.parent, tbl.final_name)
            if missing:
                run.warnings.append(f"{missing} index(es) of {tbl.parent} were not adopted on attach")


def _seed_shared(run: SeedRun, sa: Connection, raw: psycopg.Connection, factory: RowFactory, plan: VectorPlan,
                 commit_row: dict[str, Any]) -> None:
    """Into the live shared tables: their indexes and constraints do the work, row by row, in this transaction."""
    layout = run.layout
    assert layout is not None
    if run.params.reset:
        with run.timings.phase("reset"):
            purge = plan_purge(raw, run.params.target, mode="auto", batch_size=run.params.reset_batch)
            apply_purge(raw, purge, commit_each_step=False)
            run.reset_stats = purge.stats()
            log(f"reset: {run.reset_stats}")
    elif raw.execute("SELECT EXISTS (SELECT 1 FROM memory_nodes WHERE scope = %s)",
                     (run.params.target.scope_key,)).fetchone()[0]:
        run.warnings.append("scope already has rows and --reset was not given: the seed is added to them")
        log(run.warnings[-1])
    log("load: COPY into the live tables (their indexes are maintained row by row; the bar counts rows stored)")
    with run.timings.phase("load"):
        commit_cols = layout.present("memory_commits", COMMIT_COLUMNS)
        sa.execute(insert(commits).values(**{k: v for k, v in commit_row.items() if k in commit_cols}))
        _copy_nodes(raw, "memory_nodes", factory, plan, run, layout.present("memory_nodes", NODE_COLUMNS))
        _copy_edges(raw, "memory_edges", factory, run, layout.present("memory_edges", EDGE_COLUMNS))


READY_INDEX = "ready_hot_warm_hnsw"
SPILL_RE = re.compile(r"no longer fits into maintenance_work_mem after ([0-9,]+) tuples")


def _per_partition_ready_index(raw: psycopg.Connection) -> bool:
    """The schema builds the ready hot/warm HNSW index per partition (the function memload's migration adds)."""
    return bool(raw.execute(f"SELECT to_regproc('{INDEX_FUNCTION}') IS NOT NULL").fetchone()[0])


def _build_ready_index(run: SeedRun, raw: psycopg.Connection, table: str, total: int) -> None:
    """The recall path's HNSW index in the asked precision, watched (progress) and measured (seconds, server CPU)."""
    p = run.params
    label = f"{table} ready hot/warm (hnsw, {p.precision})"
    log(f"index: {label}; build plan: {run.build.reason if run.build else '?'}")
    cpu = ServerCpu(raw)
    t0 = time.monotonic()
    with IndexProgress(run.url, raw.info.backend_pid, label, total, enabled=p.progress):
        raw.execute(f"SELECT {INDEX_FUNCTION}(%s, %s)", (table, p.precision))
    run.hnsw_seconds = round(time.monotonic() - t0, 3)
    run.hnsw_cpu_s = cpu.used()
    row = raw.execute(
        "SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = %s::regclass AND am.amname = 'hnsw'",
        (table,)).fetchone()
    run.index_mb = round(int(row[0] or 0) / 1024 / 1024, 1)


def _notice(run: SeedRun, diag: Any) -> None:
    """pgvector says when the graph outgrows maintenance_work_mem: the build goes on, on disk, far slower."""
    text = diag.message_primary or ""
    m = SPILL_RE.search(text)
    if m:
        run.spilled_at = int(m.group(1).replace(",", ""))
        run.warnings.append(f"HNSW graph outgrew maintenance_work_mem after {run.spilled_at:,} tuples: the rest "
                            "was built on disk (slower); --maintenance-work-mem / MEMLOAD_SEED_MAINTENANCE_WORK_MEM")
    if text:
        log(f"server: {text}")


def _check_shared_columns(layout: Layout) -> None:
    check_columns(layout, "memory_commits", COMMIT_COLUMNS, ("id", "scope", "commit_hash"))
    check_columns(layout, "memory_nodes", NODE_COLUMNS, ("id", "scope", "type", "embedding", "commit_id"))
    check_columns(layout, "memory_edges", EDGE_COLUMNS, ("id", "scope", "type", "src_id", "dst_id", "commit_id"))


def _seed_append(run: SeedRun, sa: Connection, raw: psycopg.Connection, factory: RowFactory, plan: VectorPlan,
                 commit_row: dict[str, Any]) -> None:
    run.warnings.append("scope already has rows and --reset was not given: rows appended through the existing "
                        "indexes (HNSW maintained row by row, slow at scale)")
    log(run.warnings[-1])
    with run.timings.phase("load"):
        sa.execute(insert(commits).values(**commit_row))
        _copy_nodes(raw, "memory_nodes", factory, plan, run)
        _copy_edges(raw, "memory_edges", factory, run)


# ----------------------------------------------------------------------------------------------------- COPY
def _projection(all_cols: tuple[str, ...], types: tuple[str, ...], cols: tuple[str, ...] | None
                ) -> tuple[tuple[str, ...], list[str], list[int] | None]:
    """COPY column list, their types, and the row positions to keep (None: every column, rows as built)."""
    if cols is None or cols == all_cols:
        return all_cols, list(types), None
    keep = [all_cols.index(c) for c in cols]
    return cols, [types[i] for i in keep], keep


def _copy_nodes(raw: psycopg.Connection, table: str, factory: RowFactory, plan: VectorPlan, run: SeedRun,
                cols: tuple[str, ...] | None = None) -> None:
    names, types, keep = _projection(NODE_COLUMNS, NODE_TYPES, cols)
    topic_vectors = plan.topic_vectors()
    with CopyProgress(run.url, raw.info.backend_pid, factory.topics + factory.events, "load nodes",
                      enabled=run.params.progress) as pb, raw.cursor() as cur:
        with cur.copy(f"COPY {quote_ident(table)} ({', '.join(names)}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(types)
            for row in factory.topic_rows(topic_vectors):
                cp.write_row(row if keep is None else tuple(row[i] for i in keep))
            pb.advance(factory.topics)
            for start, block in plan.event_chunks(topic_vectors):
                for row in factory.event_rows(start, block):
                    cp.write_row(row if keep is None else tuple(row[i] for i in keep))
                pb.advance(block.shape[0])


def _copy_edges(raw: psycopg.Connection, table: str, factory: RowFactory, run: SeedRun,
                cols: tuple[str, ...] | None = None) -> None:
    names, types, keep = _projection(EDGE_COLUMNS, EDGE_TYPES, cols)
    with CopyProgress(run.url, raw.info.backend_pid, 2 * factory.events, "load edges",
                      enabled=run.params.progress) as pb, raw.cursor() as cur:
        with cur.copy(f"COPY {quote_ident(table)} ({', '.join(names)}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(types)
            n = 0
            for row in factory.edge_rows():
                cp.write_row(row if keep is None else tuple(row[i] for i in keep))
                n += 1
                if n == CHUNK:
                    pb.advance(n)
                    n = 0
            pb.advance(n)


# ----------------------------------------------------------------------------------------------------- helpers
def _source_vector(sa: Connection, params: SeedParams) -> np.ndarray:
    """One READY vector of the source scope (peer semantics: required in both vector modes; copied in `copy`)."""
    src = params.source
    row = sa.execute(
        select(nodes.c.embedding)
        .where(nodes.c.scope == src.scope_key, nodes.c.embedding_status == "ready", nodes.c.embedding.is_not(None))
        .order_by(nodes.c.created_at, nodes.c.id).limit(1)
    ).first()
    if row is None:
        raise ConfigError(f"--src-scope: no READY embedding found in source scope={src.scope!r} "
                          f"tenant_id={src.tenant_id!r} (scope_key={src.scope_key!r}); write one node with an "
                          "embedding there first")
    return np.asarray(row[0], dtype=np.float32)


def _scope_is_empty(raw: psycopg.Connection, key: str) -> bool:
    """No partition of the scope and no row of it in any partitioned table (so new partitions can be attached)."""
    for table in PARTITIONED_PURGE_ORDER:
        if scope_partitions(raw, table, key):
            return False
        if raw.execute(f"SELECT 1 FROM {quote_ident(table)} WHERE scope = %s LIMIT 1", (key,)).fetchone():
            return False
    return True


def _head_commit(sa: Connection, key: str) -> tuple[uuid.UUID | None, str]:
    row = sa.execute(select(commits.c.id, commits.c.commit_hash).where(commits.c.scope == key)
                     .order_by(commits.c.created_at.desc()).limit(1)).first()
    return (None, "") if row is None else (row[0], row[1])


def _input_payload(p: SeedParams) -> dict[str, Any]:
    return {"kind": "perf_seed", "scope_key": p.target.scope_key, "source_scope_key": p.source.scope_key,
            "events": p.events, "topics": p.topic_count, "reset": p.reset, "seed": p.seed, "vectors": p.vectors,
            "noise": p.noise}


def _diff(p: SeedParams) -> dict[str, Any]:
    return {"kind": "perf_seed", "tenant_id": p.target.tenant_id, "scope": p.target.scope,
            "source_tenant_id": p.source.tenant_id, "source_scope": p.source.scope, "events": p.events,
            "topics": p.topic_count, "reset": p.reset, "vectors": p.vectors, "seed": p.seed, "noise": p.noise}


def _totals(raw: psycopg.Connection, key: str) -> dict[str, int]:
    n = raw.execute("SELECT count(*) FROM memory_nodes WHERE scope = %s", (key,)).fetchone()[0]
    e = raw.execute("SELECT count(*) FROM memory_edges WHERE scope = %s", (key,)).fetchone()[0]
    return {"nodes": int(n), "edges": int(e)}


def _analyze_after_commit(url: str, load_path: str, key: str) -> None:
    """Parent-level statistics (ANALYZE ONLY: not every partition again); on the append path also the leaves that
    received rows; on a shared table the two tables. Outside the seed transaction: statistics are not data, a kill
    here loses nothing."""
    with connect(url, autocommit=True, application_name=APP_NAME) as conn:
        if load_path == SHARED_TABLE:
            conn.execute("ANALYZE memory_nodes, memory_edges")
            return
        if load_path == "append":
            for table in ("memory_nodes", "memory_edges"):
                for (leaf,) in conn.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE scope = %s",
                                            (key,)).fetchall():
                    conn.execute(f"ANALYZE {leaf}")
        conn.execute("ANALYZE ONLY memory_nodes, ONLY memory_edges")


def _failure(run: SeedRun, exc: BaseException) -> MemloadError:
    """One line: the phase, the cause, the setting that changes it."""
    phase = run.timings.current
    where = f"{phase}, {run.layout.kind}" if run.layout is not None else phase
    return MemloadError(f"seed failed at {where}, nothing changed: {_first_line(exc)} "
                        f"(setting: {PHASE_HINTS.get(phase, 'DATABASE_URL')})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
