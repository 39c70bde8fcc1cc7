"""Unit tests of the API's pure parts: number formatting, hashes, validation, text handling, buckets, scoring, OpenAPI.

No server here; the HTTP behaviour is in test_api_http.py / test_api_errors.py / test_api_limits_auth.py.
"""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import numpy as np
import pytest

from memload import contract as C
from memload.embedder import fake_embed
from memload.identity import commit_hash, js_number, js_vector_literal, outbox_job_key, sha256_hex, stable_stringify
from memory_api.embed_cache import LruTtlCache, QueryEmbedder, QueryVector
from memory_api.errors import ApiError
from memory_api.openapi import build_openapi, to_json_schema
from memory_api.ratelimit import TokenBucketLimiter
from memory_api.recall import Edge, edge_budgets, oversample, spread_activation
from memory_api.schema import RECALL_REQUEST, RECALL_TEXT_REQUEST, WRITE_REQUEST
from memory_api.text import normalize_text, redact_pii
from memory_api.validation import validate


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"), (0.5, "0.5"), (-0.0, "0"), (1e-5, "0.00001"), (1.2345e-5, "0.000012345"), (1e-7, "1e-7"),
        (1e21, "1e+21"), (1e20, "100000000000000000000"), (0.1 + 0.2, "0.30000000000000004"), (5e-324, "5e-324"),
        (2**60, "1152921504606847000"), (-0.5818073251284659, "-0.5818073251284659"), (True, "true"),
    ],
)
def test_js_number_matches_javascript(value: float, expected: str) -> None:
    assert js_number(value) == expected


def test_stable_stringify_and_commit_hash_keep_null_versions() -> None:
    assert stable_stringify({"b": 1.0, "a": [None, "x"], "c": {"z": True}}) == '{"a":[null,"x"],"b":1,"c":{"z":true}}'
    diff = {"redaction": {}, "nodes": [], "edges": []}
    got = commit_hash(parent_hash="", input_sha256="ab", diff=diff, scope_key="s", actor="system", model_version=None,
                      prompt_version=None)
    payload = ('{"actor":"system","diffSha":"' + sha256_hex('{"edges":[],"nodes":[],"redaction":{}}')
               + '","inputSha":"ab","model_version":null,"parentHash":"","prompt_version":null,"scope":"s"}')
    assert got == sha256_hex(payload)


def test_outbox_job_key_formula() -> None:
    payload = {"nodes": [{"id": "n", "text": "t"}]}
    key, psha = outbox_job_key(scope_key="s", commit_id="c", event_type="embed_nodes", payload=payload)
    assert psha == sha256_hex('{"nodes":[{"id":"n","text":"t"}]}')
    expected = '{"commit_id":"c","event_type":"embed_nodes","payloadSha":"' + psha + '","scope":"s","v":1}'
    assert key == sha256_hex(expected)


def test_query_vector_literal_is_javascript_formatted() -> None:
    v = fake_embed("memory graph perf")
    assert v[:2] == [-0.5818073251284659, -0.30071956058964133]
    lit = js_vector_literal(v)
    assert lit.startswith("[-0.5818073251284659,-0.30071956058964133,") and "e-0" not in lit
    assert QueryVector.from_values(v).query_sha256 == sha256_hex(lit)


def test_vector_literal_fast_path_equals_the_per_number_formatting() -> None:
    """The orjson fast path must lay out every double exactly as js_number (JavaScript's Number#toString)."""
    rng = np.random.default_rng(7)
    vals = [float(x) for x in rng.uniform(-1, 1, 20_000)]
    vals += [float(x) for x in 10 ** rng.uniform(-9, 23, 20_000) * rng.choice([-1, 1], 20_000)]
    vals += [float(x) for x in rng.uniform(-1, 1, 5_000).astype(np.float32)]
    vals += [1.0, -0.0, 0.0, 5e-324, 1e-4, 9.999999999999999e-05, 1e16, 1e21, 2.0**60, float("nan"), float("inf")]
    assert js_vector_literal(vals) == "[" + ",".join(js_number(v) for v in vals) + "]"


