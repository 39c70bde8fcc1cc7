"""`memload api`: the reference memory API (the seed's `npm run dev`), Aionis v0.1.0 wire-compatible."""

from __future__ import annotations

import argparse

from scripts.common import log, settings_from_args
from scripts.options import add_option, bounded_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve the reference memory API (write, recall, recall_text) until Ctrl-C")
    add_option(p, "--host", env="HOST", default="127.0.0.1", help="address to listen on")
    add_option(p, "--port", env="PORT", default=3001, type=bounded_int(1, 65535), help="TCP port")
    add_option(p, "--workers", env="API_WORKERS", default=1, type=bounded_int(1, 64),
               help="uvicorn worker processes (rate-limit buckets are per process, as in Aionis)")
    p.set_defaults(func=run_api)


def check_schema(url: str) -> None:
    """Fail with one line when the database is unreachable or not migrated (instead of a startup traceback)."""
    from memload.db import connection, redact_url
    from memload.errors import DatabaseUnavailable

    with connection(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('memory_nodes') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise DatabaseUnavailable(f"database {redact_url(url)} has no memload schema: run `memload migrate` first")


def run_api(args: argparse.Namespace) -> int:
    from memload.db import redact_url
    from memory_api.server import serve
    from scripts.embedded_db import resolve_database_url

    settings = settings_from_args(args, host=args.host, port=int(args.port), api_workers=int(args.workers))
    url = resolve_database_url(settings)
    check_schema(url)
    log(f"memory API on http://{settings.host}:{settings.port} (db {redact_url(url)}, "
        f"auth {settings.memory_auth_mode}, workers {settings.api_workers})")
    serve(settings, url, settings.host, settings.port)
    return 0
