"""Starting the reference API for a test: `memload api` through the stack the CLI itself uses (scripts/stack.py),
on a free or a fixed loopback port, against a database the test chose; or the app in this process behind
Starlette's test client, when a test checks only what the app answers.

One starter for every test: a fixture-started API and one a test kills and restarts on the same port go through
the same environment, health wait and stop (the whole process group).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memload.config import Settings
from scripts.stack import Child, LocalStack, wait_answers

if TYPE_CHECKING:
    from starlette.testclient import TestClient

# The recall_text embedding limiter (4 req/s per client by default, loopback included) would throttle every test that
# sends recall_text in a loop; test APIs start without it unless the test sets these variables itself.
UNTHROTTLED_EMBED = {"RECALL_TEXT_EMBED_RATE_LIMIT_RPS": "1000000", "RECALL_TEXT_EMBED_RATE_LIMIT_BURST": "1000000",
                     "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_RPS": "1000000",
                     "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_BURST": "1000000"}


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200 (or the process dies / time runs out): the stack's own wait."""
    wait_answers(url, [Child("process", proc, None, None)] if proc is not None else [], timeout, what=url)


@dataclass
class ApiProcess:
    """A running `memload api` child: its URL, process, the variables the test set, and its log."""

    base_url: str
    proc: subprocess.Popen
    env: dict[str, str]
    log_path: Path
    stack: LocalStack
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.stack.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_api(database_url: str, log_dir: Path, *, port: int = 0, timeout: float = 60.0, **env: str) -> ApiProcess:
    """`memload api` on 127.0.0.1:`port` (0: a free one) against `database_url`; `env` overrides settings by name
    (any case). Waits for /health; raises RuntimeError with the log if the API does not come up."""
    overrides = {"DATABASE_URL": database_url, **UNTHROTTLED_EMBED, **{k.upper(): str(v) for k, v in env.items()}}
    settings = Settings.from_env({**os.environ, **overrides})
    stack = LocalStack(settings, port=port, worker=False, migrate=False, log_dir=log_dir, env=overrides,
                       startup_timeout_s=timeout, log=lambda _msg: None)
    try:
        stack.start()
    except Exception as exc:
        log_path = log_dir / "api.log"
        text = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        raise RuntimeError(f"API did not start ({exc}):\n{text}") from None
    child = stack.children[0]
    assert child.log_path is not None
    return ApiProcess(stack.base_url, child.proc, overrides, child.log_path, stack)


@contextmanager
def in_process_api(database_url: str, *, loopback: bool = True, **env: str) -> Iterator[TestClient]:
    """The API app served in this process through Starlette's test client (no uvicorn, no port): for tests of what
    the app answers (validation, error envelopes) that need no real process. The database is real; the settings are
    those a started API would read (`env` overrides by name, any case). `loopback`: requests come from 127.0.0.1,
    as from a local load generator."""
    from starlette.testclient import TestClient

    from memory_api.app import create_asgi

    overrides = {"DATABASE_URL": database_url, **UNTHROTTLED_EMBED, **{k.upper(): str(v) for k, v in env.items()}}
    settings = Settings.from_env({**os.environ, **overrides})
    client = ("127.0.0.1", 50000) if loopback else ("192.0.2.10", 50000)
    with TestClient(create_asgi(settings, database_url), client=client) as test_client:  # runs the lifespan
        yield test_client


def asgi_call(client: TestClient, path: str, body: Any = None, *, raw: bytes | None = None,
              ctype: str = "application/json", method: str = "POST", headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], Any]:
    """One JSON request through the test client: (status, lower-cased headers, decoded body or None)."""
    import json

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = client.request(method, path, content=data, headers={"content-type": ctype, **(headers or {})})
    return r.status_code, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.content or b"null")
