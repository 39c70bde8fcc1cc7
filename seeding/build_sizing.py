"""How much memory and how many workers the seed's HNSW build gets, chosen from the data and the machine.

pgvector builds the HNSW graph in `maintenance_work_mem`; once the graph outgrows it, the build goes on on disk,
several times slower (measured here: 1,100 tuples/s in memory, 160–290 after the graph spilled at ~300,000 float32
vectors of 1536 dimensions with 2GB). So the budget is the estimated graph size plus headroom, capped by the memory
the machine has available minus a reserve; a parallel build (pgvector ≥ 0.6) reserves the whole budget as shared
memory up front, so the cap matters. shared_buffers the server has not filled yet counts as taken: it fills during
the build (the index pages are written through it) while the graph is still held. The sizing applies only when the
server runs on this machine (unix socket or loopback, the backend's process visible here); a remote server's memory
is unknown and keeps the fixed default.

The same arithmetic sizes the embedded server for a dataset: the hot set a recall reads (`estimated_hot_set_bytes`)
against the memory the dataset's build will need (`build_budget_mb`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memload import proc
from memload.db import setting_bytes
from memload.precision import ELEMENT_BYTES, HALFVEC, VECTOR

AUTO = "auto"
HNSW_M = 16  # the schema's WITH (m = 16, ef_construction = 64)
# Per element beyond the vector: pgvector's element header, heap tids, neighbour arrays and m·(avgLevel+2)
# candidates (HnswGetMaxInMemoryElements); calibrated on the spill measured at ~300,000 float32 1536-d vectors/2GB.
ELEMENT_OVERHEAD_BYTES = 600
HEADROOM = 1.15  # budget = estimate × this
FALLBACK_MB = 2048  # a remote server, or no /proc/meminfo
MIN_MB = 64
RESERVE_FRACTION, RESERVE_MIN_MB = 0.15, 2048  # memory left to everything else during the build
MiB = 1024 * 1024
# What a recall reads, per node of a scope (measured on a 10^6-event scope of the partitioned layout): the nodes
# heap; the float32 embedding, stored out of line in TOAST (6 kB + chunk overhead) whatever the index precision; the
# ready HNSW index (two halfvec elements or one float32 element per 8 kB page); the btree indexes, and the edges
# (two per event) with theirs.
HOT_BYTES_PER_NODE = {"heap": 250, "embeddings": 8_360, "other": 1_020}
HNSW_BYTES_PER_NODE = {HALFVEC: 4_140, VECTOR: 8_192}


def estimated_graph_bytes(n: int, dim: int, precision: str, m: int = HNSW_M) -> int:
    """The in-memory HNSW graph of n vectors (pgvector's own per-element arithmetic, plus allocator slack)."""
    ml = 1.0 / math.log(m)
    avg_level = -math.log(0.5) * ml
    candidates = 16 * m * (avg_level + 2)
    return int(n * (8 + ELEMENT_BYTES[precision] * dim + candidates + ELEMENT_OVERHEAD_BYTES))


def build_budget_mb(n: int, dim: int, precision: str) -> int:
    """maintenance_work_mem that holds the graph of n vectors: the estimate with headroom."""
    return max(MIN_MB, math.ceil(estimated_graph_bytes(n, dim, precision) / MiB * HEADROOM))


def reserve_mb(mem_total_mb: int) -> int:
    """Memory left to everything else (the OS, the page cache's working set) while an index builds."""
    return max(RESERVE_MIN_MB, int(RESERVE_FRACTION * mem_total_mb))


def estimated_hot_set_bytes(n: int, precision: str) -> int:
    """The relations a recall of a scope of n nodes reads: heap, embeddings, HNSW, btrees and edges."""
    return n * (sum(HOT_BYTES_PER_NODE.values()) + HNSW_BYTES_PER_NODE[precision])


def available_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in MiB (None when unknown)."""
    return proc.meminfo_mb("MemAvailable", meminfo)


def total_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemTotal in MiB (None when unknown)."""
    return proc.meminfo_mb("MemTotal", meminfo)


def unfilled_pool_mb(conn: Any, meminfo: Path = Path("/proc/meminfo")) -> int:
    """shared_buffers a local server may still fill: its size minus the shared memory already resident (Shmem)."""
    pool, resident = (setting_bytes(conn, "shared_buffers") or 0) // MiB, proc.meminfo_mb("Shmem", meminfo)
    return max(0, pool - resident) if resident is not None else 0


def server_is_local(conn: Any) -> bool:
    """The server runs on this machine: reached by unix socket or loopback, and its backend process is visible."""
    addr = conn.execute("SELECT host(inet_server_addr())").fetchone()[0]
    if addr not in (None, "127.0.0.1", "::1"):
        return False
    try:
        return Path(f"/proc/{conn.info.backend_pid}/comm").read_text().strip().startswith("postgres")
    except OSError:
        return False


@dataclass(frozen=True)
class BuildPlan:
    maintenance_work_mem: str
    parallel_workers: int
    estimated_graph_mb: int
    available_mb: int | None
    reason: str
    unfilled_pool_mb: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"maintenance_work_mem": self.maintenance_work_mem, "parallel_workers": self.parallel_workers,
                "estimated_graph_mb": self.estimated_graph_mb, "available_mb": self.available_mb,
                "unfilled_pool_mb": self.unfilled_pool_mb, "reason": self.reason}


