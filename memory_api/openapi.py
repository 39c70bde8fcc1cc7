"""The OpenAPI 3.1 document served at /openapi.json, generated from the same `Spec` objects the server validates with.

Responses list every status a client can get (200, 400, 401, 403, 413, 415, 429, 500, 503) with the error envelope.
"""

from __future__ import annotations

from typing import Any

from memload import contract as C
from memload.version import MEMLOAD_VERSION
from memory_api.schema import (
    MISSING,
    RECALL_REQUEST,
    RECALL_TEXT_REQUEST,
    SHA256_PATTERN,
    UUID_PATTERN,
    WRITE_REQUEST,
    Spec,
)

NO_NUL_PATTERN = "^[^\\u0000]*$"
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}


def to_json_schema(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = spec.type
    if t != "any":
        out["type"] = t
    if spec.description:
        out["description"] = spec.description
    if spec.default is not MISSING:
        out["default"] = spec.default
    if t == "string":
        patterns = []
        if spec.min_length is not None:
            out["minLength"] = spec.min_length
        if spec.max_length is not None:
            out["maxLength"] = spec.max_length
        if spec.enum is not None:
            out["enum"] = list(spec.enum)
        if spec.format == "uuid":
            out["format"] = "uuid"
            patterns.append(UUID_PATTERN)
        elif spec.format == "sha256":
            patterns.append(SHA256_PATTERN)
        if spec.pattern:
            patterns.append(spec.pattern)
        if spec.no_nul and spec.enum is None and spec.format is None:
            patterns.append(NO_NUL_PATTERN)
        if patterns:
            out["pattern"] = patterns[0]
            if len(patterns) > 1:
                out["allOf"] = [{"pattern": p} for p in patterns[1:]]
    elif t in ("integer", "number"):
        if spec.minimum is not None:
            out["minimum"] = spec.minimum
        if spec.maximum is not None:
            out["maximum"] = spec.maximum
    elif t == "array":
        if spec.min_length is not None:
            out["minItems"] = spec.min_length
        if spec.max_length is not None:
            out["maxItems"] = spec.max_length
        if spec.items is not None:
            out["items"] = to_json_schema(spec.items)
    elif t == "object":
        if spec.open_values:
            out["additionalProperties"] = JSON_VALUE_REF
            out["propertyNames"] = {"pattern": NO_NUL_PATTERN}
        else:
            out["properties"] = {k: to_json_schema(v) for k, v in spec.properties.items()}
            if spec.required:
                out["required"] = list(spec.required)
            # Unknown keys are accepted and ignored (zod strips them).
            out["additionalProperties"] = True
            if spec.any_of_required:
                out["anyOf"] = [
                    {"required": [k], "properties": {k: _truthy(spec.properties[k])}} for k in spec.any_of_required
                ]
        out.update(spec.extra_schema)
    return out


def _truthy(spec: Spec) -> dict[str, Any]:
    """`!!value` of the refine: a set string must be non-empty (the only falsy value the schema allows)."""
    return {"minLength": 1} if spec.type == "string" else {}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "machine-readable code"},
            "message": {"type": "string", "description": "one line naming the offending field"},
            "details": {"description": "code-specific details"},
            "issues": {
                "type": "array",
                "description": "validation issues (error=invalid_request)",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                          "description": "seconds to wait"}}
    return out


def _common_headers() -> dict[str, Any]:
    return {
        "x-request-id": {"schema": {"type": "string"}, "description": "echo of the request's x-request-id, or new"},
        "Server-Timing": {"schema": {"type": "string"}, "description": "total;dur=<ms>, db;dur=<ms>"},
        "x-memload-api": {"schema": {"type": "string"}, "description": "memload version of this reference API"},
    }


