"""Online kNN topic clustering of events (the Aionis `topic_cluster` outbox job).

Each event joins the nearest topic of its scope when the cosine similarity is >= TOPIC_SIM_THRESHOLD (0.78), else it
seeds a new *draft* topic; a topic turns *active* at TOPIC_MIN_EVENTS_PER_TOPIC (5) members. Every run writes its own
commit (hash-chained on the scope's newest commit) and the edges event -part_of-> topic, topic -derived_from-> event.

Differences from Aionis, on purpose:
  * the plan is online inside one job too: a draft topic created for an earlier event of the same job is a candidate
    for the later ones (Aionis planned all events against the topics that existed before the job, so five similar
    events written together made five draft topics);
  * nearest-topic search is exact (no HNSW on the topic subset: a post-filtered ANN scan can miss every topic);
  * the commit hash is deterministic (job identity instead of a wall-clock timestamp), so a re-run after a crash of
    an uncommitted job produces the same commit;
  * Aionis's scope-wide `quality.orphan_rate_after` scan is skipped (it reads the whole scope on every job).
The caller runs this inside the transaction that also publishes the outbox row, so it is applied exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from memload.identity import commit_hash, sha256_hex, stable_uuid
from memory_api.text import normalize_text, redact_pii

STRATEGY = "online_knn"
DEFAULT_TOPIC_MODEL = "topic_cluster:event_embedding"


@dataclass(frozen=True)
class TopicParams:
    sim_threshold: float = 0.78
    min_events_per_topic: int = 5
    max_text_len: int = 8000
    pii_redaction: bool = True

    def seed_text(self, text: str) -> str:
        out = normalize_text(text, self.max_text_len)
        return redact_pii(out) if self.pii_redaction else out


@dataclass
class TopicClusterResult:
    topic_commit_id: str | None = None
    topic_commit_hash: str | None = None
    processed_events: int = 0
    assigned: int = 0
    created_topics: int = 0
    promoted: int = 0
    planned: list[dict[str, Any]] = field(default_factory=list)

    def payload_patch(self) -> dict[str, Any]:
        """What the worker merges into the outbox row's payload (Aionis's keys)."""
        weights = [p.get("similarity", 0.5) for p in self.planned]
        cohesion = round(sum(weights) / len(weights), 4) if weights else 0.0
        coverage = round(self.assigned / self.processed_events, 4) if self.processed_events else 0.0
        return {
            "topic_cluster": {
                "processed_events": self.processed_events,
                "assigned": self.assigned,
                "created_topics": self.created_topics,
                "promoted": self.promoted,
                "strategy_requested": STRATEGY,
                "strategy_executed": STRATEGY,
                "strategy_note": None,
                "quality": {"cohesion": cohesion, "coverage": coverage},
            },
            "topic_commit_hash": self.topic_commit_hash,
            "topic_commit_id": self.topic_commit_id,
        }


def _valid_uuids(values: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        try:
            out.append(str(uuid.UUID(str(v))))
        except (ValueError, TypeError, AttributeError):
            continue
    return list(dict.fromkeys(out))


def _vec(value: Any) -> np.ndarray:
    """A vector column value (pgvector.Vector or text) as float64 numpy."""
    if hasattr(value, "to_numpy"):
        return value.to_numpy().astype(np.float64)
    if isinstance(value, str):
        return np.array([float(x) for x in value.strip("[]").split(",")], dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _clamp01(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def _title(seed: str, max_len: int) -> str:
    base = normalize_text(seed or "Untitled topic", max_len)
    return base[:60]


def _visibility(ev: dict[str, Any]) -> dict[str, Any]:
    """A topic inherits the lane/owner of its seed event; a private lane without an owner falls back to shared."""
    producer = ev["producer_agent_id"]
    owner_agent = ev["owner_agent_id"] or producer
    owner_team = ev["owner_team_id"]
    lane = ev["memory_lane"]
    if lane == "private" and not owner_agent and not owner_team:
        lane = "shared"
    return {"memory_lane": lane, "producer_agent_id": producer, "owner_agent_id": owner_agent,
            "owner_team_id": owner_team}


_EVENTS_SQL = """
SELECT e.id::text AS id, e.text_summary, e.embedding, e.memory_lane::text AS memory_lane, e.producer_agent_id,
       e.owner_agent_id, e.owner_team_id, e.embedding_model
