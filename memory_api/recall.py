"""The Aionis recall pipeline, statement by statement, its audit row last.

stage 1 ANN seeds -> stage 2 budgeted 1-2 hop edges -> node fetch (budgeted) -> spreading activation -> output
subgraph under max_nodes/max_edges -> context -> audit. With zero seeds the reduced response is returned (and, unlike
Aionis, the audit row is still written, so every recall leaves exactly one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import psycopg

from memload import contract as C
from memload import precision
from memload.config import Settings
from memload.identity import sha256_hex
from memory_api import db
from memory_api import recall_sql as Q
from memory_api.context import build_context

log = logging.getLogger("memory_api.recall")

# The query vector travels in pgvector's binary format (%b): the text form costs ~0.7 ms per recall (psycopg formats
# 1536 floats, PostgreSQL parses them back), measured side by side on one connection. The SQL stays written with %s
# in recall_sql (one source for the API, `memload explain` and sql/explain_baseline.sql).
# A seeded scope's ready HNSW index is float32 `vector` or `halfvec`: stage 1 orders by the expression its index is
# built on, or PostgreSQL scans every vector of the scope. One statement per precision, chosen per scope.
_STAGE1_BY_PRECISION = {p: precision.follow(Q.STAGE1_SQL, p).replace("%(q)s", "%(q)b")
                        for p in (precision.VECTOR, precision.HALFVEC)}
# How long a scope's precision is trusted before the catalog is asked again: a scope reseeded while the API runs
# (the matrix does that) is followed within this time; until then recall stays exact, only slower.
PRECISION_TTL_S = 5.0
_precision_cache: dict[str, tuple[float, str]] = {}
_STAGE1_UNSCOPED_SQL = Q.STAGE1_UNSCOPED_SQL.replace("%(q)s", "%(q)b")

_NODE_COLS = (
    "id", "type", "tier", "memory_lane", "producer_agent_id", "owner_agent_id", "owner_team_id", "title",
    "text_summary", "slots", "embedding_status", "embedding_model", "topic_state", "member_count", "raw_ref",
    "evidence_ref", "salience", "importance", "confidence", "last_activated", "created_at", "updated_at", "commit_id",
    "concept_slots", "rule_slots",
)
_SEED_COLS = ("id", "type", "title", "text_summary", "tier", "salience", "confidence", "similarity")
_RULE_COLS = ("rule_node_id", "state", "rule_scope", "target_agent_id", "target_team_id", "if_json", "then_json",
              "exceptions_json", "positive_count", "negative_count")


@dataclass(frozen=True)
class RecallQuery:
    tenant_id: str
    scope_public: str
    scope_key: str
    agent: str | None
    team: str | None
    vector: np.ndarray  # float32 (1536,)
    query_sha256: str
    params: dict[str, Any]  # the validated request (defaults filled)


class Edge(NamedTuple):
    """A stage-2 edge row (a tuple: hundreds are built per recall)."""

    id: str
    type: str
    src: str
    dst: str
    weight: float
    confidence: float
    commit_id: str | None


def uuid_array(ids: list[str]) -> str:
    """A uuid[] literal for `%(x)s::uuid[]`: the ids come from the database, so no quoting is needed, and one text
    parameter avoids psycopg's per-element list dumping (hundreds of ids per recall)."""
    return "{" + ",".join(ids) + "}"


def edge_budgets(max_edges: int) -> tuple[int, int, int]:
    """(EDGE_FETCH_BUDGET, HOP1, HOP2) for a max_edges (500/500/500 by default)."""
    edge_budget = min(C.EDGE_FETCH_BUDGET_MAX, max(max_edges * C.EDGE_FETCH_MULT, max_edges))
    hop = max(C.HOP_BUDGET_MIN, min(C.HOP_BUDGET_MAX, edge_budget))
    return edge_budget, hop, hop


oversample = C.ann_candidates


def _clamp01(x: float) -> float:
    return max(0.0, min(1.0, x))


