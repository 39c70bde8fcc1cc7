"""The API's recall path (autocommit, no plan_cache_mode switch) against the implementation it replaced
(tests/recall_reference.py: one pipelined transaction), on seeded scopes: the kit's clustered data and the
copied-vector shape, where every distance ties and the budgeted LIMITs of stage 2 cut through ties. Same seeds, same
ranking, same neighbourhood, byte for byte in the serialised response; and every recall still leaves exactly one audit
row.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg
import pytest

from memload.config import Settings
from memload.embedder import fake_embed_many
from memory_api.app import ApiState, _run_recall
from memory_api.recall import RecallQuery
from memory_api.schema import RECALL_REQUEST
from memory_api.validation import validate
from tests.support import recall_reference as reference
from tests.support.seed import add_source_vector, seed

QUERIES = ("memory graph perf", "perf topic #3", "synthetic perf event #17", "an unrelated question")
# Small budgets make stage 2 and the node budget truncate on a small dataset (hop budget 50, edge budget 25 and node
# budget 20 for max_edges 5 / max_nodes 5); the defaults and the other switches cover the remaining branches.
VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"max_edges": 5, "max_nodes": 5},
    {"max_edges": 5, "max_nodes": 5, "neighborhood_hops": 1},
    {"neighborhood_hops": 1, "limit": 50},
    {"include_meta": True, "include_slots": True, "return_debug": True, "max_nodes": 12, "max_edges": 30},
    {"include_slots_preview": True, "min_edge_weight": 0.8, "ranked_limit": 7},
    {"limit": 200, "max_edges": 20},
    {"limit": 3},
)


@pytest.fixture(scope="module")
def scopes(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    tmp: Path = tmp_path_factory.mktemp("recall_eq")
    add_source_vector(db_url, "treq_src")
    seed(db_url, tmp, "treq_clustered", source="treq_src", events=2000, topics=20, seed=7)
    seed(db_url, tmp, "treq_copy", source="treq_src", events=2000, topics=20, seed=7, vectors="copy")
    return db_url, ["treq_clustered", "treq_copy"]


def _query(scope: str, text: str, extra: dict[str, Any]) -> RecallQuery:
    vec = fake_embed_many([text])[0]
    clean = validate(RECALL_REQUEST, {"scope": scope, "query_embedding": [float(x) for x in vec], **extra})
    return RecallQuery("default", scope, scope, None, None, np.asarray(vec, dtype=np.float32), "0" * 64, clean)


async def _compare(url: str, scope_keys: list[str]) -> list[tuple[str, str, dict[str, Any], int, int, int]]:
    """The reference in a rolled-back transaction, the API's path as the API runs it (its audit rows stay), every case
    repeated until psycopg prepares the statements and PostgreSQL could pick generic plans. Returns the sizes seen."""
    s = Settings.from_env()
    st = ApiState(s, url)
    await st.pool.open(wait=True)
    seen: list[tuple[str, str, dict[str, Any], int, int, int]] = []
    try:
        for _ in range(3):  # psycopg prepares after 5 runs, PostgreSQL may go generic after 5 more
            for scope in scope_keys:
                for text in QUERIES:
                    for extra in VARIANTS:
                        q = _query(scope, text, extra)
                        async with st.pool.connection() as conn:
                            async with conn.pipeline():
                                ref = await reference.run_recall(conn, q, s, "recall")
                                await conn.rollback()
                        new = await _run_recall(st, q, "recall")
                        a, b = (orjson.dumps(o, option=orjson.OPT_SORT_KEYS) for o in (ref, new))
                        assert a == b, (scope, text, extra)
                        sub = ref["subgraph"]
                        seen.append((scope, text, extra, len(ref["seeds"]), len(sub["nodes"]), len(sub["edges"])))
    finally:
        await st.pool.close()
    return seen


def test_rewritten_recall_equals_the_reference_on_clustered_and_copied_vectors(scopes: tuple[str, list[str]]
                                                                              ) -> None:
    url, keys = scopes
    seen = asyncio.run(_compare(url, keys))
    assert len(seen) == 3 * len(keys) * len(QUERIES) * len(VARIANTS)
    # the comparison is not vacuous: both datasets give seeds, nodes and edges, and the small budgets truncate
    for key in keys:
        mine = [x for x in seen if x[0] == key]
        assert all(x[3] > 0 for x in mine) and any(x[4] >= 5 and x[5] > 0 for x in mine), key
    with psycopg.connect(url) as conn:
        # the copied-vector scope: one vector for all, so stage 2's LIMITs cut through ties
        assert conn.execute("SELECT count(DISTINCT embedding::text) FROM memory_nodes WHERE scope = 'treq_copy'"
                            ).fetchone()[0] == 1


async def _recall_n(url: str, scope: str, n: int) -> list[dict[str, Any]]:
    st = ApiState(Settings.from_env(), url)
    await st.pool.open(wait=True)
    try:
        return [await _run_recall(st, _query(scope, QUERIES[i % len(QUERIES)], VARIANTS[i % len(VARIANTS)]),
                                  "recall_text") for i in range(n)]
    finally:
        await st.pool.close()


def test_every_recall_writes_its_audit_row(scopes: tuple[str, list[str]]) -> None:
    url, keys = scopes
    for key in [*keys, "treq_nothing_here"]:  # a scope without vectors: zero seeds, still one row
        with psycopg.connect(url) as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM memory_recall_audit").fetchone()[0]
        outs = asyncio.run(_recall_n(url, key, 8))
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT scope, endpoint, seed_count, node_count, edge_count FROM memory_recall_audit "
                                "WHERE id > %s AND scope = %s ORDER BY id", (before, key)).fetchall()
        assert rows == [(key, "recall_text", len(o["seeds"]), len(o["subgraph"]["nodes"]),
                         len(o["subgraph"]["edges"])) for o in outs], key
