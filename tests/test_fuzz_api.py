"""Fuzzing the three routes of a real API process.

Bodies are generated with hypothesis from the `/openapi.json` the server serves (mostly valid values, then one
mutation: a dropped key, a value of the wrong type, an unknown key, a replaced root), plus arbitrary JSON, raw bytes
and wrong auth headers. Invariants, checked on every response:

* no 5xx, and every response carries x-request-id;
* every 4xx has the error envelope {"error": code, "message": text};
* a rejected request changes no row (commits, nodes, edges, outbox, rule defs, recall audit);
* with auth on, a request without a valid credential is a 401 and a valid one for another tenant a 403.

The hand-written cases cover what random generation rarely reaches: bodies of 5 MiB and more, deep nesting,
NaN/Infinity and float32 overflow in vectors, huge `limit`, unicode and SQL metacharacters in scope and tenant.
Schemathesis was not used: hypothesis alone does the same against the served schema without a new dependency.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memload import contract as C
from memload.embedder import fake_embed
from tests.support.reliability import Client, Response, report, row_counts

ROUTES = (C.WRITE, C.RECALL, C.RECALL_TEXT)
HIGH_LIMITS = {"tenant_write_rps": "1000000", "tenant_write_burst": "1000000", "tenant_recall_rps": "1000000",
               "tenant_recall_burst": "1000000"}
SECRET = "fuzz-secret-" + "0123456789abcdef" * 4  # 64+ bytes: long enough for HS512 too
def hypo(examples: int) -> settings:
    """Settings of a fuzz phase: no deadline (a real server answers), no example database, no health checks."""
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))

NASTY = ["'; DROP TABLE memory_nodes; --", "\" OR 1=1 --", "%", "_", "\\", "a%_\\'\"", "tenant:x::scope:y",
         "default", " default ", "\u202e\u0301", "😀" * 3, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u0000", "a\u0000b", " ", "", "\t\n",
         "x" * 65, "x" * 3000, "$$; SELECT pg_sleep(5); $$", "memory_nodes_default", "NULL", "null", "\ufeff",
         "Ω≈ç√∫", "\\u0000", "../../etc/passwd", "{{7*7}}", "${jndi:ldap://x}"]


# ------------------------------------------------------------------------------------------------ strategies
def _text(min_size: int = 0) -> st.SearchStrategy[str]:
    nasty = st.sampled_from([v for v in NASTY if len(v) >= min_size])
    return st.one_of(st.text(min_size=min_size, max_size=40), nasty)


IDENT = st.one_of(st.from_regex(r"\Afz[a-z0-9_.-]{1,12}\Z"), st.sampled_from(NASTY))  # scope / tenant values

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                      st.floats(allow_nan=False, allow_infinity=False), _text())
JSON_VALUE = st.recursive(JSON_LEAF, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                             st.dictionaries(_text(), kids, max_size=4)),
                          max_leaves=12)


@st.composite
def embeddings(draw: st.DrawFn) -> Any:
    vec = fake_embed(draw(st.sampled_from(["fuzz a", "fuzz b", "fuzz c", "perf topic #1"])))
    kind = draw(st.sampled_from(["ok", "ok", "ok", "zero", "big", "tiny", "short", "long", "elem", "empty"]))
    i = draw(st.integers(0, C.EMBEDDING_DIM - 1))
    if kind == "zero":
        return [0.0] * C.EMBEDDING_DIM
    if kind == "big":
        vec[i] = draw(st.sampled_from([1e38, 3.5e38, 1e39, -1e300, 2**64]))
    elif kind == "tiny":
        vec[i] = 1e-320
    elif kind == "short":
        return vec[: draw(st.integers(0, C.EMBEDDING_DIM - 1))]
    elif kind == "long":
        return vec + [0.5] * draw(st.integers(1, 3))
    elif kind == "elem":
        vec[i] = draw(st.one_of(st.none(), st.booleans(), _text(), st.just([1.0]), st.just({"x": 1})))
    elif kind == "empty":
        return []
    return vec


class Schema:
    """hypothesis strategies for the request schemas of the served OpenAPI document (the subset it uses)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.components = doc["components"]["schemas"]

    def resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.components[s["$ref"].rsplit("/", 1)[1]]
        return s

    def strategy(self, s: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
        s = self.resolve(s)
        if name in ("scope", "tenant_id"):
            return IDENT
        if "enum" in s:
            return st.sampled_from(s["enum"])
        t = s.get("type")
        if t == "string":
            if s.get("format") == "uuid":
                return st.uuids().map(str)
            if s.get("pattern") == C.SHA256_HEX_RE.pattern:
                return st.from_regex(r"\A[0-9a-f]{64}\Z")
            return _text(s.get("minLength", 0))
        if t == "integer":
            lo, hi = s.get("minimum"), s.get("maximum")
            return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, (hi or 0) + 1, (lo or 0) - 1, 10**30]))
        if t == "number":
            return st.one_of(st.floats(s.get("minimum"), s.get("maximum")), st.sampled_from([-1e-9, 1.0000001, 1e308]))
        if t == "boolean":
            return st.booleans()
        if t == "array":
            if s.get("minItems", 0) >= 1000:
                return embeddings()
            return st.lists(self.strategy(s.get("items", {})), max_size=min(s.get("maxItems", 3), 3))
        if t == "object" and "properties" in s:
            props = s["properties"]
            required = set(s.get("required", []))
            return st.fixed_dictionaries({k: self.strategy(v, k) for k, v in props.items() if k in required},
                                         optional={k: self.strategy(v, k) for k, v in props.items()
                                                   if k not in required})
        return JSON_VALUE  # JsonValue, rules_context, free-form objects

    def request(self, route: str) -> st.SearchStrategy[Any]:
        name = {C.WRITE: "WriteRequest", C.RECALL: "RecallRequest", C.RECALL_TEXT: "RecallTextRequest"}[route]
        return self.strategy(self.components[name])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            if not (isinstance(v, float | int) and len(value) > 100):  # not each embedding element
                out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, body: Any) -> Any:
    """The body with at most one mutation at a random place (None = leave it as generated)."""
    kind = draw(st.sampled_from(["none", "none", "drop", "retype", "extra", "root"]))
    if kind == "none":
        return body
    if kind == "root":
        return draw(JSON_VALUE)
    body = json.loads(json.dumps(body))
    path = draw(st.sampled_from(_paths(body)))
    if not path:
        return body if kind != "retype" else draw(JSON_VALUE)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if kind == "drop" and isinstance(parent, dict):
        parent.pop(last, None)
    elif kind == "extra" and isinstance(parent, dict):
        parent[draw(_text(1))] = draw(JSON_VALUE)
    else:
        parent[last] = draw(JSON_VALUE)
    return body


