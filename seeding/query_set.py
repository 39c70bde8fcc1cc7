"""The query set of a seeded scope (docs/ARTIFACTS.md): topic titles that `recall_text` can answer.

Query vectors are not stored: the query of topic k is `fake_embed("perf topic #k")`, which any reader recomputes
with memload.embedder (1000 stored 1536-d vectors would be ~20 MB of JSON for nothing).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seeding.params import Tenancy
from seeding.vectors import topic_title


def default_path(memload_home: Path, scope_key: str) -> Path:
    """MEMLOAD_HOME/query_sets/<scope_key>.json (characters other than [A-Za-z0-9._:-] become '_')."""
    return memload_home / "query_sets" / (re.sub(r"[^A-Za-z0-9._:-]", "_", scope_key) + ".json")


def build(tenancy: Tenancy, topic_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    return {
        "scope": tenancy.scope,
        "tenant_id": tenancy.tenant_id,
        "scope_key": tenancy.scope_key,
        "queries": [{"text": topic_title(k), "topic_id": str(tid), "expected_min_seeds": 1}
                    for k, tid in enumerate(topic_ids, start=1)],
    }


def write(path: Path, payload: dict[str, Any]) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
    return path


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


_TITLE_RE = re.compile(r"^perf topic #([0-9]+)$")


def from_database(url: str, tenancy: Tenancy) -> dict[str, Any] | None:
    """The query set of a scope another seeder filled (`seed --command`): its topics titled like memload's
    ('perf topic #k', the seed document's titles too), in k order. None when the scope has no such topic."""
    from memload.db import connection

    with connection(url) as conn:
        rows = conn.execute("SELECT id, title FROM memory_nodes WHERE scope = %s AND type = 'topic'"
                            " AND title LIKE 'perf topic #%%'", (tenancy.scope_key,)).fetchall()
    numbered = sorted((int(m.group(1)), str(tid), title) for tid, title in rows
                      if title and (m := _TITLE_RE.match(title)))
    if not numbered:
        return None
    return {"scope": tenancy.scope, "tenant_id": tenancy.tenant_id, "scope_key": tenancy.scope_key,
            "queries": [{"text": title, "topic_id": tid, "expected_min_seeds": 1} for _, tid, title in numbered]}
