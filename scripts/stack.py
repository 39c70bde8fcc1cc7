"""The local system under test as one object: database (embedded unless DATABASE_URL), migrations, API, worker.

`memload up` runs it in the foreground; `memload matrix` and the tests reuse it as a context manager:

    with LocalStack(settings, port=0, worker=True, log_dir=run_dir) as stack:
        ... stack.base_url, stack.database_url ...

A caller that has its own database and needs the API alone (a benchmark, a test, a second checkout's API to compare
against) uses `start_api(database_url, port=..., workers=..., checkout=...)`; any other child that answers
`GET /health` is started with `spawn` and awaited with `wait_healthy`. Every path shares the process-group, die-with-
parent and stop rules below.

Every child runs in a process group of its own (so Ctrl-C in a terminal reaches only this process, which then stops
the children in order: worker first, so it finishes its current job, then the API) and, on Linux, is told to die
with this process even if it is SIGKILLed (PR_SET_PDEATHSIG; Linux ties it to the *thread* that started the child,
so start the stack from a thread that outlives it, e.g. the main thread). `stop()` ends each whole group (SIGTERM,
then SIGKILL after a grace period), so no orphan survives. The embedded database is shared by every memload
command and keeps running (`memload db stop` stops it).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from memload.config import REPO_ROOT, Settings, canonical_env
from memload.contract import HEALTH
from memload.errors import ConfigError, MemloadError
from memload.net import free_port, port_is_free

PR_SET_PDEATHSIG = 1


class StackError(MemloadError):
    """A child of the stack failed to start or died."""


def _die_with_parent() -> Callable[[], None]:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux), however it dies."""
    parent = os.getpid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux/glibc: process groups and stop() still apply
        return lambda: None

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path | None
    log_file: IO[Any] | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalStack:
    """Database + migrations + `memload api` (+ `memload worker`) children, stopped together."""

    def __init__(
        self,
        settings: Settings,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        worker: bool = True,
        migrate: bool = True,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        api_env: Mapping[str, str] | None = None,
        worker_env: Mapping[str, str] | None = None,
        api_args: Sequence[str] = (),
        worker_args: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = settings.port if port is None else port
        self.with_worker = worker
        self.migrate = migrate
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.extra_env = dict(env or {})  # both children
        self.child_env = {"api": dict(api_env or {}), "worker": dict(worker_env or {})}
        self.api_args = list(api_args)
        self.worker_args = list(worker_args)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._log = log or (lambda msg: print(f"[memload up] {msg}", file=sys.stderr, flush=True))
        self.children: list[Child] = []
        self.database_url: str = ""
        self.base_url: str = ""
        self._atexit_registered = False

    # -- lifecycle
    def start(self, should_abort: Callable[[], bool] = lambda: False) -> LocalStack:
        """Bring everything up; on any failure stop what was started and raise. Idempotent while running."""
        if self.children:
            return self
        from scripts.embedded_db import resolve_database_url

        if self.port == 0:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise ConfigError(f"--port: {self.host}:{self.port} is already in use (another API?); pick another port")
        self.database_url = resolve_database_url(self.settings)
        if self.migrate:
            from scripts.migrate import migrate

            result = migrate(self.database_url)
            self._log(f"migrations: {len(result.applied)} applied, {len(result.skipped)} already applied")
        self.base_url = f"http://{self.host}:{self.port}"
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._spawn("api", ["api", "--host", self.host, "--port", str(self.port), *self.api_args])
            if self.with_worker:
                self._spawn("worker", ["worker", *self.worker_args])
            self._wait_healthy(should_abort)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children}

    def dead_child(self) -> Child | None:
        """The first child that has exited, if any."""
        for c in self.children:
            if not c.alive():
                return c
        return None

    def stop(self) -> None:
        """Stop the worker (it finishes its current job), then the API; each whole process group; no orphans."""
        for child in sorted(self.children, key=lambda c: 0 if c.name == "worker" else 1):
            self._stop_child(child)
        for child in self.children:
            if child.log_file is not None:
                child.log_file.close()
        self.children = []

    # -- internals
    def child_settings(self, name: str = "api") -> Settings:
        """The settings child `name` reads from the environment it is (or will be) started with."""
        return Settings.from_env(self._env(name))

    def _env(self, name: str) -> dict[str, str]:
        # Each layer is canonicalised, so an override spelled with an alias name still beats the Aionis name that
        # `as_env()` renders.
        env = canonical_env(os.environ)
        for layer in (self.settings.as_env(), self.extra_env, self.child_env.get(name, {})):
            env.update(canonical_env(layer))
        env["DATABASE_URL"] = self.database_url
        env["PORT"] = str(self.port)
        env["HOST"] = self.host
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        log_path = log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            log_file = log_path.open("a")
            stdout: Any = log_file
            stderr: Any = subprocess.STDOUT
        else:  # foreground: children's output goes to our stderr, so our stdout carries only the two result lines
            stdout, stderr = sys.stderr.fileno(), sys.stderr.fileno()
        child = spawn(name, [sys.executable, "-m", "scripts.cli", *args], env=self._env(name), stdout=stdout,
                      stderr=stderr)
        child.log_path, child.log_file = log_path, log_file
        self.children.append(child)
        self._log(f"{name} started (pid {child.pid})" + (f", log {log_path}" if log_path else ""))

    def _wait_healthy(self, should_abort: Callable[[], bool]) -> None:
        wait_healthy(self.base_url, self.children, self.startup_timeout_s, should_abort)
        self._log(f"API healthy at {self.base_url}")

    @staticmethod
    def _tail(child: Child, lines: int = 15) -> str:
        return _tail(child, lines)

    def _stop_child(self, child: Child) -> None:
        stop_child(child, self.stop_timeout_s, self._log)


