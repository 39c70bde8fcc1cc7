"""Tenant isolation under every auth mode.

Tenant B writes nodes, edges and a commit; then tenant A, in the same scope name, with the same client ids and
even B's node ids, tries to read and overwrite them: recall by B's own vectors, writes reusing B's ids, an edge to
B's node, B's commit as parent, and (with auth on) claiming B's tenant in the body or x-tenant-id. A never sees a
B node and B's rows are byte-for-byte unchanged. With auth on: expired or wrongly signed JWTs are refused (401),
and an API key bound to tenant A cannot act for B (403), whatever else the request says.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import psycopg
import pytest

from memload import contract as C
from memload.embedder import fake_embed
from memload.identity import scope_key
from tests.support.reliability import Client, report, row_counts

SECRET = "isolation-secret-" + "0123456789abcdef" * 3
KEYS = {"key-a": {"tenant_id": "iso-a"}, "key-b": {"tenant_id": "iso-b"}}
MODES = ("off", "api_key", "jwt", "api_key_or_jwt")
SCOPE = "shared_name"
TEXTS = ("b secret one", "b secret two", "b secret three")


def token(tenant: str, *, exp_in: int = 300, key: str = SECRET, **extra: Any) -> str:
    return jwt.encode({"tenant_id": tenant, "exp": int(time.time()) + exp_in, **extra}, key, algorithm="HS256")


def creds(mode: str, tenant: str) -> dict[str, str]:
    """Headers that authenticate `tenant` in `mode` (auth off: the tenant is just claimed)."""
    key = "key-a" if tenant == "iso-a" else "key-b"
    if mode == "off":
        return {"x-tenant-id": tenant}
    if mode == "api_key":
        return {"x-api-key": key}
    if mode == "jwt":
        return {"authorization": f"Bearer {token(tenant)}"}
    return {"x-api-key": key} if tenant == "iso-a" else {"authorization": f"Bearer {token(tenant)}"}


def _tampered() -> str:
    """A valid token of iso-a whose claims segment is replaced by iso-b's (the signature no longer matches)."""
    head, _, sig = token("iso-a").split(".")
    return ".".join((head, token("iso-b").split(".")[1], sig))


def scope_rows(conn: psycopg.Connection, key: str) -> dict[str, Any]:
    """Everything stored for one scope key (content included), to compare before/after."""
    out = {}
    for table, order in (("memory_nodes", "id"), ("memory_edges", "id"), ("memory_commits", "id"),
                         ("memory_outbox", "id")):
        rows = conn.execute(f"SELECT to_jsonb(t) - 'last_activated' FROM {table} t WHERE scope = %s ORDER BY {order}",
                            (key,)).fetchall()
        out[table] = [r[0] for r in rows]
    return out


def node_ids(doc: dict[str, Any]) -> set[str]:
    return ({s["id"] for s in doc.get("seeds", [])} | {n["id"] for n in doc.get("subgraph", {}).get("nodes", [])}
            | {r["id"] for r in doc.get("ranked", [])})


