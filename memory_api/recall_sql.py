"""The recall SQL, one source of truth for the API and for `memload explain`.

Placeholders are psycopg named parameters; `q` is a vector(1536) (bind a pgvector Vector/numpy array, or a text
literal, which the `::vector(1536)` cast accepts).

Stage 1 (ANN) filters `scope = %(scope)s` inside the k-NN scan. A scope with partitions of its own is pruned to
its partition at plan time and reads only that partition's `memory_nodes_embedding_ready_hot_warm_hnsw_idx`, so no
other scope can starve it. In the shared default partition the scope is a post-filter of the HNSW scan; there
`hnsw.iterative_scan` (relaxed_order, set per pooled connection) keeps scanning until LIMIT rows pass, and the
MATERIALIZED CTE plus the outer ORDER BY make the final order exact.

Parameters: q, scope, oversample (= max(limit, min(1000, 5*limit))), limit, agent, team (NULL = no lane filter).
"""

from __future__ import annotations

from typing import Final

_LANE_FILTER = """
        AND (
          %(agent)s::text IS NULL
          OR n.memory_lane = 'shared'::memory_lane
          OR (n.memory_lane = 'private'::memory_lane AND n.owner_agent_id = %(agent)s::text)
          OR (%(team)s::text IS NOT NULL AND n.memory_lane = 'private'::memory_lane
              AND n.owner_team_id = %(team)s::text)
        )"""

_STAGE1_OUTER = """
SELECT
  k.id::text AS id,
  k.type::text AS type,
  k.title,
  k.text_summary,
  k.tier::text AS tier,
  k.salience,
  k.confidence,
  1.0 - k.distance AS similarity
FROM knn k
WHERE k.type IN ('event', 'topic', 'concept', 'entity', 'rule')
  AND (k.type <> 'topic' OR COALESCE(k.topic_state, 'active') = 'active')
  AND (
    k.type <> 'rule'
    OR EXISTS (
      SELECT 1 FROM memory_rule_defs d
      WHERE d.scope = %(scope)s AND d.rule_node_id = k.id AND d.state IN ('shadow', 'active')
    )
  ){extra}
ORDER BY k.distance ASC, k.id
LIMIT %(limit)s
"""

STAGE1_SQL: Final = (
    """
WITH knn AS MATERIALIZED (
  SELECT
    n.id, n.type, n.title, n.text_summary, n.tier, n.salience, n.confidence,
    n.slots->>'topic_state' AS topic_state,
    (n.embedding <=> %(q)s::vector(1536)) AS distance
  FROM memory_nodes n
  WHERE n.scope = %(scope)s
    AND n.tier IN ('hot', 'warm')
    AND n.embedding IS NOT NULL
    AND n.embedding_status = 'ready'"""
    + _LANE_FILTER
    + """
  ORDER BY n.embedding <=> %(q)s::vector(1536)
  LIMIT %(oversample)s
)"""
    + _STAGE1_OUTER.format(extra="")
)
"""Stage 1 with the scope filter inside the ANN scan (the default path)."""

STAGE1_UNSCOPED_SQL: Final = (
    """
WITH knn AS MATERIALIZED (
  SELECT
    n.id, n.scope, n.type, n.title, n.text_summary, n.tier, n.salience, n.confidence,
    n.memory_lane, n.owner_agent_id, n.owner_team_id,
    n.slots->>'topic_state' AS topic_state,
    (n.embedding <=> %(q)s::vector(1536)) AS distance
  FROM memory_nodes n
  WHERE n.tier IN ('hot', 'warm')
    AND n.embedding IS NOT NULL
    AND n.embedding_status = 'ready'
  ORDER BY n.embedding <=> %(q)s::vector(1536)
  LIMIT %(oversample)s
)"""
    + _STAGE1_OUTER.format(
        extra=_LANE_FILTER.replace("n.", "k.").replace("\n        ", "\n  ") + "\n  AND k.scope = %(scope)s"
    )
)
"""RECALL_SCOPE_PATH=false: the shared-index behaviour of Aionis. ANN over every scope's ready vectors first, scope
filter after, so a scope whose vectors are farther than other scopes' gets few or no seeds."""

_EDGE_COLS = "e.id, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.commit_id"

_HOP = """(
      SELECT {cols}
      FROM memory_edges e
      JOIN {frm} s ON s.id = e.{end}
      WHERE e.scope = %(scope)s
        AND COALESCE(e.weight, 1) >= %(min_w)s
        AND COALESCE(e.confidence, 1) >= %(min_c)s
      ORDER BY e.weight DESC, e.confidence DESC
      LIMIT %({budget})s
    )"""


def _hop(frm: str, budget: str) -> str:
    return (
        _HOP.format(cols=_EDGE_COLS, frm=frm, end="src_id", budget=budget)
        + "\n    UNION\n    "
        + _HOP.format(cols=_EDGE_COLS, frm=frm, end="dst_id", budget=budget)
    )


