"""Schema migrations: sql/migrations/NNNN_name.sql applied in order, one transaction each, recorded with sha256.

An applied file whose content changed is refused: the database no longer matches what the file says.
A transaction-level advisory lock makes concurrent `memload migrate` runs safe.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from memload.config import MIGRATIONS_DIR
from memload.db import connection
from memload.errors import MigrationError

_NAME_RE = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x6D656D6C  # "meml"


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]
    skipped: list[str]


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    files = sorted(p for p in directory.glob("*.sql"))
    bad = [p.name for p in files if not _NAME_RE.match(p.name)]
    if bad:
        raise MigrationError(f"migration file names must look like NNNN_name.sql: {', '.join(bad)}")
    return files


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> MigrationResult:
    files = migration_files(directory)
    applied: list[str] = []
    skipped: list[str] = []
    with connection(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " filename text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for path in files:
            digest = _sha(path)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                row = conn.execute("SELECT sha256 FROM schema_migrations WHERE filename = %s", (path.name,)).fetchone()
                if row is not None:
                    if row[0] != digest:
                        raise MigrationError(
                            f"migration {path.name} changed after it was applied "
                            f"(applied sha256 {row[0][:12]}…, file now {digest[:12]}…); "
                            "add a new migration instead of editing an applied one"
                        )
                    skipped.append(path.name)
                    continue
                try:
                    conn.execute(path.read_text())  # type: ignore[arg-type]  # whole file, one transaction
                except Exception as exc:
                    raise MigrationError(f"migration {path.name} failed: {str(exc).strip().splitlines()[0]}") from None
                conn.execute("INSERT INTO schema_migrations (filename, sha256) VALUES (%s, %s)", (path.name, digest))
                applied.append(path.name)
    return MigrationResult(applied, skipped)