# ------------------------------------------------------------------------------------------------ the checker
@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


class Checker:
    """Sends one request and checks the invariants of the module docstring; never raises on a violation (the test
    asserts on the tally at the end, so the printed figures always cover the whole run)."""

    def __init__(self, base_url: str, db_url: str, tally: Tally) -> None:
        self.client = Client(base_url)
        self.db = psycopg.connect(db_url, autocommit=True)
        self.tally = tally

    def close(self) -> None:
        self.client.close()
        self.db.close()

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None,
             label: str = "") -> Response:
        before = row_counts(self.db)
        try:
            r = self.client.request(method, path, body, headers)
        except (OSError, ValueError) as exc:
            self.tally.requests += 1
            self.tally.problem(f"{label or path}: transport error {type(exc).__name__}: {exc}")
            return Response(0, {}, b"")
        after = row_counts(self.db)
        t = self.tally
        t.requests += 1
        t.by_status[r.status] += 1
        what = f"{label or ''} {method} {path} {(body or b'')[:160]!r}"
        if r.status >= 500:
            t.server_errors += 1
            t.problem(f"{r.status} for {what}: {r.body[:200]!r}")
        if "x-request-id" not in r.headers:
            t.problem(f"no x-request-id for {what}")
        if r.status >= 400:
            env = r.envelope_problem()
            if env:
                t.problem(f"{r.status} without the envelope ({env}) for {what}")
            if after != before:
                t.problem(f"rejected ({r.status}) request changed rows {before} -> {after}: {what}")
        elif r.status == 200 and path in (C.RECALL, C.RECALL_TEXT):
            if {k: after[k] - before[k] for k in after} != {**dict.fromkeys(after, 0), "memory_recall_audit": 1}:
                t.problem(f"recall changed rows other than one audit row {before} -> {after}: {what}")
        return r


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # ensure_ascii: lone surrogates become \\udXXX escapes the server must refuse


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.slow
def test_generated_and_malformed_requests(start_api: Any, fresh_db_url: str) -> None:
    """~2250 generated requests: schema-driven (valid and mutated) bodies, arbitrary JSON, raw bytes."""
    api = start_api(database_url=fresh_db_url, **HIGH_LIMITS)
    tally = Tally()
    checker = Checker(api.base_url, fresh_db_url, tally)
    schema = Schema(checker.client.request("GET", C.OPENAPI).json())
    started = time.monotonic()
    try:
        @hypo(1600)
        @given(route=st.sampled_from(ROUTES), data=st.data())
        def schema_bodies(route: str, data: st.DataObject) -> None:
            body = data.draw(mutated(data.draw(schema.request(route))))
            checker.send("POST", route, _dumps(body), label="schema")

        schema_bodies()

        @hypo(400)
        @given(route=st.sampled_from(ROUTES), body=JSON_VALUE,
               ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                      "text/plain", "", "application/x-www-form-urlencoded", "application/jsonx"]))
        def arbitrary_json(route: str, body: Any, ctype: str) -> None:
            checker.send("POST", route, _dumps(body), {"content-type": ctype}, label="json")

        arbitrary_json()

        @hypo(250)
        @given(route=st.sampled_from([*ROUTES, "/v1/memory/nope", "/", C.HEALTH]),
               method=st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH"]),
               raw=st.one_of(st.binary(max_size=300), st.sampled_from([
                   b"", b"{", b"}", b"[", b"null", b"1", b"\"x\"", b"{\"query_text\": }", b"\xff\xfe{}",
                   b"{\"input_text\":\"x\",}", b"{'input_text':'x'}", b"{\"a\":1}{\"b\":2}", b"\x00", b"NaN",
                   b"{\"query_embedding\":[NaN]}", b"{\"query_text\":\"\\ud800\"}", b"{\"input_text\":\"\\u0000\"}"])))
        def raw_bytes(route: str, method: str, raw: bytes) -> None:
            checker.send(method, route, raw, label="raw")

        raw_bytes()
    finally:
        checker.close()
    elapsed = time.monotonic() - started
    report("fuzz_generated", requests=tally.requests, server_errors=tally.server_errors,
           by_status=dict(sorted(tally.by_status.items())), seconds=round(elapsed, 1))
    assert tally.requests >= 2000
    assert tally.by_status[200] > 50, "the generator should also produce valid requests that reach the database"
    assert not tally.problems, "\n".join(tally.problems)