def spread_activation(seeds: list[dict[str, Any]], nodes: dict[str, dict[str, Any]], edges: list[Edge],
                      hops: int) -> list[dict[str, Any]]:
    """Seed activation, `hops` synchronous max-propagation rounds, then the score blend; sorted by score desc."""
    w_sim, w_sal = C.SEED_ACTIVATION_WEIGHTS
    act: dict[str, float] = {}
    for s in seeds:
        act[s["id"]] = _clamp01(w_sim * s["similarity"] + w_sal * s["salience"])
    # Adjacency as (neighbour, type weight, weight, confidence) tuples, built once: the propagation below is the
    # hottest Python loop of a recall. The product keeps Aionis's left-to-right order, so scores stay bit-equal.
    type_weight = C.EDGE_TYPE_WEIGHT
    adj: dict[str, list[tuple[str, float, float, float]]] = {}
    for e in edges:
        tw = type_weight.get(e.type, 0.6)
        adj.setdefault(e.src, []).append((e.dst, tw, e.weight, e.confidence))
        adj.setdefault(e.dst, []).append((e.src, tw, e.weight, e.confidence))
    damping = C.ACTIVATION_DAMPING
    no_edges: list[tuple[str, float, float, float]] = []
    for _ in range(hops):
        # Synchronous rounds: read `act`, write `nxt`. Values only grow (every term is >= 0), so `nxt` is the new
        # activation map (Aionis's max(act, nxt) merge is the identity here).
        nxt = dict(act)
        for nid, a in act.items():
            for other, tw, w, c in adj.get(nid, no_edges):
                add = a * tw * w * c * damping
                cur = nxt.get(other)
                if cur is None or add > cur:
                    nxt[other] = add
        act = nxt
    b_act, b_conf, b_sal = C.SCORE_BLEND
    scored = []
    for nid, a in act.items():
        n = nodes.get(nid)
        conf = n["confidence"] if n is not None else 0.5
        sal = n["salience"] if n is not None else 0.5
        scored.append({"id": nid, "activation": a, "score": b_act * a + b_conf * conf + b_sal * sal})
    scored.sort(key=lambda r: -r["score"])  # stable, like Array#sort in V8
    return scored


def _slots_preview(slots: Any, max_keys: int) -> dict[str, Any] | None:
    if not isinstance(slots, dict):
        return None
    return {k: slots[k] for k in sorted(slots)[:max_keys]}


