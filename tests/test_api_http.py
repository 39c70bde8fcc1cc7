"""The API over real HTTP against real PostgreSQL: write -> recall, idempotent retries, deterministic ids, outbox,
tenant isolation, zero-seed recall and its audit row, request ids and Server-Timing, the scope-path planner design.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from typing import Any

import psycopg
import pytest

from memload.embedder import fake_embed
from memload.identity import commit_hash, outbox_job_key, sha256_hex, stable_uuid
from tests.support.api import asgi_call, in_process_api


def call(base: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, method: str = "POST") -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"null")


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def q1(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def test_write_then_recall_finds_it_and_retry_is_idempotent(start_api: Any, db_url: str) -> None:
    api = start_api()
    scope = uniq("t_wr")
    vec = fake_embed("the cat sat on the mat")
    body = {
        "scope": scope,
        "input_text": "Cat report from ops@example.com",
        "memory_lane": "shared",
        "nodes": [
            {"client_id": "ev1", "type": "event", "text_summary": "the cat sat on the mat", "embedding": vec},
            {"client_id": "top1", "type": "topic", "title": "cats", "embedding": fake_embed("cats")},
            {"client_id": "ev2", "type": "event", "text_summary": "dog barked"},
        ],
        "edges": [
            {"type": "part_of", "src": {"client_id": "ev1"}, "dst": {"client_id": "top1"}, "weight": 0.9},
            {"type": "derived_from", "src": {"client_id": "top1"}, "dst": {"client_id": "ev1"}},
        ],
    }
    st, _, w1 = call(api.base_url, "/v1/memory/write", body)
    assert st == 200, w1
    assert set(w1) >= {"tenant_id", "scope", "commit_id", "commit_hash", "nodes", "edges"}
    assert w1["scope"] == scope and w1["tenant_id"] == "default"
    assert w1["embedding_backfill"] == {"enqueued": True, "pending_nodes": 1}
    assert w1["topic_cluster"] == {"enqueued": True}
    counts_sql = "SELECT (SELECT count(*) FROM memory_nodes WHERE scope=%s) * 1000 + " \
                 "(SELECT count(*) FROM memory_edges WHERE scope=%s) * 10 + (SELECT count(*) FROM memory_commits " \
                 "WHERE scope=%s)"
    before = q1(db_url, counts_sql, scope, scope, scope)
    assert before == 3 * 1000 + 2 * 10 + 1

    st, _, w2 = call(api.base_url, "/v1/memory/write", body)
    assert st == 200 and w2["commit_id"] == w1["commit_id"] and w2["commit_hash"] == w1["commit_hash"]
    assert w2["nodes"] == w1["nodes"] and w2["edges"] == w1["edges"]
    assert q1(db_url, counts_sql, scope, scope, scope) == before
    assert q1(db_url, "SELECT count(*) FROM memory_outbox WHERE scope=%s AND event_type='embed_nodes'", scope) == 1

    st, _, r = call(api.base_url, "/v1/memory/recall",
                    {"scope": scope, "query_embedding": vec, "limit": 5, "include_meta": True})
    assert st == 200, r
    ev1 = w1["nodes"][0]["id"]
    top1 = w1["nodes"][1]["id"]
    assert r["seeds"][0]["id"] == ev1 and r["seeds"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert set(r["seeds"][0]) == {"id", "type", "title", "text_summary", "tier", "salience", "confidence",
                                  "similarity"}
    assert {n["id"] for n in r["subgraph"]["nodes"]} == {ev1, top1}  # ev2 is pending: never recalled
    assert {(e["from_id"], e["to_id"]) for e in r["subgraph"]["edges"]} == {(ev1, top1), (top1, ev1)}
    assert all("embedding" not in n for n in r["subgraph"]["nodes"])
    assert r["subgraph"]["nodes"][0]["embedding_status"] == "ready"
    assert r["subgraph"]["nodes"][0]["created_at"].endswith("Z")
    assert "# Supporting Events / Evidence" in r["context"]["text"] and ev1 in r["context"]["text"]
    assert r["ranked"][0]["id"] == ev1

    st, _, rt = call(api.base_url, "/v1/memory/recall_text", {"scope": scope, "query_text": "the  cat sat on the mat"})
    assert st == 200 and rt["seeds"][0]["id"] == ev1
    assert rt["query"] == {"text": "the cat sat on the mat", "embedding_provider": "fake:deterministic"}
    audits = q1(db_url, "SELECT count(*) FROM memory_recall_audit WHERE scope=%s", scope)
    assert audits == 2
    q_sha = q1(db_url, "SELECT query_sha256 FROM memory_recall_audit WHERE scope=%s AND endpoint='recall_text'", scope)
    assert q_sha == sha256_hex("[" + ",".join(_js(v) for v in vec) + "]")


def _js(v: float) -> str:
    from memload.identity import js_number

    return js_number(v)


def test_deterministic_ids_hash_chain_and_outbox_rows(start_api: Any, db_url: str) -> None:
    api = start_api()
    scope, tenant = uniq("t_ids"), uniq("ten")
    key = f"tenant:{tenant}::scope:{scope}"
    node_a = {"type": "event", "text_summary": "alpha"}  # no client_id: id from the node's content
    id_a = stable_uuid(f"{key}:node:" + sha256_hex('{"text_summary":"alpha","type":"event"}'))
    body = {"tenant_id": tenant, "scope": scope, "input_text": "first   input",
            "nodes": [node_a, {"client_id": "b", "type": "event", "text_summary": "beta"}],
            "edges": [{"type": "related_to", "src": {"client_id": "b"}, "dst": {"id": id_a}}]}
    st, _, w = call(api.base_url, "/v1/memory/write", body)
    assert st == 200, w
    id_b = stable_uuid(f"{key}:node:b")
    assert [n["id"] for n in w["nodes"]] == [id_a, id_b]
    edge_id = stable_uuid(f"{key}:edge:first input:related_to:b:{id_a}")
    assert w["edges"] == [{"id": edge_id, "type": "related_to", "src_id": id_b, "dst_id": id_a}]
    diff = {"redaction": {}, "nodes": [
        {"id": id_a, "type": "event", "memory_lane": "private", "producer_agent_id": None, "owner_agent_id": None,
         "owner_team_id": None},
        {"id": id_b, "client_id": "b", "type": "event", "memory_lane": "private", "producer_agent_id": None,
         "owner_agent_id": None, "owner_team_id": None}],
        "edges": [{"id": edge_id, "type": "related_to", "src_id": id_b, "dst_id": id_a}]}
    expected = commit_hash(parent_hash="", input_sha256=sha256_hex("first input"), diff=diff, scope_key=key,
                           actor="system", model_version=None, prompt_version=None)
    assert w["commit_hash"] == expected
    assert q1(db_url, "SELECT scope FROM memory_commits WHERE id=%s", w["commit_id"]) == key

    payload = {"nodes": [{"id": id_a, "text": "alpha"}, {"id": id_b, "text": "beta"}]}
    job_key, psha = outbox_job_key(scope_key=key, commit_id=w["commit_id"], event_type="embed_nodes", payload=payload)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT event_type, job_key, payload_sha256, payload FROM memory_outbox WHERE scope=%s",
                            (key,)).fetchall()
    assert len(rows) == 1
    assert rows[0][:3] == ("embed_nodes", job_key, psha)
    assert rows[0][3] == {**payload, "after_topic_cluster_event_ids": [id_a, id_b]}

    # Child commit: the hash chains on the parent's hash; a missing parent is a 400 (see test_api_errors).
    st, _, w2 = call(api.base_url, "/v1/memory/write", {"tenant_id": tenant, "scope": scope, "input_text": "second",
                                                        "parent_commit_id": w["commit_id"], "model_version": "m1",
                                                        "auto_embed": False})
    assert st == 200
    assert w2["commit_hash"] == commit_hash(parent_hash=expected, input_sha256=sha256_hex("second"),
                                            diff={"redaction": {}, "nodes": [], "edges": []}, scope_key=key,
                                            actor="system", model_version="m1", prompt_version=None)

    # A ready event gets a topic_cluster job right away; auto_embed=false leaves a node failed with the reason.
    st, _, w3 = call(api.base_url, "/v1/memory/write", {
        "tenant_id": tenant, "scope": scope, "input_text": "third", "auto_embed": False,
        "nodes": [{"client_id": "c", "type": "event", "text_summary": "gamma", "embedding": fake_embed("gamma")},
                  {"client_id": "d", "type": "event", "text_summary": "delta"}]})
    assert st == 200 and "embedding_backfill" not in w3 and w3["topic_cluster"] == {"enqueued": True}
    with psycopg.connect(db_url) as conn:
        tc = conn.execute("SELECT payload FROM memory_outbox WHERE scope=%s AND event_type='topic_cluster'",
                          (key,)).fetchall()
        status = dict(conn.execute("SELECT client_id, embedding_status::text || ':' || coalesce(embedding_last_error,"
                                   "'') || ':' || coalesce(embedding_model,'') FROM memory_nodes WHERE scope=%s",
                                   (key,)).fetchall())
    assert tc == [({"event_ids": [stable_uuid(f"{key}:node:c")]},)]
    assert status["c"] == "ready::client" and status["d"] == "failed:auto_embed_disabled_or_no_provider:"
    assert status["b"] == "pending::"


def test_pii_redaction_and_private_lane_visibility(start_api: Any, db_url: str) -> None:
    api = start_api()
    scope = uniq("t_pii")
    vec = fake_embed("secret plan")
    st, _, w = call(api.base_url, "/v1/memory/write", {
        "scope": scope, "input_text": "call 555-123-4567", "owner_agent_id": "agent-a",
        "nodes": [{"client_id": "p", "type": "event", "text_summary": "mail bob@example.com  now", "embedding": vec,
                   "slots": {"contact": "bob@example.com", "n": 1}}]})
    assert st == 200, w
    with psycopg.connect(db_url) as conn:
        summary, slots, lane, owner = conn.execute(
            "SELECT text_summary, slots, memory_lane::text, owner_agent_id FROM memory_nodes WHERE scope=%s",
            (scope,)).fetchone()
        diff = conn.execute("SELECT diff_json FROM memory_commits WHERE scope=%s", (scope,)).fetchone()[0]
    tag = f"[EMAIL#{sha256_hex('bob@example.com')[:8]}]"
    assert summary == f"mail {tag} now" and slots == {"contact": tag, "n": 1}
    assert diff["redaction"] == {"phone": 1, "email": 2}
    assert (lane, owner) == ("private", "agent-a")
    base = {"scope": scope, "query_embedding": vec, "limit": 3}
    assert len(call(api.base_url, "/v1/memory/recall", base)[2]["seeds"]) == 1  # no consumer: no lane filter
    assert len(call(api.base_url, "/v1/memory/recall", {**base, "consumer_agent_id": "agent-a"})[2]["seeds"]) == 1
    other = call(api.base_url, "/v1/memory/recall", {**base, "consumer_agent_id": "agent-b"})[2]
    assert other["seeds"] == [] and "context" not in other


def test_zero_seed_recall_reduced_shape_and_audit_row(start_api: Any, db_url: str) -> None:
    api = start_api()
    scope, tenant = uniq("t_empty"), uniq("ten")
    st, h, r = call(api.base_url, "/v1/memory/recall_text", {"tenant_id": tenant, "scope": scope, "query_text": "x"},
                    headers={"x-request-id": "my-req-42"})
    assert st == 200
    key = f"tenant:{tenant}::scope:{scope}"
    assert {k: r[k] for k in ("scope", "seeds", "subgraph", "ranked")} == {
        "scope": key, "seeds": [], "subgraph": {"nodes": [], "edges": []}, "ranked": []}
    assert "tenant_id" not in r and "context" not in r
    assert h["x-request-id"] == "my-req-42"
    assert re.match(r"total;dur=[0-9.]+, db;dur=[0-9.]+$", h["server-timing"])
    row = None
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT endpoint, seed_count, node_count, edge_count FROM memory_recall_audit "
                           "WHERE scope=%s", (key,)).fetchall()
    assert row == [("recall_text", 0, 0, 0)]
    st, h, _ = call(api.base_url, "/health", method="GET")
    assert st == 200 and uuid.UUID(h["x-request-id"]) and "server-timing" in h
    st, _, doc = call(api.base_url, "/openapi.json", method="GET")
    assert st == 200 and doc["openapi"].startswith("3.1") and "/v1/memory/write" in doc["paths"]


def test_tenant_isolation_default_and_x_tenant_header(start_api: Any) -> None:
    api = start_api()
    scope = uniq("t_iso")
    vec = fake_embed("tenant a only")
    node = {"client_id": "n", "type": "event", "text_summary": "tenant a only", "embedding": vec,
            "memory_lane": "shared"}
    st, _, wa = call(api.base_url, "/v1/memory/write", {"tenant_id": "tenA", "scope": scope, "input_text": "a",
                                                         "nodes": [node]})
    assert st == 200
    ra = call(api.base_url, "/v1/memory/recall", {"scope": scope, "query_embedding": vec},
              headers={"x-tenant-id": "tenA"})[2]
    assert [s["id"] for s in ra["seeds"]] == [wa["nodes"][0]["id"]] and ra["tenant_id"] == "tenA"
    rb = call(api.base_url, "/v1/memory/recall", {"tenant_id": "tenB", "scope": scope, "query_embedding": vec})[2]
    assert rb["seeds"] == []
    rd = call(api.base_url, "/v1/memory/recall", {"scope": scope, "query_embedding": vec})[2]
    assert rd["seeds"] == []  # default tenant: raw scope key, not tenA's


def test_scope_partition_uses_its_hnsw_index_and_scope_path_prevents_starvation(start_api: Any, db_url: str) -> None:
    """A scope with its own partition reads its own HNSW index; in the shared default partition, many nearer
    vectors of another scope starve an unscoped stage 1 (Aionis's; RECALL_SCOPE_PATH=false) but not ours."""
    import numpy as np

    from memory_api.recall_sql import STAGE1_SQL

    own, crowd, lonely = uniq("t_own"), uniq("t_crowd"), uniq("t_lonely")
    query = np.array(fake_embed("starvation query"), dtype=np.float32)
    rng = np.random.default_rng(7)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT memload_partition_ensure_scope(%s)", (own,))
    api = start_api()
    for scope, text in ((own, "own scope node"), (lonely, "far away node")):
        vec = fake_embed(text)
        st, _, w = call(api.base_url, "/v1/memory/write", {"scope": scope, "input_text": text, "nodes": [
            {"client_id": "x", "type": "event", "text_summary": text, "embedding": vec, "memory_lane": "shared"}]})
        assert st == 200, w
    # 300 vectors of another scope, all nearer to the query than the lonely scope's vector (default partition).
    with psycopg.connect(db_url) as conn:
        commit = conn.execute("INSERT INTO memory_commits (scope, input_sha256, commit_hash) VALUES (%s,'x',%s) "
                              "RETURNING id", (crowd, uuid.uuid4().hex)).fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO memory_nodes (id, scope, type, text_summary, embedding, commit_id, memory_lane) "
                "VALUES (%s, %s, 'event', %s, %s::vector, %s, 'shared')",
                [(str(uuid.uuid4()), crowd, f"near {i}", str((query + rng.normal(0, 0.05, 1536)).tolist()), commit)
                 for i in range(300)])
        conn.execute("ANALYZE memory_nodes")
    body = {"scope": lonely, "query_text": "starvation query", "limit": 20}
    scoped = call(api.base_url, "/v1/memory/recall_text", body)[2]
    assert len(scoped["seeds"]) == 1
    shared_like = start_api(recall_scope_path="false")
    starved = call(shared_like.base_url, "/v1/memory/recall_text", body)[2]
    assert starved["seeds"] == [] and starved["scope"] == lonely
    assert len(call(shared_like.base_url, "/v1/memory/recall_text", {**body, "scope": crowd})[2]["seeds"]) == 20

    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_seqscan = off")  # one row: make the planner show the path it has at scale
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + STAGE1_SQL.replace("%(q)s", "%(qt)s"),
            {"qt": str(query.tolist()), "scope": own, "oversample": 100, "limit": 20, "agent": None, "team": None}))
        own_idx = conn.execute(
            "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'hnsw' AND c.relname LIKE '%%ready_hot_warm%%' "
            "AND x.indrelid = memload_partition_name('memory_nodes', %s)::regclass", (own,)).fetchone()[0]
    plan = re.sub(r"'\[[^']*\]'", "'[...]'", plan)
    assert f"Index Scan using {own_idx}" in plan and "memory_nodes_default" not in plan, plan
    assert len(call(api.base_url, "/v1/memory/recall_text", {"scope": own, "query_text": "own scope node"})[2][
        "seeds"]) == 1



