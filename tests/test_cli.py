"""The command line without surprises: one exit-code table, one-line errors naming the flag and its variable, a
description for every subcommand."""

from __future__ import annotations

from pathlib import Path

from memload.errors import EXIT_CODES_TEXT, ExitCode
from scripts.cli import build_parser
from tests.support.cli import run_cli


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_help_lists_every_command_with_a_description_and_ends_with_the_exit_codes() -> None:
    proc = run_cli("--help", check=True)
    assert proc.stdout.rstrip().endswith(EXIT_CODES_TEXT.rstrip())
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        assert helps.get(name), f"{name} has no help line in `memload --help`"
        assert name in proc.stdout
        assert p.description, f"`memload {name} --help` has no description"
        assert EXIT_CODES_TEXT in p.format_help(), name


def test_bad_env_value_names_its_variable_in_one_line_without_usage_dump() -> None:
    proc = run_cli("bench", env={"RECALL_CONCURRENCY": "abc"})
    assert proc.returncode == ExitCode.USAGE
    line = _one_line(proc.stderr)
    assert line == ("memload bench: error: argument --recall-concurrency: invalid int value: 'abc' "
                    "(from $RECALL_CONCURRENCY) — see memload bench --help")
    assert "usage:" not in proc.stderr


def test_bad_flag_value_is_one_line_and_does_not_blame_the_environment() -> None:
    proc = run_cli("bench", "--recall-concurrency", "abc", env={"RECALL_CONCURRENCY": ""})
    assert proc.returncode == ExitCode.USAGE
    line = _one_line(proc.stderr)
    assert "--recall-concurrency" in line and "$RECALL_CONCURRENCY" not in line and "see memload bench --help" in line


def test_bad_env_switch_and_choice_name_their_variables() -> None:
    switch = run_cli("purge", env={"MEMLOAD_PURGE_APPLY": "maybe"})
    assert switch.returncode == ExitCode.USAGE and "$MEMLOAD_PURGE_APPLY" in _one_line(switch.stderr)
    choice = run_cli("bench", env={"PERF_PROFILE": "fast"})
    assert choice.returncode == ExitCode.USAGE and "$PERF_PROFILE" in _one_line(choice.stderr)


def test_a_bad_variable_of_one_command_does_not_break_another(tmp_path: Path) -> None:
    env = {"RECALL_CONCURRENCY": "abc", "MEMLOAD_PURGE_APPLY": "maybe", "MEMLOAD_HOME": str(tmp_path / "home"),
           "DATABASE_URL": ""}
    proc = run_cli("db", "status", env=env)
    assert "RECALL_CONCURRENCY" not in proc.stderr and "MEMLOAD_PURGE_APPLY" not in proc.stderr
    assert proc.returncode == ExitCode.ERROR  # the embedded server is not running there


def test_missing_subcommand_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == ExitCode.USAGE and "see memload --help" in _one_line(proc.stderr)


# ---------------------------------------------------------------- the exit-code table, one command per class
def test_exit_code_usage_for_a_bad_matrix_variable() -> None:
    proc = run_cli("matrix", "--dry-run", env={"RECALL_CONCURRENCY": "abc"})
    assert proc.returncode == ExitCode.USAGE and "RECALL_CONCURRENCY" in _one_line(proc.stderr)


def test_exit_code_refused_for_a_reset_outside_the_offline_window() -> None:
    proc = run_cli("matrix", env={"SCALES": "1000", "SCOPE_STRATEGY": "fixed", "RESET_MODE": "always",
                                  "PERF_OFFLINE_WINDOW": ""})
    assert proc.returncode == ExitCode.REFUSED and "PERF_OFFLINE_WINDOW" in _one_line(proc.stderr)


def test_exit_code_refused_for_purging_the_source_scope() -> None:
    proc = run_cli("purge", "--scope", "default", "--src-scope", "default", "--apply")
    assert proc.returncode == ExitCode.REFUSED and "source scope" in _one_line(proc.stderr)


def test_exit_code_error_when_the_database_is_unreachable() -> None:
    proc = run_cli("check-indexes", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"})
    assert proc.returncode == ExitCode.ERROR and "cannot connect" in _one_line(proc.stderr)