FROM memory_nodes e
WHERE e.scope = %(scope)s AND e.type = 'event' AND e.tier = 'hot' AND e.embedding IS NOT NULL
  AND e.id = ANY(%(ids)s::uuid[])
  AND NOT EXISTS (
    SELECT 1 FROM memory_edges x JOIN memory_nodes t ON t.scope = x.scope AND t.id = x.dst_id
    WHERE x.scope = e.scope AND x.type = 'part_of' AND x.src_id = e.id AND t.type = 'topic')
ORDER BY e.created_at, e.id
"""

# Exact nearest topic. No `embedding_status` predicate, so neither partial HNSW index applies: a post-filtered ANN
# scan over a scope of 10^5 events could return no topic at all and make every event a new draft topic.
_NEAREST_SQL = """
SELECT id::text, 1 - (embedding <=> %(q)s) AS similarity
FROM memory_nodes
WHERE scope = %(scope)s AND type = 'topic' AND tier = 'hot' AND embedding IS NOT NULL
ORDER BY embedding <=> %(q)s, id
LIMIT 1
"""


def cluster_events(
    conn: psycopg.Connection, scope: str, event_ids: Sequence[Any], params: TopicParams, *, job_ref: str
) -> TopicClusterResult:
    """Cluster the given events of `scope` (already-assigned or not-yet-embedded events are skipped).

    `job_ref` identifies the job (outbox scope/id/job_key) and makes the commit hash deterministic. Must run inside
    the caller's transaction; `conn` must have the pgvector adapters registered.
    """
    ids = _valid_uuids(event_ids)
    if not ids:
        return TopicClusterResult()
    events = conn.execute(_EVENTS_SQL, {"scope": scope, "ids": ids}, prepare=False).fetchall()
    if not events:
        return TopicClusterResult()
    cols = ["id", "text_summary", "embedding", "memory_lane", "producer_agent_id", "owner_agent_id", "owner_team_id",
            "embedding_model"]
    evs = [dict(zip(cols, row, strict=True)) for row in events]
    for ev in evs:
        ev["vec"] = _vec(ev["embedding"])

    # ---- plan (online: drafts created earlier in this job are candidates for later events)
    drafts: dict[str, dict[str, Any]] = {}  # topic id -> {"vec", "count"}
    planned: list[dict[str, Any]] = []
    for ev in evs:
        q = ev["vec"].astype(np.float32)
        row = conn.execute(_NEAREST_SQL, {"q": q, "scope": scope}).fetchone()
        best_id, best_sim = (row[0], float(row[1])) if row else (None, -2.0)
        for tid, d in drafts.items():
            sim = _cosine(ev["vec"], d["vec"])
            if sim > best_sim:
                best_id, best_sim = tid, sim
        if best_id is not None and best_sim >= params.sim_threshold:
            planned.append({"kind": "assign", "event_id": ev["id"], "topic_id": best_id,
                            "similarity": round(best_sim, 6)})
            if best_id in drafts:
                d = drafts[best_id]
                d["vec"] = (d["vec"] * d["count"] + ev["vec"]) / (d["count"] + 1)
                d["count"] += 1
        else:
            seed = params.seed_text(ev["text_summary"] or f"event:{ev['id']}")
            tid = stable_uuid(f"{scope}:topic:draft:{sha256_hex(seed)}:{ev['id']}")
            drafts[tid] = {"vec": ev["vec"].copy(), "count": 1}
            planned.append({"kind": "create_and_assign", "event_id": ev["id"], "topic_id": tid, "new_topic": True})

    # ---- the job's commit (hash-chained on the newest commit of the scope)
    parent = conn.execute(
        "SELECT id, commit_hash FROM memory_commits WHERE scope = %s ORDER BY created_at DESC, id LIMIT 1", (scope,)
    ).fetchone()
    parent_id, parent_hash = (parent[0], parent[1]) if parent else (None, "")
    diff = {
        "job": "topic_cluster",
        "job_ref": job_ref,
        "params": {
            "TOPIC_SIM_THRESHOLD": params.sim_threshold,
            "TOPIC_MIN_EVENTS_PER_TOPIC": params.min_events_per_topic,
            "TOPIC_CLUSTER_STRATEGY": STRATEGY,
        },
        "planned": planned,
    }
    input_sha = sha256_hex(f"job:topic_cluster:{scope}:{job_ref}:{len(evs)}")
    chash = commit_hash(parent_hash=parent_hash, input_sha256=input_sha, diff=diff, scope_key=scope, actor="job",
                        model_version=None, prompt_version=None)
    commit_id = conn.execute(
        "INSERT INTO memory_commits (scope, parent_id, input_sha256, diff_json, actor, commit_hash)"
        " VALUES (%s, %s, %s, %s, 'job', %s)"
        " ON CONFLICT (scope, commit_hash) DO UPDATE SET diff_json = memory_commits.diff_json RETURNING id::text",
        (scope, parent_id, input_sha, Jsonb(diff), chash),
    ).fetchone()[0]

    # ---- apply: edges per event; each touched topic written once (a vector UPDATE is an HNSW insert: one per
    # topic per job instead of one per member)
    result = TopicClusterResult(commit_id, chash, processed_events=len(evs), planned=planned)
    by_id = {ev["id"]: ev for ev in evs}
    members: dict[str, list[dict[str, Any]]] = {}
    new_topics: set[str] = set()
    for p in planned:
        members.setdefault(p["topic_id"], []).append(by_id[p["event_id"]])
        if p.get("new_topic"):
            new_topics.add(p["topic_id"])
    for topic_id, evs_of_topic in members.items():
        if topic_id in new_topics:
            promoted = _create_topic(conn, scope, topic_id, evs_of_topic, params, commit_id, chash)
            result.created_topics += 1
        else:
            promoted = _add_members(conn, scope, topic_id, evs_of_topic, params, commit_id, chash)
        result.promoted += int(promoted)
    _link_all(conn, scope, [(p["event_id"], p["topic_id"], _clamp01(p.get("similarity", 0.5))) for p in planned],
              commit_id)
    result.assigned = len(planned)
    return result


def _state(count: int, was_active: bool, params: TopicParams) -> str:
    return "active" if was_active or count >= params.min_events_per_topic else "draft"


def _create_topic(conn: psycopg.Connection, scope: str, topic_id: str, evs: list[dict[str, Any]],
                  params: TopicParams, commit_id: str, chash: str) -> bool:
    """A new topic seeded by evs[0], with all of this job's members counted in. True if it starts active because
    of them (a draft promoted in the same job, as Aionis counts it)."""
    seed_ev = evs[0]
    seed = params.seed_text(seed_ev["text_summary"] or f"event:{seed_ev['id']}")
    born_active = params.min_events_per_topic <= 1
    state = _state(len(evs), born_active, params)
    slots = {"topic_state": state, "member_count": len(evs), "seed_event_id": seed_ev["id"], "seed_summary": seed,
             "created_by": "job:topic_cluster", "last_cluster_commit_hash": chash}
    vec = np.mean([e["vec"] for e in evs], axis=0)
    vis = _visibility(seed_ev)
    conn.execute(
        "INSERT INTO memory_nodes (id, scope, type, tier, title, text_summary, slots, embedding, embedding_status,"
        " embedding_model, memory_lane, producer_agent_id, owner_agent_id, owner_team_id, salience, importance,"
        " confidence, commit_id, embedding_ready_at)"
        " VALUES (%s, %s, 'topic', 'hot', %s, %s, %s, %s, 'ready', %s, %s::memory_lane, %s, %s, %s, 0.5, 0.5, 0.5,"
        " %s, now())",
        (topic_id, scope, _title(seed, params.max_text_len),
         f"Auto-clustered candidate topic ({'active' if born_active else 'draft'}).", Jsonb(slots),
         vec.astype(np.float32), (seed_ev["embedding_model"] or "").strip() or DEFAULT_TOPIC_MODEL,
         vis["memory_lane"], vis["producer_agent_id"], vis["owner_agent_id"], vis["owner_team_id"], commit_id),
    )
    return not born_active and state == "active"


def _link_all(conn: psycopg.Connection, scope: str, links: list[tuple[str, str, float]], commit_id: str) -> None:
    """event -part_of-> topic (weight = similarity) and topic -derived_from-> event, for every assignment."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO memory_edges (id, scope, type, src_id, dst_id, weight, confidence, decay_rate, commit_id,"
            " last_activated) VALUES (%s, %s, 'part_of', %s, %s, %s, %s, 0.01, %s, now())"
            " ON CONFLICT (scope, type, src_id, dst_id) DO UPDATE SET"
            " weight = GREATEST(memory_edges.weight, EXCLUDED.weight),"
            " confidence = GREATEST(memory_edges.confidence, EXCLUDED.confidence),"
            " commit_id = EXCLUDED.commit_id, last_activated = now()",
            [(stable_uuid(f"{scope}:edge:topic_cluster:part_of:{e}:{t}"), scope, e, t, w, w, commit_id)
             for e, t, w in links],
        )
        cur.executemany(
            "INSERT INTO memory_edges (id, scope, type, src_id, dst_id, weight, confidence, decay_rate, commit_id,"
            " last_activated) VALUES (%s, %s, 'derived_from', %s, %s, 1.0, 0.8, 0.0, %s, now())"
            " ON CONFLICT (scope, type, src_id, dst_id) DO UPDATE SET commit_id = EXCLUDED.commit_id,"
            " last_activated = now()",
            [(stable_uuid(f"{scope}:edge:topic_cluster:derived_from:{t}:{e}"), scope, t, e, commit_id)
             for e, t, _w in links],
        )


