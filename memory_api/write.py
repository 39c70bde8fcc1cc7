"""A write (`memload.contract.WRITE`): prepare (pure: ids, hashes, text handling, checks) then apply (one transaction).

Everything a client can get wrong is detected in `prepare_write` or before the first INSERT of `apply_write`, so a
rejected write changes nothing. Ids and the commit hash depend only on content, so a retried write returns the same
commit_id (the commit upsert is `ON CONFLICT (scope, commit_hash) DO UPDATE ... RETURNING id`).

memload's schema keys every table by (scope, id) and makes commits per scope, so a node or edge may not name a
scope other than the write's (400 cross_scope_node / cross_scope_edge); ALLOW_CROSS_SCOPE_EDGES cannot be honoured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import psycopg

from memload import contract as C
from memload.config import Settings
from memload.identity import commit_hash, outbox_job_key, scope_key, sha256_hex, stable_stringify, stable_uuid
from memory_api import db
from memory_api.errors import ApiError, bad_request
from memory_api.text import normalize_text, redact_json_strings, redact_pii


@dataclass
class PreparedNode:
    id: str
    client_id: str | None
    type: str
    tier: str
    memory_lane: str
    producer_agent_id: str | None
    owner_agent_id: str | None
    owner_team_id: str | None
    title: str | None
    text_summary: str | None
    slots: Any
    raw_ref: str | None
    evidence_ref: str | None
    embedding: list[float] | None
    embedding_model: str | None
    salience: float
    importance: float
    confidence: float
    embed_text: str | None = None


@dataclass
class PreparedEdge:
    id: str
    type: str
    src_id: str
    dst_id: str
    weight: float
    confidence: float
    decay_rate: float
    index: int


@dataclass
class PreparedWrite:
    tenant_id: str
    scope_public: str
    scope: str
    actor: str
    parent_commit_id: str | None
    input_sha256: str
    model_version: str | None
    prompt_version: str | None
    redaction: dict[str, int]
    auto_embed: bool
    force_reembed: bool
    trigger_topic_cluster: bool
    topic_cluster_async: bool
    nodes: list[PreparedNode]
    edges: list[PreparedEdge]


def resolve_tenancy(body: dict[str, Any], s: Settings) -> tuple[str, str, str]:
    """(tenant_id, public scope, scope key) of a validated body; the defaults are checked like client values."""
    tenant = (body.get("tenant_id") or s.memory_tenant_id).strip()
    if not C.TENANT_ID_RE.match(tenant):
        raise bad_request(C.E_INVALID_TENANT, "tenant_id must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$",
                          {"tenant_id": tenant})
    scope = (body.get("scope") or s.memory_scope).strip()
    if not scope or scope.startswith("tenant:"):
        raise bad_request(C.E_INVALID_SCOPE, "scope must be non-empty and must not start with 'tenant:'")
    return tenant, scope, scope_key(scope, tenant, s.memory_tenant_id)


def _norm_id(v: str | None) -> str | None:
    if not v:
        return None
    v = v.strip()
    return v or None


def _embed_text(n: PreparedNode, fallback: str | None) -> str | None:
    """The text the worker embeds (Aionis's nodeEmbedText; `?.trim()` + `??`, so "" is a value, not a miss)."""
    title = n.title.strip() if n.title is not None else None
    summary = n.text_summary.strip() if n.text_summary is not None else None

    def first(*vals: str | None) -> str | None:
        return next((v for v in vals if v is not None), None)

    if n.type in ("event", "evidence"):
        return first(summary, title, fallback)
    if n.type in ("entity", "topic", "concept"):
        return first(title, summary)
    return first(summary, title)


def prepare_write(body: dict[str, Any], s: Settings, has_provider: bool) -> PreparedWrite:
    """Ids, hashes, normalised/redacted texts and every check that needs no database."""
    tenant, scope_public, key = resolve_tenancy(body, s)
    counts: dict[str, int] = {}
    max_len = s.max_text_len

    def norm(text: str | None) -> str | None:
        if not text:
            return text
        out = normalize_text(text, max_len)
        return redact_pii(out, counts) if s.pii_redaction else out

    input_text = norm(body.get("input_text"))
    lane_default = body.get("memory_lane") or C.DEFAULT_LANE
    producer_default = _norm_id(body.get("producer_agent_id"))
    owner_agent_default = _norm_id(body.get("owner_agent_id"))
    owner_team_default = _norm_id(body.get("owner_team_id"))

    client_ids: dict[str, str] = {}
    nodes: list[PreparedNode] = []
    for i, n in enumerate(body.get("nodes", [])):
        node_scope = key
        if n.get("scope") is not None:
            node_scope = scope_key(n["scope"].strip(), tenant, s.memory_tenant_id)
            if node_scope != key:
                raise ApiError(400, C.E_CROSS_SCOPE_NODE,
                               f"nodes.{i}.scope: a node must be in the write's scope ({scope_public!r})",
                               details={"path": f"nodes.{i}.scope", "scope": n["scope"], "write_scope": scope_public})
        client_id = n["client_id"].strip() if n.get("client_id") is not None else None
        expected = stable_uuid(f"{node_scope}:node:{client_id}") if client_id else None
        if n.get("id") and expected and n["id"] != expected:
            raise ApiError(400, C.E_CLIENT_ID_MISMATCH,
                           f"nodes.{i}.id: does not match client_id {client_id!r} (expected {expected})",
                           details={"path": f"nodes.{i}.id", "client_id": client_id, "id": n["id"],
                                    "expected_id": expected})
        node_id = n.get("id") or expected or stable_uuid(f"{node_scope}:node:{sha256_hex(stable_stringify(n))}")
        if client_id:
            client_ids[client_id] = node_id
        slots = n.get("slots") or {}
        if s.pii_redaction:
            slots = redact_json_strings(slots, counts)
        producer = _norm_id(n.get("producer_agent_id")) or producer_default
        node = PreparedNode(
            id=node_id,
            client_id=client_id,
            type=n["type"],
            tier=n.get("tier") or C.DEFAULT_TIER,
            memory_lane=n.get("memory_lane") or lane_default,
            producer_agent_id=producer,
            owner_agent_id=_norm_id(n.get("owner_agent_id")) or owner_agent_default or producer,
            owner_team_id=_norm_id(n.get("owner_team_id")) or owner_team_default,
            title=norm(n.get("title")),
            text_summary=norm(n.get("text_summary")),
            slots=slots,
            raw_ref=n.get("raw_ref"),
            evidence_ref=n.get("evidence_ref"),
            embedding=n.get("embedding"),
            embedding_model=norm(n.get("embedding_model")),
            salience=n.get("salience", C.SCORE_DEFAULT),
            importance=n.get("importance", C.SCORE_DEFAULT),
            confidence=n.get("confidence", C.SCORE_DEFAULT),
        )
        _check_rule(node, i)
        nodes.append(node)

    edges: list[PreparedEdge] = []
    for i, e in enumerate(body.get("edges", [])):
        if e.get("scope") is not None:
            edge_scope = scope_key(e["scope"].strip(), tenant, s.memory_tenant_id)
            if edge_scope != key:
                raise ApiError(400, C.E_CROSS_SCOPE_EDGE,
                               f"edges.{i}.scope: an edge must be in the write's scope ({scope_public!r})",
                               details={"path": f"edges.{i}.scope", "scope": e["scope"], "write_scope": scope_public})
        src, dst = e["src"], e["dst"]
        src_ref = src.get("id") or src.get("client_id")
        dst_ref = dst.get("id") or dst.get("client_id")
        anchor = input_text if input_text is not None else body.get("input_sha256") or "noinput"
        edge_id = e.get("id") or stable_uuid(f"{key}:edge:{anchor}:{e['type']}:{src_ref}:{dst_ref}")
        src_id = _resolve_endpoint(src, client_ids, f"edges.{i}.src")
        dst_id = _resolve_endpoint(dst, client_ids, f"edges.{i}.dst")
        if src_id == dst_id:
            raise ApiError(400, C.E_SELF_LOOP_EDGE, f"edges.{i}: src and dst are the same node ({src_id})",
                           details={"path": f"edges.{i}", "node_id": src_id})
        edges.append(PreparedEdge(edge_id, e["type"], src_id, dst_id, e.get("weight", C.SCORE_DEFAULT),
                                  e.get("confidence", C.SCORE_DEFAULT), e.get("decay_rate", C.EDGE_DECAY_DEFAULT), i))

    auto_embed = bool(body.get("auto_embed", True)) and has_provider
    if auto_embed:
        for node in nodes:
            if node.embedding is not None:
                continue
            t = _embed_text(node, input_text)
            if t:
                t = normalize_text(t, max_len)
                if t:
                    node.embed_text = t

    has_events = any(n.type == "event" for n in nodes)
    trigger = body.get("trigger_topic_cluster")
    trigger = (s.topic_cluster_on_write if trigger is None else trigger) and has_events
    asynchronous = body.get("topic_cluster_async")
    return PreparedWrite(
        tenant_id=tenant,
        scope_public=scope_public,
        scope=key,
        actor=body.get("actor") or C.DEFAULT_ACTOR,
        parent_commit_id=body.get("parent_commit_id"),
        input_sha256=body.get("input_sha256") or sha256_hex(input_text or ""),
        model_version=body.get("model_version"),
        prompt_version=body.get("prompt_version"),
        redaction=counts,
        auto_embed=auto_embed,
        force_reembed=bool(body.get("force_reembed", False)),
        trigger_topic_cluster=bool(trigger),
        topic_cluster_async=s.topic_cluster_async if asynchronous is None else bool(asynchronous),
        nodes=nodes,
        edges=edges,
    )


def _check_rule(n: PreparedNode, i: int) -> None:
    if n.type != "rule":
        return
    if n.memory_lane == "private" and not n.owner_agent_id and not n.owner_team_id:
        raise ApiError(400, C.E_PRIVATE_RULE_OWNER, "private rule requires owner_agent_id or owner_team_id",
                       details={"path": f"nodes.{i}", "node_id": n.id, "client_id": n.client_id,
                                "memory_lane": n.memory_lane, "type": n.type})
    rule_scope, target_agent, target_team = _rule_target(n.slots)
    if rule_scope == "agent" and not target_agent:
        raise bad_request(C.E_INVALID_RULE_TARGET,
                          f"nodes.{i}.slots.target_agent_id: agent-scoped rule requires slots.target_agent_id")
    if rule_scope == "team" and not target_team:
        raise bad_request(C.E_INVALID_RULE_TARGET,
                          f"nodes.{i}.slots.target_team_id: team-scoped rule requires slots.target_team_id")


def _rule_target(slots: Any) -> tuple[str, str, str]:
    raw = slots.get("rule_scope") if isinstance(slots, dict) else None
    rule_scope = raw.strip().lower() if isinstance(raw, str) else ""
    rule_scope = rule_scope if rule_scope in ("team", "agent") else "global"
    agent = slots.get("target_agent_id") if isinstance(slots, dict) else None
    team = slots.get("target_team_id") if isinstance(slots, dict) else None
    return (rule_scope, agent.strip() if isinstance(agent, str) else "", team.strip() if isinstance(team, str) else "")


def _resolve_endpoint(ref: dict[str, Any], client_ids: dict[str, str], path: str) -> str:
    if ref.get("id"):
        return ref["id"]
    cid = ref["client_id"].strip()
    found = client_ids.get(cid)
    if found is None:
        raise ApiError(400, C.E_UNKNOWN_CLIENT_ID_REF,
                       f"{path}.client_id: unknown client_id reference {ref['client_id']!r} (not a node of this write)",
                       details={"path": f"{path}.client_id", "client_id": ref["client_id"]})
    return found


# ---------------------------------------------------------------------------------------------------------- SQL

_SELECT_IN_SCOPE = "SELECT id::text FROM memory_nodes WHERE scope = %s AND id = ANY(%s::uuid[])"
_SELECT_OTHER_SCOPES = "SELECT id::text, scope FROM memory_nodes WHERE id = ANY(%s::uuid[]) AND scope <> %s LIMIT 20"
_SELECT_PARENT = "SELECT commit_hash FROM memory_commits WHERE scope = %s AND id = %s"
_INSERT_COMMIT = """
INSERT INTO memory_commits
  (scope, parent_id, input_sha256, diff_json, actor, model_version, prompt_version, commit_hash)
VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s)
ON CONFLICT (scope, commit_hash) DO UPDATE SET diff_json = memory_commits.diff_json
RETURNING id::text
"""
_INSERT_NODE = """
INSERT INTO memory_nodes
  (id, scope, client_id, type, tier, title, text_summary, slots, raw_ref, evidence_ref, embedding, embedding_model,
   memory_lane, producer_agent_id, owner_agent_id, owner_team_id,
   embedding_status, embedding_attempts, embedding_last_error, embedding_last_attempt_at, embedding_ready_at,
   salience, importance, confidence, redaction_version, commit_id)
VALUES
  (%s, %s, %s, %s::memory_node_type, %s::memory_tier, %s, %s, %s::jsonb, %s, %s, %s, %s,
   %s::memory_lane, %s, %s, %s,
   %s::memory_embedding_status, 0, %s, NULL, CASE WHEN %s THEN now() END,
   %s, %s, %s, 1, %s)
ON CONFLICT (scope, id) DO NOTHING
RETURNING id::text
"""
_INSERT_RULE_DEF = """
INSERT INTO memory_rule_defs
  (scope, rule_node_id, state, if_json, then_json, exceptions_json, rule_scope, target_agent_id, target_team_id,
   commit_id)
VALUES (%s, %s, 'draft', %s::jsonb, %s::jsonb, %s::jsonb, %s::memory_rule_scope, %s, %s, %s)
ON CONFLICT (scope, rule_node_id) DO NOTHING
"""
_INSERT_EDGE = """
INSERT INTO memory_edges (id, scope, type, src_id, dst_id, weight, confidence, decay_rate, commit_id)
VALUES (%s, %s, %s::memory_edge_type, %s, %s, %s, %s, %s, %s)
ON CONFLICT (scope, type, src_id, dst_id) DO UPDATE SET
  weight = GREATEST(memory_edges.weight, EXCLUDED.weight),
  confidence = GREATEST(memory_edges.confidence, EXCLUDED.confidence),
  commit_id = EXCLUDED.commit_id,
  last_activated = now()
"""
_SELECT_READY = """
SELECT id::text FROM memory_nodes
WHERE scope = %s AND id = ANY(%s::uuid[]) AND embedding_status = 'ready' AND embedding IS NOT NULL
"""
_INSERT_OUTBOX = """
INSERT INTO memory_outbox (scope, commit_id, event_type, job_key, payload_sha256, payload)
VALUES (%s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (scope, event_type, job_key) DO NOTHING
"""


def _diff(p: PreparedWrite, pii_redaction: bool) -> dict[str, Any]:
    nodes = []
    for n in p.nodes:
        d: dict[str, Any] = {"id": n.id}
        if n.client_id is not None:
            d["client_id"] = n.client_id
        d["type"] = n.type
        if n.title is not None:
            d["title"] = n.title
        d.update(memory_lane=n.memory_lane, producer_agent_id=n.producer_agent_id, owner_agent_id=n.owner_agent_id,
                 owner_team_id=n.owner_team_id)
        nodes.append(d)
    return {
        "redaction": dict(p.redaction) if pii_redaction else {},
        "nodes": nodes,
        "edges": [{"id": e.id, "type": e.type, "src_id": e.src_id, "dst_id": e.dst_id} for e in p.edges],
    }


def _same_tenant(scope: str, tenant_id: str, default_tenant_id: str) -> bool:
    """Is a stored scope key one of `tenant_id`'s? (the default tenant's keys are the raw scopes)."""
    if tenant_id == default_tenant_id:
        return not scope.startswith("tenant:")
    return scope.startswith(f"tenant:{tenant_id}::scope:")


async def _check_external_endpoints(conn: psycopg.AsyncConnection, p: PreparedWrite, default_tenant_id: str) -> None:
    local = {n.id for n in p.nodes}
    external = sorted({i for e in p.edges for i in (e.src_id, e.dst_id)} - local)
    if not external:
        return
    found = {r[0] for r in await db.fetchall(conn, _SELECT_IN_SCOPE, (p.scope, external))}
    missing = [i for i in external if i not in found]
    if not missing:
        return
    # Only the caller's own scopes may be named: saying "another scope" for another tenant's node would tell the
    # caller that the node exists (deterministic ids are computable from tenant, scope and client_id).
    elsewhere = {i: sc for i, sc in await db.fetchall(conn, _SELECT_OTHER_SCOPES, (missing, p.scope))
                 if _same_tenant(sc, p.tenant_id, default_tenant_id)}
    node_id = missing[0]
    edge = next(e for e in p.edges if node_id in (e.src_id, e.dst_id))
    end = "src" if edge.src_id == node_id else "dst"
    path = f"edges.{edge.index}.{end}.id"
    if node_id in elsewhere:
        raise ApiError(400, C.E_CROSS_SCOPE_EDGE,
                       f"{path}: node {node_id} belongs to another scope; edges cannot cross scopes",
                       details={"path": path, "node_id": node_id})
    raise ApiError(400, C.E_EDGE_ENDPOINT_NOT_FOUND, f"{path}: node {node_id} not found in scope {p.scope_public!r}",
                   details={"path": path, "node_id": node_id, "missing": missing[:20]})


async def apply_write(conn: psycopg.AsyncConnection, p: PreparedWrite, s: Settings) -> dict[str, Any]:
    """Insert commit, nodes, rule defs, edges and outbox rows (caller owns the transaction)."""
    await _check_external_endpoints(conn, p, s.memory_tenant_id)
    parent_hash = ""
    if p.parent_commit_id:
        rows = await db.fetchall(conn, _SELECT_PARENT, (p.scope, p.parent_commit_id))
        if not rows:
            raise ApiError(400, C.E_PARENT_COMMIT_NOT_FOUND,
                           f"parent_commit_id: commit {p.parent_commit_id} not found in scope {p.scope_public!r}",
                           details={"path": "parent_commit_id", "parent_commit_id": p.parent_commit_id})
        parent_hash = rows[0][0]

    diff = _diff(p, s.pii_redaction)
    chash = commit_hash(parent_hash=parent_hash, input_sha256=p.input_sha256, diff=diff, scope_key=p.scope,
                        actor=p.actor, model_version=p.model_version, prompt_version=p.prompt_version)
    rows = await db.fetchall(conn, _INSERT_COMMIT, (p.scope, p.parent_commit_id, p.input_sha256,
                                                    orjson.dumps(diff).decode(), p.actor, p.model_version,
                                                    p.prompt_version, chash))
    commit_id: str = rows[0][0]

    inserted: set[str] = set()
    if p.nodes:
        node_rows = [_node_params(n, p, commit_id) for n in p.nodes]
        inserted = {r[0] for r in await db.executemany_returning(conn, _INSERT_NODE, node_rows)}
        rules = [n for n in p.nodes if n.type == "rule" and n.id in inserted]
        if rules:
            await _insert_rule_defs(conn, rules, p.scope, commit_id)
    if p.edges:
        async with db.timed():
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT_EDGE, [
                    (e.id, p.scope, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.decay_rate, commit_id)
                    for e in p.edges
                ])

    result: dict[str, Any] = {
        "tenant_id": p.tenant_id,
        "scope": p.scope_public,
        "commit_id": commit_id,
        "commit_hash": chash,
        "nodes": [_node_out(n) for n in p.nodes],
        "edges": [{"id": e.id, "type": e.type, "src_id": e.src_id, "dst_id": e.dst_id} for e in p.edges],
    }
    await _enqueue(conn, p, commit_id, inserted, result)
    return result


