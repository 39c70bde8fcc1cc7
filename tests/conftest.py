"""Shared fixtures: a real PostgreSQL (embedded unless DATABASE_URL is set), fresh migrated databases, API processes.

Every test database is created from scratch and dropped at the end, so tests never touch a user's data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from memload.config import REPO_ROOT, Settings
from scripts import embedded_db
from scripts.migrate import migrate

PYTHON = sys.executable
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200 (or the process dies / time runs out)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class ApiProcess:
    base_url: str
    proc: subprocess.Popen
    env: dict[str, str]
    log_path: Path
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_api(db_url: str, tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Factory: start `memload api` on a free loopback port against `db_url` (or `database_url=`), env overrides."""
    started: list[ApiProcess] = []

    def start(database_url: str | None = None, **env_overrides: str) -> ApiProcess:
        port = free_port()
        env = dict(os.environ)
        env.update({"DATABASE_URL": database_url or db_url, "PORT": str(port), "HOST": "127.0.0.1"})
        env.update({k.upper(): str(v) for k, v in env_overrides.items()})
        log_path = tmp_path / f"api_{port}.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [PYTHON, "-m", "scripts.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        api = ApiProcess(f"http://127.0.0.1:{port}", proc, env, log_path)
        started.append(api)
        try:
            wait_http(api.base_url + "/health", proc=proc)
        except Exception:
            api.stop()
            raise RuntimeError(f"API did not start:\n{api.log()}") from None
        return api

    yield start
    for api in started:
        api.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `memload ARGS` in a subprocess (the way users run it), capturing output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [PYTHON, "-m", "scripts.cli", *args], cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout, input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"memload {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
