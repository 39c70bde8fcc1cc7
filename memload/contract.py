"""The Aionis v0.1.0 wire contract in one place: routes, enums, defaults and bounds, error codes, response keys.

The reference API validates against these numbers and the Locust users check responses against them; neither
copies them. docs/COMPATIBILITY.md describes the contract in prose.
"""

from __future__ import annotations

import re
from typing import Final

# --- routes ---
HEALTH: Final = "/health"
WRITE: Final = "/v1/memory/write"
RECALL: Final = "/v1/memory/recall"
RECALL_TEXT: Final = "/v1/memory/recall_text"
OPENAPI: Final = "/openapi.json"

# --- enums ---
NODE_TYPES: Final = ("event", "entity", "topic", "rule", "evidence", "concept", "procedure", "self_model")
EDGE_TYPES: Final = ("part_of", "related_to", "derived_from")
TIERS: Final = ("hot", "warm", "cold", "archive")
LANES: Final = ("private", "shared")
EMBEDDING_STATUSES: Final = ("pending", "ready", "failed")
RECALLABLE_TYPES: Final = ("event", "topic", "concept", "entity", "rule")
AUTH_MODES: Final = ("off", "api_key", "jwt", "api_key_or_jwt")

# --- general limits ---
BODY_LIMIT_BYTES: Final = 5 * 1024 * 1024
EMBEDDING_DIM: Final = 1536
TENANT_ID_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
SHA256_HEX_RE: Final = re.compile(r"^[0-9a-f]{64}$")

# --- recall request: name -> (default, min, max) ---
RECALL_INT_BOUNDS: Final[dict[str, tuple[int, int, int]]] = {
    "limit": (30, 1, 200),
    "neighborhood_hops": (2, 1, 2),
    "max_nodes": (50, 1, 200),
    "max_edges": (100, 1, 100),
    "ranked_limit": (100, 1, 500),
    "slots_preview_keys": (10, 1, 50),
    "rules_limit": (50, 1, 200),
}
RECALL_FLOAT_BOUNDS: Final[dict[str, tuple[float, float, float]]] = {
    "min_edge_weight": (0.0, 0.0, 1.0),
    "min_edge_confidence": (0.0, 0.0, 1.0),
}
RECALL_FLAGS: Final = (
    "include_meta",
    "include_slots",
    "include_slots_preview",
    "return_debug",
    "include_embeddings",
    "rules_include_shadow",
)
DEBUG_EMBEDDINGS_MAX_LIMIT: Final = 20

# --- recall algorithm constants ---
ANN_OVERSAMPLE: Final = 5
ANN_MAX_CANDIDATES: Final = 1000


def ann_candidates(limit: int) -> int:
    """Stage 1's candidate count for a recall of `limit` seeds: max(limit, min(1000, 5·limit)). The candidates come
    in index order and are re-ranked by the float32 distance, so this, not `limit`, is what the HNSW scan returns."""
    return max(limit, min(ANN_MAX_CANDIDATES, ANN_OVERSAMPLE * limit))


EDGE_TYPE_WEIGHT: Final = {"derived_from": 1.0, "part_of": 0.9, "related_to": 0.6}
ACTIVATION_DAMPING: Final = 0.5
SCORE_BLEND: Final = (0.7, 0.15, 0.15)  # activation, confidence, salience

# --- write ---
MAX_TEXT_LEN_DEFAULT: Final = 8000
SCORE_DEFAULT: Final = 0.5
EDGE_DECAY_DEFAULT: Final = 0.01

# --- error codes ---
E_INVALID_REQUEST: Final = "invalid_request"
E_INTERNAL: Final = "internal_error"
E_UNAUTHORIZED: Final = "unauthorized"
E_IDENTITY_MISMATCH: Final = "identity_mismatch"
E_INVALID_TENANT: Final = "invalid_tenant_id"
E_INVALID_SCOPE: Final = "invalid_scope"
E_NO_PROVIDER: Final = "no_embedding_provider"
E_PRIVATE_RULE_OWNER: Final = "invalid_private_rule_owner"