def _add_members(conn: psycopg.Connection, scope: str, topic_id: str, evs: list[dict[str, Any]],
                 params: TopicParams, commit_id: str, chash: str) -> bool:
    """Count events into an existing topic (running-mean vector, member_count, state). True if it became active."""
    row = conn.execute(
        "SELECT slots, embedding, title FROM memory_nodes WHERE scope = %s AND id = %s AND type = 'topic'"
        " FOR UPDATE", (scope, topic_id),
    ).fetchone()
    if row is None:
        raise RuntimeError(f"topic not found: {topic_id}")
    slots: dict[str, Any] = dict(row[0] or {})
    count = slots.get("member_count")
    count = max(0, int(count)) if isinstance(count, int | float) and not isinstance(count, bool) else 0
    was_active = slots.get("topic_state") == "active"
    added = np.sum([e["vec"] for e in evs], axis=0)
    vec = added / len(evs) if count <= 0 or row[1] is None else (_vec(row[1]) * count + added) / (count + len(evs))
    new_count = count + len(evs)
    new_state = _state(new_count, was_active, params)
    slots.update({"topic_state": new_state, "member_count": new_count, "last_cluster_commit_hash": chash})
    title = row[2] or _title(str(slots.get("seed_summary") or "Topic"), params.max_text_len)
    vis = _visibility(evs[0])
    conn.execute(
        "UPDATE memory_nodes SET title = %s, slots = %s, embedding = %s, embedding_status = 'ready',"
        " embedding_model = COALESCE(NULLIF(embedding_model, ''), %s),"
        " producer_agent_id = COALESCE(producer_agent_id, %s),"
        " owner_agent_id = CASE WHEN memory_lane = 'private' AND owner_agent_id IS NULL AND owner_team_id IS NULL"
        "   THEN %s ELSE owner_agent_id END,"
        " owner_team_id = CASE WHEN memory_lane = 'private' AND owner_agent_id IS NULL AND owner_team_id IS NULL"
        "   THEN %s ELSE owner_team_id END,"
        " memory_lane = CASE WHEN memory_lane = 'private' AND owner_agent_id IS NULL AND owner_team_id IS NULL"
        "   THEN %s::memory_lane ELSE memory_lane END,"
        " commit_id = %s"
        " WHERE scope = %s AND id = %s",
        (title, Jsonb(slots), np.asarray(vec, dtype=np.float32),
         (evs[0]["embedding_model"] or "").strip() or DEFAULT_TOPIC_MODEL, vis["producer_agent_id"],
         vis["owner_agent_id"], vis["owner_team_id"], vis["memory_lane"], commit_id, scope, topic_id),
    )
    return not was_active and new_state == "active"
