"""The write-acknowledgement log: one JSON line per write the suite sent, for `memload bench --verify-writes`.

Enabled by MEMLOAD_WRITE_ACK_LOG=<path>. Each write user appends `{"client_id", "status", "status_key",
"commit_id", "node_id"}` as soon as it has the response (status 0 = no HTTP response: a transport error), so the
checker can prove afterwards that every acknowledged write is in the database and no rejected one is. Lines are
written with one O_APPEND write each, so Locust worker processes can share the file.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    import json

    def _dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

ENV_VAR = "MEMLOAD_WRITE_ACK_LOG"


class WriteAckLog:
    """Appends ack lines to the file named by MEMLOAD_WRITE_ACK_LOG (a no-op when unset)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get(ENV_VAR, "")
        self._fd: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def record(self, client_id: str, status: int, status_key: str, body: bytes | None) -> None:
        if not self.path:
            return
        commit_id = node_id = None
        if 200 <= status < 300 and body:
            try:
                doc: Any = _loads(body)
                commit_id = doc.get("commit_id") if isinstance(doc, dict) else None
                nodes = doc.get("nodes") if isinstance(doc, dict) else None
                if isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):
                    node_id = nodes[0].get("id")
            except ValueError:
                pass
        line = _dumps({"client_id": client_id, "status": status, "status_key": status_key,
                       "commit_id": commit_id, "node_id": node_id}) + b"\n"
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, line)


_default: WriteAckLog | None = None


def default_log() -> WriteAckLog:
    """This process's log (MEMLOAD_WRITE_ACK_LOG is read once, at the first write)."""
    global _default
    if _default is None:
        _default = WriteAckLog()
    return _default
