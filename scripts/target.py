"""Who is the target? One GET /health before any load: status, body and the server-identifying headers.

memload's reference API answers `{"ok": true, "server": "memload-reference", "version": …}` and sends
`x-memload-api` on every response; anything else is an external server (a real Aionis deployment, say), whose
settings memload can only observe, never report as its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from memload.contract import HEALTH

REFERENCE_SERVER = "memload-reference"
IDENTIFYING_HEADERS = ("server", "x-powered-by", "via")
IDENTIFYING_PREFIX = "x-memload-"


def identifying_headers(headers: Any) -> dict[str, str]:
    """The response headers that say what the server is (server, x-powered-by, via, x-memload-*), lower-cased."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low in IDENTIFYING_HEADERS or low.startswith(IDENTIFYING_PREFIX):
            out[low] = value
    return out


def probe_target(base_url: str, *, timeout_s: float = 3.0, started_here: bool = False) -> dict[str, Any]:
    """The manifest's `target` object. `started_here`: the matrix started memload's own API for this run, so the
    target is the reference API whatever /health says. Never raises: a dead target has `probe_error`."""
    target: dict[str, Any] = {"base_url": base_url, "kind": "external", "health": None, "health_status": None,
                              "headers": {}, "probe_error": None}
    url = base_url.rstrip("/") + HEALTH
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read(65536)
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read(65536)
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        target["probe_error"] = f"GET {url}: {reason}"
        return target
    target["health_status"] = status
    target["headers"] = identifying_headers(headers)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    target["health"] = body if isinstance(body, dict) else None
    says_reference = isinstance(body, dict) and body.get("server") == REFERENCE_SERVER
    target["kind"] = "reference" if says_reference or started_here else "external"
    if status >= 500:
        target["probe_error"] = f"GET {url}: HTTP {status}"
    return target