def test_normalize_clamp_and_redaction() -> None:
    assert normalize_text("  a \n\t b  ", 100) == "a b"
    assert normalize_text("abcdef", 4) == "abc…"
    counts: dict[str, int] = {}
    out = redact_pii("mail a.b@example.com ssn 123-45-6789 ip 10.0.0.1 call (555) 123-4567", counts)
    assert "example.com" not in out and "123-45-6789" not in out and "10.0.0.1" not in out and "4567" not in out
    assert counts == {"email": 1, "ssn": 1, "ip": 1, "phone": 1}
    assert f"[EMAIL#{sha256_hex('a.b@example.com')[:8]}]" in out
    uuid_text = "id 8e0fcead-9f17-4b9e-bf36-227855512345"
    assert redact_pii(uuid_text) == uuid_text  # the bounded phone pattern leaves uuids alone


def test_validation_defaults_strip_unknown_and_no_coercion() -> None:
    out = validate(RECALL_REQUEST, {"query_embedding": [0.0] * 1536, "junk": 1, "limit": 20.0})
    assert "junk" not in out and out["limit"] == 20 and isinstance(out["limit"], int)
    assert out["max_edges"] == 100 and out["neighborhood_hops"] == 2 and out["min_edge_weight"] == 0.0
    with pytest.raises(ApiError) as e:
        validate(RECALL_REQUEST, {"query_embedding": [0.0] * 1536, "limit": "20"})
    assert e.value.status == 400 and e.value.code == "invalid_request"
    assert e.value.issues == [{"path": "limit", "message": "Expected number, received string"}]
    assert e.value.message.startswith("limit:")


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"input_text": "x", "nodes": [{"type": "event", "salience": 2}]}, "nodes.0.salience", "invalid_request"),
        ({"input_text": "x", "nodes": [{"type": "bogus"}]}, "nodes.0.type", "invalid_request"),
        ({"input_text": "x", "nodes": [{"type": "event", "embedding": [0.1] * 3}]}, "nodes.0.embedding",
         "invalid_request"),
        ({"input_text": "x", "nodes": [{"type": "event", "salience": True}]}, "nodes.0.salience", "invalid_request"),
        ({"nodes": []}, "", "invalid_request"),
        ({"input_text": "x", "edges": [{"type": "part_of", "src": {}, "dst": {"client_id": "a"}}]}, "edges.0.src",
         "invalid_request"),
        ({"input_text": "x", "tenant_id": "bad tenant"}, "tenant_id", "invalid_tenant_id"),
        ({"input_text": "x", "scope": "tenant:x"}, "scope", "invalid_scope"),
        ({"input_text": "x", "input_sha256": "ABC"}, "input_sha256", "invalid_request"),
        ({"input_text": "a\x00b"}, "input_text", "invalid_request"),
        ({"input_text": "x", "nodes": [{"type": "event", "slots": {"k": ["\x00"]}}]}, "nodes.0.slots",
         "invalid_request"),
        ([1, 2], "", "invalid_request"),
    ],
)
def test_write_validation_names_the_field(body: object, path: str, code: str) -> None:
    with pytest.raises(ApiError) as e:
        validate(WRITE_REQUEST, body)
    assert e.value.code == code
    assert e.value.issues and e.value.issues[0]["path"] == path
    assert e.value.message.startswith(f"{path or '(body)'}:")


def test_token_bucket_math() -> None:
    b = TokenBucketLimiter(rate_per_sec=2.0, burst=2.0, ttl_ms=600_000)
    assert b.check("k").allowed and b.check("k").allowed
    denied = b.check("k")
    assert not denied.allowed and 1 <= denied.retry_after_ms <= 500
    assert b.check("other").allowed  # buckets are per key


