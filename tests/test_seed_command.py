"""`memload seed --command` / SEED_COMMAND: the target's own seeder runs, its JSON becomes the seed result; a failing
command is one line and exit 1, its full output in the log file."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import psycopg

from scripts.seed_command import expand, last_json_object
from seeding.params import SeedParams, Tenancy
from tests.support.aionis import FIXTURE_DIR, OTHER_SCOPE
from tests.support.cli import run_cli

SEEDER = f"{shlex.quote(sys.executable)} {shlex.quote(str(FIXTURE_DIR / 'stand_in_seeder.py'))}"
TEMPLATE = SEEDER + " --scope {scope} --events {events} --topics {topics} --src-scope {src_scope}"


def seed_args(tmp_path: Path, scope: str) -> list[str]:
    return ["seed", "--scope", scope, "--src-scope", OTHER_SCOPE, "--events", "120", "--topics", "4",
            "--out", str(tmp_path / "seed_120.json"), "--query-set-out", str(tmp_path / "query_set_120.json")]


def test_command_json_is_adopted(aionis_db: str, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "seed_command.log"
    proc = run_cli(*seed_args(tmp_path, "perf_cmd"), env={"DATABASE_URL": aionis_db, "SEED_COMMAND": TEMPLATE,
                                                          "SEED_COMMAND_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert json.loads((tmp_path / "seed_120.json").read_text()) == doc
    assert doc["layout"] == "command" and doc["seeded_by"] == TEMPLATE
    assert doc["command"].endswith("--scope perf_cmd --events 120 --topics 4 --src-scope default")
    assert doc["ok"] is True and doc["scope"] == "perf_cmd"
    assert doc["inserted"] == {"topics": 4, "events": 120, "edges": 240}
    assert doc["totals_in_scope"] == {"nodes": 124, "edges": 240}
    assert doc["unknown_indexes"] == [] and set(doc["timings_s"]) == {"load"}
    with psycopg.connect(aionis_db) as conn:  # the command really seeded; memload wrote nothing of its own
        assert conn.execute("SELECT count(*) FROM memory_nodes WHERE scope = 'perf_cmd'").fetchone()[0] == 124
        assert conn.execute("SELECT actor FROM memory_commits WHERE scope = 'perf_cmd'").fetchall() == [
            ("job:perf_seed",)]
    text = log.read_text()
    assert "> aionis@0.1.0 job:perf-seed" in text and "[perf-seed] done" in text and doc["command_log"] == str(log)
    qs = json.loads((tmp_path / "query_set_120.json").read_text())
    assert [q["text"] for q in qs["queries"]] == [f"perf topic #{k}" for k in range(1, 5)]


def test_failing_command_is_one_line_and_exit_1(aionis_db: str, tmp_path: Path) -> None:
    proc = run_cli(*seed_args(tmp_path, "perf_cmd_fail"), "--command", TEMPLATE + " --fail",
                   env={"DATABASE_URL": aionis_db})
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("memload: error: seed failed at command (exit 1): Error: no READY embedding found")
    assert sum(line.startswith("memload: error") for line in lines) == 1 and "Traceback" not in proc.stderr
    log = tmp_path / "seed_120.command.log"  # next to --out when no --command-log is given
    assert str(log) in lines[-1] and "[perf-seed] seeding scope=perf_cmd_fail" in log.read_text()


def test_unknown_placeholder_is_a_usage_error(aionis_db: str, tmp_path: Path) -> None:
    proc = run_cli(*seed_args(tmp_path, "perf_cmd_bad"), "--command", SEEDER + " --scope {scop}",
                   env={"DATABASE_URL": aionis_db})
    assert proc.returncode == 64
    assert "{scop}" in proc.stderr and "SEED_COMMAND" in proc.stderr and "{scope}" in proc.stderr


def test_placeholders_are_shell_quoted() -> None:
    p = SeedParams(target=Tenancy.resolve("a b;rm", "t1", "default", flags=("--scope", "--tenant-id")),
                   source=Tenancy.resolve("src", "default", "default", flags=("--src-scope", "--src-tenant-id")),
                   events=500, reset=True)
    assert expand("seed --scope {scope} --key {scope_key} {reset_flag} --t {topics} {{x}}", p) == (
        "seed --scope 'a b;rm' --key 'tenant:t1::scope:a b;rm' --reset --t 50 {x}")


def test_last_json_object_skips_banners_and_logs() -> None:
    assert last_json_object('\n> pkg job\n\n{\n  "ok": true,\n  "n": {"a": 1}\n}\n') == {"ok": True, "n": {"a": 1}}
    assert last_json_object('{"first": 1}\nlog line\n{"ok": true}\n') == {"ok": True}
    assert last_json_object("no json here\n{ broken") is None


def test_command_timeout_stops_the_whole_tree(aionis_db: str, tmp_path: Path) -> None:
    proc = run_cli(*seed_args(tmp_path, "perf_cmd_slow"), "--command", "sleep 120; echo never",
                   "--command-timeout-s", "1", env={"DATABASE_URL": aionis_db}, timeout=90)
    assert proc.returncode == 1 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("memload: error: seed failed at command: no result within 1s")
    assert "SEED_COMMAND_TIMEOUT_S" in last
