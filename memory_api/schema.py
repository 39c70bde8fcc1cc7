"""Request schemas as data: one declaration drives both validation (`validate`) and the OpenAPI document.

Semantics follow the Aionis request schemas: unknown keys are dropped, nothing is coerced
("20" is not a number), defaults fill absent keys. Because /openapi.json is generated from the same objects, the
document cannot drift from what the server accepts. Stricter than Aionis where it answered 500: embeddings must
have exactly 1536 finite numbers, and tenant/scope/client_id rules are part of the schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from memload import contract as C

MISSING: Final = object()
UUID_PATTERN: Final = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_RE: Final = re.compile(UUID_PATTERN)
SHA256_PATTERN: Final = C.SHA256_HEX_RE.pattern
# What the server accepts after trimming (JSON Schema patterns are unanchored searches).
TENANT_PATTERN: Final = r"^\s*[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}\s*$"
SCOPE_PATTERN: Final = r"^\s*(?!tenant:)\S"
NON_BLANK_PATTERN: Final = r"\S"


@dataclass(frozen=True)
class Spec:
    """A JSON value's type and constraints (a small subset of JSON Schema, enough for the contract)."""

    type: str  # string | integer | number | boolean | array | object | any
    description: str = ""
    default: Any = MISSING
    min_length: int | None = None  # strings: characters; arrays: items
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_message: str = ""
    format: str | None = None  # "uuid" | "sha256"
    items: Spec | None = None
    properties: Mapping[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    any_of_required: tuple[str, ...] = ()  # at least one of these keys must be set (zod .refine)
    any_of_message: str = ""
    open_values: bool = False  # object with arbitrary keys (zod z.record(z.any()))
    extra_schema: Mapping[str, Any] = field(default_factory=dict)  # OpenAPI-only additions (if/then)
    error_code: str | None = None  # error code when this value is invalid (default: invalid_request)
    no_nul: bool = True  # strings (and open objects' strings/keys) must not contain U+0000: PostgreSQL text can't


def _s(desc: str = "", **kw: Any) -> Spec:
    return Spec("string", desc, min_length=1, **kw)


def _score(desc: str) -> Spec:
    return Spec("number", desc, minimum=0.0, maximum=1.0)


def _int(name: str, desc: str) -> Spec:
    default, lo, hi = C.RECALL_INT_BOUNDS[name]
    return Spec("integer", desc, default=default, minimum=lo, maximum=hi)


UUID = Spec("string", "UUID", format="uuid")
EMBEDDING = Spec(
    "array",
    f"exactly {C.EMBEDDING_DIM} finite numbers",
    min_length=C.EMBEDDING_DIM,
    max_length=C.EMBEDDING_DIM,
    items=Spec("number"),
)
TENANT = _s("tenant id; defaults to x-tenant-id, then MEMORY_TENANT_ID", pattern=TENANT_PATTERN,
            pattern_message="must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$", error_code=C.E_INVALID_TENANT)
SCOPE = _s("scope; defaults to MEMORY_SCOPE; must not start with 'tenant:'", pattern=SCOPE_PATTERN,
           pattern_message="must be non-blank and must not start with 'tenant:'", error_code=C.E_INVALID_SCOPE)

NODE = Spec(
    "object",
    "a memory node",
    properties={
        "id": UUID,
        "client_id": _s("stable external key within the scope", pattern=NON_BLANK_PATTERN,
                        pattern_message="must not be blank"),
        "scope": SCOPE,
        "type": Spec("string", "node type", enum=C.NODE_TYPES),
        "tier": Spec("string", "storage tier (default hot)", enum=C.TIERS),
        "memory_lane": Spec("string", "visibility lane", enum=C.LANES),
        "producer_agent_id": _s(),
        "owner_agent_id": _s(),
        "owner_team_id": _s(),
        "title": _s(),
        "text_summary": _s(),
        "slots": Spec("object", "free-form JSON object", open_values=True),
        "raw_ref": _s(),
        "evidence_ref": _s(),
        "embedding": EMBEDDING,
        "embedding_model": _s(),
        "salience": _score("default 0.5"),
        "importance": _score("default 0.5"),
        "confidence": _score("default 0.5"),
    },
    required=("type",),
)

ENDPOINT = Spec(
    "object",
    "edge endpoint: a node id, or the client_id of a node in this write",
    properties={"id": UUID, "client_id": _s()},
    any_of_required=("id", "client_id"),
    any_of_message="must set id or client_id",
)

EDGE = Spec(
    "object",
    "a typed, weighted edge between two nodes of the same scope",
    properties={
        "id": UUID,
        "scope": SCOPE,
        "type": Spec("string", "edge type", enum=C.EDGE_TYPES),
        "src": ENDPOINT,
        "dst": ENDPOINT,
        "weight": _score("default 0.5"),
        "confidence": _score("default 0.5"),
        "decay_rate": _score("default 0.01"),
    },
    required=("type", "src", "dst"),
)

WRITE_REQUEST = Spec(
    "object",
    f"POST {C.WRITE}",
    properties={
        "tenant_id": TENANT,
        "scope": SCOPE,
        "actor": _s("default 'system'"),
        "parent_commit_id": Spec("string", "a commit of the same scope", format="uuid"),
        "input_text": _s("source text (normalised, clamped, PII-redacted, then hashed)", pattern=NON_BLANK_PATTERN,
                         pattern_message="must not be blank"),
        "input_sha256": Spec("string", "64 lowercase hex digits", format="sha256"),
        "model_version": _s(),
        "prompt_version": _s(),
        "auto_embed": Spec("boolean", "enqueue embedding of nodes without a vector (default true)"),
        "memory_lane": Spec("string", "default lane of the nodes", enum=C.LANES),
        "producer_agent_id": _s(),
        "owner_agent_id": _s(),
        "owner_team_id": _s(),
        "force_reembed": Spec("boolean"),
        "trigger_topic_cluster": Spec("boolean"),
        "topic_cluster_async": Spec("boolean"),
        "nodes": Spec("array", "nodes to upsert", default=[], items=NODE),
        "edges": Spec("array", "edges to upsert", default=[], items=EDGE),
    },
    any_of_required=("input_text", "input_sha256"),
    any_of_message="must set input_text or input_sha256",
)


def _recall_props() -> dict[str, Spec]:
    props: dict[str, Spec] = {
        "tenant_id": TENANT,
        "scope": SCOPE,
        "consumer_agent_id": _s("restricts private nodes to this owner agent"),
        "consumer_team_id": _s("with consumer_agent_id: also private nodes of this team"),
        "limit": _int("limit", "seed count (stage 1)"),
        "neighborhood_hops": _int("neighborhood_hops", "graph hops (stage 2)"),
        "return_debug": Spec("boolean", default=False),
        "include_embeddings": Spec("boolean", "needs return_debug, limit <= 20 and an admin token (or loopback)",
                                   default=False),
        "include_meta": Spec("boolean", default=False),
        "include_slots": Spec("boolean", default=False),
        "include_slots_preview": Spec("boolean", default=False),
        "slots_preview_keys": _int("slots_preview_keys", "keys in slots_preview"),
        "max_nodes": _int("max_nodes", "nodes in the subgraph"),
        "max_edges": _int("max_edges", "edges in the subgraph"),
        "ranked_limit": _int("ranked_limit", "entries in ranked"),
        "min_edge_weight": Spec("number", default=0.0, minimum=0.0, maximum=1.0),
        "min_edge_confidence": Spec("number", default=0.0, minimum=0.0, maximum=1.0),
        "rules_context": Spec("any", "accepted for compatibility; rule evaluation is not implemented", no_nul=False),
        "rules_include_shadow": Spec("boolean", default=False),
        "rules_limit": _int("rules_limit", "rules scanned"),
    }
    return props


# include_embeddings needs return_debug and limit <= 20 (the admin-token condition cannot be expressed here).
_DEBUG_RULE = {
    "if": {"properties": {"include_embeddings": {"const": True}}, "required": ["include_embeddings"]},
    "then": {
        "properties": {"return_debug": {"const": True}, "limit": {"maximum": C.DEBUG_EMBEDDINGS_MAX_LIMIT}},
        "required": ["return_debug", "limit"],
    },
}

RECALL_REQUEST = Spec(
    "object",
    f"POST {C.RECALL}",
    properties={"query_embedding": EMBEDDING, **_recall_props()},
    required=("query_embedding",),
    extra_schema=_DEBUG_RULE,
)

RECALL_TEXT_REQUEST = Spec(
    "object",
    f"POST {C.RECALL_TEXT}",
    properties={
        "query_text": Spec("string", "query, embedded server-side", min_length=1, no_nul=False),
        **_recall_props(),
    },
    required=("query_text",),
    extra_schema=_DEBUG_RULE,
)
