"""`memload bench --verify-writes`: prove no acknowledged write was lost and no rejected one was (half-)applied.

Input: the ack log the write users kept (locustfiles/write_ack.py: one line per write with its client_id, HTTP
status, and for 2xx the commit_id and node id the server returned). Against the database, per write:

* acknowledged (2xx): its node (by client_id) must exist in the scope with the returned id, pointing at the returned
  commit, and that commit must exist; otherwise it is `missing` (a lost write);
* rejected with a 4xx: nothing of it may exist (no node with its client_id, no commit whose diff names it);
* 5xx or no response (transport error): the client cannot know; it must be all or nothing. A commit without its node
  or a node without its commit is `half_written`. Fully written ones are counted, not failed (a retry of the same body
  returns the same commit: writes are idempotent).

Run writes carry unique client ids (`perf_write_<runTag>_<i>`), so a client id identifies one request.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

_NODES_SQL = """
SELECT client_id, id::text, commit_id::text FROM memory_nodes WHERE scope = %s AND client_id = ANY(%s)
"""
_COMMITS_SQL = """
SELECT n.value->>'client_id', c.id::text
FROM memory_commits c CROSS JOIN LATERAL jsonb_array_elements(c.diff_json->'nodes') AS n(value)
WHERE c.scope = %s AND n.value->>'client_id' = ANY(%s)
"""
_COMMIT_IDS_SQL = "SELECT id::text FROM memory_commits WHERE scope = %s AND id = ANY(%s::uuid[])"


@dataclass
class Ack:
    client_id: str
    status: int
    status_key: str
    commit_id: str | None
    node_id: str | None

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class WriteCheck:
    """Counts of one verification (the JSON `verify_writes` block of the bench result)."""

    scope_key: str
    sent: int = 0
    acknowledged: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    rejected_4xx: int = 0
    rejected_4xx_written: list[str] = field(default_factory=list)
    unknown_outcome: int = 0  # 5xx or transport error
    unknown_written: int = 0
    unknown_absent: int = 0
    half_written: list[str] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.rejected_4xx_written and not self.half_written

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "scope_key": self.scope_key, "sent": self.sent, "acknowledged": self.acknowledged,
            "found": self.found, "missing": len(self.missing), "rejected_4xx": self.rejected_4xx,
            "rejected_4xx_written": len(self.rejected_4xx_written), "unknown_outcome": self.unknown_outcome,
            "unknown_written": self.unknown_written, "unknown_absent": self.unknown_absent,
            "half_written": len(self.half_written), "by_status": dict(sorted(self.by_status.items())),
            "examples": {"missing": self.missing[:5], "rejected_4xx_written": self.rejected_4xx_written[:5],
                         "half_written": self.half_written[:5]},
        }

    def line(self) -> str:
        return (f"writes acknowledged {self.acknowledged}, found {self.found}, missing {len(self.missing)}; "
                f"4xx {self.rejected_4xx} (written {len(self.rejected_4xx_written)}); 5xx/transport "
                f"{self.unknown_outcome} (fully written {self.unknown_written}, absent {self.unknown_absent}); "
                f"half-written {len(self.half_written)}")


def read_acks(path: Path) -> list[Ack]:
    """The ack lines (a torn last line, from a process killed mid-write, is skipped)."""
    out: list[Ack] = []
    if not path.is_file():
        return out
    for raw in path.read_text().splitlines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        out.append(Ack(str(d["client_id"]), int(d["status"]), str(d.get("status_key", d["status"])),
                       d.get("commit_id"), d.get("node_id")))
    return out


def verify(conn: psycopg.Connection, scope_key: str, acks: list[Ack]) -> WriteCheck:
    """Compare the acks with the database rows of `scope_key` (read-only)."""
    check = WriteCheck(scope_key)
    ids = [a.client_id for a in acks]
    nodes = {cid: (nid, commit) for cid, nid, commit in conn.execute(_NODES_SQL, (scope_key, ids))}
    commits: dict[str, set[str]] = {}
    for cid, commit in conn.execute(_COMMITS_SQL, (scope_key, ids)):
        commits.setdefault(cid, set()).add(commit)
    acked_commits = [a.commit_id for a in acks if a.acknowledged and a.commit_id]
    existing = {r[0] for r in conn.execute(_COMMIT_IDS_SQL, (scope_key, acked_commits))}
    for a in acks:
        check.sent += 1
        check.by_status[a.status_key] += 1
        node, commit_ids = nodes.get(a.client_id), commits.get(a.client_id, set())
        if (node is not None and node[1] not in commit_ids) or (node is None and commit_ids):
            check.half_written.append(a.client_id)
        if a.acknowledged:
            check.acknowledged += 1
            if (node is not None and a.commit_id in existing and node == (a.node_id, a.commit_id)
                    and a.commit_id in commit_ids):
                check.found += 1
            else:
                check.missing.append(a.client_id)
        elif 400 <= a.status < 500:
            check.rejected_4xx += 1
            if node is not None or commit_ids:
                check.rejected_4xx_written.append(a.client_id)
        else:
            check.unknown_outcome += 1
            if node is not None and node[1] in commit_ids:
                check.unknown_written += 1
            elif node is None and not commit_ids:
                check.unknown_absent += 1
    return check