def test_inject_delay_is_exact_server_side_sleep(start_api: Any) -> None:
    api = start_api(memload_inject_delay_ms="150")
    import time

    t0 = time.perf_counter()
    st, h, _ = call(api.base_url, "/v1/memory/recall_text", {"scope": uniq("t_delay"), "query_text": "q"})
    elapsed = (time.perf_counter() - t0) * 1000
    total = float(h["server-timing"].split(",")[0].split("=")[1])
    assert st == 200 and elapsed >= 150 and total >= 150
    st, h, _ = call(api.base_url, "/health", method="GET")
    assert float(h["server-timing"].split(",")[0].split("=")[1]) < 100  # health is not delayed


def test_health_and_every_response_identify_the_reference_api(db_url: str) -> None:
    """What the app answers, so checked in this process (test client, real database)."""
    from memload.version import MEMLOAD_VERSION

    with in_process_api(db_url, tenant_write_rps="0.001", tenant_write_burst="1",
                        tenant_write_max_wait_ms="0") as client:
        st, h, body = asgi_call(client, "/health", method="GET")
        assert st == 200 and body == {"ok": True, "server": "memload-reference", "version": MEMLOAD_VERSION}
        assert h["x-memload-api"] == MEMLOAD_VERSION
        write = {"scope": uniq("t_ident"), "input_text": "x", "auto_embed": False}
        seen = [asgi_call(client, "/v1/memory/write", write),  # 200
                asgi_call(client, "/v1/memory/write", write),  # 429 (tenant write bucket of 1 token)
                asgi_call(client, "/v1/memory/recall", {"query_embedding": [1.0]}),  # 400
                asgi_call(client, "/nope", method="GET"),  # 404
                asgi_call(client, "/v1/memory/write", raw=b"{", ctype="text/plain"),  # 415
                asgi_call(client, "/openapi.json", method="GET")]
    assert [s for s, _, _ in seen] == [200, 429, 400, 404, 415, 200]
    assert all(h.get("x-memload-api") == MEMLOAD_VERSION for _, h, _ in seen)
    assert seen[-1][2]["info"]["version"] == MEMLOAD_VERSION
