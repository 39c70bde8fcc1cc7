"""Response validation: a 200 counts as a success only if its body is what the contract promises.

`classify` turns (status, body, error) into a `Verdict`: its category (the benchmark's `errors` keys) and its
`by_status` key (the HTTP status, `error:<Exception>` for transport errors as the Aionis kit, or `empty_recall` /
`invalid_body` for a 200 that breaks the contract). A recall of a question with answers that returns fewer seeds
than expected is `empty_recall`: the Aionis kit counted those as (fast) successes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memload.contract import (
    RECALL_EMPTY_RESPONSE_KEYS,
    RECALL_RESPONSE_KEYS,
    SEED_KEYS,
    SHA256_HEX_RE,
    WRITE_RESPONSE_KEYS,
)

try:  # orjson is a runtime dependency of the kit; the stdlib keeps the suite usable against any server without it
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    from json import loads as _loads

OK = "ok"
RATE_LIMITED = "rate_limited_429"
CLIENT_4XX = "client_4xx"
SERVER_5XX = "server_5xx"
TRANSPORT = "transport"
EMPTY_RECALL = "empty_recall"
INVALID_BODY = "invalid_body"
CATEGORIES = (RATE_LIMITED, CLIENT_4XX, SERVER_5XX, TRANSPORT, EMPTY_RECALL, INVALID_BODY)

RECALL_ENDPOINTS = ("recall_text", "recall")
WRITE_ENDPOINT = "write"
HEALTH_ENDPOINT = "health"


@dataclass(frozen=True, slots=True)
class Verdict:
    category: str
    status_key: str
    detail: str = ""
    retry_after_ms: float | None = None  # from a 429 body's details, when present

    @property
    def ok(self) -> bool:
        return self.category == OK


_OK_200 = Verdict(OK, "200")
_NUMBER = (int, float)  # JSON numbers parse to exactly these (a bool is not a similarity)


def classify(endpoint: str, status: int, body: bytes | None, error: BaseException | None = None, *,
             expected_min_seeds: int = 0, expected_nodes: int = 1) -> Verdict:
    """Judge one response of `endpoint` (`recall_text`, `recall` or `write`)."""
    if error is not None or status == 0:
        name = type(error).__name__ if error is not None else "NoResponse"
        return Verdict(TRANSPORT, f"error:{name}", str(error or "no response"))
    if status == 429:
        doc = _parse(body)
        details = doc.get("details") if isinstance(doc, dict) else None
        ra = details.get("retry_after_ms") if isinstance(details, dict) else None
        return Verdict(RATE_LIMITED, "429", str(doc.get("error", "")) if isinstance(doc, dict) else "",
                       float(ra) if isinstance(ra, (int, float)) else None)
    if 200 <= status < 300:
        doc = _parse(body)
        if endpoint == HEALTH_ENDPOINT:
            ok = isinstance(doc, dict) and doc.get("ok") is True
            return _OK_200 if ok else Verdict(INVALID_BODY, INVALID_BODY, 'expected {"ok": true}')
        if endpoint == WRITE_ENDPOINT:
            problem = _write_problem(doc, expected_nodes)
            return _OK_200 if problem is None else Verdict(INVALID_BODY, INVALID_BODY, problem)
        problem, seeds = _recall_problem(doc)
        if problem is not None:
            return Verdict(INVALID_BODY, INVALID_BODY, problem)
        if seeds < expected_min_seeds:
            return Verdict(EMPTY_RECALL, EMPTY_RECALL, f"{seeds} seeds, expected >= {expected_min_seeds}")
        return _OK_200 if status == 200 else Verdict(OK, str(status))
    doc = _parse(body)
    code = str(doc.get("error", "")) if isinstance(doc, dict) else ""
    category = SERVER_5XX if status >= 500 else CLIENT_4XX
    return Verdict(category, str(status), code)


def _parse(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return _loads(body)
    except ValueError:
        return None


def _write_problem(doc: Any, expected_nodes: int) -> str | None:
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    if not WRITE_RESPONSE_KEYS <= doc.keys():
        return f"missing keys {sorted(WRITE_RESPONSE_KEYS - doc.keys())}"
    if not isinstance(doc["commit_id"], str) or not doc["commit_id"]:
        return "commit_id is not a string"
    if not isinstance(doc["commit_hash"], str) or not SHA256_HEX_RE.match(doc["commit_hash"]):
        return "commit_hash is not 64 hex digits"
    nodes = doc["nodes"]
    if not isinstance(nodes, list) or len(nodes) != expected_nodes:
        return f"expected {expected_nodes} nodes"
    if not all(isinstance(n, dict) and isinstance(n.get("id"), str) for n in nodes):
        return "node without id"
    if not isinstance(doc["edges"], list):
        return "edges is not a list"
    return None


def _recall_problem(doc: Any) -> tuple[str | None, int]:
    """(problem or None, number of seeds)."""
    if not isinstance(doc, dict):
        return "body is not a JSON object", 0
    seeds = doc.get("seeds")
    if not isinstance(seeds, list):
        return "seeds is not a list", 0
    required = RECALL_RESPONSE_KEYS if seeds else RECALL_EMPTY_RESPONSE_KEYS
    if not required <= doc.keys():
        return f"missing keys {sorted(required - doc.keys())}", len(seeds)
    sub = doc["subgraph"]
    if not isinstance(sub, dict) or not isinstance(sub.get("nodes"), list) or not isinstance(sub.get("edges"), list):
        return "subgraph is not {nodes: [], edges: []}", len(seeds)
    if not isinstance(doc["ranked"], list):
        return "ranked is not a list", len(seeds)
    for seed in seeds:
        if type(seed) is not dict or not SEED_KEYS <= seed.keys():  # (JSON objects parse to exactly dict)
            return "seed without the contract's keys", len(seeds)
        if type(seed["similarity"]) not in _NUMBER:
            return "seed similarity is not a number", len(seeds)
    return None, len(seeds)
