"""Deterministic ids and hashes of the peer (stableUuid, fast-json-stable-stringify, commit hash chain).

Retries are idempotent because ids and commit hashes depend only on content. Numbers are formatted the way
JavaScript prints them (`1`, not `1.0`), so hashes computed here equal the peer's for the same input.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from typing import Any


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def stable_uuid(name: str) -> str:
    """sha256("aionis-memory-graph:"+name)[:16] with version 5 and RFC 4122 variant bits set."""
    b = bytearray(hashlib.sha256(("aionis-memory-graph:" + name).encode("utf-8")).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def js_number(value: float | int) -> str:
    """Format a number as JavaScript's JSON.stringify would."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "null"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{int(exp.lstrip('+-'))}"
    return text


def stable_stringify(value: Any) -> str:
    """fast-json-stable-stringify: sorted keys, no spaces, None-valued keys kept as null, undefined dropped.

    Python has no `undefined`; callers drop absent keys before calling (mirrors the JS objects built by the peer).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(stable_stringify(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0])
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + stable_stringify(v) for k, v in items) + "}"
    raise TypeError(f"cannot stringify {type(value).__name__}")


def commit_hash(
    *,
    parent_hash: str,
    input_sha256: str,
    diff: Any,
    scope_key: str,
    actor: str,
    model_version: str | None,
    prompt_version: str | None,
) -> str:
    """The commit hash chain of contract §1: sha256 over the parent hash, the input and the diff."""
    payload: dict[str, Any] = {
        "parentHash": parent_hash,
        "inputSha": input_sha256,
        "diffSha": sha256_hex(stable_stringify(diff)),
        "scope": scope_key,
        "actor": actor,
    }
    # JS `undefined` fields are dropped by the stringifier; null is kept.
    if model_version is not None:
        payload["model_version"] = model_version
    if prompt_version is not None:
        payload["prompt_version"] = prompt_version
    return sha256_hex(stable_stringify(payload))


def scope_key(scope: str, tenant_id: str, default_tenant_id: str = "default") -> str:
    """Storage key of a (tenant, scope): the raw scope for the default tenant, else `tenant:<t>::scope:<s>`."""
    if tenant_id == default_tenant_id:
        return scope
    return f"tenant:{tenant_id}::scope:{scope}"
