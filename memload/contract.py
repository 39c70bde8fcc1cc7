"""The Aionis v0.1.0 wire contract in one place: routes, enums, defaults and bounds, error codes, response keys.

The reference API validates against these numbers and the Locust users check responses against them; neither
copies them. Source: shared/spec/aionis-contract.md §1-§2.
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

# --- recall algorithm constants (contract §4) ---
ANN_OVERSAMPLE: Final = 5
ANN_MAX_CANDIDATES: Final = 1000
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


def rate_limited_code(kind: str, *, tenant: bool) -> str:
    """Error code of a 429: `rate_limited_<kind>` (per client) or `tenant_rate_limited_<kind>` (per tenant)."""
    return f"tenant_rate_limited_{kind}" if tenant else f"rate_limited_{kind}"


# --- response shapes (keys a client may rely on) ---
WRITE_RESPONSE_KEYS: Final = frozenset({"tenant_id", "scope", "commit_id", "commit_hash", "nodes", "edges"})
RECALL_RESPONSE_KEYS: Final = frozenset({"tenant_id", "scope", "seeds", "subgraph", "ranked", "context"})
RECALL_EMPTY_RESPONSE_KEYS: Final = frozenset({"scope", "seeds", "subgraph", "ranked"})
SEED_KEYS: Final = frozenset({"id", "type", "title", "text_summary", "tier", "salience", "confidence", "similarity"})
ERROR_KEYS: Final = frozenset({"error"})