def _node_out(n: PreparedNode) -> dict[str, Any]:
    out: dict[str, Any] = {"id": n.id}
    if n.client_id is not None:
        out["client_id"] = n.client_id
    out["type"] = n.type
    return out


def _node_params(n: PreparedNode, p: PreparedWrite, commit_id: str) -> tuple[Any, ...]:
    has_vec = n.embedding is not None
    planned = p.auto_embed and not has_vec and bool(n.embed_text)
    status = "ready" if has_vec else "pending" if planned else "failed"
    last_error = None if has_vec or planned else C.EMBED_ERR_NO_TEXT if p.auto_embed else C.EMBED_ERR_DISABLED
    model = None
    if has_vec:
        model = n.embedding_model.strip() if n.embedding_model and n.embedding_model.strip() else \
            C.CLIENT_EMBEDDING_MODEL
    return (
        n.id, p.scope, n.client_id, n.type, n.tier, n.title, n.text_summary, orjson.dumps(n.slots).decode(),
        n.raw_ref, n.evidence_ref, np.asarray(n.embedding, dtype=np.float32) if has_vec else None, model,
        n.memory_lane, n.producer_agent_id, n.owner_agent_id, n.owner_team_id,
        status, last_error, has_vec,
        n.salience, n.importance, n.confidence, commit_id,
    )


