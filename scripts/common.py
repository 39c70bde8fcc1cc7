"""Glue shared by the CLI subcommands: settings from env + global flags, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from memload.config import Settings


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from the environment, with the global flags (and `overrides`) on top."""
    home = getattr(args, "home", None)
    return Settings.from_env(
        database_url=getattr(args, "database_url", None) or None,
        memload_home=Path(home).resolve() if home else None,
        **overrides,
    )


def print_json(payload: Any, *, stream: Any = None) -> None:
    """Pretty JSON on stdout (machine-readable results); logs go to stderr."""
    out = stream or sys.stdout
    out.write(json.dumps(payload, indent=2, default=str) + "\n")
    out.flush()


def log(message: str, *, prefix: str = "memload") -> None:
    print(f"[{prefix}] {message}", file=sys.stderr, flush=True)