@pytest.mark.parametrize("mode", MODES)
def test_tenant_a_never_reads_or_overwrites_tenant_b(mode: str, start_api: Any, db_url: str) -> None:
    env: dict[str, str] = {"memory_auth_mode": mode}
    if mode in ("api_key", "api_key_or_jwt"):
        env["memory_api_keys_json"] = json.dumps(KEYS)
    if mode in ("jwt", "api_key_or_jwt"):
        env["memory_jwt_hs256_secret"] = SECRET
    api = start_api(**env)
    c = Client(api.base_url)
    a, b = creds(mode, "iso-a"), creds(mode, "iso-b")
    scope = f"{SCOPE}_{mode}"
    key_a, key_b = scope_key(scope, "iso-a"), scope_key(scope, "iso-b")

    # --- tenant B's data
    nodes = [{"client_id": f"n{i}", "type": "event", "text_summary": t, "embedding": fake_embed(t),
              "memory_lane": "shared"} for i, t in enumerate(TEXTS)]
    edges = [{"type": "related_to", "src": {"client_id": "n0"}, "dst": {"client_id": "n1"}, "weight": 0.9}]
    wb = c.post(C.WRITE, {"scope": scope, "input_text": "b", "nodes": nodes, "edges": edges}, b)
    assert wb.status == 200, wb.body
    b_doc = wb.json()
    b_ids = [n["id"] for n in b_doc["nodes"]]
    with psycopg.connect(db_url) as conn:
        b_before = scope_rows(conn, key_b)
        counts_before = row_counts(conn)
    assert len(b_before["memory_nodes"]) == 3 and len(b_before["memory_edges"]) == 1

    attempts: list[tuple[str, int]] = []

    def expect(name: str, status: int | tuple[int, ...], resp: Any, code: str | None = None) -> Any:
        allowed = status if isinstance(status, tuple) else (status,)
        assert resp.status in allowed, f"{name}: {resp.status} {resp.body[:300]!r}"
        if code is not None:
            assert resp.json()["error"] == code, f"{name}: {resp.body[:300]!r}"
        attempts.append((name, resp.status))
        return resp.json()

    # --- A reads with B's own query vectors and texts: never a B node
    for t in TEXTS:
        for route, q in ((C.RECALL, {"query_embedding": fake_embed(t)}), (C.RECALL_TEXT, {"query_text": t})):
            doc = expect(f"recall {route}", 200, c.post(route, {"scope": scope, "limit": 50, "include_meta": True,
                                                                 "return_debug": True, **q}, a))
            assert not node_ids(doc) & set(b_ids), doc
            assert doc.get("tenant_id", "iso-a") == "iso-a" and doc["scope"] in (scope, key_a)

    # --- A links to B's node or commit (before A has nodes of its own with those ids)
    expect("edge to B's node", 400, c.post(C.WRITE, {
        "scope": scope, "input_text": "a3", "nodes": [{"client_id": "x", "type": "event"}],
        "edges": [{"type": "part_of", "src": {"client_id": "x"}, "dst": {"id": b_ids[2]}}]}, a),
        C.E_EDGE_ENDPOINT_NOT_FOUND)  # not "cross_scope_edge": that would tell A the node exists
    expect("B's commit as parent", 400, c.post(C.WRITE, {
        "scope": scope, "input_text": "a4", "parent_commit_id": b_doc["commit_id"]}, a), C.E_PARENT_COMMIT_NOT_FOUND)

    # --- A writes over B's ids and client ids: lands in A's scope, B untouched
    clash = [{"id": b_ids[i], "type": "event", "text_summary": "A was here", "embedding": fake_embed("a"),
              "memory_lane": "shared"} for i in range(len(nodes))]
    wa = expect("write with B's node ids", 200, c.post(C.WRITE, {"scope": scope, "input_text": "a1", "nodes": clash},
                                                        a))
    assert [n["id"] for n in wa["nodes"]] == b_ids and wa["tenant_id"] == "iso-a"
    wa2 = expect("write with B's client ids", 200, c.post(C.WRITE, {
        "scope": scope, "input_text": "a2", "nodes": [{**n, "text_summary": "A again"} for n in nodes]}, a))
    assert {n["id"] for n in wa2["nodes"]}.isdisjoint(b_ids)  # ids derive from the tenant's scope key

    # --- A claims B's tenant: with a principal that is a 403, whatever the channel
    if mode != "off":
        for name, body, hdrs in (("body tenant", {"tenant_id": "iso-b"}, a),
                                 ("x-tenant-id", {}, {**a, "x-tenant-id": "iso-b"}),
                                 ("padded body tenant", {"tenant_id": " iso-b "}, a)):
            doc = expect(f"claim B via {name} (write)", 403, c.post(C.WRITE, {
                "scope": scope, "input_text": "steal", "nodes": [{"client_id": "n0", "type": "event",
                                                                   "text_summary": "stolen"}], **body}, hdrs),
                C.E_IDENTITY_MISMATCH)
            assert doc["details"]["expected"] == "iso-a"
            expect(f"claim B via {name} (recall)", 403, c.post(C.RECALL_TEXT, {"scope": scope, "query_text": TEXTS[0],
                                                                                **body}, hdrs), C.E_IDENTITY_MISMATCH)
        expect("no credentials", 401, c.post(C.RECALL_TEXT, {"scope": scope, "query_text": "x", "tenant_id": "iso-b"}),
               C.E_UNAUTHORIZED)
    if mode in ("jwt", "api_key_or_jwt"):
        for name, tok in (("expired", token("iso-b", exp_in=-120)), ("wrong signature", token("iso-b", key="x" * 40)),
                          ("not yet valid", token("iso-b", nbf=int(time.time()) + 600)),
                          ("alg none", jwt.encode({"tenant_id": "iso-b"}, None, algorithm="none")),
                          ("A's signature on B's claims", _tampered())):
            hdrs = {"authorization": f"Bearer {tok}"}
            expect(f"JWT {name} (write)", 401, c.post(C.WRITE, {"scope": scope, "input_text": "jwt", "nodes": [
                {"client_id": "n0", "type": "event", "text_summary": "overwritten"}]}, hdrs), C.E_UNAUTHORIZED)
            expect(f"JWT {name} (recall)", 401, c.post(C.RECALL_TEXT, {"scope": scope, "query_text": TEXTS[0]}, hdrs),
                   C.E_UNAUTHORIZED)
    if mode in ("api_key", "api_key_or_jwt"):
        expect("key of A, JWT of B", 403, c.post(
            C.WRITE, {"scope": scope, "input_text": "mix", "tenant_id": "iso-b"},
            {"x-api-key": "key-a", "authorization": f"Bearer {token('iso-b')}"}))

    # --- B's rows are exactly as before; B still reads its own nodes and nothing of A's
    with psycopg.connect(db_url) as conn:
        assert scope_rows(conn, key_b) == b_before
        a_rows = scope_rows(conn, key_a)
        counts_after = row_counts(conn)
    assert len(a_rows["memory_nodes"]) == 6  # A's own writes went to A's scope
    a_ids = {r["id"] for r in a_rows["memory_nodes"]}
    rb = c.post(C.RECALL, {"scope": scope, "query_embedding": fake_embed(TEXTS[0]), "include_meta": True}, b)
    assert rb.status == 200
    got = rb.json()
    assert got["seeds"][0]["id"] == b_ids[0] and got["seeds"][0]["text_summary"] == TEXTS[0]
    assert node_ids(got) <= set(b_ids)  # A's nodes that reuse B's ids live in A's scope: check the content too
    assert {s["text_summary"] for s in got["seeds"]} <= set(TEXTS)
    report(f"isolation_{mode}", requests_as_a=len(attempts), refused=sum(st >= 400 for _, st in attempts),
           b_rows_changed=0, b_nodes_seen_by_a=0,
           a_nodes=len(a_ids), written=counts_after["memory_nodes"] - counts_before["memory_nodes"])