async def _insert_rule_defs(conn: psycopg.AsyncConnection, rules: list[PreparedNode], scope: str,
                            commit_id: str) -> None:
    params = []
    for n in rules:
        slots = n.slots if isinstance(n.slots, dict) else {}
        rule_scope, agent, team = _rule_target(slots)
        params.append((scope, n.id, orjson.dumps(slots.get("if", {})).decode(),
                       orjson.dumps(slots.get("then", {})).decode(), orjson.dumps(slots.get("exceptions", [])).decode(),
                       rule_scope, agent or None, team or None, commit_id))
    async with db.timed():
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT_RULE_DEF, params)


async def _enqueue(conn: psycopg.AsyncConnection, p: PreparedWrite, commit_id: str, inserted: set[str],
                   result: dict[str, Any]) -> None:
    """Outbox rows of the write (same transaction): embed_nodes and topic_cluster, as Aionis decides them."""
    embed_planned = [n for n in p.nodes if n.embedding is None and n.embed_text] if p.auto_embed else []
    # topic_cluster_async=false (Aionis clusters inside the request) is also enqueued: clustering is the worker's.
    event_ids = [n.id for n in p.nodes if n.type == "event"] if p.trigger_topic_cluster else []
    # Readiness now: fresh rows are as we inserted them; pre-existing ones (retries) are looked up.
    fresh_ready = {n.id for n in p.nodes if n.id in inserted and n.embedding is not None}
    unknown = sorted(({n.id for n in embed_planned} | set(event_ids)) - inserted)
    ready = set(fresh_ready)
    if unknown:
        ready |= {r[0] for r in await db.fetchall(conn, _SELECT_READY, (p.scope, unknown))}

    embed_nodes = embed_planned if p.force_reembed else [n for n in embed_planned if n.id not in ready]
    embed_enqueued = False
    embed_payload: dict[str, Any] | None = None
    if embed_nodes:
        embed_payload = {"nodes": [{"id": n.id, "text": n.embed_text} for n in embed_nodes]}
        if p.force_reembed:
            embed_payload["force_reembed"] = True
        embed_enqueued = True
        result["embedding_backfill"] = {"enqueued": True, "pending_nodes": len(embed_nodes)}

    run_now: list[str] = []
    wait_for_embed: list[str] = []
    if event_ids:
        embeddable = {n.id for n in p.nodes if n.type == "event" and p.auto_embed and n.embed_text}
        for eid in event_ids:
            if p.force_reembed and eid in embeddable:
                wait_for_embed.append(eid)
            elif eid in ready:
                run_now.append(eid)
            elif eid in embeddable:
                wait_for_embed.append(eid)

    rows = []
    if embed_payload is not None:
        # job_key/payload_sha256 cover the payload without after_topic_cluster_event_ids (Aionis adds them later
        # with an UPDATE), so stored keys equal Aionis's.
        job_key, payload_sha = outbox_job_key(scope_key=p.scope, commit_id=commit_id,
                                              event_type=C.OUTBOX_EMBED_NODES, payload=embed_payload)
        stored = dict(embed_payload)
        if wait_for_embed and embed_enqueued:
            stored["after_topic_cluster_event_ids"] = wait_for_embed
            result["topic_cluster"] = {"enqueued": True}
        rows.append((p.scope, commit_id, C.OUTBOX_EMBED_NODES, job_key, payload_sha, orjson.dumps(stored).decode()))
    if run_now:
        payload = {"event_ids": run_now}
        job_key, payload_sha = outbox_job_key(scope_key=p.scope, commit_id=commit_id,
                                              event_type=C.OUTBOX_TOPIC_CLUSTER, payload=payload)
        rows.append((p.scope, commit_id, C.OUTBOX_TOPIC_CLUSTER, job_key, payload_sha, orjson.dumps(payload).decode()))
        result["topic_cluster"] = {"enqueued": True}
    if rows:
        async with db.timed():
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT_OUTBOX, rows)
