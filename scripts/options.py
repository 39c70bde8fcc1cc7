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
    if choices is not None and raw not in (None, ""):
        type = _checked_choice(type or str, list(choices), env)  # argparse checks choices of command-line values only
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


def _checked_choice(base: Callable[[str], Any], allowed: list[Any], env: str) -> Callable[[str], Any]:
    """argparse type that also enforces `choices`: argparse converts a string default (the env value) with the
    option's type when parsing, but never checks it against choices, so `PERF_PROFILE=turbo` used to get through."""

    def parse(text: str) -> Any:
        value = base(text)
        if value not in allowed:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {value!r} (from ${env}; choose from {', '.join(map(str, allowed))})")
        return value

    parse.__name__ = getattr(base, "__name__", "value")
    return parse


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
