"""`memload seed --command CMD` (SEED_COMMAND): seed with the target's own seeder and adopt its JSON.

A server under test may come with its own seeder (an Aionis server's `npm run job:perf-seed -- …`). That seeder knows
its schema better than memload does, so memload runs it and takes its result as the seed result: the last JSON object
it prints on stdout becomes `seed_<scale>.json`, with `seeded_by` (the command as given) and `layout: "command"`
added. Its complete output (stdout and stderr) goes to a log file the caller names (`--command-log`), so a failure
is one line here and the whole story there.

Placeholders in CMD, replaced by shell-quoted values: {scope} {tenant_id} {scope_key} {src_scope} {src_tenant_id}
{events} {topics} {seed} {vectors} {reset_flag} ("--reset" or nothing). `{{` and `}}` are literal braces. CMD runs
through /bin/sh, in the current directory, with the same values in the environment as MEMLOAD_SEED_SCOPE,
MEMLOAD_SEED_TENANT_ID, MEMLOAD_SEED_SCOPE_KEY, MEMLOAD_SEED_EVENTS, MEMLOAD_SEED_TOPICS.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import string
import subprocess
import time
from pathlib import Path
from typing import Any

from memload.errors import ConfigError, MemloadError
from seeding.layout import COMMAND
from seeding.params import SeedParams

PLACEHOLDERS = ("scope", "tenant_id", "scope_key", "src_scope", "src_tenant_id", "events", "topics", "seed",
                "vectors", "reset_flag")
FLAG = "--command / SEED_COMMAND"


def placeholder_values(params: SeedParams) -> dict[str, str]:
    return {
        "scope": params.target.scope, "tenant_id": params.target.tenant_id, "scope_key": params.target.scope_key,
        "src_scope": params.source.scope, "src_tenant_id": params.source.tenant_id,
        "events": str(params.events), "topics": str(params.topic_count), "seed": str(params.seed),
        "vectors": params.vectors, "reset_flag": "--reset" if params.reset else "",
    }


def expand(template: str, params: SeedParams) -> str:
    """The command line with its placeholders replaced (values shell-quoted). Unknown placeholder → ConfigError."""
    if not template.strip():
        raise ConfigError(f"{FLAG}: the command is empty")
    values = placeholder_values(params)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{FLAG}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name in fields:
        if name not in values:
            raise ConfigError(f"{FLAG}: unknown placeholder {{{name}}}; known: "
                              + " ".join("{" + p + "}" for p in PLACEHOLDERS))
    quoted = {k: ("" if k == "reset_flag" and not v else shlex.quote(v)) for k, v in values.items()}
    return template.format(**quoted)


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object printed in `text`: the whole text, or an object starting at the beginning of a line
    (an npm banner or log lines may come before it; a pretty-printed object spans several lines)."""
    stripped = text.strip()
    try:
        whole = json.loads(stripped)
        return whole if isinstance(whole, dict) else None
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    lines = text.splitlines(keepends=True)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].lstrip().startswith("{"):
            continue
        start = offsets[i] + (len(lines[i]) - len(lines[i].lstrip()))
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict) and not text[end:].strip().startswith(("{", "[")):
            return obj
    return None


def _write_log(path: Path, command: str, rc: int | str, elapsed: float, stdout: str, stderr: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"$ {command}\n# exit {rc} after {elapsed:.1f}s\n# ---- stdout\n{stdout}"
                    f"{'' if stdout.endswith(chr(10)) or not stdout else chr(10)}# ---- stderr\n{stderr}")


def _kill_group(child: subprocess.Popen[str]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_command_seed(template: str, params: SeedParams, log_path: Path, *, timeout_s: float | None = None
                     ) -> dict[str, Any]:
    """Run the target's seeder; return its JSON with memload's fields added. MemloadError (one line) on failure."""
    command = expand(template, params)
    env = dict(os.environ)
    env.update({"MEMLOAD_SEED_SCOPE": params.target.scope, "MEMLOAD_SEED_TENANT_ID": params.target.tenant_id,
                "MEMLOAD_SEED_SCOPE_KEY": params.target.scope_key, "MEMLOAD_SEED_EVENTS": str(params.events),
                "MEMLOAD_SEED_TOPICS": str(params.topic_count)})
    started = time.monotonic()
    # Its own process group, so a timeout or Ctrl-C stops the whole tree (sh → npm → node), not just the shell.
    child = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(child)
        stdout, stderr = child.communicate()
        _write_log(log_path, command, "timeout", time.monotonic() - started, stdout, stderr)
        raise MemloadError(f"seed failed at command: no result within {timeout_s:.0f}s; full output in {log_path} "
                           f"(setting: --command-timeout-s / SEED_COMMAND_TIMEOUT_S)") from None
    except BaseException:
        _kill_group(child)
        raise
    proc = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
    elapsed = time.monotonic() - started
    _write_log(log_path, command, proc.returncode, elapsed, proc.stdout, proc.stderr)
    if proc.returncode != 0:
        cause = _last_line(proc.stderr) or _last_line(proc.stdout) or "no output"
        raise MemloadError(f"seed failed at command (exit {proc.returncode}): {cause}; full output in {log_path} "
                           f"(setting: {FLAG})")
    doc = last_json_object(proc.stdout)
    if doc is None:
        raise MemloadError(f"seed failed at command: it exited 0 but printed no JSON object on stdout; full output "
                           f"in {log_path} (setting: {FLAG})")
    if doc.get("ok") is False:
        why = doc.get("error") or doc.get("message") or "ok: false"
        raise MemloadError(f"seed failed at command: its JSON says {why}; full output in {log_path} "
                           f"(setting: {FLAG})")
    warnings = list(doc.get("warnings") or []) if isinstance(doc.get("warnings"), list) else []
    for key in ("inserted", "totals_in_scope"):
        if key not in doc:
            warnings.append(f"the command's JSON has no {key}")
    result = dict(doc)
    result.setdefault("ok", True)
    result.setdefault("scope", params.target.scope)
    result.setdefault("tenant_id", params.target.tenant_id)
    result.setdefault("scope_key", params.target.scope_key)
    result.setdefault("elapsed_ms", round(elapsed * 1000))
    result.update({"layout": COMMAND, "seeded_by": template, "command": command,
                   "timings_s": {"load": round(elapsed, 3)}, "unknown_indexes": [], "command_log": str(log_path),
                   "warnings": warnings})
    return result
