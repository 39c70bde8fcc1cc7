"""`memload matrix`: the one-command baseline (the Aionis kit's matrix script), phase by phase.

First the target is probed (GET /health: who it is, whether it lives); a dead target stops the run at once. Then,
per scale: purge (when the strategy says) → seed → benchmark with the adaptive retry loop → EXPLAIN; then the worker
benchmark, then the report. Each phase is a `memload` subprocess whose JSON/text output lands in the run directory
under the seed document's names, so a run can be re-analysed later from files alone.

A failed phase is one line on the console (stage, cause, the setting that changes it) and one entry of
`failed_phases` in manifest.json; its traceback and every child's stderr go to `<run dir>/logs/matrix.log`. A stage
that could not run is listed in `not_measured` with its reason, so the report never credits a number nobody
measured. Whatever happens (a failed phase, Ctrl-C), every process started here is stopped and a report of what ran
is still written.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from memload.client import HEALTH, WRITE, ApiClient, RequestFailed
from memload.config import REPO_ROOT, Settings
from memload.db import API_APPLICATION_NAME
from memload.embedder import fake_embed
from memload.errors import DatabaseUnavailable, ExitCode, MemloadError
from memload.limits import LIMIT_PROFILES
from scripts.common import log
from scripts.hostinfo import host_info
from scripts.matrix_config import MatrixConfig
from scripts.target import probe_target

SOURCE_ANCHOR_TEXT = "perf source anchor vector"
PASSED_AS_FLAGS = ("SEED_COMMAND", "EXPLAIN_SQL", "WORKER_COMMAND", "WORKER_OBSERVE")
LOG_NAME = "matrix.log"
PROBE_TIMEOUT_S = 3.0
# A child's exit code that stops the whole run: the same cause would fail every later phase too.
FATAL_CHILD_CODES = (ExitCode.USAGE, ExitCode.REFUSED)
# Which exit code wins when several things went wrong (interrupted is decided before).
EXIT_PRIORITY = (ExitCode.USAGE, ExitCode.REFUSED, ExitCode.TARGET_FAILING, ExitCode.ERROR)


class StageError(MemloadError):
    """A phase failed; `hint` names the setting that changes the outcome."""

    def __init__(self, message: str, *, hint: str = "", exit_code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code


class ChildFailed(StageError):
    """A `memload` child process exited with an unexpected code; `cause` is its last error line."""

    def __init__(self, command: str, returncode: int, cause: str | None) -> None:
        msg = f"`memload {command}` exited with {returncode}" + (f": {cause}" if cause else "")
        code = returncode if returncode in (*FATAL_CHILD_CODES, ExitCode.TARGET_FAILING) else ExitCode.ERROR
        super().__init__(msg, exit_code=code)
        self.returncode = returncode


class StopRun(StageError):
    """A failure after which no later phase can measure anything (dead target, bad configuration)."""


class RunLog:
    """`<run dir>/logs/matrix.log`: the matrix's own lines, each child's full stderr, every traceback."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        self.children: list[tuple[str, int]] = []  # (subcommand, exit code) of every child, in order

    def write(self, text: str) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(text if text.endswith("\n") else text + "\n")
            self._file.flush()

    def line(self, message: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} [matrix] {message}")

    def exception(self, title: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} [matrix] {title}\n{traceback.format_exc()}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_RUN_LOG = RunLog(None)  # replaced by Matrix.run for the duration of a run


def _say(message: str) -> None:
    """One matrix line: console and run log."""
    log(message, prefix="matrix")
    _RUN_LOG.line(message)


class _StderrPump(threading.Thread):
    """Copies a child's stderr into the run log, and to the console without tracebacks; keeps the cause: the
    child's `memload: error:` line or the last line of its traceback."""

    TRACEBACK_LINES = ("Traceback (most recent call last)", "During handling of the above exception",
                       "The above exception was the direct cause")

    def __init__(self, stream: IO[str], label: str) -> None:
        super().__init__(name=f"stderr-{label}", daemon=True)
        self.stream, self.label = stream, label
        self.cause: str | None = None

    def run(self) -> None:
        in_traceback = after_traceback = False
        _RUN_LOG.write(f"--- stderr of `memload {self.label}` ---")
        for line in self.stream:
            _RUN_LOG.write(line)
            text = line.rstrip("\n")
            if text.startswith(self.TRACEBACK_LINES):
                in_traceback = True
                continue
            if in_traceback:
                if not text.strip() or text[0] in " \t":
                    continue
                in_traceback, after_traceback, self.cause = False, True, text.strip()
                continue
            if text.startswith("memload: error: "):
                self.cause = text.removeprefix("memload: error: ").strip()
                continue
            if after_traceback and not text.startswith("["):
                continue  # the rest of a multi-line exception message
            after_traceback = False
            sys.stderr.write(line)
            sys.stderr.flush()


def _memload(args: list[str], *, env: dict[str, str], out: Path | None = None, timeout: float = 3600,
             ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run `memload ARGS` as a child process; stdout goes to `out` when given; stderr goes to the run log (and to
    the console without tracebacks). An exit code outside `ok_codes` raises `ChildFailed` naming the child's cause."""
    cmd = [sys.executable, "-m", "scripts.cli", *args]
    label = " ".join(args[:1])
    # Own process group: on Ctrl-C / failure the whole tree (e.g. bench → Locust master + workers) is stopped.
    child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    assert child.stdout is not None and child.stderr is not None
    pump = _StderrPump(child.stderr, label)
    pump.start()
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(child)
        raise StageError(f"`memload {label}` did not finish within {timeout:.0f}s; stopped") from None
    except BaseException:
        _stop_group(child)
        raise
    finally:
        reader.join(10)
        pump.join(10)
    stdout = "".join(chunks)
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, None)
    _RUN_LOG.children.append((label, child.returncode))
    _RUN_LOG.write(f"--- `memload {label}` exited with {child.returncode} ---")
    if out is not None:
        out.write_text(proc.stdout)
    if proc.returncode not in ok_codes:
        raise ChildFailed(" ".join(args[:1]), proc.returncode, pump.cause)
    return proc


