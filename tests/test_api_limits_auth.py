"""Rate limits (both layers, every kind, Aionis variable names and their aliases) and auth modes, against a real API
process. Assertions follow token-bucket arithmetic: rates of 0.001/s make refill negligible, so counts are exact."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import jwt
import pytest

from memload.config import ENV_ALIASES, Settings
from memload.embedder import fake_embed
from memload.errors import ConfigError
from memload.limits import layers

SECRET = "memload-test-secret-0123456789-abcdef"


def call(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def test_tenant_recall_quota_429_retry_after_and_recovery(start_api: Any) -> None:
    api = start_api(tenant_recall_rps="0.5", tenant_recall_burst="2")
    body = {"tenant_id": "quota-a", "scope": "t_rl", "query_text": "q"}
    assert call(api.base_url, "/v1/memory/recall_text", body)[0] == 200
    assert call(api.base_url, "/v1/memory/recall_text", body)[0] == 200
    # Validation runs before the recall limits: an invalid request costs no token and is a 400.
    assert call(api.base_url, "/v1/memory/recall_text", {**body, "limit": 0})[0] == 400
    st, h, err = call(api.base_url, "/v1/memory/recall_text", body)
    assert st == 429
    assert err["error"] == "tenant_rate_limited_recall"
    assert err["message"] == "tenant quota exceeded (recall); retry later"
    assert err["details"]["tenant_id"] == "quota-a" and err["details"]["waited_ms"] == 0
    assert err["details"]["retry_after_ms"] in range(1, 2001)
    assert h["retry-after"].isdigit() and int(h["retry-after"]) == -(-err["details"]["retry_after_ms"] // 1000)
    assert "x-ratelimit-limit" not in h
    # Another tenant has its own bucket; the loopback bypass never applies to tenants.
    assert call(api.base_url, "/v1/memory/recall_text", {**body, "tenant_id": "quota-b"})[0] == 200
    time.sleep(int(h["retry-after"]) + 0.05)
    assert call(api.base_url, "/v1/memory/recall_text", body)[0] == 200


def test_write_limits_run_before_validation_and_wait_then_retry_once(start_api: Any) -> None:
    api = start_api(tenant_write_rps="0.5", tenant_write_burst="1")
    bad = {"tenant_id": "wq", "scope": "t_wl"}  # invalid (no input_text) but still costs a token
    assert call(api.base_url, "/v1/memory/write", bad)[0] == 400
    t0 = time.perf_counter()
    st, h, err = call(api.base_url, "/v1/memory/write", {**bad, "input_text": "x"})
    elapsed = time.perf_counter() - t0
    assert st == 429 and err["error"] == "tenant_rate_limited_write"
    assert err["details"]["waited_ms"] == 300 and elapsed >= 0.29  # slept TENANT_WRITE_MAX_WAIT_MS, re-checked
    assert int(h["retry-after"]) in (1, 2)

    fast = start_api(tenant_write_rps="10", tenant_write_burst="1")
    body = {"tenant_id": "wq2", "scope": "t_wl", "input_text": "y", "auto_embed": False}
    t0 = time.perf_counter()
    assert call(fast.base_url, "/v1/memory/write", body)[0] == 200
    st, _, w = call(fast.base_url, "/v1/memory/write", body)
    assert st == 200, w  # the second write slept until the bucket refilled (100 ms after the first), then passed
    assert time.perf_counter() - t0 >= 0.095


def test_client_ip_layer_bypassed_on_loopback_unless_disabled(start_api: Any) -> None:
    bypass = start_api(recall_rate_limit_rps="0.1", recall_rate_limit_burst="1")
    body = {"scope": "t_ip", "query_text": "q"}
    assert [call(bypass.base_url, "/v1/memory/recall_text", body)[0] for _ in range(3)] == [200, 200, 200]
    strict = start_api(recall_rate_limit_rps="0.1", recall_rate_limit_burst="1", rate_limit_bypass_loopback="false")
    assert call(strict.base_url, "/v1/memory/recall_text", body)[0] == 200
    st, h, err = call(strict.base_url, "/v1/memory/recall_text", body)
    assert st == 429 and err["error"] == "rate_limited_recall"
    assert err["message"] == "rate limited (recall); retry later"
    assert set(err["details"]) == {"retry_after_ms", "waited_ms"} and int(h["retry-after"]) in (9, 10)


# Aionis variable name -> (Settings field, value to set). Every rate-limit variable the reference API reads.
AIONIS_VARS = {
    "RATE_LIMIT_ENABLED": ("rate_limit_enabled", "false"),
    "RATE_LIMIT_BYPASS_LOOPBACK": ("rate_limit_bypass_loopback", "false"),
    "RECALL_RATE_LIMIT_RPS": ("recall_rate_limit_rps", "11.5"),
    "RECALL_RATE_LIMIT_BURST": ("recall_rate_limit_burst", "21"),
    "WRITE_RATE_LIMIT_RPS": ("write_rate_limit_rps", "6"),
    "WRITE_RATE_LIMIT_BURST": ("write_rate_limit_burst", "12"),
    "WRITE_RATE_LIMIT_MAX_WAIT_MS": ("write_rate_limit_max_wait_ms", "201"),
    "TENANT_RECALL_RATE_LIMIT_RPS": ("tenant_recall_rate_limit_rps", "31"),
    "TENANT_RECALL_RATE_LIMIT_BURST": ("tenant_recall_rate_limit_burst", "61"),
    "TENANT_WRITE_RATE_LIMIT_RPS": ("tenant_write_rate_limit_rps", "13"),
    "TENANT_WRITE_RATE_LIMIT_BURST": ("tenant_write_rate_limit_burst", "23"),
    "TENANT_WRITE_RATE_LIMIT_MAX_WAIT_MS": ("tenant_write_rate_limit_max_wait_ms", "301"),
    "RECALL_TEXT_EMBED_RATE_LIMIT_RPS": ("recall_text_embed_rate_limit_rps", "5"),
    "RECALL_TEXT_EMBED_RATE_LIMIT_BURST": ("recall_text_embed_rate_limit_burst", "9"),
    "RECALL_TEXT_EMBED_RATE_LIMIT_MAX_WAIT_MS": ("recall_text_embed_rate_limit_max_wait_ms", "601"),
    "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_RPS": ("tenant_recall_text_embed_rate_limit_rps", "9"),
    "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_BURST": ("tenant_recall_text_embed_rate_limit_burst", "17"),
    "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_MAX_WAIT_MS": ("tenant_recall_text_embed_rate_limit_max_wait_ms", "801"),
    "TENANT_DEBUG_EMBED_RATE_LIMIT_RPS": ("tenant_debug_embed_rate_limit_rps", "2"),
    "TENANT_DEBUG_EMBED_RATE_LIMIT_BURST": ("tenant_debug_embed_rate_limit_burst", "5"),
}


def test_defaults_are_the_aionis_defaults() -> None:
    s = Settings.from_env({})
    assert (s.recall_text_embed_rate_limit_rps, s.recall_text_embed_rate_limit_burst,
            s.recall_text_embed_rate_limit_max_wait_ms) == (4, 8, 600)
    assert (s.tenant_recall_text_embed_rate_limit_rps, s.tenant_recall_text_embed_rate_limit_burst,
            s.tenant_recall_text_embed_rate_limit_max_wait_ms) == (8, 16, 800)
    assert (s.tenant_recall_rate_limit_rps, s.tenant_recall_rate_limit_burst) == (30, 60)
    assert (s.tenant_write_rate_limit_rps, s.tenant_write_rate_limit_burst,
            s.tenant_write_rate_limit_max_wait_ms) == (10, 20, 300)
    assert (s.tenant_debug_embed_rate_limit_rps, s.tenant_debug_embed_rate_limit_burst) == (1, 4)
    # the recall_text embedding layer is the one per-client layer loopback callers do not skip
    assert [(la.scope, la.name) for la in layers(s) if la.loopback_bypassed] == [("per client", "recall"),
                                                                                ("per client", "write")]


@pytest.mark.parametrize("var", sorted(AIONIS_VARS))
def test_each_aionis_variable_is_read_and_a_bad_value_names_it(var: str) -> None:
    field, value = AIONIS_VARS[var]
    got = getattr(Settings.from_env({var: value}), field)
    assert got != getattr(Settings(), field) and str(got).lower() in (value, f"{value}.0")
    with pytest.raises(ConfigError, match=f"^{var}: "):
        Settings.from_env({var: "abc"})


@pytest.mark.parametrize("name", sorted(ENV_ALIASES))
def test_old_names_are_aliases_and_the_aionis_name_wins(name: str) -> None:
    alias = ENV_ALIASES[name]
    field, value = AIONIS_VARS[name]
    assert getattr(Settings.from_env({alias: value}), field) == getattr(Settings.from_env({name: value}), field)
    assert getattr(Settings.from_env({alias: "7", name: value}), field) == \
        getattr(Settings.from_env({name: value}), field)
    with pytest.raises(ConfigError, match=f"^{alias}: "):
        Settings.from_env({alias: "abc"})
    # rendered for a child process under the Aionis name only
    assert name in Settings.from_env({alias: value}).as_env() and alias not in Settings().as_env()


def test_recall_text_embed_limit_waits_then_429_and_ignores_the_loopback_bypass(start_api: Any) -> None:
    # Loopback bypass on (the default) and a per-client recall bucket that would deny the 2nd request: bypassed.
    # The per-client embedding bucket (3 tokens, no refill to speak of) is not: requests 4 and 5 wait 50 ms, then 429.
    api = start_api(recall_rate_limit_rps="0.001", recall_rate_limit_burst="1",
                    recall_text_embed_rate_limit_rps="0.001", recall_text_embed_rate_limit_burst="3",
                    recall_text_embed_rate_limit_max_wait_ms="50")
    body = {"tenant_id": "emb-a", "scope": "t_emb", "query_text": "the same text: cache hits after the first"}
    assert call(api.base_url, "/v1/memory/recall_text", {**body, "limit": 0})[0] == 400  # invalid: costs nothing
    results = [call(api.base_url, "/v1/memory/recall_text", body) for _ in range(5)]
    assert [r[0] for r in results] == [200, 200, 200, 429, 429]  # a cache hit costs a token too
    for _st, h, err in results[3:]:
        assert err["error"] == "rate_limited_recall_text_embed"
        assert err["message"] == "recall_text embedding quota exceeded; retry later"
        assert set(err["details"]) == {"retry_after_ms", "waited_ms"} and err["details"]["waited_ms"] == 50
        assert h["retry-after"].isdigit() and int(h["retry-after"]) >= 1
        assert int(h["retry-after"]) == -(-err["details"]["retry_after_ms"] // 1000)  # ceil, whole seconds
        assert h["x-memload-api"]
    # recall (no embedding) is not touched by the embedding layer
    assert call(api.base_url, "/v1/memory/recall", {**{k: v for k, v in body.items() if k != "query_text"},
                                                    "query_embedding": fake_embed("q")})[0] == 200
    # RATE_LIMIT_ENABLED=false turns the per-client embedding layer off, as on an Aionis server
    off = start_api(rate_limit_enabled="false", recall_text_embed_rate_limit_rps="0.001",
                    recall_text_embed_rate_limit_burst="1")
    assert [call(off.base_url, "/v1/memory/recall_text", body)[0] for _ in range(3)] == [200, 200, 200]


def test_tenant_recall_text_embed_quota_per_tenant_with_wait(start_api: Any) -> None:
    api = start_api(tenant_recall_text_embed_rate_limit_rps="0.001", tenant_recall_text_embed_rate_limit_burst="2",
                    tenant_recall_text_embed_rate_limit_max_wait_ms="40")
    body = {"tenant_id": "temb-a", "scope": "t_temb", "query_text": "q"}
    codes = [call(api.base_url, "/v1/memory/recall_text", {**body, "query_text": f"q{i}"}) for i in range(3)]
    assert [c[0] for c in codes] == [200, 200, 429]
    _st, h, err = codes[2]
    assert err["error"] == "tenant_rate_limited_recall_text_embed"
    assert err["message"] == "tenant recall_text embedding quota exceeded; retry later"
    assert err["details"]["tenant_id"] == "temb-a" and err["details"]["waited_ms"] == 40
    assert int(h["retry-after"]) == -(-err["details"]["retry_after_ms"] // 1000) >= 1
    assert call(api.base_url, "/v1/memory/recall_text", {**body, "tenant_id": "temb-b"})[0] == 200
    # a wait long enough for the refill lets the request through: 1 token at 20/s needs at most 50 ms < 800 ms
    fast = start_api(tenant_recall_text_embed_rate_limit_rps="20", tenant_recall_text_embed_rate_limit_burst="1")
    assert [call(fast.base_url, "/v1/memory/recall_text", body)[0] for _ in range(3)] == [200, 200, 200]


def test_aliases_reach_the_running_api(start_api: Any) -> None:
    # TENANT_RECALL_RPS/_BURST (older memload names) still configure the tenant recall quota...
    api = start_api(tenant_recall_rps="0.001", tenant_recall_burst="2")
    body = {"tenant_id": "alias-a", "scope": "t_alias", "query_embedding": fake_embed("q")}
    assert [call(api.base_url, "/v1/memory/recall", body)[0] for _ in range(3)] == [200, 200, 429]
    # ...and the Aionis name wins over them
    both = start_api(tenant_recall_rps="0.001", tenant_recall_burst="2", tenant_recall_rate_limit_rps="0.001",
                     tenant_recall_rate_limit_burst="4")
    assert [call(both.base_url, "/v1/memory/recall", body)[0] for _ in range(5)] == [200, 200, 200, 200, 429]


def test_api_key_auth_forces_tenant_and_isolates(start_api: Any) -> None:
    keys = {"key-a": {"tenant_id": "tenant-a", "agent_id": "agent-a"}, "key-b": {"tenant_id": "tenant-b"}}
    api = start_api(memory_auth_mode="api_key", memory_api_keys_json=json.dumps(keys))
    scope = f"t_auth_{uuid.uuid4().hex[:8]}"
    vec = fake_embed("a's secret")
    write = {"scope": scope, "input_text": "a", "memory_lane": "shared",
             "nodes": [{"client_id": "s", "type": "event", "text_summary": "a's secret", "embedding": vec}]}
    st, _, err = call(api.base_url, "/v1/memory/write", write)
    assert st == 401 and err == {"error": "unauthorized", "message": "valid X-Api-Key is required"}
    assert call(api.base_url, "/v1/memory/write", write, {"x-api-key": "nope"})[0] == 401
    st, _, w = call(api.base_url, "/v1/memory/write", write, {"x-api-key": "key-a"})
    assert st == 200 and w["tenant_id"] == "tenant-a"
    recall = {"scope": scope, "query_embedding": vec}
    st, _, ra = call(api.base_url, "/v1/memory/recall", recall, {"x-api-key": "key-a"})
    assert st == 200 and [s["id"] for s in ra["seeds"]] == [w["nodes"][0]["id"]]
    st, _, rb = call(api.base_url, "/v1/memory/recall", recall, {"x-api-key": "key-b"})
    assert st == 200 and rb["seeds"] == [] and rb["scope"] == f"tenant:tenant-b::scope:{scope}"
    st, _, err = call(api.base_url, "/v1/memory/recall", {**recall, "tenant_id": "tenant-a"}, {"x-api-key": "key-b"})
    assert st == 403 and err["error"] == "identity_mismatch"
    assert err["details"] == {"field": "tenant_id", "provided": "tenant-a", "expected": "tenant-b"}
    st, _, err = call(api.base_url, "/v1/memory/recall", recall, {"x-api-key": "key-b", "x-tenant-id": "tenant-a"})
    assert st == 403
    st, _, err = call(api.base_url, "/v1/memory/recall", {**recall, "consumer_agent_id": "agent-x"},
                      {"x-api-key": "key-a"})
    assert st == 403 and err["details"]["field"] == "consumer_agent_id"


def test_jwt_auth_expiry_leeway_and_signature(start_api: Any) -> None:
    api = start_api(memory_auth_mode="jwt", memory_jwt_hs256_secret=SECRET)
    now = int(time.time())
    body = {"scope": "t_jwt", "query_text": "q"}

    def bearer(claims: dict[str, Any], key: str = SECRET) -> dict[str, str]:
        return {"authorization": "Bearer " + jwt.encode(claims, key, algorithm="HS256")}

    st, _, r = call(api.base_url, "/v1/memory/recall_text", body, bearer({"tenant_id": "tj", "exp": now + 60}))
    assert st == 200 and r["scope"] == "tenant:tj::scope:t_jwt"
    assert call(api.base_url, "/v1/memory/recall_text", body, bearer({"tenant": "tj", "exp": now - 10}))[0] == 200
    st, _, err = call(api.base_url, "/v1/memory/recall_text", body, bearer({"tenant_id": "tj", "exp": now - 120}))
    assert st == 401 and err["message"] == "valid Authorization: Bearer <jwt> is required"
    assert call(api.base_url, "/v1/memory/recall_text", body,
                bearer({"tenant_id": "tj", "exp": now + 60}, key="wrong-secret-wrong-secret-wrong!"))[0] == 401
    assert call(api.base_url, "/v1/memory/recall_text", body, bearer({"tenant_id": "tj", "nbf": now + 120}))[0] == 401
    assert call(api.base_url, "/v1/memory/recall_text", body, bearer({"sub": "no-tenant"}))[0] == 401
    assert call(api.base_url, "/v1/memory/recall_text", body, {"authorization": "Bearer not.a.jwt"})[0] == 401
    none_alg = jwt.encode({"tenant_id": "tj"}, None, algorithm="none")
    assert call(api.base_url, "/v1/memory/recall_text", body, {"authorization": f"Bearer {none_alg}"})[0] == 401

    either = start_api(memory_auth_mode="api_key_or_jwt", memory_jwt_hs256_secret=SECRET,
                       memory_api_keys_json=json.dumps({"k": {"tenant_id": "tk"}}))
    assert call(either.base_url, "/v1/memory/recall_text", body, {"x-api-key": "k"})[2]["scope"] == \
        "tenant:tk::scope:t_jwt"
    assert call(either.base_url, "/v1/memory/recall_text", body, bearer({"tenant_id": "tj"}))[0] == 200
    st, _, err = call(either.base_url, "/v1/memory/recall_text", body)
    assert st == 401 and err["message"] == "valid X-Api-Key or Authorization: Bearer <jwt> is required"


def test_no_provider_and_bad_configuration(start_api: Any, db_url: str) -> None:
    from tests.support.cli import run_cli

    api = start_api(embedding_provider="none")
    st, _, err = call(api.base_url, "/v1/memory/recall_text", {"query_text": "q"})
    assert st == 400 and err["error"] == "no_embedding_provider"
    st, _, w = call(api.base_url, "/v1/memory/write", {"scope": "t_np", "input_text": "x", "auto_embed": True,
                                                        "nodes": [{"client_id": "n", "type": "event",
                                                                   "text_summary": "s"}]})
    assert st == 200 and "embedding_backfill" not in w  # no provider: stored failed, nothing enqueued
    bad_keys = {"DATABASE_URL": db_url, "MEMORY_AUTH_MODE": "api_key", "MEMORY_API_KEYS_JSON": "{oops"}
    proc = run_cli("api", "--port", "1", env=bad_keys, timeout=60)
    assert proc.returncode != 0 and "MEMORY_API_KEYS_JSON must be valid JSON" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
    proc = run_cli("api", "--port", "1", env={"DATABASE_URL": db_url, "APP_ENV": "prod"}, timeout=60)
    assert proc.returncode != 0 and "APP_ENV=prod refuses to start" in proc.stderr
