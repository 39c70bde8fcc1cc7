"""The one way tests run `memload`: a subprocess (the way users run it) or, for speed, the CLI's own main() in this
process; plus a background start for commands a test lets run while it acts on them.

One runner keeps the env handling, timeouts and exit-code check the same for every test that calls the CLI.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from unittest import mock

from memload.config import REPO_ROOT

PYTHON = sys.executable


def cli_env(env: Mapping[str, str] | None = None, unset: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment less `unset`, plus `env` (a test names only what it changes)."""
    drop = set(unset)
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env or {})
    return full


def run_cli(*args: str, env: Mapping[str, str] | None = None, unset: Iterable[str] = (), timeout: float = 600,
            check: bool = False, input: str | None = None, in_process: bool = False
            ) -> subprocess.CompletedProcess[str]:
    """Run `memload ARGS` with this environment plus `env` (less `unset`) and capture its output.

    A subprocess by default. `in_process=True` calls the CLI's main() here instead: the same parsing, env twins,
    guards, exit codes and output without the interpreter start-up a subprocess costs per call (argparse's
    SystemExit becomes the exit code; `timeout` does not apply). `check` fails the test on a non-zero exit code.
    """
    if in_process:
        proc = _run_in_process(list(args), cli_env(env, unset), input)
    else:
        proc = subprocess.run([PYTHON, "-m", "scripts.cli", *args], cwd=REPO_ROOT, env=cli_env(env, unset),
                              capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"memload {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _run_in_process(args: list[str], env: dict[str, str], input: str | None) -> subprocess.CompletedProcess[str]:
    from scripts.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    stdin = io.StringIO(input or "")
    with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), mock.patch.object(sys, "stdin", stdin):
        try:
            rc = cli_main(args)
        except SystemExit as exc:  # argparse errors
            rc = int(exc.code) if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["memload", *args], rc, out.getvalue(), err.getvalue())


def start_cli(args: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """`memload ARGS` as a background process (own session, output to log_path)."""
    return subprocess.Popen([PYTHON, "-m", "scripts.cli", *args], cwd=REPO_ROOT, env=cli_env(env),
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
    """Signal one process we started (by pid) and wait; SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