def plan_build(n: int, dim: int, precision: str, *, requested_mem: str, requested_workers: int | None,
               local: bool, avail_mb: int | None = None, mem_total_mb: int | None = None,
               cores: int | None = None, pool_mb: int = 0) -> BuildPlan:
    """`requested_mem` is `auto` or a PostgreSQL size (kept as given); `requested_workers` None = from the cores;
    `pool_mb` the server's shared_buffers not yet filled (`unfilled_pool_mb`), taken from what is available."""
    est_mb = math.ceil(estimated_graph_bytes(n, dim, precision) / MiB)
    cores = cores or os.cpu_count() or 1
    # pgvector's leader builds too: cores − 1 workers keep every core busy and no more.
    workers = requested_workers if requested_workers is not None else max(0, min(8, cores - 1))
    wreason = (f"{workers} parallel worker(s) as asked" if requested_workers is not None
               else f"{workers} parallel worker(s) + the leader = {cores} core(s)")
    if requested_mem != AUTO:
        return BuildPlan(requested_mem, workers, est_mb, avail_mb,
                         f"maintenance_work_mem {requested_mem} as asked (graph ~{est_mb} MB); {wreason}")
    if not local:
        return BuildPlan(f"{FALLBACK_MB}MB", workers, est_mb, None,
                         f"remote server, its memory unknown here: {FALLBACK_MB}MB (graph ~{est_mb} MB; set "
                         f"--maintenance-work-mem to size it); {wreason}")
    avail = avail_mb if avail_mb is not None else available_mb()
    total = mem_total_mb if mem_total_mb is not None else total_mb()
    want = build_budget_mb(n, dim, precision)
    if avail is None:
        mb = min(want, FALLBACK_MB)
        return BuildPlan(f"{mb}MB", workers, est_mb, None,
                         f"available memory unknown: {mb}MB (graph ~{est_mb} MB); {wreason}")
    reserve = reserve_mb(total or avail)
    usable = avail - pool_mb
    pool = f" − {pool_mb} MB of shared_buffers still to fill" if pool_mb else ""
    cap = max(MIN_MB, usable - reserve)
    if want <= cap:
        return BuildPlan(f"{want}MB", workers, est_mb, avail,
                         f"graph ~{est_mb} MB fits: {want}MB (estimate × {HEADROOM}) of {avail} MB available{pool}; "
                         f"{wreason}", pool_mb)
    fits = int(n * cap / want) if want else n
    return BuildPlan(f"{cap}MB", workers, est_mb, avail,
                     f"graph ~{est_mb} MB does not fit: {cap}MB ({avail} MB available{pool} − {reserve} MB "
                     f"reserve); pgvector goes on on disk (slower) after ~{fits:,} tuples; {wreason}", pool_mb)


class ServerCpu:
    """CPU seconds a local server spent from now on for this backend and the parallel workers it started.

    The backend's own utime+stime, plus what its postmaster collected from reaped children (cutime+cstime): the
    parallel workers exit when the build ends, and their CPU lands there. None when the server is not local."""

    def __init__(self, conn: Any) -> None:
        self.pid = conn.info.backend_pid
        self.start = self._sample()

    def _sample(self) -> float | None:
        try:
            own = proc.stat_fields(self.pid)
            parent = proc.stat_fields(int(own[proc.PPID]))
        except (OSError, ValueError, IndexError):
            return None
        ticks = int(own[proc.UTIME]) + int(own[proc.STIME]) + int(parent[proc.CUTIME]) + int(parent[proc.CSTIME])
        return ticks / proc.CLK_TCK

    def used(self) -> float | None:
        end = self._sample()
        return None if end is None or self.start is None else round(end - self.start, 1)
