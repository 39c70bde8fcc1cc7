"""`memload db start|stop|status|url` and `memload migrate` (the seed's `make db-migrate`)."""

from __future__ import annotations

import argparse

from memload.errors import ExitCode
from scripts.common import settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "db", help="manage the embedded PostgreSQL + pgvector server (used when DATABASE_URL is unset)",
        description="Start, stop or inspect the embedded PostgreSQL + pgvector server under MEMLOAD_HOME, the "
                    "database every command uses when DATABASE_URL is unset. `status` exits 0 when it runs (or "
                    "DATABASE_URL names another server) and 1 when it is stopped.")
    p.add_argument("action", choices=["start", "stop", "status", "url"], help="what to do")
    p.set_defaults(func=run_db)

    m = sub.add_parser("migrate", help="apply sql/migrations in order, each once",
                       description="Apply sql/migrations/NNNN_name.sql in order, one transaction each; an applied "
                                   "file that changed since is refused.")
    m.set_defaults(func=run_migrate)


def run_db(args: argparse.Namespace) -> int:
    from scripts import embedded_db

    settings = settings_from_args(args)
    if settings.database_url and args.action in ("start", "stop"):
        print(f"DATABASE_URL is set: `memload db {args.action}` manages only the embedded server; nothing done")
        return 0
    if args.action == "start":
        url = embedded_db.start(settings)
        print(url)
        return 0
    if args.action == "stop":
        stopped = embedded_db.stop(settings)
        print("stopped" if stopped else "not running")
        return 0
    if args.action == "url":
        print(embedded_db.resolve_database_url(settings, autostart=False))
        return 0
    st = embedded_db.status(settings)
    if settings.database_url:
        from memload.db import redact_url

        print(f"external DATABASE_URL={redact_url(settings.database_url)}")
    print(f"embedded: {'running' if st.running else 'stopped'} pgdata={st.pgdata}"
          + (f" pid={st.pid} url={st.url}" if st.running else ""))
    if not settings.database_url:
        sizing = embedded_db.machine_sizing(embedded_db.planned_dataset(settings))
        print(f"embedded shared_buffers: {sizing.pool_reason} (at its start; memload.conf overrides)")
    return ExitCode.OK if st.running or settings.database_url else ExitCode.ERROR


def run_migrate(args: argparse.Namespace) -> int:
    from scripts.embedded_db import resolve_database_url
    from scripts.migrate import migrate

    url = resolve_database_url(settings_from_args(args))
    result = migrate(url)
    for name in result.applied:
        print(f"applied  {name}")
    print(f"migrations: {len(result.applied)} applied, {len(result.skipped)} already applied")
    return 0