def _node_dto(n: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    dto: dict[str, Any] = {"id": n["id"], "type": n["type"], "title": n["title"], "text_summary": n["text_summary"]}
    if n["type"] == "topic":
        dto["topic_state"] = n["topic_state"]
        dto["member_count"] = n["member_count"]
    if p["include_slots"]:
        dto["slots"] = n["slots"]
    elif p["include_slots_preview"]:
        dto["slots_preview"] = _slots_preview(n["slots"], p["slots_preview_keys"])
    if p["include_meta"]:
        for k in ("raw_ref", "evidence_ref", "embedding_status", "embedding_model", "memory_lane", "producer_agent_id",
                  "owner_agent_id", "owner_team_id", "created_at", "updated_at", "last_activated", "salience",
                  "importance", "confidence", "commit_id"):
            dto[k] = n[k]
    return dto


def _parse_vector_text(text: str, max_dims: int) -> tuple[int, list[float]]:
    body = text.strip()[1:-1].strip()
    if not body:
        return 0, []
    parts = body.split(",")
    return len(parts), [float(x) for x in parts[:max_dims]]


async def run_recall(conn: psycopg.AsyncConnection, q: RecallQuery, s: Settings, endpoint: str) -> dict[str, Any]:
    """The recall response; inserts the audit row last. On an autocommit connection (the API) each statement is its
    own transaction; in a caller's transaction (pipeline mode) the audit row commits with it."""
    p = q.params
    limit = p["limit"]
    if s.recall_scope_path:
        stage1 = _STAGE1_BY_PRECISION[await scope_precision(conn, q.scope_key)]
    else:
        stage1 = _STAGE1_UNSCOPED_SQL
    rows = await db.fetchall(conn, stage1, {"q": q.vector, "scope": q.scope_key, "oversample": oversample(limit),
                                            "limit": limit, "agent": q.agent, "team": q.team})
    seeds = [dict(zip(_SEED_COLS, r, strict=True)) for r in rows]
    if not seeds:
        await _audit(conn, q, endpoint, 0, 0, 0)
        return {"scope": q.scope_key, "seeds": [], "subgraph": {"nodes": [], "edges": []}, "ranked": []}
    seed_ids = [x["id"] for x in seeds]

    edge_budget, hop1, hop2 = edge_budgets(p["max_edges"])
    params = {"seed_ids": uuid_array(seed_ids), "scope": q.scope_key, "min_w": _clamp01(p["min_edge_weight"]),
              "min_c": _clamp01(p["min_edge_confidence"]), "hop1_budget": hop1, "edge_budget": edge_budget}
    # Every statement runs on a custom plan (the pool's plan_cache_mode). A cached generic plan of stage 2 would save
    # ~0.5 ms of planning, but it estimates the seed list differently, and where the per-direction LIMITs cut through
    # tied weights it keeps other edges than the custom plan. The transaction-local plan_cache_mode 'auto' this code
    # used to send let PostgreSQL move a connection to the generic plan once it estimated it cheaper (it did at 10^5
    # nodes, not at 10^4), so one request could get another neighbourhood depending on the connection's history.
    if p["neighborhood_hops"] == 1:
        edge_rows = await db.fetchall(conn, Q.STAGE2_HOP1_SQL, params)
    else:
        edge_rows = await db.fetchall(conn, Q.STAGE2_HOP2_SQL, {**params, "hop2_budget": hop2})
    edges = [Edge._make(r) for r in edge_rows]

    node_score: dict[str, float] = {}
    node_ids: dict[str, None] = dict.fromkeys(seed_ids)
    for e in edges:
        node_ids.setdefault(e.src)
        node_ids.setdefault(e.dst)
        w = e.weight * e.confidence
        node_score[e.src] = node_score.get(e.src, 0.0) + w
        node_score[e.dst] = node_score.get(e.dst, 0.0) + w
    node_budget = min(C.NODE_FETCH_BUDGET_MAX, max(p["max_nodes"] * C.NODE_FETCH_MULT, p["max_nodes"]))
    ids = list(node_ids)
    if len(ids) > node_budget:
        seed_set = set(seed_ids)
        rest = sorted((i for i in ids if i not in seed_set), key=lambda i: (-node_score.get(i, 0.0), i))
        ids = seed_ids + rest[: max(0, node_budget - len(seed_ids))]

    want_slots = bool(p["include_slots"] or p["include_slots_preview"])
    nodes_sql = Q.NODES_META_SQL if p["include_meta"] else Q.NODES_SQL
    node_rows = await db.fetchall(conn, nodes_sql, {"scope": q.scope_key, "ids": uuid_array(ids),
                                                    "want_slots": want_slots, "agent": q.agent, "team": q.team})
    nodes_all = {r[0]: dict(zip(_NODE_COLS, r, strict=True)) for r in node_rows}
    edges_all = [e for e in edges if e.src in nodes_all and e.dst in nodes_all]

    draft_ids = {i for i, n in nodes_all.items() if n["type"] == "topic" and (n["topic_state"] or "active") == "draft"}
    not_ready = {i for i, n in nodes_all.items() if n["embedding_status"] != "ready"}
    scoring_nodes = {i: n for i, n in nodes_all.items() if i not in draft_ids and i not in not_ready}
    scoring_edges = [e for e in edges_all if e.src not in draft_ids and e.dst not in draft_ids
                     and e.src not in not_ready and e.dst not in not_ready]
    ranked_all = spread_activation(seeds, scoring_nodes, scoring_edges, p["neighborhood_hops"])
    ranked = ranked_all[: p["ranked_limit"]]

    max_nodes = p["max_nodes"]
    seed_set = set(seed_ids)
    core: list[str] = []
    core_set: set[str] = set()
    for nid in [*seed_ids, *(r["id"] for r in ranked_all)]:
        if len(core) >= max_nodes:
            break
        n = nodes_all.get(nid)
        if n is None or n["embedding_status"] != "ready" or nid in core_set:
            continue
        core.append(nid)
        core_set.add(nid)
    out_ids = _with_draft_topics(core, core_set, seed_set, edges_all, draft_ids, nodes_all, max_nodes)
    out_set = set(out_ids)
    out_nodes = [nodes_all[i] for i in out_ids if i in nodes_all]
    out_edges = sorted((e for e in edges_all if e.src in out_set and e.dst in out_set),
                       key=lambda e: -(e.weight * e.confidence))[: p["max_edges"]]

    rule_defs: dict[str, dict[str, Any]] = {}
    rule_ids = [n["id"] for n in out_nodes if n["type"] == "rule"]
    if rule_ids:
        for r in await db.fetchall(conn, Q.RULE_DEFS_SQL, {"scope": q.scope_key, "ids": uuid_array(rule_ids)}):
            rule_defs[r[0]] = dict(zip(_RULE_COLS, r, strict=True))
    context = build_context(ranked_all, nodes_all, rule_defs)

    out: dict[str, Any] = {
        "scope": q.scope_public,
        "tenant_id": q.tenant_id,
        "seeds": seeds,
        "subgraph": {
            "nodes": [_node_dto(n, p) for n in out_nodes],
            "edges": [_edge_dto(e, p["include_meta"]) for e in out_edges],
        },
        "ranked": ranked,
        "context": context,
    }
    if p["return_debug"]:
        debug: dict[str, Any] = {"neighborhood_counts": {"nodes": len(nodes_all), "edges": len(edges_all)}}
        if p["include_embeddings"]:
            debug["embeddings"] = await _debug_embeddings(conn, q.scope_key, seed_ids)
        out["debug"] = debug
    await _audit(conn, q, endpoint, len(seeds), len(out_nodes), len(out_edges))
    return out


def _edge_dto(e: Edge, meta: bool) -> dict[str, Any]:
    dto: dict[str, Any] = {"from_id": e.src, "to_id": e.dst, "type": e.type, "weight": e.weight}
    if meta:
        dto["commit_id"] = e.commit_id
    return dto


def _with_draft_topics(core: list[str], core_set: set[str], seed_set: set[str], edges: list[Edge],
                       draft_ids: set[str], nodes: dict[str, dict[str, Any]], max_nodes: int) -> list[str]:
    """Append (or swap in for the lowest non-seed nodes) draft topics linked by part_of/derived_from."""
    draft_score: dict[str, float] = {}
    for e in edges:
        if e.type not in ("part_of", "derived_from"):
            continue
        a_in, b_in = e.src in core_set, e.dst in core_set
        if not a_in and not b_in:
            continue
        other = e.dst if a_in else e.src
        if other in draft_ids:
            draft_score[other] = draft_score.get(other, 0.0) + e.weight * e.confidence
    if not draft_score:
        return core
    budget = min(C.DRAFT_TOPIC_BUDGET_MAX, max(0, max_nodes // 5))
    removable = [i for i in reversed(core) if i not in seed_set]
    candidates = [i for i, _ in sorted(draft_score.items(), key=lambda kv: -kv[1])
                  if i not in core_set and nodes.get(i, {}).get("embedding_status") == "ready"]
    if len(core) < max_nodes:
        return core + candidates[: min(budget, max_nodes - len(core))]
    adds = candidates[: min(budget, len(removable))]
    drop = set(removable[: len(adds)])
    return [i for i in core if i not in drop] + adds


async def scope_precision(conn: psycopg.AsyncConnection, scope_key: str) -> str:
    """The precision of the scope's ready HNSW index (`vector` when the scope has no partition of its own), cached
    for PRECISION_TTL_S per scope."""
    now = time.monotonic()
    hit = _precision_cache.get(scope_key)
    if hit is not None and now - hit[0] < PRECISION_TTL_S:
        return hit[1]
    rows = await db.fetchall(conn, precision.PRECISION_SQL, {"part": precision.nodes_partition(scope_key)})
    found = precision.from_opclass(rows[0][0] if rows else None)
    _precision_cache[scope_key] = (now, found)
    return found


async def _debug_embeddings(conn: psycopg.AsyncConnection, scope: str, seed_ids: list[str]) -> list[dict[str, Any]]:
    ids = seed_ids[: C.DEBUG_EMBED_MAX_NODES]
    out = []
    for node_id, text in await db.fetchall(conn, Q.DEBUG_EMBEDDINGS_SQL, {"scope": scope, "ids": ids}):
        dims, preview = _parse_vector_text(text, C.DEBUG_EMBED_PREVIEW_DIMS)
        out.append({"node_id": node_id, "dims": dims, "sha256": sha256_hex(text), "preview": preview})
    return out


async def _audit(conn: psycopg.AsyncConnection, q: RecallQuery, endpoint: str, seeds: int, nodes: int,
                 edges: int) -> None:
    """Write the audit row, best effort (as Aionis, which ignores audit errors): a failure is logged and the recall
    answered. In a transaction (pipeline mode) the error surfaces at COMMIT instead, which the caller handles."""
    try:
        await db.execute(conn, Q.AUDIT_SQL, {"scope": q.scope_key, "endpoint": endpoint, "agent": q.agent,
                                             "team": q.team, "query_sha256": q.query_sha256, "seeds": seeds,
                                             "nodes": nodes, "edges": edges})
    except psycopg.Error as exc:
        if not conn.autocommit:
            raise
        log.warning("recall audit insert failed: %s", str(exc).strip().splitlines()[0])
