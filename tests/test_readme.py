"""The README's commands work as written.

(a) every `memload …` line of its fenced bash blocks and every `memload <subcommand> …` in inline code of its tables
parses with memload's own argument parser (placeholders substituted); (b) every `make` target it names exists;
(c) in a `git clone` of HEAD, after the README's PATH line, `memload --help`, `memload matrix --dry-run` and
`locust -f locustfiles/memory_users.py --help` succeed and say what the README says they do.

The clone is fresh: its own files, no `.memload`, and its own virtualenv built by `make venv` (about 2 minutes with
pip's cache on a 2-core machine, hence `slow`); this checkout's virtualenv is taken off PATH.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from memload.config import REPO_ROOT
from memload.errors import ExitCode
from scripts.cli import build_parser

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"

# placeholder → a value of the right kind; anything else in <…> becomes a plain word
PLACEHOLDERS = {"<tag>": "t1", "<scale>": "1000", "<n>": "2", "<N>": "2", "<cmd>": "matrix", "<CPUs>": "2",
                "<url>": "http://127.0.0.1:3001", "<scope>": "perf", "<file>": "x.json", "<dir>": "run"}
_ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _fenced_bash(text: str) -> list[str]:
    """Lines of the ```bash / ```sh / ```shell blocks, backslash continuations joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\s*\n(.*?)^```", text, re.S | re.M):
        block = re.sub(r"\\\n\s*", " ", block)
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            line = re.sub(r"\s+#.*$", "", line) if not line.startswith("#") else ""
            if line:
                lines.append(line)
    return lines


def _table_inline_code(text: str) -> list[str]:
    """Inline code spans of table rows (markdown escapes `\\|` undone). Prose may name a flag without its value
    (`memload worker --concurrency`); a table cell gives a command."""
    rows = "\n".join(row for row in text.splitlines() if row.lstrip().startswith("|"))
    return [s.replace("\x00", "|") for s in re.findall(r"`([^`\n]+)`", rows.replace("\\|", "\x00"))]


def _memload_argv(command: str) -> list[str] | None:
    """The argv after `memload` of one shell command (env assignments and pipes dropped), placeholders filled;
    None when the line is not a memload command."""
    command = command.split(" | ")[0].split(" && ")[0].split(";")[0].strip()
    for key, value in PLACEHOLDERS.items():
        command = command.replace(key, value)
    command = re.sub(r"<[^<>\s]+>", "x", command)
    command = command.replace("…", " ").replace("...", " ")
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    while tokens and _ENV_ASSIGN.match(tokens[0]):
        tokens.pop(0)
    if not tokens or tokens[0] not in ("memload", ".venv/bin/memload"):
        return None
    argv: list[str] = []
    for tok in tokens[1:]:
        tok = tok.strip("[]")  # `[--once]`: an optional flag, checked as given
        if "|" in tok:  # `auto|partition|delete`, `start|stop|status|url`: the first alternative
            tok = tok.split("|")[0]
        if tok:
            argv.append(tok)
    return argv


def readme_memload_commands(text: str) -> list[list[str]]:
    commands = [_memload_argv(line) for line in _fenced_bash(text)]
    commands += [_memload_argv(span) for span in _table_inline_code(text) if re.match(r"memload [a-z]", span)]
    return [c for c in commands if c and c[0] not in ("<cmd>", "x")]


def test_readme_memload_commands_parse() -> None:
    text = README.read_text()
    commands = readme_memload_commands(text)
    assert len(commands) >= 5, f"too few memload commands found in README.md: {commands}"
    parser = build_parser()
    bad: list[str] = []
    for argv in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):  # `--help` exits 0
                bad.append(f"memload {shlex.join(argv)}: exit {exc.code}: {err.getvalue().strip()[-300:]}")
        except Exception as exc:  # memload's parser raises its usage error as an exception
            bad.append(f"memload {shlex.join(argv)}: {exc}")
    assert not bad, "README commands memload does not accept:\n" + "\n".join(bad)


def test_parser_check_catches_a_bad_flag() -> None:
    """The check above can fail: an unknown flag or a bad value in a README line is caught."""
    parser = build_parser()
    for argv in (["bench", "--no-such-flag"], ["bench", "--duration-s", "abc"], ["matrix", "--nope"]):
        with pytest.raises((SystemExit, Exception)) as info, contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(argv)
        assert not (isinstance(info.value, SystemExit) and info.value.code in (0, None))
    sample = "| x | `memload purge --scope S --mode auto\\|partition\\|delete [--apply]` |\n"
    assert readme_memload_commands(sample) == [["purge", "--scope", "S", "--mode", "auto", "--apply"]]
    fenced = "```bash\nSCALES=1000 memload matrix --dry-run   # comment\nmake bench\n```\n"
    assert readme_memload_commands(fenced) == [["matrix", "--dry-run"]]


def test_readme_make_targets_exist() -> None:
    text = README.read_text()
    code = "\n".join(_fenced_bash(text) + re.findall(r"`([^`]+)`", text))
    named = set(re.findall(r"(?:^|[\s;&(])make ([a-z][\w-]*)", code, re.M))
    assert {"bench", "test"} <= named, named
    targets = set(re.findall(r"^([a-z][\w-]*)\s*:", MAKEFILE.read_text(), re.M))
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


# ------------------------------------------------------------------------------------------- fresh clone
def _path_line(text: str) -> str:
    """The README's set-up line that puts the virtualenv's bin on PATH."""
    lines = [line for line in _fenced_bash(text) + re.findall(r"`([^`]+)`", text)
             if line.startswith("export PATH=") and ".venv/bin" in line]
    assert lines, "README.md has no `export PATH=\"$PWD/.venv/bin:$PATH\"` line"
    return lines[0]


@pytest.mark.slow
def test_readme_commands_run_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(clone)], check=True,
                   capture_output=True, timeout=300)
    assert not (clone / ".memload").exists() and not (clone / ".venv").exists()
    path_line = _path_line(README.read_text())
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BASE_URL", "SCALES", "PYTHONPATH", "MEMLOAD_HOME", "VIRTUAL_ENV")}
    # this checkout's virtualenv must not leak into the clone's commands
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve())
    venv = subprocess.run(["make", "venv"], cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert venv.returncode == 0, venv.stderr[-3000:]

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", f"{path_line}\n{command}"], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=300)

    where = sh("command -v memload locust")
    assert where.stdout.split() == [str(clone / ".venv/bin/memload"), str(clone / ".venv/bin/locust")], where

    help_ = sh("memload --help")
    assert help_.returncode == 0, help_.stderr
    for code in ExitCode:
        assert re.search(rf"^\s*{int(code)}\b", help_.stdout, re.M), f"exit code {int(code)} not in memload --help"
    for command in ("matrix", "bench", "seed", "report", "compare", "up", "db"):
        assert re.search(rf"^\s+{command}\s+\S", help_.stdout, re.M), f"`{command}` has no description in --help"

    dry = sh("memload matrix --dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"SCALES\s+=\s+\[100000\]", dry.stdout + dry.stderr), dry.stderr[-2000:]
    assert not (clone / ".memload" / "pgdata").exists()  # a dry run starts nothing

    locust = sh("locust -f locustfiles/memory_users.py --help")
    assert locust.returncode == 0, locust.stderr[-2000:]
    for option in ("--scope", "--duration-s"):
        assert option in locust.stdout, f"`locust … --help` does not list the suite's {option}"