_EDGE_SELECT = """
SELECT id::text, type::text, src_id::text, dst_id::text, weight, confidence, commit_id::text
FROM {last}
ORDER BY weight DESC, confidence DESC, id
LIMIT %(edge_budget)s
"""

STAGE2_HOP1_SQL: Final = (
    "WITH seed AS (SELECT unnest(%(seed_ids)s::uuid[]) AS id),\nhop1 AS (\n    "
    + _hop("seed", "hop1_budget")
    + "\n)"
    + _EDGE_SELECT.format(last="hop1")
)
"""Stage 2, neighborhood_hops=1: edges touching a seed, budgeted per direction (HOP1), then EDGE_FETCH_BUDGET.
Parameters: seed_ids, scope, min_w, min_c, hop1_budget, edge_budget."""

STAGE2_HOP2_SQL: Final = (
    "WITH seed AS (SELECT unnest(%(seed_ids)s::uuid[]) AS id),\nhop1 AS (\n    "
    + _hop("seed", "hop1_budget")
    + "\n),\nnodes AS (\n  SELECT src_id AS id FROM hop1 UNION SELECT dst_id AS id FROM hop1"
    + " UNION SELECT id FROM seed\n),"
    + "\nhop2 AS (\n    "
    + _hop("nodes", "hop2_budget")
    + "\n)"
    + _EDGE_SELECT.format(last="hop2")
)
"""Stage 2, neighborhood_hops=2: as hop 1, then the same from seeds + hop-1 endpoints (HOP2 budget).
Parameters: seed_ids, scope, min_w, min_c, hop1_budget, hop2_budget, edge_budget."""

_NODES_SELECT = """
SELECT
  id::text, type::text, {meta1},
  title, text_summary,
  CASE WHEN %(want_slots)s THEN slots END AS slots,
  embedding_status::text,
  {meta2},
  CASE WHEN type = 'topic' THEN COALESCE(slots->>'topic_state', 'active') END AS topic_state,
  CASE WHEN type = 'topic' THEN NULLIF(slots->>'member_count', '')::int END AS member_count,
  raw_ref, evidence_ref, salience, {meta3}, confidence,
  {times},
  commit_id::text,
  CASE WHEN type = 'concept' THEN slots END AS concept_slots,
  CASE WHEN type = 'rule' THEN slots END AS rule_slots
FROM memory_nodes
WHERE scope = %(scope)s
  AND id = ANY(%(ids)s::uuid[])
  AND (
    %(agent)s::text IS NULL
    OR memory_lane = 'shared'::memory_lane
    OR (memory_lane = 'private'::memory_lane AND owner_agent_id = %(agent)s::text)
    OR (%(team)s::text IS NOT NULL AND memory_lane = 'private'::memory_lane AND owner_team_id = %(team)s::text)
  )
"""
_ISO = "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS {c}"

NODES_META_SQL: Final = _NODES_SELECT.format(
    meta1="tier::text, memory_lane::text, producer_agent_id, owner_agent_id, owner_team_id",
    meta2="embedding_model",
    meta3="importance",
    times=",\n  ".join(_ISO.format(c=c) for c in ("last_activated", "created_at", "updated_at")),
)
"""Node fetch of stage 2 with include_meta (timestamps as JavaScript's ISO strings). Never selects embeddings.
Parameters: scope, ids (a uuid[] literal or list), want_slots, agent, team."""

NODES_SQL: Final = _NODES_SELECT.format(
    meta1="NULL AS tier, NULL AS memory_lane, NULL AS producer_agent_id, NULL AS owner_agent_id, NULL AS owner_team_id",
    meta2="NULL AS embedding_model",
    meta3="NULL AS importance",
    times="NULL AS last_activated, NULL AS created_at, NULL AS updated_at",
)
"""Node fetch without include_meta: the meta-only columns are NULL (not read, not converted). Same shape and
parameters as NODES_META_SQL."""

RULE_DEFS_SQL: Final = """
SELECT rule_node_id::text, state::text, rule_scope::text, target_agent_id, target_team_id,
       if_json, then_json, exceptions_json, positive_count, negative_count
FROM memory_rule_defs
WHERE scope = %(scope)s AND rule_node_id = ANY(%(ids)s::uuid[])
"""

DEBUG_EMBEDDINGS_SQL: Final = """
SELECT id::text, embedding::text
FROM memory_nodes
WHERE scope = %(scope)s AND id = ANY(%(ids)s::uuid[]) AND embedding IS NOT NULL
"""

AUDIT_SQL: Final = """
INSERT INTO memory_recall_audit
  (scope, endpoint, consumer_agent_id, consumer_team_id, query_sha256, seed_count, node_count, edge_count)
SELECT %(scope)s, %(endpoint)s, %(agent)s, %(team)s, %(query_sha256)s, %(seeds)s, %(nodes)s, %(edges)s
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
"""
"""The recall's audit row. The recall transaction writes nothing else and Aionis treats the audit as best effort,
so its COMMIT does not wait for the WAL flush (set_config(..., is_local) here saves a round trip)."""