def _stop_group(child: subprocess.Popen[str], grace_s: float = 10.0) -> None:
    """SIGINT the child's process group (children write what they can), then SIGKILL whatever is left."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; make sure no member of its group outlives it
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


@dataclass
class Phase:
    name: str
    started_at: float
    elapsed_s: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class RunState:
    out_dir: Path
    phases: list[Phase] = field(default_factory=list)
    interrupted: bool = False
    failed_phases: list[dict[str, str]] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why it did not run
    stop_reason: str | None = None  # why the run ended early (every stage not reached says so)

    def fail(self, name: str, reason: str, hint: str, exit_code: int = ExitCode.ERROR) -> None:
        self.failed_phases.append({"name": name, "reason": reason, "hint": hint})
        self.exit_codes.append(int(exit_code))

    @contextmanager
    def phase(self, name: str, hint: str = "") -> Iterator[Phase]:
        """Run one phase. A failure is recorded (one console line, traceback in the run log) and swallowed, so the
        caller checks `ph.ok`; `StopRun`, a fatal child exit code and Ctrl-C end the whole run."""
        ph = Phase(name, time.time())
        self.phases.append(ph)
        _say(f"phase {name} …")
        t0 = time.perf_counter()
        try:
            yield ph
            ph.ok = True
        except KeyboardInterrupt:
            ph.detail = "interrupted"
            raise
        except Exception as exc:
            ph.detail = ph.detail or _one_line(exc)
            hint = getattr(exc, "hint", "") or (
                "DATABASE_URL: the target's database must be reachable" if isinstance(exc, DatabaseUnavailable)
                else hint)
            code = getattr(exc, "exit_code", ExitCode.ERROR)
            self.fail(name, ph.detail, hint, code)
            _RUN_LOG.exception(f"phase {name} failed")
            if isinstance(exc, StopRun) or code in FATAL_CHILD_CODES:
                self.stop_reason = f"the run stopped when {name} failed"
                raise StopRun(ph.detail, hint=hint, exit_code=code) from exc
        finally:
            ph.elapsed_s = round(time.perf_counter() - t0, 3)
            if ph.ok:
                _say(f"phase {name} ok in {ph.elapsed_s:.1f}s")
            elif ph.detail != "interrupted":
                failed = self.failed_phases[-1] if self.failed_phases else {"hint": hint}
                _say(f"phase {name} FAILED in {ph.elapsed_s:.1f}s: {ph.detail}"
                     + (f" — {failed['hint']}" if failed.get("hint") else ""))

    def succeeded(self, name: str) -> bool:
        return any(p.name == name and p.ok for p in self.phases)

    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        for code in EXIT_PRIORITY:
            if code in self.exit_codes:
                return code
        return ExitCode.ERROR if self.exit_codes else ExitCode.OK


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ensure_source_vector(base_url: str, scope: str, tenant_id: str) -> None:
    """The seeder copies/needs one READY vector in the source scope (as the Aionis kit's): write one, idempotently."""
    body = {
        "tenant_id": tenant_id, "scope": scope, "input_text": "memload perf source anchor", "auto_embed": False,
        "memory_lane": "shared",
        "nodes": [{"client_id": "memload_perf_source_anchor", "type": "event", "text_summary": SOURCE_ANCHOR_TEXT,
                   "embedding": fake_embed(SOURCE_ANCHOR_TEXT)}],
    }
    try:
        ApiClient(base_url, timeout_s=30).post(WRITE, body)
    except RequestFailed as exc:
        if not exc.status:
            raise StageError(f"POST {base_url}{WRITE}: {exc.detail}", hint="BASE_URL: the target stopped answering",
                             exit_code=ExitCode.TARGET_FAILING) from None
        hint = ("PERF_API_KEY (or MEMORY_API_KEYS_JSON) / PERF_AUTH_BEARER: the target wants credentials"
                if exc.status in (401, 403) else "BASE_URL: is it the memory API's address?")
        raise StageError(f"POST {base_url}{WRITE} -> {exc.status}: {exc.detail}", hint=hint,
                         exit_code=ExitCode.TARGET_FAILING if exc.status >= 500 else ExitCode.ERROR) from None


def adapt_step(cfg: MatrixConfig, mode: str, rc: int, wc: int, pace: int, bench: dict[str, Any]
               ) -> tuple[bool, int, int, int, dict[str, Any]]:
    """One step of the Aionis kit's adaptive pacing. Returns (retry?, rc, wc, pace, stats)."""
    cases = bench.get("cases", [])
    c429 = sum(int(c.get("by_status", {}).get("429", 0)) for c in cases)
    total = sum(int(c.get("total", 0)) for c in cases)
    allowed = math.ceil(total * cfg["SLO_MAX_ERROR_RATE"])
    rate = c429 / total if total else 0.0
    stats = {"last_429": c429, "last_total_requests": total, "last_allowed_429": allowed,
             "last_429_rate": round(rate, 6)}
    if c429 <= allowed:
        return False, rc, wc, pace, stats
    new_rc = rc // 2 if mode != "write" and rc > 1 else rc
    new_wc = wc // 2 if mode != "recall" and wc > 1 else wc
    m = 4 if rate >= 0.5 else 3 if rate >= 0.2 else 2 if rate >= 0.05 else 1
    new_pace = min(cfg["PACE_MAX_MS"], pace + cfg["PACE_STEP_MS"] * m)
    changed = (new_rc, new_wc, new_pace) != (rc, wc, pace)
    return changed, new_rc, new_wc, new_pace, stats


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: stop what was started, write the partial report."""
    raise KeyboardInterrupt


class Matrix:
    """Runs the matrix described by a resolved `MatrixConfig`."""

    def __init__(self, cfg: MatrixConfig, settings: Settings) -> None:
        self.cfg = cfg
        self.settings = settings
        out = cfg["OUT_DIR"] or str(REPO_ROOT / "artifacts" / "perf" / cfg["MATRIX_TAG"])
        self.state = RunState(Path(out).resolve())
        self.base_url = cfg["BASE_URL"]
        self.database_url = settings.database_url
        self.stack: Any = None
        # The target-command variables reach a child only as the flags built here (seed_args, explain_args,
        # worker_args): as inherited env twins they would also reach children that must not use them.
        self.env = {k: v for k, v in os.environ.items() if k not in PASSED_AS_FLAGS}
        self.target: dict[str, Any] = {"base_url": self.base_url or None, "kind": "external", "health": None,
                                       "health_status": None, "headers": {}, "probe_error": None}
        self.hygiene: dict[str, Any] | None = None
        self.ef_search = settings.hnsw_ef_search  # the local API's hnsw.ef_search; raised by the recall check
        self._database_info: dict[str, Any] | None = None
        self.server_sizing: str | None = None  # what sizing the embedded server for the largest scale did

    @property
    def log_path(self) -> Path:
        return self.state.out_dir / "logs" / LOG_NAME

    @property
    def is_reference(self) -> bool:
        return self.target.get("kind") == "reference"

    # ----------------------------------------------------------------- orchestration
    def run(self) -> int:
        global _RUN_LOG
        out = self.state.out_dir
        out.mkdir(parents=True, exist_ok=True)
        _RUN_LOG = RunLog(self.log_path)
        print(self.cfg.echo(), file=sys.stderr)
        _RUN_LOG.write(self.cfg.echo())
        _say(f"artifacts: {out}; full log: {self.log_path}")
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._write_manifest()
            self._bring_up()
            self._write_manifest()
            self._keep_runs()
            for scale in self.cfg["SCALES"]:
                self._run_scale(scale)
            if self.cfg["RUN_WORKER_BENCHMARK"]:
                self._worker_benchmark()
        except KeyboardInterrupt:
            self.state.interrupted = True
            self.state.stop_reason = "interrupted"
            _say("interrupted: stopping and writing a partial report")
        except StopRun:
            _say("stopped: writing a partial report of what ran")
        except Exception as exc:  # a bug of the matrix itself: one line here, the traceback in the run log
            _RUN_LOG.exception("matrix failed")
            self.state.fail("matrix", _one_line(exc), f"full traceback in {self.log_path}")
            self.state.stop_reason = "the run stopped: the matrix itself failed"
            _say(f"failed: {_one_line(exc)} (traceback in {self.log_path})")
        finally:
            try:
                self._tear_down()
            except Exception as exc:
                _RUN_LOG.exception("stack_down failed")
                self.state.fail("stack_down", _one_line(exc), "see the API log under logs/")
            signal.signal(signal.SIGTERM, previous)
            self._write_manifest()
            self._report()
            self._write_manifest()
            _RUN_LOG.close()
            _RUN_LOG = RunLog(None)
        return self.state.exit_code()

    @property
    def local_limits(self) -> str:
        """The rate-limit profile of the local stack's API (`default` is the older name of `contract`)."""
        name = self.cfg["LOCAL_RATE_LIMIT_PROFILE"]
        return "contract" if name == "default" else name

    def _bring_up(self) -> None:
        if self.base_url and not self.database_url:
            self.state.fail("configuration", "BASE_URL is set but DATABASE_URL is not: seeding and EXPLAIN need the "
                            "target's database", "set DATABASE_URL too, or unset BASE_URL to use the local stack",
                            ExitCode.USAGE)
            self.state.stop_reason = "the run stopped: DATABASE_URL is not set"
            _say("BASE_URL is set but DATABASE_URL is not: seeding and EXPLAIN need the target's database — set "
                 "DATABASE_URL too, or unset BASE_URL to use the local stack")
            raise StopRun("DATABASE_URL is not set", exit_code=ExitCode.USAGE)
        if self.base_url:
            _say(f"targeting {self.base_url}; starting nothing")
            self.env["DATABASE_URL"] = self.database_url or ""
        else:
            with self.state.phase("stack_up", hint="PORT / DATABASE_URL; the API's log is under logs/"):
                from scripts.stack import LocalStack

                if not self.settings.database_url:
                    self._size_embedded_server()

                self.stack = LocalStack(self.settings, worker=False, api_env=LIMIT_PROFILES[self.local_limits],
                                        log_dir=self.state.out_dir / "logs")
                self.stack.start()
                self.base_url = self.stack.base_url
                self.database_url = self.stack.database_url
                self.env["DATABASE_URL"] = self.database_url
            if self.stack is None or not self.state.succeeded("stack_up"):
                self.state.stop_reason = "the local stack did not start"
                raise StopRun("the local stack did not start")
        self._probe()

    def _size_embedded_server(self) -> None:
        """Size the embedded server for this run's largest scale before anything connects to it: a restart later
        would cut the API off, and the seed of the largest scope then builds beside the pool it will use."""
        from scripts import embedded_db

        scale = max(self.cfg["SCALES"])
        dataset = embedded_db.Dataset(scale + self.cfg.topics_for(scale), self.cfg["SEED_PRECISION"])
        self.server_sizing = embedded_db.size_for(self.settings, dataset, replace=True)
        _say(self.server_sizing)

    def _probe(self) -> None:
        """GET /health before the first phase: record who the target is; a dead target ends the run (exit 2)."""
        with self.state.phase("target_probe", hint=f"BASE_URL: the memory API must answer GET {HEALTH} there; fix "
                              "BASE_URL, or unset it to let the matrix start the local stack"):
            self.target = probe_target(self.base_url, timeout_s=PROBE_TIMEOUT_S, started_here=self.stack is not None)
            if self.target["probe_error"]:
                raise StopRun(f"the target is not answering: {self.target['probe_error']}",
                              exit_code=ExitCode.TARGET_FAILING)
            _say(f"target {self.base_url}: {self.target['kind']} (GET {HEALTH} → {self.target['health_status']}"
                 + (f", {self.target['headers']}" if self.target["headers"] else "") + ")")

    def _tear_down(self) -> None:
        if self.stack is not None:
            with self.state.phase("stack_down"):
                self.stack.stop()
            self.stack = None

    # ----------------------------------------------------------------- disk hygiene
    def _keep_runs(self) -> None:
        """Keep the isolated scopes of the last KEEP_RUNS matrix runs (this one included) in this database; purge
        older ones by partition drop. Only scopes a matrix run recorded in MEMLOAD_HOME/matrix_runs.json."""
        from scripts import matrix_runs

        cfg = self.cfg
        if not self.database_url:
            return
        home = self.settings.memload_home
        with self.state.phase("keep_runs", hint="KEEP_RUNS=0 keeps every run's scopes"):
            database = matrix_runs.database_identity(self.database_url)
            if cfg["SCOPE_STRATEGY"] == "isolated":
                matrix_runs.record(home, matrix_runs.new_entry(
                    matrix_tag=cfg["MATRIX_TAG"], database=database, tenant_id=cfg["TENANT_ID"],
                    scope_prefix=cfg["SCOPE_PREFIX"], scales=cfg["SCALES"], out_dir=self.state.out_dir))
            victims = matrix_runs.to_purge(matrix_runs.load(home), database=database, current_tag=cfg["MATRIX_TAG"],
                                           keep_runs=cfg["KEEP_RUNS"])
            self.hygiene = {"keep_runs": cfg["KEEP_RUNS"], "registry": str(matrix_runs.registry_path(home)),
                            "purged": [], "kept": [], "freed_bytes": 0}
            if not victims:
                _say("disk: nothing to purge" + (" (KEEP_RUNS=0 keeps every run)" if not cfg["KEEP_RUNS"] else
                                                 f" (keeping the last {cfg['KEEP_RUNS']} runs' scopes)"))
                return
            for entry in victims:
                if self._purge_run(entry):
                    matrix_runs.forget(home, entry)
            purged = self.hygiene["purged"]
            _say(f"disk: purged {len(purged)} scope(s) of {len(victims)} older run(s) "
                 f"({', '.join(sorted({p['matrix_tag'] for p in purged})) or 'none'}), freed "
                 f"{matrix_runs.human_bytes(self.hygiene['freed_bytes'])}; keeping the last {cfg['KEEP_RUNS']} runs"
                 + (f"; {len(self.hygiene['kept'])} scope(s) could not be purged (see {self.log_path})"
                    if self.hygiene["kept"] else ""))

    def _purge_run(self, entry: Any) -> bool:
        """Purge the scopes of one older run; True when none is left behind."""
        from memload.identity import scope_key
        from scripts import matrix_runs

        assert self.hygiene is not None and self.database_url
        all_gone = True
        for scope in entry.scopes():
            if scope == self.cfg["SRC_SCOPE"] or not scope.startswith(f"{entry.scope_prefix}_"):
                continue  # never the source scope, never a name the matrix did not build
            key = scope_key(scope, entry.tenant_id, self.settings.memory_tenant_id)
            footprint = matrix_runs.scope_footprint(self.database_url, key)
            if footprint.shared_rows:  # not seeded into partitions of its own: no partition drop can free it
                all_gone = False
                reason = (f"{footprint.shared_rows} rows sit in shared tables, not in partitions of the scope's own; "
                          f"`memload purge --scope {scope} --mode delete --apply` removes them")
                self.hygiene["kept"].append({"matrix_tag": entry.matrix_tag, "scope": scope, "reason": reason})
                _RUN_LOG.line(f"kept scope {scope} of run {entry.matrix_tag}: {reason}")
                continue
            if not footprint.partitions:
                continue  # nothing left of it (its seed never committed, or it was purged by hand)
            size = footprint.bytes
            args = ["purge", "--scope", scope, "--tenant-id", entry.tenant_id, "--mode", "partition",
                    "--fail-on-delete", "--no-allow-fallback-delete", "--no-allow-source-scope", "--apply",
                    "--src-scope", self.cfg["SRC_SCOPE"], "--src-tenant-id", self.cfg["SRC_TENANT_ID"]]
            try:
                _memload(args, env=self.env, timeout=1800)
            except StageError as exc:
                all_gone = False
                self.hygiene["kept"].append({"matrix_tag": entry.matrix_tag, "scope": scope, "reason": str(exc)})
                _RUN_LOG.line(f"kept scope {scope} of run {entry.matrix_tag}: {exc}")
                continue
            self.hygiene["purged"].append({"matrix_tag": entry.matrix_tag, "scope": scope, "bytes": size})
            self.hygiene["freed_bytes"] += size
            _RUN_LOG.line(f"purged scope {scope} of run {entry.matrix_tag}: {matrix_runs.human_bytes(size)}")
        return all_gone

    # ----------------------------------------------------------------- per scale
    def _run_scale(self, scale: int) -> None:
        cfg, out = self.cfg, self.state.out_dir
        scope = cfg.scope_for(scale)
        if cfg.should_reset() and cfg["RESET_IMPL"] == "scope_purge":
            with self.state.phase(f"purge_{scale}", hint="RESET_PURGE_MODE / RESET_PURGE_ALLOW_FALLBACK_DELETE"
                                  ) as ph:
                args = ["purge", "--scope", scope, "--tenant-id", cfg["TENANT_ID"], "--mode",
                        cfg["RESET_PURGE_MODE"], "--batch-size", "5000", "--apply"]
                if cfg["RESET_PURGE_ALLOW_FALLBACK_DELETE"]:
                    args.append("--allow-fallback-delete")
                if cfg["RESET_PURGE_FAIL_ON_DELETE"]:
                    args.append("--fail-on-delete")
                _memload(args, env=self.env, out=out / f"purge_{scale}.json")
            if not ph.ok:
                return self._skip_scale(scale, f"purge_{scale} failed: {ph.detail}")
        seed_hint = ("SEED_COMMAND: check the target's seeder command" if cfg["SEED_COMMAND"] else
                     "DATABASE_URL must be the target's database; a server with its own seeder: set SEED_COMMAND")
        with self.state.phase(f"seed_{scale}", hint=seed_hint) as ph:
            ensure_source_vector(self.base_url, cfg["SRC_SCOPE"], cfg["SRC_TENANT_ID"])
            _memload(self.seed_args(scale), env=self.env, out=out / f"seed_{scale}.json")
        if not ph.ok:
            (out / f"seed_{scale}.json").unlink(missing_ok=True)  # an empty or half file is no seed summary
            return self._skip_scale(scale, f"seed_{scale} failed: {ph.detail}", seed=False)
        if cfg["RUN_ANN_CHECK"]:
            self._ann_check(scale, scope)
        with self.state.phase(f"benchmark_{scale}", hint="BENCH_TIMEOUT_MS / RECALL_CONCURRENCY / WRITE_CONCURRENCY; "
                              f"details in benchmark_{scale}_attempt*.json"):
            n_children = len(_RUN_LOG.children)
            with self._cost_sampler(scale, scope):
                self._benchmark(scale, scope)
        if any(name == "bench" and code == ExitCode.TARGET_FAILING for name, code in _RUN_LOG.children[n_children:]):
            self.state.fail(f"benchmark_{scale}", "the target failed under load (transport errors or 5xx above the "
                            "gate)", f"see benchmark_{scale}.json; BENCH_FAIL_ON_TRANSPORT_ERROR_RATE sets the gate",
                            ExitCode.TARGET_FAILING)
            _say(f"benchmark_{scale}: the target failed under load (see benchmark_{scale}.json)")
        if cfg["PERF_PROFILE"] == "worker_slo":
            with self.state.phase(f"worker_backlog_{scale}", hint="WORKER_BACKLOG_WRITES / BASE_URL"):
                self._backlog(cfg["WORKER_SCOPE"] or scope)
        if cfg["RUN_EXPLAIN"]:
            self._explain(scale, scope)

    def seed_args(self, scale: int) -> list[str]:
        """`memload seed` arguments for one scale (with SEED_COMMAND: the target's seeder, run by memload seed)."""
        cfg, out = self.cfg, self.state.out_dir
        args = ["seed", "--scope", cfg.scope_for(scale), "--tenant-id", cfg["TENANT_ID"], "--src-scope",
                cfg["SRC_SCOPE"], "--src-tenant-id", cfg["SRC_TENANT_ID"], "--events", str(scale), "--topics",
                str(cfg.topics_for(scale)), "--vectors", cfg["SEED_VECTORS"], "--precision", cfg["SEED_PRECISION"],
                "--seed", str(cfg["SEED_RANDOM_SEED"]), "--query-set-out", str(out / f"query_set_{scale}.json")]
        if cfg.should_reset() and cfg["RESET_IMPL"] == "perf_seed":
            args.append("--reset")
        if cfg["SEED_COMMAND"]:
            args += ["--command", cfg["SEED_COMMAND"]]
        return args

    def explain_args(self, scale: int) -> list[str] | None:
        """`memload explain` arguments, or None when the explain stage cannot measure this target: an external
        server's queries are its own, so memload's reference SQL says nothing about them (set EXPLAIN_SQL)."""
        cfg = self.cfg
        args = ["explain", "--scope", cfg.scope_for(scale), "--tenant-id", cfg["TENANT_ID"], "--lim", "30",
                "--out", str(self.state.out_dir / f"explain_{scale}.txt")]
        if cfg["EXPLAIN_SQL"]:
            return [*args, "--sql", cfg["EXPLAIN_SQL"]]
        return args if self.is_reference else None

    def _explain(self, scale: int, scope: str) -> None:
        args = self.explain_args(scale)
        if args is None:
            self._skip(f"explain_{scale}", "an external target's own SQL is unknown: set EXPLAIN_SQL to its explain "
                                           "script (memload's reference SQL would not be the target's queries)")
            return
        with self.state.phase(f"explain_{scale}", hint="EXPLAIN_SQL (the target's explain script), or "
                              "RUN_EXPLAIN=false"):
            proc = _memload(args, env=self.env, ok_codes=(0, ExitCode.GATE_FAILED))
            if proc.returncode != 0:
                self.state.phases[-1].detail = "planner check failed (see explain file)"

    def ann_check_args(self, scale: int) -> list[str]:
        """`memload ann-check` for one scale: the recall path's recall@10 on ANN_QUERIES sampled queries against a
        numpy ground truth. The local API's ef_search is passed; an external target's comes from HNSW_EF_SEARCH
        (its own variable). The sweep runs only where the matrix may act on it: the local stack with
        TUNE_EF_SEARCH."""
        cfg = self.cfg
        args = ["ann-check", "--scope", cfg.scope_for(scale), "--tenant-id", cfg["TENANT_ID"], "--queries",
                str(cfg["ANN_QUERIES"]), "--exact", "numpy", "--target-recall", str(cfg["SLO_MIN_RECALL"])]
        if self.stack is not None:
            args += ["--ef-search", str(self.ef_search)]
            higher = sorted(ef for ef in cfg["ANN_EF_SWEEP"] if ef > self.ef_search)
            if cfg["TUNE_EF_SEARCH"] and higher:
                args += ["--ef-sweep", ",".join(map(str, higher))]
        return args

    def _ann_check(self, scale: int, scope: str) -> None:
        """Recall@10 before the benchmark: a latency measured on a scan that misses a tenth of the neighbours is
        a latency of wrong answers. On the local stack, a miss raises the API's hnsw.ef_search to the smallest
        swept value that reaches SLO_MIN_RECALL (the API restarts), so the benchmark prices the recall."""
        path = self.state.out_dir / f"ann_check_{scale}.json"
        with self.state.phase(f"ann_check_{scale}", hint="ANN_QUERIES / RUN_ANN_CHECK=false; the scope's "
                              "vectors are fetched once for the exact top 10") as ph:
            _memload(self.ann_check_args(scale), env=self.env, out=path)
            doc = json.loads(path.read_text())
            target, measured_ef = self.cfg["SLO_MIN_RECALL"], doc["hnsw"]["ef_search"]
            found = doc.get("ef_search_for_target")
            tuned = (self.stack is not None and self.cfg["TUNE_EF_SEARCH"] and doc["recall_at_k_distance"] < target
                     and found is not None and found > measured_ef)
            if tuned:
                self._restart_api(found)
            doc["ef_search_used"] = self.ef_search if self.stack is not None else measured_ef
            doc["ef_search_tuned"] = tuned
            path.write_text(json.dumps(doc, indent=2) + "\n")
            used = [r for r in doc.get("ef_sweep", []) if r["ef_search"] == doc["ef_search_used"]]
            recall = (used[0] if used else doc)["recall_at_k_distance"]
            ph.detail = (f"recall@{doc['k']} {recall:.3f} at ef_search {doc['ef_search_used']}"
                         + (f" (raised from {measured_ef}: {doc['recall_at_k_distance']:.3f} there)" if tuned else "")
                         + (f"; below {target}" if recall < target else ""))
            _say(f"ann_check_{scale}: {ph.detail}")

    def _restart_api(self, ef_search: int) -> None:
        """The local API again, with hnsw.ef_search raised (read once at its start)."""
        _say(f"restarting the local API with HNSW_EF_SEARCH={ef_search}")
        self.stack.stop()
        self.stack.child_env["api"]["HNSW_EF_SEARCH"] = str(ef_search)  # the stack's own copy of the API's env
        self.stack.start()  # same port, same log file (appended)
        self.base_url = self.stack.base_url
        self.ef_search = ef_search

    def _skip(self, stage: str, reason: str) -> None:
        self.state.skipped[stage] = reason
        _say(f"{stage}: NOT MEASURED — {reason}")

    def _skip_scale(self, scale: int, reason: str, *, seed: bool = True) -> None:
        stages = ([f"seed_{scale}"] if seed else []) + (
            [f"ann_check_{scale}"] if self.cfg["RUN_ANN_CHECK"] else []) + [f"benchmark_{scale}"] + (
            [f"explain_{scale}"] if self.cfg["RUN_EXPLAIN"] else [])
        for stage in stages:
            self.state.skipped.setdefault(stage, reason)

    def _benchmark(self, scale: int, scope: str) -> None:
        """The Aionis kit's adaptive retry loop, then REPEAT−1 more runs at the settings it settled on.

        Each case runs BENCH_DURATION_S seconds after warm-up unless RECALL_REQUESTS / WRITE_REQUESTS give it a
        request count. With REPEAT=N > 1 the runs are `benchmark_<scale>_rep<k>.json` (CSV prefix
        `locust_<scale>_rep<k>`; repeat 1 is the adaptive loop's last attempt) and `benchmark_<scale>.json` is a copy
        of the last repeat; `memload compare` uses every repeat.
        """
        cfg, out = self.cfg, self.state.out_dir
        mode, repeat = cfg["BENCH_MODE"], cfg["REPEAT"]
        rc, wc, pace = cfg["RECALL_CONCURRENCY"], cfg["WRITE_CONCURRENCY"], cfg["BENCH_PACE_MS"]
        initial = {"recall_concurrency": rc, "write_concurrency": wc, "pace_ms": pace}
        counts = {"recall": cfg["RECALL_REQUESTS"], "write": cfg["WRITE_REQUESTS"]}
        cases = [c for c in ("recall", "write") if mode in ("all", c)]
        timed = any(counts[c] is None for c in cases)

        def run(prefix: str, target: Path) -> dict[str, Any]:
            args = ["bench", "--base-url", self.base_url, "--scope", scope, "--tenant-id", cfg["TENANT_ID"],
                    "--mode", mode, "--warmup", str(cfg["BENCH_WARMUP"]),
                    "--recall-concurrency", str(rc), "--write-concurrency", str(wc),
                    "--timeout-ms", str(cfg["BENCH_TIMEOUT_MS"]), "--pace-ms", str(pace),
                    "--profile", cfg["PERF_PROFILE"], "--query-set", str(out / f"query_set_{scale}.json"),
                    "--csv", str(out / prefix), "--out", str(target)]
            if timed:
                args += ["--duration-s", str(cfg["BENCH_DURATION_S"])]
            for case in cases:
                if counts[case] is not None:
                    args += [f"--{case}-requests", str(counts[case])]
            if cfg["EMBED_ON_WRITE"]:
                args.append("--embed-on-write")
            if cfg["BENCH_FAIL_ON_TRANSPORT_ERROR_RATE"] is not None:
                args += ["--fail-on-transport-error-rate", str(cfg["BENCH_FAIL_ON_TRANSPORT_ERROR_RATE"])]
            proc = _memload(args, env=self.env, ok_codes=(0, 2, 3))
            if proc.returncode == 2:
                self.state.phases[-1].detail = "transport-error gate failed"
            return json.loads(target.read_text())

        first_prefix = f"locust_{scale}_rep1" if repeat > 1 else f"locust_{scale}"
        attempt, retries_used, exhausted = 0, 0, False
        stats: dict[str, Any] = {"last_429": 0, "last_total_requests": 0, "last_allowed_429": 0, "last_429_rate": 0}
        while True:
            attempt += 1
            target = out / f"benchmark_{scale}_attempt{attempt}.json"
            bench = run(first_prefix, target)
            (out / f"benchmark_{scale}.json").write_text(target.read_text())
            if not cfg["AUTO_ADAPT_RATE_LIMIT"]:
                break
            retry, rc2, wc2, pace2, stats = adapt_step(cfg, mode, rc, wc, pace, bench)
            if not retry:
                break
            if retries_used >= cfg["MAX_RATE_LIMIT_RETRIES"]:
                exhausted = True
                break
            retries_used += 1
            log(f"429s: {stats['last_429']}/{stats['last_total_requests']}; retry with recall_concurrency={rc2} "
                f"write_concurrency={wc2} pace_ms={pace2}", prefix="matrix")
            rc, wc, pace = rc2, wc2, pace2
        reps: list[str] = []
        if repeat > 1:
            (out / f"benchmark_{scale}_rep1.json").write_text(target.read_text())
            reps.append(f"benchmark_{scale}_rep1.json")
            for k in range(2, repeat + 1):
                log(f"benchmark {scale}: repeat {k}/{repeat}", prefix="matrix")
                rep = out / f"benchmark_{scale}_rep{k}.json"
                run(f"locust_{scale}_rep{k}", rep)
                reps.append(rep.name)
            (out / f"benchmark_{scale}.json").write_text((out / reps[-1]).read_text())
        adapt = {
            "scale": scale, "auto_adapt": cfg["AUTO_ADAPT_RATE_LIMIT"],
            "max_rate_limit_retries": cfg["MAX_RATE_LIMIT_RETRIES"], "retries_used": retries_used,
            "attempts_total": attempt, "exhausted": exhausted, "initial": initial,
            "final": {"recall_concurrency": rc, "write_concurrency": wc, "pace_ms": pace, **stats},
            "repeat": repeat, "repeats": reps, "canonical": reps[-1] if reps else target.name,
        }
        (out / f"benchmark_adapt_{scale}.json").write_text(json.dumps(adapt, indent=2) + "\n")

    @contextmanager
    def _cost_sampler(self, scale: int, scope: str) -> Iterator[None]:
        """cost_<scale>.json: what the benchmark cost the server, sampled while it runs (SAMPLE_COST)."""
        if not self.cfg["SAMPLE_COST"] or not self.database_url:
            yield
            return
        from memload.identity import scope_key
        from scripts.cost_sampler import CostSampler
        from seeding.build_sizing import total_mb

        sampler = CostSampler(self.state.out_dir / f"cost_{scale}.json", database_url=self.database_url,
                              scale=scale, scope=scope, scope_key=scope_key(scope, self.cfg["TENANT_ID"]),
                              api_pid=self.stack.pids.get("api") if self.stack is not None else None,
                              client_app=API_APPLICATION_NAME if self.is_reference else None,
                              host_mem_mb=total_mb())
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    def _backlog(self, scope: str) -> None:
        """worker_slo: writes with auto_embed=true create the outbox backlog the worker benchmark drains."""
        _memload(["worker-bench", "--scope", scope, "--iterations", "0", "--backlog-writes",
                  str(self.cfg["WORKER_BACKLOG_WRITES"]), "--base-url", self.base_url, "--tenant-id",
                  self.cfg["TENANT_ID"], "--backlog-only"], env=self.env)

    def worker_args(self) -> list[str] | None:
        """`memload worker-bench` arguments, or None when nothing of the target's worker can be measured: memload's
        own in-process worker measures only memload's reference API, never an external target."""
        cfg, out = self.cfg, self.state.out_dir
        if cfg["PERF_PROFILE"] == "worker_slo":
            scope, tenant = cfg["WORKER_SCOPE"] or cfg.scope_for(cfg["SCALES"][0]), cfg["TENANT_ID"]
            args = ["worker-bench", "--scope", scope, "--tenant-id", tenant]
        else:
            scope, tenant = cfg["SRC_SCOPE"], cfg["SRC_TENANT_ID"]
            args = ["worker-bench", "--scope", scope, "--tenant-id", tenant,
                    "--backlog-writes", str(cfg["WORKER_BACKLOG_WRITES"]), "--base-url", self.base_url]
        args += ["--iterations", str(cfg["WORKER_ITERATIONS"]), "--out", str(out / "worker_baseline.json")]
        if cfg["WORKER_COMMAND"]:
            return [*args, "--worker-command", cfg["WORKER_COMMAND"]]
        if cfg["WORKER_OBSERVE"]:
            return [*args, "--observe"]
        return args if self.is_reference else None

    def _worker_benchmark(self) -> None:
        args = self.worker_args()
        if args is None:
            self._skip("worker_benchmark", "set WORKER_COMMAND or WORKER_OBSERVE=true (the target's own worker; "
                                           "memload's worker measures only memload's reference API)")
            return
        with self.state.phase("worker_benchmark", hint="WORKER_COMMAND / WORKER_OBSERVE, or "
                              "RUN_WORKER_BENCHMARK=false"):
            _memload(args, env=self.env)

    # ----------------------------------------------------------------- outputs
    def planned_stages(self) -> list[str]:
        """Every measuring stage of a full run, in order (a stage switched off by a variable included: it measured
        nothing either, and the report must not read its absence as a pass)."""
        stages: list[str] = []
        for scale in self.cfg["SCALES"]:
            stages += [f"seed_{scale}", f"ann_check_{scale}", f"benchmark_{scale}", f"explain_{scale}"]
        return [*stages, "worker_benchmark"]

    def not_measured(self) -> list[dict[str, str]]:
        """Every stage that did not measure anything, with why."""
        out: list[dict[str, str]] = []
        phases = {p.name: p for p in self.state.phases}
        for stage in self.planned_stages():
            ph = phases.get(stage)
            if ph is not None and ph.ok:
                continue
            if stage.startswith("explain_") and not self.cfg["RUN_EXPLAIN"]:
                reason = f"not run: RUN_EXPLAIN=false ({self.cfg.sources['RUN_EXPLAIN']})"
            elif stage.startswith("ann_check_") and not self.cfg["RUN_ANN_CHECK"]:
                reason = f"not run: RUN_ANN_CHECK=false ({self.cfg.sources['RUN_ANN_CHECK']})"
            elif stage == "worker_benchmark" and not self.cfg["RUN_WORKER_BENCHMARK"]:
                reason = f"not run: RUN_WORKER_BENCHMARK=false ({self.cfg.sources['RUN_WORKER_BENCHMARK']})"
            elif stage in self.state.skipped:
                reason = self.state.skipped[stage]
            elif ph is not None:
                reason = "interrupted" if ph.detail == "interrupted" else f"{stage} failed: {ph.detail}"
            else:
                reason = f"not reached: {self.state.stop_reason or 'the run ended early'}"
            out.append({"stage": stage, "reason": reason})
        return out

    def _report(self) -> None:
        out = self.state.out_dir
        cfg = self.cfg
        args = ["report", "--dir", str(out), "--slo-recall-p95-ms", str(cfg["SLO_RECALL_P95_MS"]),
                "--slo-write-p95-ms", str(cfg["SLO_WRITE_P95_MS"]), "--slo-max-error-rate",
                str(cfg["SLO_MAX_ERROR_RATE"]), "--slo-worker-min-jobs-per-sec",
                str(cfg["SLO_WORKER_MIN_JOBS_PER_SEC"]), "--slo-min-recall", str(cfg["SLO_MIN_RECALL"])]
        ph = Phase("report", time.time())
        t0 = time.perf_counter()
        try:
            _memload(args, env=self.env, timeout=600, ok_codes=(0, ExitCode.GATE_FAILED))
            ph.ok = True
        except (StageError, OSError) as exc:
            ph.detail = _one_line(exc)
            _RUN_LOG.exception("report failed")
            self.state.fail("report", ph.detail, f"re-run `memload report --dir {out}`; details in {self.log_path}")
            _say(f"phase report FAILED: {ph.detail} — re-run `memload report --dir {out}`")
        ph.elapsed_s = round(time.perf_counter() - t0, 3)
        self.state.phases.append(ph)

    def _write_manifest(self) -> None:
        if self.database_url and self._database_info is None:
            self._database_info = database_info(self.database_url)
        local = self.stack is not None or (not self.cfg["BASE_URL"] and self.state.succeeded("stack_up"))
        not_measured = self.not_measured()
        manifest: dict[str, Any] = {
            "tool": "memload matrix",
            "matrix_tag": self.cfg["MATRIX_TAG"],
            "config": {k: v for k, v in self.cfg.values.items()},
            "config_sources": self.cfg.sources,
            "target": self.target,
            "local_stack": {"rate_limit_profile": self.local_limits,
                            "rate_limits": LIMIT_PROFILES[self.local_limits] or None,
                            "embedded_server": self.server_sizing}
            if local else None,
            "host": host_info(),
            "database": self._database_info,
            "phases": [asdict(p) for p in self.state.phases],
            "failed_phases": self.state.failed_phases,
            "not_measured": not_measured,
            "disk_hygiene": self.hygiene,
            "log": str(self.log_path.relative_to(self.state.out_dir)),
            "interrupted": self.state.interrupted,
            "complete": bool(self.state.phases) and all(p.ok for p in self.state.phases)
            and not self.state.interrupted and not self.state.failed_phases
            and all(e["reason"].startswith("not run:") for e in not_measured),  # all it was asked to do
        }
        if self.is_reference:
            manifest["api_settings"] = {"hnsw_ef_search": self.settings.hnsw_ef_search,
                                        "hnsw_ef_search_last": self.ef_search,  # raised by the recall check?
                                        "hnsw_iterative_scan": self.settings.hnsw_iterative_scan,
                                        "hnsw_max_scan_tuples": self.settings.hnsw_max_scan_tuples,
                                        "db_pool_max": self.settings.db_pool_max,
                                        "api_workers": self.settings.api_workers}
        (self.state.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


PG_SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size", "max_connections",
               "random_page_cost", "jit", "max_parallel_workers_per_gather", "synchronous_commit")


def database_info(url: str) -> dict[str, Any]:
    from memload.db import connection

    try:
        with connection(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            vec = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}
    except MemloadError as exc:
        return {"error": str(exc)}
    return {"postgres": version, "pgvector": vec[0] if vec else None, "settings": settings}
