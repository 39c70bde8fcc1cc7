"""Shared fixtures: a real PostgreSQL (embedded unless DATABASE_URL is set), fresh migrated databases, API processes.

Every test database is created from scratch and dropped at the end, so tests never touch a user's data. Fixtures and
hooks only: the helpers tests import live in tests/support.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from memload.config import Settings
from scripts import embedded_db
from scripts.migrate import migrate
from tests.support.api import ApiProcess
from tests.support.api import start_api as start_api_process

pytest_plugins = ["tests.support.aionis"]


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the server the tests run against (its maintenance database)."""
    settings = Settings.from_env()
    if settings.database_url:
        return with_database(settings.database_url, "postgres")
    return with_database(embedded_db.start(settings), "postgres")


def _create_database(server_url: str) -> str:
    name = f"memload_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


def _drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A new, empty database (no migrations), dropped afterwards."""
    url = _create_database(server_url)
    yield url
    _drop_database(server_url, url)


@pytest.fixture(scope="session")
def db_url(server_url: str) -> Iterator[str]:
    """A migrated database shared by the session (tests use their own scopes in it)."""
    url = _create_database(server_url)
    migrate(url)
    yield url
    _drop_database(server_url, url)


@pytest.fixture
def fresh_db_url(server_url: str) -> Iterator[str]:
    """A migrated database of this test alone."""
    url = _create_database(server_url)
    migrate(url)
    yield url
    _drop_database(server_url, url)


@pytest.fixture
def start_api(db_url: str, tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Factory: start `memload api` on a free loopback port against `db_url` (or `database_url=`), env overrides."""
    started: list[ApiProcess] = []

    def start(database_url: str | None = None, **env_overrides: str) -> ApiProcess:
        api = start_api_process(database_url or db_url, tmp_path / f"api_{len(started)}", **env_overrides)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