def test_budgets_and_spread_activation() -> None:
    assert edge_budgets(100) == (500, 500, 500)
    assert edge_budgets(5) == (25, 50, 50)
    assert oversample(20) == 100 and oversample(200) == 1000
    seeds = [{"id": "s", "similarity": 0.8, "salience": 0.4}]
    nodes = {"s": {"confidence": 0.9, "salience": 0.4}, "t": {"confidence": 0.5, "salience": 0.5}}
    edges = [Edge("e", "part_of", "s", "t", 0.75, 0.75, None)]
    ranked = spread_activation(seeds, nodes, edges, hops=2)
    a_s = 0.75 * 0.8 + 0.25 * 0.4
    a_t = a_s * 0.9 * 0.75 * 0.75 * 0.5
    assert [r["id"] for r in ranked] == ["s", "t"]
    assert ranked[0]["activation"] == pytest.approx(a_s) and ranked[1]["activation"] == pytest.approx(a_t)
    assert ranked[1]["score"] == pytest.approx(0.7 * a_t + 0.15 * 0.5 + 0.15 * 0.5)


def _spread_reference(seeds: list[dict], nodes: dict, edges: list[Edge], hops: int) -> list[dict]:
    """Aionis's loop transcribed literally: the optimised spread_activation must equal it bit for bit,
    ties included (the order of equal scores is the order nodes were first activated)."""
    act: dict[str, float] = {}
    for s in seeds:
        act[s["id"]] = max(0.0, min(1.0, 0.75 * s["similarity"] + 0.25 * s["salience"]))
    adj: dict[str, list[Edge]] = {}
    for e in edges:
        adj.setdefault(e.src, []).append(e)
        adj.setdefault(e.dst, []).append(e)
    for _ in range(hops):
        nxt = dict(act)
        for nid, a in act.items():
            for e in adj.get(nid, ()):
                other = e.dst if e.src == nid else e.src
                add = a * C.EDGE_TYPE_WEIGHT.get(e.type, 0.6) * e.weight * e.confidence * C.ACTIVATION_DAMPING
                nxt[other] = max(nxt.get(other, 0.0), add)
        for k, v in nxt.items():
            act[k] = max(act.get(k, 0.0), v)
    scored = []
    for nid, a in act.items():
        n = nodes.get(nid)
        conf = n["confidence"] if n is not None else 0.5
        sal = n["salience"] if n is not None else 0.5
        scored.append({"id": nid, "activation": a, "score": 0.7 * a + 0.15 * conf + 0.15 * sal})
    scored.sort(key=lambda r: -r["score"])
    return scored


@pytest.mark.parametrize("seed", range(25))
def test_spread_activation_equals_the_literal_port(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"n{i}" for i in range(int(rng.integers(5, 60)))]
    pick = [0.0, 0.25, 0.5, 0.75, 1.0, float(rng.uniform())]  # few values: many ties, zero weights too
    edges = []
    for k in range(int(rng.integers(0, 150))):
        a, b = rng.choice(len(ids), 2, replace=False)
        edges.append(Edge(f"e{k}", str(rng.choice(["part_of", "derived_from", "related_to", "other"])), ids[a],
                          ids[b], float(rng.choice(pick)), float(rng.choice(pick)), None))
    seeds = [{"id": i, "similarity": float(rng.choice(pick)), "salience": float(rng.choice(pick))}
             for i in rng.choice(ids, int(rng.integers(1, 8)), replace=False).tolist()]
    nodes = {i: {"confidence": float(rng.choice(pick)), "salience": float(rng.choice(pick))}
             for i in ids if rng.uniform() < 0.9}
    for hops in (1, 2):
        assert spread_activation(seeds, nodes, edges, hops) == _spread_reference(seeds, nodes, edges, hops)


