"""Every client mistake is a 4xx with the envelope and a message naming the field, and writes nothing (checked on the
app in this process, through Starlette's test client, against the real database); a real server fault is a 500
`internal_error` logged with the request id, and debug embeddings are allowed from loopback (checked on a real API
process: its log and its socket peer)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from memload.embedder import fake_embed
from tests.support.api import asgi_call, in_process_api

if TYPE_CHECKING:
    from starlette.testclient import TestClient

TABLES = ("memory_commits", "memory_nodes", "memory_edges", "memory_outbox", "memory_rule_defs")


def call(base: str, path: str, body: Any = None, *, raw: bytes | None = None, ctype: str = "application/json",
         method: str = "POST", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, headers={"content-type": ctype, **(headers or {})},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"null")


def counts(url: str, scopes: list[str]) -> dict[str, int]:
    """Row counts of the scopes a test touches (not the whole database: other suites share it)."""
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE scope = ANY(%s)", (scopes,)).fetchone()[0]
                for t in TABLES}


def test_bad_inputs_are_4xx_envelopes_and_change_nothing(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memory_api")
    with in_process_api(db_url, tenant_write_rps="1000", tenant_write_burst="1000") as client:  # ~40 writes: no 429
        _bad_inputs(client, db_url)
    logged = caplog.text
    assert "Traceback" not in logged and "unhandled error" not in logged
    assert not [r for r in caplog.records if r.name.startswith("memory_api") and r.levelno >= logging.ERROR]


def _bad_inputs(base: TestClient, db_url: str) -> None:
    call = asgi_call
    scope, other = f"t_err_{uuid.uuid4().hex[:8]}", f"t_err_o_{uuid.uuid4().hex[:8]}"
    vec = fake_embed("x")
    # Fixtures for the reference-type mistakes (written before counting).
    st, _, w_other = call(base, "/v1/memory/write", {"scope": other, "input_text": "o",
                                                      "nodes": [{"client_id": "o1", "type": "event"}]})
    assert st == 200
    other_id = w_other["nodes"][0]["id"]
    st, _, w_edge = call(base, "/v1/memory/write", {
        "scope": scope, "input_text": "base", "nodes": [{"client_id": "a", "type": "event"},
                                                         {"client_id": "b", "type": "event"}],
        "edges": [{"id": str(uuid.UUID(int=7)), "type": "related_to", "src": {"client_id": "a"},
                   "dst": {"client_id": "b"}}]})
    assert st == 200, w_edge
    a_id, b_id = w_edge["nodes"][0]["id"], w_edge["nodes"][1]["id"]
    with psycopg.connect(db_url) as conn:  # a node whose client_id maps to another id (as a bulk loader makes)
        commit = conn.execute("SELECT id FROM memory_commits WHERE scope=%s", (scope,)).fetchone()[0]
        conn.execute("INSERT INTO memory_nodes (id, scope, type, client_id, commit_id) "
                     "VALUES (%s, %s, 'event', 'taken', %s)", (str(uuid.uuid4()), scope, commit))
    touched = [scope, other, "default"]  # cases without a scope target the default scope
    before = counts(db_url, touched)

    big = b'{"input_text":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    w = "/v1/memory/write"
    cases: list[tuple[str, dict[str, Any], int, str, str]] = [
        # (path, call kwargs, status, error code, text the message must contain)
        (w, {"raw": b'{"input_text": "x",'}, 400, "invalid_json", "not valid JSON"),
        (w, {"raw": b""}, 400, "invalid_json", "empty"),
        (w, {"raw": b'{"input_text":"x","nodes":[{"type":"event","salience":NaN}]}'}, 400, "invalid_json", "JSON"),
        (w, {"raw": b'{"input_text":"x","nodes":[{"type":"event","salience":Infinity}]}'}, 400, "invalid_json",
         "JSON"),
        (w, {"raw": b'{"input_text":"x","nodes":[{"type":"event","salience":1e400}]}'}, 400, "invalid_json", "JSON"),
        (w, {"body": {"input_text": "x"}, "ctype": "text/plain"}, 415, "unsupported_media_type", "application/json"),
        (w, {"body": {"input_text": "x"}, "ctype": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type", "Content-Type"),
        (w, {"raw": big}, 413, "payload_too_large", "exceeds"),
        (w, {"body": [1, 2]}, 400, "invalid_request", "(body)"),
        (w, {"body": {"nodes": []}}, 400, "invalid_request", "input_text or input_sha256"),
        (w, {"body": {"input_text": "x", "nodes": "n"}}, 400, "invalid_request", "nodes: Expected array"),
        (w, {"body": {"input_text": "x", "nodes": [{"type": "event", "salience": 1.5}]}}, 400, "invalid_request",
         "nodes.0.salience"),
        (w, {"body": {"input_text": "x", "nodes": [{"type": "event", "confidence": "0.5"}]}}, 400,
         "invalid_request", "nodes.0.confidence"),
        (w, {"body": {"input_text": "x", "nodes": [{"type": "memo"}]}}, 400, "invalid_request", "nodes.0.type"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"type": "event", "embedding": [0.1] * 1535}]}},
         400, "invalid_request", "nodes.0.embedding"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"type": "event", "embedding": [*vec[:-1], "1"]}]}},
         400, "invalid_request", "nodes.0.embedding.1535"),
        (w, {"body": {"scope": scope, "input_text": "x", "edges": [
            {"type": "part_of", "src": {"client_id": "ghost"}, "dst": {"id": a_id}}]}}, 400, "unknown_client_id_ref",
         "edges.0.src.client_id"),
        (w, {"body": {"scope": scope, "input_text": "x", "edges": [
            {"type": "part_of", "src": {"id": a_id}, "dst": {"id": other_id}}]}}, 400, "cross_scope_edge",
         "edges.0.dst.id"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"client_id": "n", "type": "event"}], "edges": [
            {"scope": other, "type": "part_of", "src": {"client_id": "n"}, "dst": {"id": a_id}}]}}, 400,
         "cross_scope_edge", "edges.0.scope"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"client_id": "n", "type": "event",
                                                                      "scope": other}]}}, 400, "cross_scope_node",
         "nodes.0.scope"),
        (w, {"body": {"scope": scope, "input_text": "x", "edges": [
            {"type": "part_of", "src": {"id": a_id}, "dst": {"id": str(uuid.uuid4())}}]}}, 400,
         "edge_endpoint_not_found", "edges.0.dst.id"),
        (w, {"body": {"scope": scope, "input_text": "x", "edges": [
            {"type": "part_of", "src": {"id": a_id}, "dst": {"id": a_id}}]}}, 400, "self_loop_edge", "edges.0"),
        (w, {"body": {"scope": scope, "input_text": "x", "parent_commit_id": str(uuid.uuid4())}}, 400,
         "parent_commit_not_found", "parent_commit_id"),
        (w, {"body": {"scope": scope, "input_text": "x", "parent_commit_id": "nope"}}, 400, "invalid_request",
         "parent_commit_id: Invalid uuid"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"client_id": "a", "id": b_id,
                                                                      "type": "event"}]}}, 400,
         "client_id_id_mismatch", "nodes.0.id"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"type": "rule", "text_summary": "r"}]}}, 400,
         "invalid_private_rule_owner", "owner"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"type": "rule", "memory_lane": "shared",
                                                                      "slots": {"rule_scope": "agent"}}]}}, 400,
         "invalid_rule_target", "target_agent_id"),
        (w, {"body": {"scope": scope, "input_text": "bad\u0000text"}}, 400, "invalid_request", "input_text"),
        (w, {"body": {"scope": scope, "input_text": "   "}}, 400, "invalid_request", "input_text"),
        (w, {"body": {"tenant_id": "no spaces allowed", "input_text": "x"}}, 400, "invalid_tenant_id", "tenant_id"),
        (w, {"body": {"scope": "tenant:evil", "input_text": "x"}}, 400, "invalid_scope", "scope"),
        (w, {"body": {"scope": scope, "input_text": "x", "nodes": [{"client_id": "taken", "type": "event"}]}}, 409,
         "conflict", "client_id"),
        (w, {"body": {"scope": scope, "input_text": "y", "edges": [
            {"id": str(uuid.UUID(int=7)), "type": "related_to", "src": {"id": b_id}, "dst": {"id": a_id}}]}}, 409,
         "conflict", "edges"),
        ("/v1/memory/recall", {"body": {"scope": scope, "query_embedding": [0.1] * 3}}, 400, "invalid_request",
         "query_embedding"),
        ("/v1/memory/recall", {"body": {"scope": scope}}, 400, "invalid_request", "query_embedding: Required"),
        ("/v1/memory/recall", {"body": {"query_embedding": vec, "limit": 201}}, 400, "invalid_request", "limit"),
        ("/v1/memory/recall", {"body": {"query_embedding": vec, "limit": "20"}}, 400, "invalid_request", "limit"),
        ("/v1/memory/recall", {"body": {"query_embedding": vec, "max_edges": 101}}, 400, "invalid_request",
         "max_edges"),
        ("/v1/memory/recall", {"body": {"query_embedding": vec, "neighborhood_hops": 3}}, 400, "invalid_request",
         "neighborhood_hops"),
        ("/v1/memory/recall", {"body": {"query_embedding": vec, "consumer_agent_id": 5}}, 400, "invalid_request",
         "consumer_agent_id"),
        ("/v1/memory/recall_text", {"body": {"query_text": ""}}, 400, "invalid_request", "query_text"),
        ("/v1/memory/recall_text", {"body": {"query_text": "q", "include_embeddings": True}}, 400,
         "debug_embeddings_requires_return_debug", "return_debug"),
        ("/v1/memory/recall_text", {"body": {"query_text": "q", "include_embeddings": True, "return_debug": True}},
         400, "debug_embeddings_limit_too_high", "limit"),
        ("/v1/memory/nope", {"body": {}}, 404, "not_found", "/v1/memory/nope"),
        (w, {"method": "GET"}, 405, "method_not_allowed", "GET"),
    ]
    failures = []
    for path, kwargs, status, code, text in cases:
        st, headers, body = call(base, path, **kwargs)
        ok = (st == status and isinstance(body, dict) and body.get("error") == code
              and text in body.get("message", "") and "x-request-id" in headers)
        if code == "invalid_request" and ok:
            ok = isinstance(body.get("issues"), list) and all({"path", "message"} <= set(i) for i in body["issues"])
        if not ok:
            failures.append((path, str(kwargs)[:120], st, body))
    assert not failures, "\n".join(map(str, failures))
    assert counts(db_url, touched) == before


def test_debug_embeddings_allowed_from_loopback(start_api: Any) -> None:
    api = start_api()
    scope = f"t_dbg_{uuid.uuid4().hex[:8]}"
    vec = fake_embed("debug me")
    call(api.base_url, "/v1/memory/write", {"scope": scope, "input_text": "d", "nodes": [
        {"client_id": "d", "type": "event", "text_summary": "debug me", "embedding": vec}]})
    st, _, r = call(api.base_url, "/v1/memory/recall", {"scope": scope, "query_embedding": vec, "limit": 5,
                                                         "return_debug": True, "include_embeddings": True})
    assert st == 200, r
    emb = r["debug"]["embeddings"]
    assert len(emb) == 1 and emb[0]["dims"] == 1536 and len(emb[0]["preview"]) == 16
    assert emb[0]["preview"][0] == __import__("pytest").approx(vec[0], rel=1e-6)
    assert r["debug"]["neighborhood_counts"] == {"nodes": 1, "edges": 0}


def test_server_fault_is_500_and_logged_with_request_id(start_api: Any, fresh_db_url: str) -> None:
    api = start_api(database_url=fresh_db_url)
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE memory_recall_audit RENAME TO memory_recall_audit_gone")
    # The audit row is best effort (as Aionis): recall still answers, the failure is logged.
    st, _, body = call(api.base_url, "/v1/memory/recall_text", {"query_text": "x"})
    assert st == 200 and body["seeds"] == []
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE memory_rule_defs RENAME TO memory_rule_defs_gone")
    st, h, body = call(api.base_url, "/v1/memory/recall_text", {"query_text": "x"},
                       headers={"x-request-id": "fault-123"})
    assert st == 500 and body == {"error": "internal_error", "message": "internal error"}
    assert h["x-request-id"] == "fault-123"
    log = api.log()
    assert "recall audit insert failed" in log
    assert "request_id=fault-123" in log and "memory_rule_defs" in log