def _deep(n: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * n + inner + b"}" * n


def _raw_http(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request by hand (headers as given), return the raw response (b"" if the server closed first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def test_large_deep_nonfinite_and_hostile_values(start_api: Any, fresh_db_url: str) -> None:
    api = start_api(database_url=fresh_db_url, **HIGH_LIMITS)
    tally = Tally()
    checker = Checker(api.base_url, fresh_db_url, tally)
    vec = fake_embed("hostile")
    w, r, rt = C.WRITE, C.RECALL, C.RECALL_TEXT
    cases: list[tuple[str, bytes, int | tuple[int, ...]]] = []  # (route, body, expected status(es))
    mib = 1024 * 1024
    pad = b"x" * (5 * mib)
    cases += [
        (w, b'{"input_text":"' + pad + b'"}', 413),  # 5 MiB + a few bytes
        (w, b'{"input_text":"' + pad[: 5 * mib - 20] + b'"}', (200,)),  # just under the limit: accepted
        (rt, b'{"query_text":"' + b"y" * (6 * mib) + b'"}', 413),
        (r, b'{"query_embedding":[' + b"0.5," * (2 * mib) + b'0.5]}', 413),
    ]
    for n in (100, 128, 129, 254, 256, 1000, 1023):  # slots nesting: up to 128 accepted, deeper a 400, never a 500
        body = b'{"input_text":"deep","scope":"fz_deep","nodes":[{"type":"event","client_id":"d' + str(n).encode() \
            + b'","slots":' + _deep(n) + b"}]}"
        cases.append((w, body, 200 if n <= 128 else 400))
    cases += [
        (w, b"[" * 100_000 + b"]" * 100_000, 400),
        (rt, b'{"query_text":"q","rules_context":' + _deep(1000) + b"}", 200),
        (rt, _deep(2000), 400),
    ]
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"nan", b"inf"):
        body = b'{"query_embedding":[' + literal + b"," + b"0.1," * 1534 + b"0.1]}"
        cases.append((r, body, 400))
        cases.append((w, b'{"input_text":"nf","nodes":[{"type":"event","embedding":[' + literal + b"," + b"0.1," * 1534
                      + b'0.1]}]}', 400))
        cases.append((w, b'{"input_text":"nf","nodes":[{"type":"event","salience":' + literal + b"}]}", 400))
    for big in (3.4e38, 3.5e38, 1e39, -1e300):  # finite JSON numbers; all but the first overflow float32
        v = list(vec)
        v[7] = big
        exp = 200 if abs(big) < 3.4028234e38 else 400
        cases.append((r, _dumps({"scope": "fz_f32", "query_embedding": v}), exp))
        cases.append((w, _dumps({"input_text": f"f32 {big}", "scope": "fz_f32",
                                 "nodes": [{"type": "event", "embedding": v}]}), exp))
    for limit in (10**30, 2**63, 2**64 + 1, 1e308, -1, 0, 201, 1.5, "20", True, None, [20], {"n": 20}):
        cases.append((rt, _dumps({"query_text": "q", "limit": limit}), 400))
        cases.append((r, _dumps({"query_embedding": vec, "limit": limit}), 400))
    for name in ("max_nodes", "max_edges", "ranked_limit", "neighborhood_hops", "slots_preview_keys", "rules_limit"):
        cases.append((rt, _dumps({"query_text": "q", name: 10**40}), 400))
    for value in NASTY:
        ok_scope = value.strip() != "" and not value.strip().startswith("tenant:") and "\x00" not in value
        ok_tenant = C.TENANT_ID_RE.match(value.strip()) is not None
        cases.append((rt, _dumps({"query_text": "q", "scope": value}), (200, 400) if ok_scope else 400))
        cases.append((rt, _dumps({"query_text": "q", "tenant_id": value}), (200,) if ok_tenant else 400))
        cases.append((w, _dumps({"input_text": "q", "scope": value, "tenant_id": "fz-t",
                                 "nodes": [{"type": "event", "client_id": value or "c", "title": value}]}),
                      (200, 400) if ok_scope else 400))
    for route, body, expected in cases:
        got = checker.send("POST", route, body, label="case")
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if got.status not in allowed:
            tally.problem(f"expected {allowed}, got {got.status} {got.body[:160]!r} for {route} {body[:100]!r}")

    # Bodies far above the limit, declared or streamed (chunked): a 413 envelope, never a hang or a 5xx.
    port = int(api.base_url.rsplit(":", 1)[1])
    declared = _raw_http(port, b"POST /v1/memory/write HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                               b"content-length: 999999999999\r\nconnection: close\r\n\r\n", [b"{}"])
    chunk = b"%x\r\n" % mib + b"z" * mib + b"\r\n"
    chunked = _raw_http(port, b"POST /v1/memory/recall_text HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                              b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n", [chunk] * 7 + [b"0\r\n\r\n"])
    for name, raw in (("declared 1 TB", declared), ("chunked 7 MiB", chunked)):
        tally.requests += 1
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 413") or b'"payload_too_large"' not in payload:
            tally.problem(f"{name}: expected a 413 envelope, got {raw[:200]!r}")
    with checker.db.cursor() as cur:  # the hostile scopes were stored verbatim as data, nothing else happened
        tables = {r[0] for r in cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'memory_%'")}
    checker.close()
    assert {"memory_nodes", "memory_commits", "memory_edges", "memory_outbox"} <= tables
    report("fuzz_hostile_values", requests=tally.requests, server_errors=tally.server_errors,
           by_status=dict(sorted(tally.by_status.items())))
    assert not tally.problems, "\n".join(tally.problems)


@st.composite
def credentials(draw: st.DrawFn) -> tuple[dict[str, str], str | None]:
    """(headers, the tenant they authenticate, or None) for an API in api_key_or_jwt mode."""
    now = int(time.time())
    headers: dict[str, str] = {}
    latin = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60)
    key = draw(st.sampled_from(["none", "valid", "valid_padded", "wrong", "random"]))
    if key == "valid":
        headers["x-api-key"] = "key-a"
    elif key == "valid_padded":
        headers["x-api-key"] = "  key-a  "
    elif key == "wrong":
        headers["x-api-key"] = draw(st.sampled_from(["key-b", "KEY-A", "key-a ", "key", "key-a\t1"]))
    elif key == "random":
        headers["x-api-key"] = draw(latin)
    token_kind = draw(st.sampled_from(["none", "valid", "expired", "future", "wrong_key", "alg_none", "no_tenant",
                                       "tenant_list", "garbage", "basic", "empty", "hs512", "leeway"]))
    claims: dict[str, Any] = {"tenant_id": "fz-jwt", "exp": now + 300}
    token: str | None = None
    good = False
    if token_kind in ("valid", "leeway"):
        exp = now + (300 if token_kind == "valid" else -10)  # -10 s: inside the 30 s leeway
        token, good = jwt.encode({**claims, "exp": exp}, SECRET, "HS256"), True
    elif token_kind == "expired":
        token = jwt.encode({**claims, "exp": now - 120}, SECRET, "HS256")
    elif token_kind == "future":
        token = jwt.encode({**claims, "nbf": now + 600}, SECRET, "HS256")
    elif token_kind == "wrong_key":
        token = jwt.encode(claims, "not-the-secret-not-the-secret-123456", "HS256")
    elif token_kind == "alg_none":
        token = jwt.encode(claims, None, "none")
    elif token_kind == "no_tenant":
        token = jwt.encode({"sub": "x", "exp": now + 300}, SECRET, "HS256")
    elif token_kind == "tenant_list":
        token = jwt.encode({"tenant_id": ["fz-jwt"], "exp": now + 300}, SECRET, "HS256")
    elif token_kind == "hs512":
        token = jwt.encode(claims, SECRET, "HS512")
    elif token_kind == "garbage":
        token = draw(latin)
    if token_kind == "basic":
        headers["authorization"] = "Basic a2V5LWE6"
    elif token_kind == "empty":
        headers["authorization"] = "Bearer "
    elif token is not None:
        headers["authorization"] = f"Bearer {token}"
    if key != "none" and headers["x-api-key"].strip():  # an x-api-key, when present, is the only credential read
        tenant = "fz-key" if headers["x-api-key"].strip() == "key-a" else None
    else:
        tenant = "fz-jwt" if good else None
    return headers, tenant


def test_wrong_auth_headers_are_401_and_other_tenants_403(start_api: Any, fresh_db_url: str) -> None:
    api = start_api(database_url=fresh_db_url, memory_auth_mode="api_key_or_jwt", memory_jwt_hs256_secret=SECRET,
                    memory_api_keys_json=json.dumps({"key-a": {"tenant_id": "fz-key"}}), **HIGH_LIMITS)
    tally = Tally()
    checker = Checker(api.base_url, fresh_db_url, tally)
    outcomes: Counter[str] = Counter()

    @hypo(400)
    @given(cred=credentials(), route=st.sampled_from(ROUTES),
           body_tenant=st.sampled_from([None, "fz-key", "fz-jwt", "fz-other", " fz-key ", 7]),
           header_tenant=st.sampled_from([None, "fz-key", "fz-jwt", "fz-other", ""]))
    def auth(cred: tuple[dict[str, str], str | None], route: str, body_tenant: Any, header_tenant: str | None) -> None:
        headers, principal = cred
        body: dict[str, Any] = {"scope": "fz_auth"}
        if route == C.WRITE:
            body.update(input_text=f"auth {uuid.uuid4()}", nodes=[{"type": "event", "client_id": "n"}])
        elif route == C.RECALL:
            body["query_embedding"] = fake_embed("auth")
        else:
            body["query_text"] = "auth"
        if body_tenant is not None:
            body["tenant_id"] = body_tenant
        hdrs = dict(headers)
        if header_tenant is not None:
            hdrs["x-tenant-id"] = header_tenant
        r = checker.send("POST", route, _dumps(body), hdrs, label="auth")
        explicit = body_tenant.strip() if isinstance(body_tenant, str) else ""
        explicit = explicit or (header_tenant or "").strip()
        if principal is None:
            expected = 401
        elif explicit and explicit != principal:
            expected = 403
        else:
            expected = 200
        outcomes[str(r.status)] += 1
        if r.status != expected:
            tally.problem(f"expected {expected}, got {r.status} {r.body[:150]!r} for {hdrs} {body.get('tenant_id')!r}")
        elif r.status == 200:
            doc = r.json()  # a zero-seed recall has no tenant_id, only the scope key
            tenant = doc.get("tenant_id") or doc["scope"].removeprefix("tenant:").split("::scope:")[0]
            if tenant != principal:
                tally.problem(f"answered for tenant {tenant!r}, principal {principal!r}")

    try:
        auth()
    finally:
        checker.close()
    report("fuzz_auth_headers", requests=tally.requests, server_errors=tally.server_errors,
           by_status=dict(sorted(tally.by_status.items())))
    assert outcomes["401"] > 50 and outcomes["200"] > 20 and outcomes["403"] > 10, outcomes
    assert not tally.problems, "\n".join(tally.problems)