def test_embed_cache_single_flight_and_lru() -> None:
    calls = 0

    async def slow(text: str) -> list[float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return fake_embed(text)

    async def main() -> None:
        emb = QueryEmbedder(2, 600_000, compute=slow)
        results = await asyncio.gather(*(emb.embed("q") for _ in range(8)))
        assert calls == 1 and all(r[0] is results[0][0] for r in results)
        assert (await emb.embed("q"))[1] is True  # cached
        await emb.embed("a")
        await emb.embed("b")  # evicts "q" (max 2)
        assert len(emb.cache) == 2
        await emb.embed("q")
        assert calls == 4

    asyncio.run(main())
    c = LruTtlCache(10, ttl_s=-1)
    c.set("k", QueryVector.from_values([0.0] * 1536))
    assert c.get("k") is None  # expired


def test_openapi_is_valid_and_agrees_with_the_validator() -> None:
    doc = build_openapi()
    assert doc["openapi"].startswith("3.1")
    for path in (C.WRITE, C.RECALL, C.RECALL_TEXT):
        responses = doc["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "429"} <= set(responses)
        assert "Retry-After" in responses["429"]["headers"]
    json.dumps(doc)  # serialisable
    schemas = doc["components"]["schemas"]

    def checker(name: str) -> jsonschema.Draft202012Validator:
        jsonschema.Draft202012Validator.check_schema(schemas[name])
        return jsonschema.Draft202012Validator({**schemas[name], "$defs": {}, "components": doc["components"]})

    cases = [
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x"}),
        (WRITE_REQUEST, "WriteRequest", {"input_sha256": "a" * 64, "nodes": [{"type": "event", "client_id": "c"}]}),
        (WRITE_REQUEST, "WriteRequest", {"nodes": []}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "  "}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "tenant_id": "-bad"}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "tenant_id": " ok "}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "scope": "tenant:z"}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "nodes": [{"type": "event", "embedding": [1] * 1536}]}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "nodes": [{"type": "event", "embedding": [1] * 1535}]}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "nodes": [{"type": "event", "id": "not-a-uuid"}]}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "edges": [{"type": "part_of", "src": {"id": ""},
                                                                        "dst": {"client_id": "b"}}]}),
        (WRITE_REQUEST, "WriteRequest", {"input_text": "x", "nodes": [{"type": "event", "slots": {"a\x00": 1}}]}),
        (RECALL_REQUEST, "RecallRequest", {"query_embedding": [0.5] * 1536, "limit": 200}),
        (RECALL_REQUEST, "RecallRequest", {"query_embedding": [0.5] * 1536, "limit": 201}),
        (RECALL_REQUEST, "RecallRequest", {"query_embedding": [0.5] * 1536, "max_edges": 101}),
        (RECALL_REQUEST, "RecallRequest", {"query_embedding": [0.5] * 1536, "limit": 1.5}),
        (RECALL_REQUEST, "RecallRequest", {"query_embedding": [0.5] * 1536, "min_edge_weight": -0.1}),
        (RECALL_TEXT_REQUEST, "RecallTextRequest", {"query_text": ""}),
        (RECALL_TEXT_REQUEST, "RecallTextRequest", {"query_text": "q", "include_meta": "yes"}),
        (RECALL_TEXT_REQUEST, "RecallTextRequest", {"query_text": "q", "neighborhood_hops": 3}),
        (RECALL_TEXT_REQUEST, "RecallTextRequest", {"query_text": "q", "consumer_agent_id": "a"}),
    ]
    for spec, name, body in cases:
        schema_ok = checker(name).is_valid(body)
        try:
            validate(spec, body)
            server_ok = True
        except ApiError:
            server_ok = False
        assert schema_ok == server_ok, (name, body, schema_ok, server_ok)


def test_uuid_and_embedding_schema_shapes() -> None:
    node = to_json_schema(WRITE_REQUEST)["properties"]["nodes"]["items"]
    assert node["properties"]["embedding"]["minItems"] == node["properties"]["embedding"]["maxItems"] == 1536
    assert re.search(node["properties"]["id"]["pattern"], "8e0fcead-9f17-4b9e-bf36-22785a1dd144")
