"""`memload matrix` configuration: validation naming the variable, profile defaults really applied, adaptive step."""

from __future__ import annotations

import pytest

from memload.errors import ConfigError, ExitCode, MemloadError, SafetyRefusal
from scripts.matrix import adapt_step
from scripts.matrix_config import VARS, resolve
from tests.support.cli import run_cli


def test_profile_defaults_are_applied_unless_overridden() -> None:
    cfg = resolve({"PERF_PROFILE": "recall_slo"})
    assert (cfg["BENCH_MODE"], cfg["RECALL_CONCURRENCY"], cfg["BENCH_PACE_MS"], cfg["MAX_RATE_LIMIT_RETRIES"]) == (
        "recall", 6, 50, 10)
    assert cfg.sources["BENCH_PACE_MS"] == "profile recall_slo"
    # the Aionis kit's bug: explicit env must win, profile must apply otherwise
    cfg = resolve({"PERF_PROFILE": "write_slo", "BENCH_PACE_MS": "7"})
    assert cfg["BENCH_PACE_MS"] == 7 and cfg.sources["BENCH_PACE_MS"] == "env"
    assert cfg["WRITE_CONCURRENCY"] == 2 and cfg["RUN_EXPLAIN"] is False


@pytest.mark.parametrize(("env", "needle"), [
    ({"SCALES": "10"}, "SCALES"),
    ({"SCALES": "1000,abc"}, "SCALES"),
    ({"PERF_PROFILE": "perf_gate"}, "PERF_PROFILE"),
    ({"RECALL_CONCURRENCY": "0"}, "RECALL_CONCURRENCY"),
    ({"SLO_MAX_ERROR_RATE": "2"}, "SLO_MAX_ERROR_RATE"),
    ({"TENANT_ID": "bad tenant"}, "TENANT_ID"),
    ({"RUN_EXPLAIN": "maybe"}, "RUN_EXPLAIN"),
    ({"BASE_URL": "ftp://x"}, "BASE_URL"),
    ({"KEEP_RUNS": "-1"}, "KEEP_RUNS"),
    ({"ANN_EF_SWEEP": "100,abc"}, "ANN_EF_SWEEP"),
    ({"ANN_EF_SWEEP": "0"}, "ANN_EF_SWEEP"),
    ({"SLO_MIN_RECALL": "1.5"}, "SLO_MIN_RECALL"),
    ({"ANN_QUERIES": "1"}, "ANN_QUERIES"),
    ({"WORKER_OBSERVE": "sometimes"}, "WORKER_OBSERVE"),
    ({"WORKER_OBSERVE": "true", "WORKER_COMMAND": "run-worker --once"}, "WORKER_OBSERVE"),
    ({"EXPLAIN_SQL": "/nonexistent/explain_baseline.sql"}, "EXPLAIN_SQL"),
    ({"SCOPE_STRATEGY": "fixed"}, "PERF_OFFLINE_WINDOW"),
    ({"SCOPE_STRATEGY": "isolated", "RESET_MODE": "always"}, "PERF_OFFLINE_WINDOW"),
])
def test_invalid_variables_are_refused_naming_them(env: dict[str, str], needle: str) -> None:
    with pytest.raises(MemloadError, match=needle) as err:
        resolve(env)
    # a bad value is a usage error; a reset outside the offline window is a safety refusal
    assert isinstance(err.value, SafetyRefusal if needle == "PERF_OFFLINE_WINDOW" else ConfigError)


def test_fixed_reset_allowed_inside_offline_window() -> None:
    cfg = resolve({"SCOPE_STRATEGY": "fixed", "PERF_OFFLINE_WINDOW": "true", "SCALES": "1000"})
    assert cfg.should_reset() and cfg.scope_for(1000) == "perf_d_1000"
    iso = resolve({"SCALES": "1000", "MATRIX_TAG": "t1"})
    assert not iso.should_reset() and iso.scope_for(1000) == "perf_d_1000_t1"


def test_cli_refuses_before_doing_anything() -> None:
    proc = run_cli("matrix", env={"SCALES": "1000", "SCOPE_STRATEGY": "fixed", "RESET_MODE": "always"})
    assert proc.returncode == ExitCode.REFUSED
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert "PERF_OFFLINE_WINDOW" in proc.stderr


def test_default_scales_is_the_make_bench_scale_and_the_ramp_is_space_separated() -> None:
    cfg = resolve({})
    assert cfg["SCALES"] == [100_000] and cfg.sources["SCALES"] == "default"
    assert resolve({"SCALES": "100000 300000 1000000"})["SCALES"] == [100_000, 300_000, 1_000_000]
    assert resolve({"SCALES": "1000, 3000"})["SCALES"] == [1000, 3000]
    proc = run_cli("matrix", "--dry-run", env={"SCALES": ""}, check=True)
    assert "SCALES" in proc.stdout and "[100000]" in proc.stdout and "(default)" in proc.stdout


def test_dry_run_echoes_every_variable() -> None:
    proc = run_cli("matrix", "--dry-run", env={"SCALES": "1000", "PERF_PROFILE": "worker_slo"}, check=True)
    for var in VARS:
        assert var.name in proc.stdout


def _bench(c429: int, total: int) -> dict:
    return {"cases": [{"name": "recall_text", "total": total, "by_status": {"200": total - c429, "429": c429}}]}


def test_adapt_step_follows_the_aionis_kit_rules() -> None:
    cfg = resolve({"SCALES": "1000"})
    # no 429: stop
    retry, rc, wc, pace, stats = adapt_step(cfg, "all", 12, 4, 0, _bench(0, 100))
    assert not retry and stats["last_429"] == 0
    # 60 % 429: halve both, pace += 25*4
    retry, rc, wc, pace, stats = adapt_step(cfg, "all", 12, 4, 0, _bench(60, 100))
    assert retry and (rc, wc, pace) == (6, 2, 100) and stats["last_429_rate"] == 0.6
    # recall mode leaves write concurrency; 3 % → m=1
    retry, rc, wc, pace, _ = adapt_step(cfg, "recall", 1, 4, 1990, _bench(3, 100))
    assert retry and (rc, wc, pace) == (1, 4, 2000)
    # nothing can change any more: stop
    retry, *_ = adapt_step(cfg, "recall", 1, 4, 2000, _bench(3, 100))
    assert not retry
