"""Authentication (off | api_key | jwt | api_key_or_jwt) and the identity rules of the Aionis API.

A principal's tenant is forced onto the request; a caller-supplied tenant (body, else x-tenant-id) that differs is
a 403 identity_mismatch, and so are consumer/producer/owner ids that differ from the principal's agent/team.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from memload import contract as C
from memload.errors import ConfigError
from memory_api.errors import ApiError


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    agent_id: str | None
    team_id: str | None
    role: str | None
    source: str  # api_key | jwt


def _trimmed(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    s = v.strip()
    return s or None


def parse_api_keys(raw: str) -> dict[str, Principal]:
    """MEMORY_API_KEYS_JSON: {"<key>": {"tenant_id", "agent_id"?, "team_id"?, "role"?}}; errors name the variable."""
    try:
        parsed = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"MEMORY_API_KEYS_JSON must be valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("MEMORY_API_KEYS_JSON must be a JSON object")
    out: dict[str, Principal] = {}
    for key, rec in parsed.items():
        k = key.strip()
        if not k:
            continue
        if not isinstance(rec, dict):
            raise ConfigError(f"MEMORY_API_KEYS_JSON: record of key {k[:4]}… must be an object")
        tenant = _trimmed(rec.get("tenant_id"))
        if not tenant:
            raise ConfigError(f"MEMORY_API_KEYS_JSON: record of key {k[:4]}… requires tenant_id")
        out[k] = Principal(tenant, _trimmed(rec.get("agent_id")), _trimmed(rec.get("team_id")),
                           _trimmed(rec.get("role")), "api_key")
    return out


_HINTS = {
    "api_key": "X-Api-Key",
    "jwt": "Authorization: Bearer <jwt>",
    "api_key_or_jwt": "X-Api-Key or Authorization: Bearer <jwt>",
}


class Authenticator:
    """Resolves the principal of a request from its headers, per MEMORY_AUTH_MODE."""

    def __init__(self, mode: str, api_keys_json: str, jwt_secret: str) -> None:
        if mode not in C.AUTH_MODES:
            raise ConfigError(f"MEMORY_AUTH_MODE: expected one of {', '.join(C.AUTH_MODES)}, got {mode!r}")
        self.mode = mode
        self.api_keys = parse_api_keys(api_keys_json) if mode in ("api_key", "api_key_or_jwt") else {}
        self.jwt_secret = jwt_secret if mode in ("jwt", "api_key_or_jwt") else ""
        if mode in ("jwt", "api_key_or_jwt") and not jwt_secret:
            raise ConfigError(f"MEMORY_JWT_HS256_SECRET is required with MEMORY_AUTH_MODE={mode}")

    def require(self, headers: Mapping[str, str]) -> Principal | None:
        """The principal (None with auth off), or raise 401 unauthorized."""
        if self.mode == "off":
            return None
        principal = self._resolve(headers)
        if principal is None:
            raise ApiError(401, C.E_UNAUTHORIZED, f"valid {_HINTS[self.mode]} is required")
        return principal

    def _resolve(self, headers: Mapping[str, str]) -> Principal | None:
        if self.mode in ("api_key", "api_key_or_jwt"):
            key = _trimmed(headers.get("x-api-key"))
            if key:
                return self.api_keys.get(key)
            if self.mode == "api_key":
                return None
        auth = _trimmed(headers.get("authorization"))
        if not auth or not auth[:7].lower() == "bearer ":
            return None
        token = auth[7:].strip()
        if not token:
            return None
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                leeway=C.JWT_CLOCK_SKEW_S,
                options={"require": [], "verify_aud": False, "verify_iss": False},
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims, dict):
            return None
        tenant = _trimmed(claims.get("tenant_id")) or _trimmed(claims.get("tenant"))
        if not tenant:
            return None
        return Principal(tenant, _trimmed(claims.get("agent_id")) or _trimmed(claims.get("sub")),
                         _trimmed(claims.get("team_id")), _trimmed(claims.get("role")), "jwt")


def _assert_match(field: str, provided: str | None, expected: str | None) -> None:
    if not provided or not expected or provided == expected:
        return
    raise ApiError(
        403,
        C.E_IDENTITY_MISMATCH,
        f"{field} does not match authenticated principal",
        details={"field": field, "provided": provided, "expected": expected},
    )


def apply_identity(body: Any, headers: Mapping[str, str], principal: Principal | None, kind: str) -> Any:
    """The body with tenant/consumer/producer/owner filled from the principal or x-tenant-id (as Aionis).

    kind: "write" or "recall". Non-object bodies pass through untouched (validation rejects them later).
    """
    if not isinstance(body, dict):
        return body
    obj = dict(body)
    header_tenant = (headers.get("x-tenant-id") or "").strip()
    body_tenant = obj["tenant_id"].strip() if isinstance(obj.get("tenant_id"), str) else ""
    explicit = body_tenant or header_tenant or None
    if principal is not None:
        _assert_match("tenant_id", explicit, principal.tenant_id)
        obj["tenant_id"] = principal.tenant_id
    elif not body_tenant and header_tenant:
        obj["tenant_id"] = header_tenant
    if principal is None:
        return obj
    if kind == "recall":
        agent = _str_or_none(obj.get("consumer_agent_id"))
        team = _str_or_none(obj.get("consumer_team_id"))
        _assert_match("consumer_agent_id", agent, principal.agent_id)
        _assert_match("consumer_team_id", team, principal.team_id)
        if not agent and principal.agent_id:
            obj["consumer_agent_id"] = principal.agent_id
        if not team and principal.team_id:
            obj["consumer_team_id"] = principal.team_id
    elif kind == "write":
        producer = _str_or_none(obj.get("producer_agent_id"))
        owner_agent = _str_or_none(obj.get("owner_agent_id"))
        owner_team = _str_or_none(obj.get("owner_team_id"))
        _assert_match("producer_agent_id", producer, principal.agent_id)
        _assert_match("owner_agent_id", owner_agent, principal.agent_id)
        _assert_match("owner_team_id", owner_team, principal.team_id)
        if not producer and principal.agent_id:
            obj["producer_agent_id"] = principal.agent_id
        if not owner_agent and not owner_team:
            if principal.agent_id:
                obj["owner_agent_id"] = principal.agent_id
            elif principal.team_id:
                obj["owner_team_id"] = principal.team_id
    return obj


def _str_or_none(v: Any) -> str | None:
    return v.strip() if isinstance(v, str) else None
