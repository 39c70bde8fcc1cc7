"""argparse helpers: every flag gets an environment-variable twin and help text that names it (Locust's style).

The env value becomes the flag's default, so argparse validates it with the flag's own type and an error message
names the flag (e.g. `argument --events: invalid int value: 'x'`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from memload.config import parse_bool
from memload.errors import ConfigError


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    env: str,
    help: str,
    default: Any = None,
    type: Callable[[str], Any] | None = str,
    choices: Sequence[Any] | None = None,
    flag_aliases: Sequence[str] = (),
) -> None:
    """A valued option `flag` whose default comes from `$env` when set."""
    raw = os.environ.get(env)
    value: Any = raw if raw not in (None, "") else default
    parser.add_argument(
        flag,
        *flag_aliases,
        default=value,
        type=type,
        choices=choices,
        help=f"{help} [env {env}; default: {default}]",
    )


def add_switch(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *, env: str, help: str, default: bool = False
) -> None:
    """A boolean flag (`--x` / `--no-x`) whose default comes from `$env` (true/false)."""
    raw = os.environ.get(env)
    try:
        value = parse_bool(raw, name=env) if raw not in (None, "") else default
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    parser.add_argument(
        flag, default=value, action=argparse.BooleanOptionalAction, help=f"{help} [env {env}; default: {default}]"
    )


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an int within [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range [{lo}, {hi}]")
        return value

    parse.__name__ = f"int[{lo}..{hi}]"
    return parse


def bounded_float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range [{lo}, {hi}]")
        return value

    parse.__name__ = f"float[{lo}..{hi}]"
    return parse
