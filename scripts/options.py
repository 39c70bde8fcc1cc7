"""argparse helpers: every flag gets an environment-variable twin and help text that names it (Locust's style).

The env value becomes the flag's default, so argparse validates it with the flag's own type. That value is kept as
an `EnvValue` (a str that remembers its variable), so an error in it names the variable as well as the flag
(`argument --events: invalid int value: 'x' (from $MEMLOAD_SEED_EVENTS)`). Values are checked only when the
subcommand that declares them runs: a bad variable of `bench` never breaks `memload db status`.

`CliParser` makes every argparse error one line plus a hint, exit 64 (the usage code of memload/errors.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from memload.bench_settings import SCOPE_DEFAULT, Setting, SettingValueError, convert, scope_envs
from memload.config import parse_bool
from memload.errors import ConfigError, ExitCode


class EnvValue(str):
    """A default taken from the environment: the string, plus the variable it came from."""

    env: str

    def __new__(cls, value: str, env: str) -> EnvValue:
        obj = super().__new__(cls, value)
        obj.env = env
        return obj


class EnvSwitch:
    """A boolean switch's environment value, parsed when its subcommand is parsed (so the error names the variable
    and happens only for the command that has the switch)."""

    def __init__(self, raw: str, env: str, flag: str) -> None:
        self.raw, self.env, self.flag = raw, env, flag

    def resolve(self) -> bool:
        try:
            return parse_bool(self.raw, name=f"${self.env}")
        except ConfigError as exc:
            raise argparse.ArgumentError(None, f"argument {self.flag}: {exc}") from None


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (`prog: error: message — see prog --help`), exit 64, no usage dump."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} — see {self.prog} --help\n")
        sys.exit(ExitCode.USAGE)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        for name, value in vars(ns).items():
            if isinstance(value, EnvSwitch):
                try:
                    setattr(ns, name, value.resolve())
                except argparse.ArgumentError as exc:
                    self.error(str(exc))
        return ns, extras


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
    env_aliases: Sequence[str] = (),
    dest: str | None = None,
) -> None:
    """A valued option `flag` whose default comes from `$env` when set (else from the first `env_aliases` set)."""
    value: Any = default
    for name in (env, *env_aliases):
        raw = os.environ.get(name)
        if raw not in (None, ""):
            value = EnvValue(raw, name)
            break
    also = f" or {', '.join(env_aliases)}" if env_aliases else ""
    parser.add_argument(
        flag,
        *flag_aliases,
        default=value,
        type=_naming_env(type or str, list(choices) if choices is not None else None),
        choices=choices,
        help=f"{help} [env {env}{also}; default: {default}]",
        **({"dest": dest} if dest else {}),
    )


def add_switch(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *, env: str, help: str, default: bool = False
) -> None:
    """A boolean flag (`--x` / `--no-x`) whose default comes from `$env` (true/false)."""
    raw = os.environ.get(env)
    value: Any = EnvSwitch(raw, env, flag) if raw not in (None, "") else default
    parser.add_argument(
        flag, default=value, action=argparse.BooleanOptionalAction, help=f"{help} [env {env}; default: {default}]"
    )


def _naming_env(base: Callable[[str], Any], allowed: list[Any] | None) -> Callable[[str], Any]:
    """Wrap an argparse type: a value from the environment gets its variable named in the error, and is checked
    against `choices` (argparse checks choices of command-line values only, never of a string default)."""

    def parse(text: str) -> Any:
        env = text.env if isinstance(text, EnvValue) else None
        try:
            value = base(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            if env is None:
                raise
            msg = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else (
                f"invalid {getattr(base, '__name__', 'value')} value: {str(text)!r}")
            raise argparse.ArgumentTypeError(f"{msg} (from ${env})") from None
        if env is not None and allowed is not None and value not in allowed:
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


def int_list(lo: int, hi: int) -> Callable[[str], list[int]]:
    """argparse type: comma-separated ints, each within [lo, hi] ("100,200,400")."""
    one = bounded_int(lo, hi)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        return [one(p) for p in parts]

    parse.__name__ = f"int[{lo}..{hi}],..."
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


def setting_type(setting: Setting) -> Callable[[str], Any]:
    """argparse type of a table setting (memload.bench_settings): its kind and bounds, its own error message."""

    def parse(text: str) -> Any:
        try:
            return convert(setting, text)
        except SettingValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = setting.kind
    return parse


def add_setting(parser: argparse.ArgumentParser | argparse._ArgumentGroup, setting: Setting, *,
                default: Any = ..., help: str | None = None) -> None:
    """The option of a table setting: flag, env twin, type, bounds and help all from its one declaration."""
    value = setting.default if default is ... else default
    text = help or setting.help
    if setting.kind == "bool":
        add_switch(parser, setting.flag, env=setting.env, default=bool(value), help=text)
    elif setting.kind == "choice":
        add_option(parser, setting.flag, env=setting.env, default=value, choices=setting.choices, help=text)
    else:
        add_option(parser, setting.flag, env=setting.env, default=value, help=text,
                   type=str if setting.kind == "str" else setting_type(setting))


def add_scope(parser: argparse.ArgumentParser | argparse._ArgumentGroup, command: str, *, help: str,
              type: Callable[[str], Any] | None = str) -> None:
    """`--scope` of `command`: the one scope setting (MEMLOAD_SCOPE, default memload.bench_settings.SCOPE_DEFAULT),
    with the command's own older variable read first."""
    env, *aliases = scope_envs(command)
    add_option(parser, "--scope", env=env, env_aliases=aliases, default=SCOPE_DEFAULT, type=type, help=help)
