"""The outbox worker (as the Aionis `job:outbox-worker`): embeds pending nodes, clusters events into topics.

Exactly-once under crashes, by construction:
  * a claim is a short transaction (`FOR UPDATE SKIP LOCKED`, `claimed_at = now()`, `attempts + 1`);
  * a job's effects and its `published_at` are committed in ONE transaction, which first re-locks the outbox rows
    and keeps only those whose `claimed_at` still equals the value this worker claimed (the fence). While that
    transaction runs, no other worker can re-claim the rows (they are row-locked and claims skip locked rows);
  * so a worker killed at any point leaves each job either fully applied and published, or not applied at all and
    claimable again after OUTBOX_CLAIM_TIMEOUT_MS.

Throughput: all `embed_nodes` rows of a claim are processed together - one `fake_embed_many` call, one binary COPY
into a temp table and one `UPDATE ... FROM` per scope - instead of one statement per node. If that combined
transaction fails, the rows are retried one by one, so a poison row only affects itself.

Counting follows Aionis: `processed` = rows iterated (failures included); `embed_backfill_runs` = embed rows
published; `topic_cluster_runs` = topic jobs that clustered at least one event.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memload import contract as C
from memload.config import Settings
from memload.db import connect
from memload.embedder import PROVIDER_NAME, fake_embed_many
from memload.errors import DatabaseUnavailable
from memload.identity import outbox_job_key
from memory_api.text import normalize_text, redact_pii
from memory_api.topic_cluster import TopicParams, cluster_events

MAX_BATCH_SIZE = 200
NodeKey = tuple[str, uuid.UUID]  # (scope, node id)


# ------------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class WorkerConfig:
    """Knobs of one worker (Aionis env names: OUTBOX_BATCH_SIZE, OUTBOX_CLAIM_TIMEOUT_MS, ...)."""

    batch_size: int = 20
    # embed_nodes rows are processed together (one embedding call, one COPY, one UPDATE), so a batch may claim more
    # of them than batch_size: up to embed_batch_rows rows, stopping once they hold embed_batch_nodes nodes (which
    # bounds how long one group's transaction - and a graceful stop - can take). embed_batch_rows = batch_size gives
    # the contract's claim exactly. Other rows fill the batch up to batch_size, after the embed rows.
    embed_batch_rows: int = 200
    embed_batch_nodes: int = 500
    claim_timeout_ms: int = 300_000
    max_attempts: int = 25
    poll_interval_ms: int = 1000
    scope: str | None = None  # None = all scopes (as Aionis); a scope key restricts claims
    embedding_provider: str = "fake"
    max_text_len: int = 8000
    pii_redaction: bool = True
    topic: TopicParams = field(default_factory=TopicParams)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerConfig:
        cfg = cls(
            batch_size=settings.outbox_batch_size,
            claim_timeout_ms=settings.outbox_claim_timeout_ms,
            max_attempts=settings.outbox_max_attempts,
            poll_interval_ms=settings.outbox_poll_interval_ms,
            embedding_provider=settings.embedding_provider,
            max_text_len=settings.max_text_len,
            pii_redaction=settings.pii_redaction,
            topic=TopicParams(settings.topic_sim_threshold, settings.topic_min_events_per_topic,
                              settings.max_text_len, settings.pii_redaction),
        )
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class ClaimedRow:
    scope: str
    id: int
    commit_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    claimed_at: datetime
    job_key: str


@dataclass
class EmbedPlan:
    """What one embed_nodes row asks for and what the batch decided for it."""

    nodes: list[tuple[uuid.UUID, str]]  # (node id, text) named by the payload
    force: bool  # force_reembed: re-embed nodes that are already ready
    skipped: int = 0  # already ready, not forced
    todo: list[NodeKey] = field(default_factory=list)  # existing nodes to (re-)embed
    status: str = "ok"  # ok | fatal_error | retryable_error
    embed_keys: list[NodeKey] = field(default_factory=list)  # nodes of `todo` with a non-empty embedding text


@dataclass
class BatchStats:
    """One batch: the contract's JSON fields plus a few more (published, nodes, errors, timing)."""

    claimed: int = 0
    processed: int = 0
    published: int = 0
    topic_cluster_runs: int = 0
    embed_backfill_runs: int = 0
    failed_marked: int = 0
    topic_commit_hashes: list[str] = field(default_factory=list)
    nodes_embedded: int = 0
    retried: int = 0  # retryable errors: claim released, row stays unpublished
    errors: int = 0  # exceptions: rolled back, claim released, last_error recorded
    fence_lost: int = 0  # rows re-claimed by another worker before we processed them: skipped
    released: int = 0  # claimed rows handed back unprocessed because of a stop signal
    scopes_claimed: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def as_json(self, *, mode: str, scope: str | None) -> dict[str, Any]:
        return {
            "ok": self.errors == 0,
            "mode": mode,
            "scope": scope or "all",
            "claimed": self.claimed,
            "processed": self.processed,
            "topic_cluster_runs": self.topic_cluster_runs,
            "embed_backfill_runs": self.embed_backfill_runs,
            "failed_marked": self.failed_marked,
            "topic_commit_hashes": self.topic_commit_hashes,
            "published": self.published,
            "nodes_embedded": self.nodes_embedded,
            "retried": self.retried,
            "errors": self.errors,
            "fence_lost": self.fence_lost,
            "released": self.released,
            "scopes_claimed": self.scopes_claimed,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


class StopFlag:
    """Set by SIGTERM/SIGINT; the worker checks it between jobs and while idle."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def install_signal_handlers(stop: StopFlag) -> None:
    """First SIGTERM/SIGINT: finish the current job, then exit. A second one aborts (the open transaction rolls back,
    so nothing is half-applied)."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.requested:
            raise SystemExit(128 + signum)
        stop.set()
        print(f"[worker] {signal.Signals(signum).name}: finishing the current job, then exiting",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ------------------------------------------------------------------------------------------------ helpers
def embed_text(text: str, max_len: int, pii_redaction: bool) -> str:
    """The API already normalised and redacted the text; Aionis's worker repeats both defensively (idempotent)."""
    out = normalize_text(text, max_len)
    return redact_pii(out) if pii_redaction else out


def job_key(scope: str, commit_id: str, event_type: str, payload: dict[str, Any]) -> tuple[str, str]:
    """(job_key, payload_sha256) exactly as the API computes them (the write's outbox rows)."""
    return outbox_job_key(scope_key=scope, commit_id=commit_id, event_type=event_type, payload=payload)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def _node_count(row: ClaimedRow) -> int:
    nodes = row.payload.get("nodes")
    return len(nodes) if isinstance(nodes, list) else 0


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:2000]


_TMP_TABLE = "memload_embed_tmp"
_CLAIM_SQL = """
WITH eligible AS (
  SELECT scope, id FROM memory_outbox
  WHERE published_at IS NULL AND failed_at IS NULL AND attempts < %(max_attempts)s
    AND (claimed_at IS NULL OR claimed_at < now() - %(timeout_ms)s * interval '1 millisecond')
    {filters}
  ORDER BY CASE event_type WHEN 'embed_nodes' THEN 0 WHEN 'topic_cluster' THEN 1 ELSE 2 END, id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE memory_outbox o SET claimed_at = now(), attempts = o.attempts + 1
FROM eligible e WHERE o.scope = e.scope AND o.id = e.id
RETURNING o.scope, o.id, o.commit_id::text, o.event_type, o.payload, o.attempts, o.claimed_at, o.job_key
"""
_DEAD_LETTER_SQL = """
WITH to_fail AS (
  SELECT scope, id FROM memory_outbox
  WHERE published_at IS NULL AND failed_at IS NULL AND attempts >= %(max_attempts)s
    AND (claimed_at IS NULL OR claimed_at < now() - %(timeout_ms)s * interval '1 millisecond')
    {filters}
  FOR UPDATE SKIP LOCKED
)
UPDATE memory_outbox o SET failed_at = now(), failed_reason = 'max_attempts_exceeded', claimed_at = NULL
FROM to_fail f WHERE o.scope = f.scope AND o.id = f.id
"""
# The fence: lock our claimed rows (primary-key lookups), then keep those whose claim is still ours.
_LOCK_OWNED_SQL = """
SELECT scope, id, claimed_at FROM memory_outbox
WHERE scope = ANY(%s::text[]) AND id = ANY(%s::bigint[]) AND published_at IS NULL AND failed_at IS NULL
FOR UPDATE
"""
_PUBLISH_SQL = """
UPDATE memory_outbox o SET payload = o.payload || p.patch, last_error = NULL, published_at = now()
FROM unnest(%s::text[], %s::bigint[], %s::jsonb[]) AS p(scope, id, patch)
WHERE o.scope = p.scope AND o.id = p.id
"""
_RETRY_SQL = """
UPDATE memory_outbox o SET payload = o.payload || p.patch, last_error = p.err, claimed_at = NULL
FROM unnest(%s::text[], %s::bigint[], %s::jsonb[], %s::text[]) AS p(scope, id, patch, err)
WHERE o.scope = p.scope AND o.id = p.id
"""
_ENQUEUE_SQL = """
INSERT INTO memory_outbox (scope, commit_id, event_type, job_key, payload_sha256, payload)
VALUES (%s, %s, 'topic_cluster', %s, %s, %s)
ON CONFLICT (scope, event_type, job_key) DO NOTHING
"""


# ------------------------------------------------------------------------------------------------ the worker
class OutboxWorker:
    """A synchronous worker on one connection. `run_batch()` = one `--once` batch; `run()` = the loop."""

    def __init__(self, database_url: str, config: WorkerConfig, *, stop: StopFlag | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.database_url = database_url
        self.config = config
        self.stop = stop or StopFlag()
        self._log = log or (lambda msg: print(f"[worker] {msg}", file=sys.stderr, flush=True))
        self._conn: psycopg.Connection | None = None
        self._ever_connected = False

    # -- connection
    def connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            from pgvector.psycopg import register_vector

            conn = connect(self.database_url, autocommit=True, application_name="memload-worker")
            register_vector(conn)
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_TMP_TABLE} (scope text NOT NULL, id uuid NOT NULL,"
                         " embedding vector(1536) NOT NULL) ON COMMIT DELETE ROWS")
            self._conn = conn
            self._ever_connected = True
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> OutboxWorker:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one batch
    def run_batch(self) -> BatchStats:
        t0 = time.perf_counter()
        conn = self.connect()
        stats = BatchStats()
        stats.failed_marked = self._dead_letter(conn)
        rows = self._claim(conn)
        stats.claimed = len(rows)
        stats.scopes_claimed = sorted({r.scope for r in rows})
        embed = [r for r in rows if r.event_type == C.OUTBOX_EMBED_NODES]
        rest = sorted((r for r in rows if r.event_type != C.OUTBOX_EMBED_NODES),
                      key=lambda r: (0 if r.event_type == C.OUTBOX_TOPIC_CLUSTER else 1, r.id))
        if embed:
            self._embed_group(conn, embed, stats)
        for i, row in enumerate(rest):
            if self.stop.requested:  # finish the current job only: hand the rest back
                stats.released += self._release(conn, rest[i:])
                break
            self._single(conn, row, stats)
        stats.elapsed_ms = (time.perf_counter() - t0) * 1000.0
        return stats

    def run(self, *, once: bool, emit: Callable[[dict[str, Any]], None], max_batches: int | None = None,
            log_idle: bool = False) -> int:
        """Loop (or one batch). Returns an exit code.

        A database that cannot be reached at start fails at once (a wrong URL should not hang); an outage after that
        is retried with backoff in loop mode (the claims of the interrupted batch expire and are re-claimed).
        """
        mode = "once" if once else "loop"
        batches = 0
        backoff = 0.5
        while not self.stop.requested:
            try:
                stats = self.run_batch()
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                if once or not self._ever_connected:
                    raise
                self._log(f"database error, retrying in {backoff:.1f}s: {_error_line(exc)}")
                self.close()
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            batches += 1
            if once or log_idle or stats.claimed or stats.failed_marked:
                emit(stats.as_json(mode=mode, scope=self.config.scope))
            if once or (max_batches is not None and batches >= max_batches):
                break
            if stats.claimed == 0:
                self.stop.wait(self.config.poll_interval_ms / 1000.0)
        return 0

    # -- claim / dead-letter / release
    def _filters(self) -> tuple[str, dict[str, Any]]:
        if self.config.scope is None:
            return "", {}
        return "AND scope = %(scope)s", {"scope": self.config.scope}

    def _dead_letter(self, conn: psycopg.Connection) -> int:
        flt, params = self._filters()
        with conn.transaction():
            cur = conn.execute(_DEAD_LETTER_SQL.format(filters=flt), {
                "max_attempts": self.config.max_attempts, "timeout_ms": self.config.claim_timeout_ms, **params})
            return cur.rowcount

    def _claim(self, conn: psycopg.Connection) -> list[ClaimedRow]:
        cfg = self.config
        flt, params = self._filters()
        base = {"max_attempts": cfg.max_attempts, "timeout_ms": cfg.claim_timeout_ms, **params}
        out: list[ClaimedRow] = []
        with conn.transaction():
            out += self._claim_embed(conn, f"{flt} AND event_type = 'embed_nodes'", base)
            if len(out) < cfg.batch_size:
                out += self._claim_some(conn, f"{flt} AND event_type <> 'embed_nodes'",
                                        {**base, "limit": cfg.batch_size - len(out)})
        return out

    def _claim_embed(self, conn: psycopg.Connection, filters: str, base: dict[str, Any]) -> list[ClaimedRow]:
        """embed_nodes rows: a first chunk of batch_size rows, then as many more as the node budget allows."""
        cfg = self.config
        out: list[ClaimedRow] = []
        nodes = 0
        limit = min(cfg.batch_size, cfg.embed_batch_rows)
        while limit > 0:
            chunk = self._claim_some(conn, filters, {**base, "limit": limit})
            out += chunk
            nodes += sum(_node_count(r) for r in chunk)
            if len(chunk) < limit or len(out) >= cfg.embed_batch_rows or nodes >= cfg.embed_batch_nodes:
                break
            per_row = max(nodes / len(out), 1.0)
            limit = min(cfg.embed_batch_rows - len(out), max(1, int((cfg.embed_batch_nodes - nodes) / per_row)))
        # over the node budget (big rows): hand the surplus back at once, keeping at least one row
        keep = len(out)
        while keep > 1 and nodes > cfg.embed_batch_nodes:
            keep -= 1
            nodes -= _node_count(out[keep])
        if keep < len(out):
            self._release_in_tx(conn, out[keep:])
        return out[:keep]

    @staticmethod
    def _claim_some(conn: psycopg.Connection, filters: str, params: dict[str, Any]) -> list[ClaimedRow]:
        rows = conn.execute(_CLAIM_SQL.format(filters=filters), params).fetchall()
        out = [ClaimedRow(r[0], int(r[1]), r[2], r[3], r[4] if isinstance(r[4], dict) else {}, r[5], r[6], r[7])
               for r in rows]
        return sorted(out, key=lambda r: r.id)

    def _lock_owned(self, conn: psycopg.Connection, rows: list[ClaimedRow]) -> set[tuple[str, int]]:
        claims = {(r.scope, r.id): r.claimed_at for r in rows}
        found = conn.execute(_LOCK_OWNED_SQL, (sorted({r.scope for r in rows}), [r.id for r in rows])).fetchall()
        return {(s, int(i)) for s, i, at in found if claims.get((s, int(i))) == at}

    def _release(self, conn: psycopg.Connection, rows: list[ClaimedRow]) -> int:
        """Hand unprocessed claims back (stop requested): claimable at once, and the attempt is not counted."""
        with conn.transaction():
            return self._release_in_tx(conn, rows)

    @staticmethod
    def _release_in_tx(conn: psycopg.Connection, rows: list[ClaimedRow]) -> int:
        cur = conn.execute(
            "UPDATE memory_outbox o SET claimed_at = NULL, attempts = GREATEST(o.attempts - 1, 0)"
            " FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[]) AS c(scope, id, claimed_at)"
            " WHERE o.scope = c.scope AND o.id = c.id AND o.claimed_at = c.claimed_at AND o.published_at IS NULL",
            ([r.scope for r in rows], [r.id for r in rows], [r.claimed_at for r in rows]))
        return cur.rowcount

    def _record_error(self, conn: psycopg.Connection, row: ClaimedRow, exc: BaseException) -> None:
        """After a rollback: keep the row unpublished, release the claim (retried next batch until max attempts)."""
        self._log(f"{row.event_type} {row.scope}/{row.id} failed: {_error_line(exc)}")
        try:
            with conn.transaction():
                conn.execute("UPDATE memory_outbox SET claimed_at = NULL, last_error = %s"
                             " WHERE scope = %s AND id = %s AND claimed_at = %s",
                             (_error_line(exc), row.scope, row.id, row.claimed_at))
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc2:  # the row stays claimed; it is retried after the claim timeout
            self._log(f"could not record the error of {row.scope}/{row.id}: {_error_line(exc2)}")

    # -- embed_nodes (batched)
    def _embed_group(self, conn: psycopg.Connection, rows: list[ClaimedRow], stats: BatchStats) -> None:
        try:
            with conn.transaction():
                owned = self._lock_owned(conn, rows)
                mine = [r for r in rows if (r.scope, r.id) in owned]
                result = self._embed_rows(conn, mine)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            if len(rows) == 1:
                self._record_error(conn, rows[0], exc)
                stats.errors += 1
                stats.processed += 1
                return
            self._log(f"batch of {len(rows)} embed_nodes rows failed ({_error_line(exc)}); retrying one by one")
            for row in rows:
                if self.stop.requested:
                    stats.released += self._release(conn, [row])
                    continue
                self._embed_group(conn, [row], stats)
            return
        stats.fence_lost += len(rows) - len(mine)
        stats.processed += len(rows)
        stats.published += result["published"]
        stats.embed_backfill_runs += result["published"]
        stats.nodes_embedded += result["nodes_embedded"]
        stats.retried += result["retried"]

    def _embed_rows(self, conn: psycopg.Connection, rows: list[ClaimedRow]) -> dict[str, int]:
        """Effects of a group of embed_nodes rows + their publication, inside the caller's transaction."""
        cfg = self.config
        per_row: dict[int, EmbedPlan] = {}
        wanted: dict[str, dict[uuid.UUID, str]] = {}  # scope -> node id -> text (first one wins)
        force: dict[str, set[uuid.UUID]] = {}
        for r in rows:
            nodes = r.payload.get("nodes")
            parsed: list[tuple[uuid.UUID, str]] = []
            for n in nodes if isinstance(nodes, list) else []:
                if not isinstance(n, dict):
                    continue
                nid, text = _uuid_or_none(n.get("id")), n.get("text")
                if nid is not None and isinstance(text, str) and text:
                    parsed.append((nid, text))
            per_row[r.id] = EmbedPlan(parsed, r.payload.get("force_reembed") is True)
            for nid, text in parsed:
                wanted.setdefault(r.scope, {}).setdefault(nid, text)
                if per_row[r.id].force:
                    force.setdefault(r.scope, set()).add(nid)

        # current state of every referenced node
        state: dict[NodeKey, bool] = {}  # -> already ready with a vector
        for scope, nodes in wanted.items():
            for nid, status, has_vec in conn.execute(
                "SELECT id, embedding_status::text, embedding IS NOT NULL FROM memory_nodes"
                " WHERE scope = %s AND id = ANY(%s)", (scope, list(nodes))
            ):
                state[(scope, nid)] = status == "ready" and has_vec

        provider_ok = cfg.embedding_provider == "fake"
        to_embed: dict[NodeKey, str] = {}
        no_text: set[NodeKey] = set()
        for r in rows:
            plan = per_row[r.id]
            todo = []
            for nid, text in plan.nodes:
                key = (r.scope, nid)
                if key not in state:
                    continue  # node does not exist (any more): nothing to do
                if state[key] and not plan.force:
                    plan.skipped += 1
                    continue
                todo.append((key, embed_text(text, cfg.max_text_len, cfg.pii_redaction)))
            plan.todo = [k for k, _ in todo]
            texts = [(k, t) for k, t in todo if t]
            if todo and not texts:
                no_text.update(k for k, _ in todo if not state[k])
                plan.status = "fatal_error"
            elif texts and not provider_ok:
                plan.status = "retryable_error"
            else:
                plan.status = "ok"
                for k, t in texts:
                    to_embed.setdefault(k, t)
            plan.embed_keys = [k for k, _ in texts]

        updated = self._write_vectors(conn, to_embed) if to_embed else set()
        if no_text:
            self._mark_nodes(conn, no_text, C.EMBED_ERR_NO_TEXT, fail=True)
        retry_keys = {k for r in rows if per_row[r.id].status == "retryable_error" for k in per_row[r.id].embed_keys}
        if retry_keys:
            self._mark_nodes(conn, retry_keys, C.EMBED_ERR_PROVIDER_UNAVAILABLE, fail=False)

        publish: list[tuple[ClaimedRow, dict[str, Any]]] = []
        retry: list[tuple[ClaimedRow, dict[str, Any]]] = []
        for r in rows:
            plan = per_row[r.id]
            status = plan.status
            attempted = len(plan.embed_keys) if status != "fatal_error" else len(plan.todo)
            n_updated = sum(1 for k in plan.embed_keys if k in updated) if status == "ok" else 0
            out: dict[str, Any] = {"attempted": attempted, "updated": n_updated, "skipped_already_ready":
                                   plan.skipped, "failed": 0 if status == "ok" else attempted, "status": status}
            if status == "fatal_error":
                out["error_message"] = C.EMBED_ERR_NO_TEXT
            elif status == "retryable_error":
                out["error_message"] = C.EMBED_ERR_PROVIDER_UNAVAILABLE
            patch: dict[str, Any] = {"embed_backfill": out}
            after = r.payload.get("after_topic_cluster_event_ids")
            after_ids = [str(x) for x in after] if isinstance(after, list) else []
            if status == "ok" and after_ids:
                payload = {"event_ids": after_ids}
                key, psha = job_key(r.scope, r.commit_id, C.OUTBOX_TOPIC_CLUSTER, payload)
                conn.execute(_ENQUEUE_SQL, (r.scope, r.commit_id, key, psha, Jsonb(payload)))
                patch.update({"enqueued_topic_cluster": True, "topic_cluster_event_ids": after_ids})
            (retry if status == "retryable_error" else publish).append((r, patch))
        if publish:
            conn.execute(_PUBLISH_SQL, ([r.scope for r, _ in publish], [r.id for r, _ in publish],
                                        [Jsonb(p) for _, p in publish]))
        if retry:
            conn.execute(_RETRY_SQL, ([r.scope for r, _ in retry], [r.id for r, _ in retry],
                                      [Jsonb(p) for _, p in retry],
                                      [C.EMBED_ERR_PROVIDER_UNAVAILABLE] * len(retry)))
        return {"published": len(publish), "retried": len(retry), "nodes_embedded": len(updated)}

    def _write_vectors(self, conn: psycopg.Connection, to_embed: dict[NodeKey, str]
                       ) -> set[NodeKey]:
        """One embedding call for the whole batch, one COPY, one UPDATE per scope. Returns the updated keys."""
        keys = list(to_embed)
        vectors = fake_embed_many([to_embed[k] for k in keys]).astype(">f4")
        header = b"\x06\x00\x00\x00"  # dim 1536 (big-endian uint16) + unused uint16
        with conn.cursor().copy(f"COPY {_TMP_TABLE} (scope, id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text", "uuid", "bytea"])  # the vector field is written pre-encoded (pgvector's binary)
            for (scope, nid), vec in zip(keys, vectors, strict=True):
                cp.write_row((scope, nid, header + vec.tobytes()))
        updated: set[NodeKey] = set()
        for scope in sorted({s for s, _ in keys}):
            rows = conn.execute(
                "UPDATE memory_nodes n SET embedding = t.embedding, embedding_model = %s,"
                " embedding_status = 'ready', embedding_attempts = n.embedding_attempts + 1,"
                " embedding_last_error = NULL, embedding_last_attempt_at = now(), embedding_ready_at = now()"
                " FROM " + _TMP_TABLE + " t WHERE n.scope = %s AND t.scope = %s AND n.id = t.id RETURNING n.id",
                (PROVIDER_NAME, scope, scope)).fetchall()
            updated.update((scope, r[0]) for r in rows)
        return updated  # the temp table empties itself at commit (ON COMMIT DELETE ROWS)

    @staticmethod
    def _mark_nodes(conn: psycopg.Connection, keys: Iterable[NodeKey], error: str, *, fail: bool
                    ) -> None:
        by_scope: dict[str, list[uuid.UUID]] = {}
        for scope, nid in keys:
            by_scope.setdefault(scope, []).append(nid)
        for scope, ids in by_scope.items():
            conn.execute(
                "UPDATE memory_nodes SET embedding_attempts = embedding_attempts + 1, embedding_last_error = %s,"
                " embedding_last_attempt_at = now(),"
                " embedding_status = CASE WHEN %s THEN 'failed'::memory_embedding_status ELSE embedding_status END"
                " WHERE scope = %s AND id = ANY(%s)", (error, fail, scope, ids))

    # -- topic_cluster and unknown types (one transaction per row)
    def _single(self, conn: psycopg.Connection, row: ClaimedRow, stats: BatchStats) -> None:
        stats.processed += 1
        try:
            with conn.transaction():
                if not self._lock_owned(conn, [row]):
                    stats.fence_lost += 1
                    return
                clustered_hash: str | None = None
                if row.event_type == C.OUTBOX_TOPIC_CLUSTER:
                    ids = row.payload.get("event_ids")
                    if isinstance(ids, list) and ids:
                        res = cluster_events(conn, row.scope, ids, self.config.topic,
                                             job_ref=f"{row.scope}:{row.id}:{row.job_key}")
                        patch = res.payload_patch()
                        if res.processed_events > 0:
                            clustered_hash = res.topic_commit_hash
                    else:
                        patch = {"skipped": True, "reason": "no_event_ids"}
                else:
                    patch = {"skipped": True, "reason": "unknown_event_type"}
                conn.execute(_PUBLISH_SQL, ([row.scope], [row.id], [Jsonb(patch)]))
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            self._record_error(conn, row, exc)
            stats.errors += 1
            return
        stats.published += 1
        if clustered_hash is not None:
            stats.topic_cluster_runs += 1
            stats.topic_commit_hashes.append(clustered_hash)


def outbox_snapshot(conn: psycopg.Connection, scope: str | None) -> dict[str, int]:
    """{unpublished, failed, claimed} of a scope (or all scopes), as the Aionis kit's worker benchmark reports them."""
    where, params = ("WHERE scope = %s", (scope,)) if scope is not None else ("", ())
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE published_at IS NULL),"
        " count(*) FILTER (WHERE failed_at IS NOT NULL),"
        " count(*) FILTER (WHERE published_at IS NULL AND failed_at IS NULL AND claimed_at IS NOT NULL)"
        f" FROM memory_outbox {where}", params).fetchone()
    return {"unpublished": int(row[0]), "failed": int(row[1]), "claimed": int(row[2])}
