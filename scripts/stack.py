"""The local system under test as one object: database (embedded unless DATABASE_URL), migrations, API, worker.

`memload up` runs it in the foreground; `memload matrix` and the tests reuse it as a context manager:

    with LocalStack(settings, port=0, worker=True, log_dir=run_dir) as stack:
        ... stack.base_url, stack.database_url ...

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
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", *args], cwd=REPO_ROOT, env=self._env(name), stdin=subprocess.DEVNULL,
            stdout=stdout, stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent(),
        )
        self.children.append(Child(name, proc, log_path, log_file))
        self._log(f"{name} started (pid {proc.pid})" + (f", log {log_path}" if log_path else ""))

    def _wait_healthy(self, should_abort: Callable[[], bool]) -> None:
        url = self.base_url + HEALTH
        deadline = time.monotonic() + self.startup_timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if should_abort():
                raise StackError("startup interrupted")
            dead = self.dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited with code {dead.proc.returncode} during startup"
                                 + self._tail(dead))
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        self._log(f"API healthy at {self.base_url}")
                        return
            except Exception as exc:  # not listening yet
                last = exc
            time.sleep(0.1)
        raise StackError(f"API did not answer {url} within {self.startup_timeout_s:.0f}s ({last})")

    @staticmethod
    def _tail(child: Child, lines: int = 15) -> str:
        if child.log_path is None or not child.log_path.exists():
            return ""
        text = child.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n" + "\n".join(text) if text else ""

    def _stop_child(self, child: Child) -> None:
        pgid = child.pid  # start_new_session: the child leads its own group
        was_running = child.alive()
        killed = False
        if was_running:
            _signal_group(pgid, signal.SIGTERM)
            try:
                child.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._log(f"{child.name} (pid {child.pid}) ignored SIGTERM for {self.stop_timeout_s:.0f}s: SIGKILL")
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
        self._log(stop_message(child.name, child.proc.returncode, was_running=was_running, killed=killed))


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
