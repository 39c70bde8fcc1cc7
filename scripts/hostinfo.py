"""What machine and code a run measured: CPU model, cores, RAM, OS, git commit. One probe for matrix and report."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from memload.config import REPO_ROOT
from memload.proc import meminfo_mb


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _proc_field(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def host_info() -> dict[str, Any]:
    """Host and code metadata, as recorded in manifest.json."""
    mem_mb = meminfo_mb("MemTotal")
    mem_gib = round(mem_mb / 1024, 1) if mem_mb is not None else None
    return {"hostname": platform.node(), "cpu_model": _proc_field("/proc/cpuinfo", "model name") or "unknown",
            "cpu_cores": os.cpu_count(), "mem_gib": mem_gib, "os": platform.platform(),
            "python": platform.python_version(), "git_commit": _git("rev-parse", "--short", "HEAD") or "unknown",
            "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD") or "unknown",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
