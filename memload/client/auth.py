"""Credentials, as the Aionis kit's benchmark sends them: one behaviour for every tool.

`PERF_API_KEY` goes out as `x-api-key`; without it, the first key of `MEMORY_API_KEYS_JSON` (the server's own key
table, so a stack started with keys is measured with one of them). `PERF_AUTH_BEARER` goes out as
`Authorization: Bearer <token>`. Values are stripped: a trailing newline from a secret file is not part of a key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

AUTH_ENV_VARS: Final = ("PERF_API_KEY", "MEMORY_API_KEYS_JSON", "PERF_AUTH_BEARER")
JSON_CONTENT_TYPE: Final = {"content-type": "application/json"}


def api_key(env: Mapping[str, str] | None = None) -> str:
    """PERF_API_KEY, else the first key of MEMORY_API_KEYS_JSON (unparsable JSON: none), whitespace stripped."""
    env = os.environ if env is None else env
    key = (env.get("PERF_API_KEY") or "").strip()
    if key:
        return key
    try:
        keys = json.loads(env.get("MEMORY_API_KEYS_JSON") or "{}")
    except ValueError:
        return ""
    first = next(iter(keys), "") if isinstance(keys, dict) else ""
    return first.strip() if isinstance(first, str) else ""


def auth_headers(env: Mapping[str, str] | None = None) -> tuple[dict[str, str], str]:
    """(headers, mode): `x-api-key` and/or `authorization`; mode is `api_key`, `bearer` or `none`."""
    env = os.environ if env is None else env
    headers: dict[str, str] = {}
    key = api_key(env)
    if key:
        headers["x-api-key"] = key
    bearer = (env.get("PERF_AUTH_BEARER") or "").strip()
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    mode = "api_key" if key else "bearer" if bearer else "none"
    return headers, mode


def json_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The auth headers plus `content-type: application/json`: what every POST to the target carries."""
    return {**auth_headers(env)[0], **JSON_CONTENT_TYPE}
