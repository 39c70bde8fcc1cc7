"""Preflight: before any load, prove the target answers and the scope has something to recall.

`GET /health` must answer 2xx (a dead target or an error status stops the run: measuring it would only time
refused connections). Then one recall_text on the scope, with the run's first query: zero seeds means the scope
has no recallable memories, and every recall of the run would be a fast empty answer that looks like a good
latency, so a run with recall users stops unless `--allow-empty-scope`. A scope found non-empty also arms the
`empty_recall` check for the constant query (a later recall returning no seeds there is an anomaly, not a success).

`run_preflight` returns the bench JSON's `preflight` block plus `error`: None, or {"kind", "message"} with kind
`target` (dead or failing target: exit 2), `empty_scope` or `recall` (the recall was refused, e.g. 401: exit 1).
"""

from __future__ import annotations

import json
from typing import Any

from locustfiles.validation import OK, SERVER_5XX, TRANSPORT, classify
from memload.client import ApiClient, RequestFailed, recall_text_body
from memload.contract import HEALTH, RECALL_TEXT
from memload.errors import ExitCode

RECALL_ATTEMPTS = 3  # a 429 on the preflight recall is waited out (Retry-After, at most MAX_HOLD_S) this often
MAX_HOLD_S = 5.0
EXIT_KIND = {"target": int(ExitCode.TARGET_FAILING), "empty_scope": int(ExitCode.ERROR),
             "recall": int(ExitCode.ERROR)}


def run_preflight(host: str, *, scope: str, tenant_id: str, query: str, limit: int, headers: dict[str, str],
                  timeout_s: float, check_scope: bool, allow_empty_scope: bool) -> dict[str, Any]:
    """Probe `host` (see the module docstring); `check_scope` = the run has recall users."""
    result: dict[str, Any] = {"health": {"status": 0, "body": None}, "scope_nonempty": None, "seeds_seen": 0,
                              "error": None}
    base = host.rstrip("/")
    # a 429 on the probe is waited out (Retry-After, at most MAX_HOLD_S) RECALL_ATTEMPTS - 1 times
    client = ApiClient(base, headers=headers, timeout_s=timeout_s, max_429_retries=RECALL_ATTEMPTS - 1,
                       max_retry_wait_s=MAX_HOLD_S)

    def request(method: str, path: str, body: bytes | None) -> tuple[int, bytes | None, BaseException | None]:
        try:
            reply = client.request(method, path, body)
        except RequestFailed as exc:  # a dead target: refused, reset, timed out, bad DNS
            return 0, None, exc.cause or exc
        return reply.status, reply.body, None

    status, body, err = request("GET", HEALTH, None)
    result["health"] = {"status": status, "body": _json(body)}
    if err is not None:
        result["error"] = {"kind": "target", "message": f"{base} is not answering: GET {HEALTH} failed "
                                                         f"({type(err).__name__}: {err})"}
        return result
    if not 200 <= status < 300:
        result["error"] = {"kind": "target", "message": f"{base} is not healthy: GET {HEALTH} answered {status}"}
        return result

    status, body, err = request("POST", RECALL_TEXT, recall_text_body(tenant_id, scope, query, limit))
    verdict = classify("recall_text", status, body, err)
    if verdict.category in (TRANSPORT, SERVER_5XX):
        result["error"] = {"kind": "target", "message": f"{base}: the preflight recall_text on scope {scope!r} "
                                                         f"failed ({verdict.status_key} {verdict.detail})".rstrip()}
        return result
    if verdict.category != OK:
        result["error"] = {"kind": "recall", "message": f"{base}: the preflight recall_text on scope {scope!r} "
                                                         f"answered {verdict.status_key} {verdict.detail}".rstrip()}
        return result
    doc = _json(body)
    seeds = len(doc.get("seeds") or []) if isinstance(doc, dict) else 0
    result["seeds_seen"] = seeds
    result["scope_nonempty"] = seeds > 0
    if seeds == 0 and check_scope and not allow_empty_scope:
        result["error"] = {"kind": "empty_scope",
                           "message": f"scope {scope!r} (tenant {tenant_id!r}) has no recallable memories: a "
                                      f"recall_text on it returned no seeds at {base}; seed it (memload seed) or "
                                      f"pass --allow-empty-scope"}
    return result


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
