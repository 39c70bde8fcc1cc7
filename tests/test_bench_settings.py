"""The benchmark settings table is the only declaration: bench's argparse, the matrix's variables and the Locust
parser are derived from it, so a flag, variable or bound cannot differ between them; a bad value names its flag or
variable in each."""

from __future__ import annotations

import argparse

import configargparse
import pytest

from locustfiles.options import OptionError, SuiteConfig, add_arguments
from memload.bench_settings import (
    PROFILES,
    SCOPE_DEFAULT,
    SETTINGS,
    Setting,
    bench_settings,
    locust_settings,
    matrix_settings,
)
from memload.errors import ConfigError
from scripts.cli import build_parser
from scripts.commands import bench as cmd_bench
from scripts.matrix_config import PROFILE_DEFAULTS, VARS, resolve


def _bench_actions() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["bench"]._actions}


def _locust_parser() -> configargparse.ArgumentParser:
    parser = configargparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_every_surface_is_derived_from_the_table() -> None:
    actions = _bench_actions()
    for s in bench_settings():
        a = actions[s.name]
        assert s.flag in a.option_strings and f"[env {s.env}" in a.help, s.name
        if s.kind == "choice":
            assert tuple(a.choices) == s.choices
        if s.kind in ("int", "float"):
            assert a.type.__name__ == s.kind
    names = [v.name for v in VARS]
    for s in matrix_settings():
        assert s.env in names, s.name
        var = next(v for v in VARS if v.name == s.env)
        assert var.help == s.help
    locust = {a.dest: a for a in _locust_parser()._actions}
    for s in locust_settings():
        assert s.locust is not None
        if s.locust.own_flag:
            continue
        a = next(a for a in locust.values() if s.locust_flag in a.option_strings)
        assert a.env_var == s.locust.env and f"[env {s.locust.env}]" in a.help, s.name
    assert set(PROFILE_DEFAULTS) == set(PROFILES) == set(cmd_bench.PROFILE_PRESETS)
    assert actions["scope"].default == SCOPE_DEFAULT == _locust_parser().parse_args([]).scope


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind in ("int", "float")], ids=lambda s: s.name)
def test_the_same_bounds_hold_on_every_surface(setting: Setting) -> None:
    """The bounds of the table are enforced by all three surfaces: the edges pass, one step outside fails."""
    s = setting
    edges = [x for x in (s.lo, s.hi) if x is not None]
    outside = [str(s.hi * 2)] if s.hi else []
    if s.lo is not None:
        outside.append(str(s.lo / 2 if s.kind == "float" and s.lo > 0 else s.lo - 1))
    if s.bench:
        actions = _bench_actions()
        for edge in edges:
            assert actions[s.name].type(str(edge)) == edge
        for bad in outside:
            with pytest.raises(argparse.ArgumentTypeError, match="out of range"):
                actions[s.name].type(bad)
    if s.matrix:
        var = next(v for v in VARS if v.name == s.env)
        for edge in edges:
            assert var.parse(s.env, str(edge)) == edge
        for bad in outside:
            with pytest.raises(ConfigError, match=s.env):
                var.parse(s.env, bad)
    if s.locust is not None:
        opts = _locust_parser().parse_args([])
        dest = s.locust_flag.lstrip("-").replace("-", "_")
        for edge in edges:
            setattr(opts, dest, edge)
            SuiteConfig.from_options(opts)
        for bad in outside:
            if s.locust.zero_is_unset and float(bad) == 0:
                continue
            setattr(opts, dest, bad)
            with pytest.raises(OptionError, match=s.locust_flag):
                SuiteConfig.from_options(opts)


def test_recall_request_count_zero_only_means_not_set_in_locust() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _bench_actions()["recall_requests"].type("0")
    with pytest.raises(ConfigError, match="RECALL_REQUESTS"):
        resolve({"SCALES": "1000", "RECALL_REQUESTS": "0"})
    assert resolve({"SCALES": "1000", "RECALL_REQUESTS": ""})["RECALL_REQUESTS"] is None
    opts = _locust_parser().parse_args(["--recall-requests", "0"])
    assert SuiteConfig.from_options(opts).budgets == {}
    with pytest.raises(OptionError, match="--recall-requests"):
        SuiteConfig.from_options(_locust_parser().parse_args(["--recall-requests", "-1"]))


@pytest.mark.parametrize("name,raw", [("embed_on_write", "maybe"), ("allow_empty_scope", "sometimes")])
def test_bool_parsing_is_strict_everywhere(name: str, raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = next(x for x in SETTINGS if x.name == name)
    opts = _locust_parser().parse_args([])
    setattr(opts, name, raw)
    with pytest.raises(OptionError, match=s.flag):
        SuiteConfig.from_options(opts)
    if s.matrix:
        with pytest.raises(ConfigError, match=s.env):
            resolve({"SCALES": "1000", s.env: raw})
    monkeypatch.setenv(s.env, raw)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench"])
    assert exit_info.value.code == 64


def test_profiles_preset_bench_and_matrix_from_one_declaration() -> None:
    for profile in PROFILES:
        preset = cmd_bench.PROFILE_PRESETS[profile]
        cfg = resolve({"SCALES": "1000", "PERF_PROFILE": profile})
        for name, value in preset.items():
            s = next(x for x in SETTINGS if x.name == name)
            if s.matrix and profile not in s.matrix_profiles:
                assert cfg[s.env] == value, (profile, name)
    assert resolve({"SCALES": "1000", "PERF_PROFILE": "worker_slo"})["BENCH_MODE"] == "recall"
    assert cmd_bench.PROFILE_PRESETS["worker_slo"].get("mode", "all") == "all"