def _post(op_id: str, summary: str, schema_ref: str, ok_ref: str, extra: dict[str, Any] | None = None) -> dict:
    responses: dict[str, Any] = {
        "200": {
            "description": "success",
            "headers": _common_headers(),
            "content": {"application/json": {"schema": {"$ref": ok_ref}}},
        },
        "400": _error("invalid JSON or request (invalid_json, invalid_request with issues, invalid_tenant_id, ...)"),
        "401": _error("unauthorized: a valid X-Api-Key / Bearer token is required in this auth mode"),
        "403": _error("identity_mismatch: a supplied tenant/agent/team differs from the authenticated principal"),
        "413": _error("payload_too_large: body above 5 MiB"),
        "415": _error("unsupported_media_type: Content-Type must be application/json"),
        "429": _error("rate limited per client or per tenant (rate_limited_<kind>, tenant_rate_limited_<kind>; "
                      "kind recall, write, debug_embeddings or, on recall_text, recall_text_embed)",
                      retry_after=True),
        "500": _error("internal_error (a server fault, logged with the request id)"),
        "503": _error("service_unavailable: database unavailable", retry_after=True),
    }
    if extra:
        responses.update(extra)
    return {
        "operationId": op_id,
        "summary": summary,
        "parameters": [
            {"name": "x-request-id", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "x-tenant-id", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": schema_ref}}}},
        "responses": responses,
    }


def _responses() -> dict[str, Any]:
    node_ref = {"type": "object", "required": ["id", "type"], "properties": {
        "id": {"type": "string"}, "client_id": {"type": "string"}, "type": {"type": "string"}}}
    edge_ref = {"type": "object", "required": ["id", "type", "src_id", "dst_id"], "properties": {
        k: {"type": "string"} for k in ("id", "type", "src_id", "dst_id")}}
    seed = {"type": "object", "required": sorted(C.SEED_KEYS), "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "title": {"type": ["string", "null"]},
        "text_summary": {"type": ["string", "null"]}, "tier": {"type": "string"}, "salience": {"type": "number"},
        "confidence": {"type": "number"}, "similarity": {"type": "number"}}}
    recall = {
        "type": "object",
        "required": sorted(C.RECALL_EMPTY_RESPONSE_KEYS),
        "description": "with zero seeds: only scope (the scope key), seeds, subgraph, ranked",
        "properties": {
            "tenant_id": {"type": "string"},
            "scope": {"type": "string"},
            "seeds": {"type": "array", "items": seed},
            "subgraph": {"type": "object", "required": ["nodes", "edges"], "properties": {
                "nodes": {"type": "array", "items": {"type": "object", "required": ["id", "type"]}},
                "edges": {"type": "array", "items": {"type": "object", "required": ["from_id", "to_id", "type",
                                                                                    "weight"]}}}},
            "ranked": {"type": "array", "items": {"type": "object", "required": ["id", "activation", "score"]}},
            "context": {"type": "object", "required": ["text", "items", "citations"]},
            "debug": {"type": "object"},
        },
    }
    recall_text = {
        "allOf": [{"$ref": "#/components/schemas/RecallResponse"}],
        "properties": {"query": {"type": "object", "required": ["text", "embedding_provider"], "properties": {
            "text": {"type": "string"}, "embedding_provider": {"type": "string"}}}},
        "required": ["query"],
    }
    write = {
        "type": "object",
        "required": sorted(C.WRITE_RESPONSE_KEYS),
        "properties": {
            "tenant_id": {"type": "string"}, "scope": {"type": "string"}, "commit_id": {"type": "string",
                                                                                         "format": "uuid"},
            "commit_hash": {"type": "string"}, "nodes": {"type": "array", "items": node_ref},
            "edges": {"type": "array", "items": edge_ref},
            "embedding_backfill": {"type": "object"}, "topic_cluster": {"type": "object"},
        },
    }
    return {"WriteResponse": write, "RecallResponse": recall, "RecallTextResponse": recall_text}


def build_openapi(version: str = MEMLOAD_VERSION) -> dict[str, Any]:
    json_value = {
        "description": "any JSON value without NUL characters (PostgreSQL text cannot store U+0000)",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL_PATTERN},
            {"type": "number"}, {"type": "boolean"}, {"type": "null"},
            {"type": "array", "items": JSON_VALUE_REF},
            {"type": "object", "additionalProperties": JSON_VALUE_REF, "propertyNames": {"pattern": NO_NUL_PATTERN}},
        ],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memload reference memory API (Aionis v0.1.0 compatible)",
            "version": version,
            "description": "Write and recall of an agent memory graph. Bodies are JSON objects of at most 5 MiB; "
                           "unknown keys are ignored. Every response carries x-request-id, Server-Timing and "
                           "x-memload-api.",
        },
        "servers": [{"url": "http://127.0.0.1:3001"}],
        "paths": {
            C.HEALTH: {"get": {"operationId": "health", "summary": "liveness (no auth, no rate limit)",
                               "responses": {"200": {"description": "ok", "content": {"application/json": {
                                   "schema": {"type": "object", "required": ["ok", "server", "version"],
                                              "properties": {"ok": {"const": True},
                                                             "server": {"const": "memload-reference"},
                                                             "version": {"type": "string"}}}}}}}}},
            C.WRITE: {"post": _post("memoryWrite", "write nodes and edges as one commit (idempotent)",
                                    "#/components/schemas/WriteRequest", "#/components/schemas/WriteResponse",
                                    {"409": _error("conflict: a unique key (client_id, edge id) is taken")})},
            C.RECALL: {"post": _post("memoryRecall", "recall a subgraph for a query embedding",
                                     "#/components/schemas/RecallRequest", "#/components/schemas/RecallResponse")},
            C.RECALL_TEXT: {"post": _post(
                "memoryRecallText", "recall for a query text (embedded server-side)",
                "#/components/schemas/RecallTextRequest", "#/components/schemas/RecallTextResponse",
                {"502": _error("upstream_embedding_bad_response"),
                 "503": _error("upstream_embedding_unavailable / service_unavailable", retry_after=True)})},
        },
        "components": {
            "schemas": {
                "WriteRequest": to_json_schema(WRITE_REQUEST),
                "RecallRequest": to_json_schema(RECALL_REQUEST),
                "RecallTextRequest": to_json_schema(RECALL_TEXT_REQUEST),
                "JsonValue": json_value,
                "Error": _error_schema(),
                **_responses(),
            },
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256)"},
            },
        },
        "security": [{}, {"apiKey": []}, {"bearer": []}],
    }

