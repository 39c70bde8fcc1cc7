"""Request bodies of the Aionis kit's perf-benchmark, serialised once where they repeat.

`/recall` needs a query vector: it is the fake embedder's vector of the query text (memload.embedder, the Aionis kit's
default provider, shared with the API and the seeder), so `/recall` and `/recall_text` ask the same question of a
server running the fake provider. The embedder is pure computation, no database; it is imported on first use only.
"""

from __future__ import annotations

from functools import lru_cache

try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover
    import json

    def _dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


def dumps(obj: object) -> bytes:
    """Compact JSON, as every body here is serialised."""
    return _dumps(obj)


@lru_cache(maxsize=4096)
def recall_text_body(tenant_id: str, scope: str, text: str, limit: int) -> bytes:
    return _dumps({"tenant_id": tenant_id, "scope": scope, "query_text": text, "limit": limit})


@lru_cache(maxsize=256)
def recall_body(tenant_id: str, scope: str, text: str, limit: int) -> bytes:
    from memload.embedder import fake_embed

    return _dumps({"tenant_id": tenant_id, "scope": scope, "query_embedding": fake_embed(text), "limit": limit})


def write_client_id(run_tag: str, i: int) -> str:
    return f"perf_write_{run_tag}_{i}"


def write_body(tenant_id: str, scope: str, run_tag: str, i: int, auto_embed: bool) -> bytes:
    """The Aionis kit's write: `perf write <runTag> #<i>`, client id `perf_write_<runTag>_<i>`, shared lane."""
    return _dumps({
        "tenant_id": tenant_id, "scope": scope, "input_text": f"perf write {run_tag} #{i}",
        "auto_embed": auto_embed, "memory_lane": "shared",
        "nodes": [{"client_id": write_client_id(run_tag, i), "type": "event",
                   "text_summary": f"perf write payload #{i}"}],
    })