# memload's codes for client mistakes an Aionis server answers with 500
E_INVALID_JSON: Final = "invalid_json"
E_UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"
E_PAYLOAD_TOO_LARGE: Final = "payload_too_large"
E_NOT_FOUND: Final = "not_found"
E_METHOD_NOT_ALLOWED: Final = "method_not_allowed"
E_UNKNOWN_CLIENT_ID_REF: Final = "unknown_client_id_ref"
E_EDGE_ENDPOINT_NOT_FOUND: Final = "edge_endpoint_not_found"
E_CROSS_SCOPE_EDGE: Final = "cross_scope_edge"
E_CROSS_SCOPE_NODE: Final = "cross_scope_node"
E_SELF_LOOP_EDGE: Final = "self_loop_edge"
E_CLIENT_ID_MISMATCH: Final = "client_id_id_mismatch"
E_PARENT_COMMIT_NOT_FOUND: Final = "parent_commit_not_found"
E_INVALID_RULE_TARGET: Final = "invalid_rule_target"
E_CONFLICT: Final = "conflict"
E_DEBUG_REQUIRES_RETURN_DEBUG: Final = "debug_embeddings_requires_return_debug"
E_DEBUG_NOT_ALLOWED: Final = "debug_embeddings_not_allowed"
E_DEBUG_LIMIT_TOO_HIGH: Final = "debug_embeddings_limit_too_high"
E_UPSTREAM_RATE_LIMITED: Final = "upstream_embedding_rate_limited"
E_UPSTREAM_UNAVAILABLE: Final = "upstream_embedding_unavailable"
E_UPSTREAM_BAD_RESPONSE: Final = "upstream_embedding_bad_response"
E_SERVICE_UNAVAILABLE: Final = "service_unavailable"

# --- rate limiting ---
RATE_KINDS: Final = ("recall", "write", "debug_embeddings", "recall_text_embed")
JWT_CLOCK_SKEW_S: Final = 30


def rate_limited_message(kind: str, *, tenant: bool) -> str:
    """Message of a 429 body, exactly as Aionis words it."""
    if kind == "recall_text_embed":
        return f"{'tenant ' if tenant else ''}recall_text embedding quota exceeded; retry later"
    return f"tenant quota exceeded ({kind}); retry later" if tenant else f"rate limited ({kind}); retry later"


# --- write request: node/edge score fields, all in [0, 1] ---
NODE_SCORE_FIELDS: Final = ("salience", "importance", "confidence")
EDGE_SCORE_FIELDS: Final = ("weight", "confidence", "decay_rate")
DEFAULT_ACTOR: Final = "system"
DEFAULT_LANE: Final = "private"
DEFAULT_TIER: Final = "hot"
CLIENT_EMBEDDING_MODEL: Final = "client"
EMBED_ERR_NO_TEXT: Final = "no_embed_text"
EMBED_ERR_DISABLED: Final = "auto_embed_disabled_or_no_provider"
EMBED_ERR_PROVIDER_UNAVAILABLE: Final = "embedding_provider_unavailable"  # the worker retries these
OUTBOX_EMBED_NODES: Final = "embed_nodes"
OUTBOX_TOPIC_CLUSTER: Final = "topic_cluster"

# --- recall stage 2 budgets ---
EDGE_FETCH_BUDGET_MAX: Final = 1000
EDGE_FETCH_MULT: Final = 5
HOP_BUDGET_MIN: Final = 50
HOP_BUDGET_MAX: Final = 500
NODE_FETCH_BUDGET_MAX: Final = 800
NODE_FETCH_MULT: Final = 4
SEED_ACTIVATION_WEIGHTS: Final = (0.75, 0.25)  # similarity, salience
DRAFT_TOPIC_BUDGET_MAX: Final = 10
CONTEXT_LIMITS: Final = {"topic_concept": 4, "entity": 6, "event_evidence": 10, "rule": 6}
DEBUG_EMBED_MAX_NODES: Final = 5
DEBUG_EMBED_PREVIEW_DIMS: Final = 16

# --- response headers ---
REQUEST_ID_HEADER: Final = "x-request-id"
SERVER_TIMING_HEADER: Final = "server-timing"


def rate_limited_code(kind: str, *, tenant: bool) -> str:
    """Error code of a 429: `rate_limited_<kind>` (per client) or `tenant_rate_limited_<kind>` (per tenant)."""
    return f"tenant_rate_limited_{kind}" if tenant else f"rate_limited_{kind}"


# --- response shapes (keys a client may rely on) ---
WRITE_RESPONSE_KEYS: Final = frozenset({"tenant_id", "scope", "commit_id", "commit_hash", "nodes", "edges"})
RECALL_RESPONSE_KEYS: Final = frozenset({"tenant_id", "scope", "seeds", "subgraph", "ranked", "context"})
RECALL_EMPTY_RESPONSE_KEYS: Final = frozenset({"scope", "seeds", "subgraph", "ranked"})
SEED_KEYS: Final = frozenset({"id", "type", "title", "text_summary", "tier", "salience", "confidence", "similarity"})
ERROR_KEYS: Final = frozenset({"error"})