@dataclass
class ApiServer:
    """One `memload api` child started by `start_api`; `stop()` (or leaving the `with` block) ends its group."""

    child: Child
    host: str
    port: int
    env: dict[str, str]
    stop_timeout_s: float = 15.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def proc(self) -> subprocess.Popen:
        return self.child.proc

    @property
    def pid(self) -> int:
        return self.child.pid

    def log(self) -> str:
        """What the API wrote so far (empty unless it was started with a log file)."""
        path = self.child.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def stop(self) -> None:
        stop_child(self.child, self.stop_timeout_s, lambda msg: None)
        if self.child.log_file is not None:
            self.child.log_file.close()
            self.child.log_file = None

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_api(
    database_url: str,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    workers: int | None = None,
    checkout: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    api_args: Sequence[str] = (),
    log_path: Path | None = None,
    startup_timeout_s: float = 60.0,
    stop_timeout_s: float = 15.0,
) -> ApiServer:
    """Start `memload api` of `checkout` on `database_url` (already migrated) and return once `/health` answers.

    `checkout` is this repository or another revision's worktree (run from that directory, its packages come first
    on the path). `port=0` picks a free port; a fixed port must be free, so a server already listening there is never
    mistaken for this one. `env` overrides this process's environment (alias names beat the Aionis names they stand
    for). Output goes to `log_path` (appended), else stdout is dropped and stderr shared with this process.
    """
    if port == 0:
        port = free_port(host)
    elif not port_is_free(host, port):
        raise ConfigError(f"--port: {host}:{port} is already in use (another API?); pick another port")
    full_env = canonical_env(os.environ)
    full_env.update(canonical_env(env or {}))
    full_env.update({"DATABASE_URL": database_url, "PORT": str(port), "HOST": host})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    args = ["api", "--host", host, "--port", str(port), *(["--workers", str(workers)] if workers else []), *api_args]
    log_file = log_path.open("a") if log_path is not None else None
    child = spawn("api", [sys.executable, "-m", "scripts.cli", *args], cwd=checkout, env=full_env,
                  stdout=log_file if log_file is not None else subprocess.DEVNULL,
                  stderr=subprocess.STDOUT if log_file is not None else None)
    child.log_path, child.log_file = log_path, log_file
    api = ApiServer(child, host, port, full_env, stop_timeout_s)
    try:
        wait_healthy(api.base_url, [child], startup_timeout_s)
    except BaseException:
        api.stop()
        raise
    return api


def spawn(name: str, argv: Sequence[str], *, cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None,
          stdout: Any = None, stderr: Any = None) -> Child:
    """Start `argv` as a child of the stack: in a process group of its own, told to die with this process, no stdin.
    `stdout`/`stderr` as for `subprocess.Popen` (None: shared with this process)."""
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL, stdout=stdout,
        stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent(),
    )
    return Child(name, proc, None, None)


def wait_healthy(base_url: str, children: Sequence[Child], timeout_s: float,
                 should_abort: Callable[[], bool] = lambda: False, what: str = "API") -> None:
    """Poll `base_url/health` until it answers 200 (see `wait_answers`)."""
    wait_answers(base_url + HEALTH, children, timeout_s, should_abort, what)


def wait_answers(url: str, children: Sequence[Child], timeout_s: float,
                 should_abort: Callable[[], bool] = lambda: False, what: str = "API") -> None:
    """Poll `url` until it answers 200. Fails fast when one of `children` exits (with the tail of its log), when
    `should_abort()` turns true, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if should_abort():
            raise StackError("startup interrupted")
        dead = next((c for c in children if not c.alive()), None)
        if dead is not None:
            raise StackError(f"{dead.name} exited with code {dead.proc.returncode} during startup" + _tail(dead))
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not listening yet
            last = exc
        time.sleep(0.1)
    raise StackError(f"{what} did not answer {url} within {timeout_s:.0f}s ({last})")


def stop_child(child: Child, timeout_s: float = 15.0, log: Callable[[str], None] | None = None) -> None:
    """End the child's whole process group: SIGTERM, SIGKILL after `timeout_s`, then whatever it left behind."""
    log = log or (lambda msg: None)
    pgid = child.pid  # start_new_session: the child leads its own group
    was_running = child.alive()
    killed = False
    if was_running:
        _signal_group(pgid, signal.SIGTERM)
        try:
            child.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log(f"{child.name} (pid {child.pid}) ignored SIGTERM for {timeout_s:.0f}s: SIGKILL")
            _signal_group(pgid, signal.SIGKILL)
            killed = True
            child.proc.wait(5)
    # anything its children left behind in the group
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
    log(stop_message(child.name, child.proc.returncode, was_running=was_running, killed=killed))


def _tail(child: Child, lines: int = 15) -> str:
    if child.log_path is None or not child.log_path.exists():
        return ""
    text = child.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    return "\n" + "\n".join(text) if text else ""


def stop_message(name: str, returncode: int | None, *, was_running: bool, killed: bool = False) -> str:
    """`api stopped` for a normal stop (exit 0, or ended by the SIGTERM we sent); the code only when abnormal."""
    if killed:
        return f"{name} stopped (killed: it ignored SIGTERM, exit {returncode})"
    if not was_running:
        return f"{name} had already exited (exit {returncode})"
    if returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        return f"{name} stopped"
    return f"{name} stopped (exit {returncode})"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
