"""What a benchmark cost the server: CPU and buffer counters sampled while it runs (`cost_<scale>.json`).

A latency figure says how long a recall took, not why. The sampler reads, every half second while `memload bench`
runs, the cumulative CPU of the API's process tree, of the PostgreSQL processes serving it and of the whole machine
(/proc), and the shared-buffer hits and reads of the relations the recall path touches (pg_statio). It stores raw
cumulative samples; `memload report` cuts them at each case's first and last request and prices a request in CPU
and in blocks read from outside shared_buffers, next to the sizes of the heap, the TOASTed embeddings and the HNSW
index against shared_buffers and RAM.

It runs as a thread of the matrix (no gevent there) on a connection of its own, named so the CPU accounting can
leave it out. A series that cannot be read (a server on another machine, statistics not visible) is recorded as
not measured, with why, and never as zero.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from memload import proc
from memload.db import setting_bytes
from scripts.pg_processes import CpuAccumulator, PgServer
from seeding.schema import scope_partitions, table_kind

SAMPLER_APP = "memload-cost-sampler"
INTERVAL_S = 0.5
JOIN_S = 5.0
# Every statement of the sampler is a catalog or statistics read: none may hold up the benchmark it watches.
SESSION_SQL = "SET statement_timeout = '2s'; SET lock_timeout = '1s'"

_RELATION_SQL = """
SELECT tableoid::regclass::text FROM {table} WHERE scope = %(scope)s LIMIT 1
"""
_SIZES_SQL = """
SELECT pg_relation_size(c.oid),
       COALESCE(pg_relation_size(c.reltoastrelid), 0)
       + COALESCE((SELECT sum(pg_relation_size(ti.indexrelid)) FROM pg_index ti
                   WHERE ti.indrelid = c.reltoastrelid), 0),
       c.reltoastrelid <> 0
FROM pg_class c WHERE c.oid = to_regclass(%(rel)s)
"""
_INDEXES_SQL = """
SELECT ic.oid::regclass::text, am.amname, pg_relation_size(ic.oid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = to_regclass(%(rel)s) ORDER BY 1
"""
_TABLE_BLOCKS_SQL = """
SELECT relid::regclass::text, COALESCE(heap_blks_hit, 0), COALESCE(heap_blks_read, 0),
       COALESCE(toast_blks_hit, 0) + COALESCE(tidx_blks_hit, 0),
       COALESCE(toast_blks_read, 0) + COALESCE(tidx_blks_read, 0)
FROM pg_statio_all_tables WHERE relid = ANY(%(rels)s::regclass[])
"""
_INDEX_BLOCKS_SQL = """
SELECT indexrelid::regclass::text, COALESCE(idx_blks_hit, 0), COALESCE(idx_blks_read, 0)
FROM pg_statio_all_indexes WHERE indexrelid = ANY(%(idx)s::regclass[])
"""
TOAST_SUFFIX = " (toast)"


def _mb(n: int | float | None) -> float | None:
    return None if n is None else round(float(n) / 2**20, 1)


def _setting_mb(conn: Any, name: str) -> float | None:
    return _mb(setting_bytes(conn, name))


def scope_relations(conn: Any, scope_key: str) -> list[dict[str, Any]]:
    """The relations a recall of the scope reads: for memory_nodes and memory_edges, the scope's own partition when
    it has one, else the relation holding its rows (a plain table or a default partition, `shared` with other
    scopes); each with its TOAST table and its indexes, sized now."""
    out: list[dict[str, Any]] = []
    for table in ("memory_nodes", "memory_edges"):
        kind = table_kind(conn, table)
        if kind is None:
            continue
        own = scope_partitions(conn, table, scope_key) if kind == "p" else []
        if own:
            rel, shared = own[0], False
        else:
            row = conn.execute(_RELATION_SQL.format(table=table), {"scope": scope_key}).fetchone()
            if row is None and kind == "p":  # a partitioned parent holds no rows: nothing of it is read
                continue
            rel, shared = (row[0] if row else table), True
        heap_bytes, toast_bytes, has_toast = conn.execute(_SIZES_SQL, {"rel": rel}).fetchone()
        out.append({"name": rel, "table": table, "kind": "heap", "method": "heap", "mb": _mb(heap_bytes),
                    "shared": shared})
        if has_toast:
            out.append({"name": rel + TOAST_SUFFIX, "table": table, "kind": "toast", "method": "toast",
                        "mb": _mb(toast_bytes), "shared": shared})
        for name, method, size in conn.execute(_INDEXES_SQL, {"rel": rel}).fetchall():
            out.append({"name": name, "table": table, "kind": "index", "method": method, "mb": _mb(size),
                        "shared": shared})
    return out


def read_blocks(conn: Any, relations: list[dict[str, Any]]) -> dict[str, list[int]]:
    """relation name -> [blocks hit, blocks read] (cumulative, this server's statistics)."""
    heaps = [r["name"] for r in relations if r["kind"] == "heap"]
    toasts = {r["name"] for r in relations if r["kind"] == "toast"}
    indexes = [r["name"] for r in relations if r["kind"] == "index"]
    out: dict[str, list[int]] = {}
    for name, hit, read, thit, tread in conn.execute(_TABLE_BLOCKS_SQL, {"rels": heaps}).fetchall():
        out[name] = [int(hit), int(read)]
        if name + TOAST_SUFFIX in toasts:
            out[name + TOAST_SUFFIX] = [int(thit), int(tread)]
    for name, hit, read in conn.execute(_INDEX_BLOCKS_SQL, {"idx": indexes}).fetchall():
        out[name] = [int(hit), int(read)]
    return out


class CostSampler:
    """Samples in a thread from `start()` to `stop()`, then writes `out`. Never raises into the benchmark: a
    failure to read a series ends that series, with the reason recorded."""

    def __init__(self, out: Path, *, database_url: str, scale: int, scope: str, scope_key: str,
                 api_pid: int | None, client_app: str | None, host_mem_mb: float | None,
                 interval_s: float = INTERVAL_S) -> None:
        self.out = out
        self.url = database_url
        self.interval_s = interval_s
        self.api_pid = api_pid
        self.client_app = client_app
        self.doc: dict[str, Any] = {
            "scale": scale, "scope": scope, "scope_key": scope_key, "interval_s": interval_s,
            "memory": {"shared_buffers_mb": None, "effective_cache_size_mb": None, "host_mem_mb": host_mem_mb,
                       "cpu_cores": None},
            "relations": [], "cpu": {"api": None, "postgres": None, "machine": None}, "not_measured": {},
            "samples": [],
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._pg: PgServer | None = None
        self._pg_cpu: CpuAccumulator | None = None

    # -- lifecycle
    def start(self) -> CostSampler:
        self._open()
        self._sample()  # the baseline, before the first request
        self._thread = threading.Thread(target=self._loop, name="cost-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Path:
        """The last sample, then the file. Bounded: a sampling thread that has not finished within JOIN_S is left to
        die with the process (its connection is not shared, so nothing here waits on it) and the last sample is the
        one it took."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=JOIN_S)
        if self._thread is None or not self._thread.is_alive():
            self._sample()
            try:
                if self._pg is not None:
                    self._pg.close()
            except Exception:
                pass
        self.out.write_text(json.dumps(self.doc, indent=1) + "\n")
        return self.out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    # -- what is sampled
    def _open(self) -> None:
        doc, missing = self.doc, self.doc["not_measured"]
        doc["memory"]["cpu_cores"] = os.cpu_count()
        if proc.machine_cpu() is not None:
            doc["cpu"]["machine"] = "all cores of this machine (/proc/stat)"
        else:
            missing["machine"] = "/proc/stat is not readable here"
        if self.api_pid is not None:
            doc["cpu"]["api"] = f"the local API's process tree (pid {self.api_pid})"
        else:
            missing["api"] = "the target is an external server: the matrix does not know its processes"
        self._pg = PgServer(self.url, meter_app=SAMPLER_APP, client_app=self.client_app)
        self._conn = self._pg.conn
        if self._conn is None:
            missing["blocks"] = missing["postgres"] = f"the database was not reachable: {self._pg.error}"
            self._pg = None
            return
        try:
            self._conn.execute(SESSION_SQL)
            doc["memory"]["shared_buffers_mb"] = _setting_mb(self._conn, "shared_buffers")
            doc["memory"]["effective_cache_size_mb"] = _setting_mb(self._conn, "effective_cache_size")
            doc["relations"] = scope_relations(self._conn, doc["scope_key"])
            if not doc["relations"]:
                missing["blocks"] = "no memory_nodes or memory_edges relation holds the scope"
        except Exception as exc:
            missing["blocks"] = f"the database statistics were not readable: {str(exc).strip().splitlines()[0]}"
        if self._pg.postmaster is None:
            missing["postgres"] = "the PostgreSQL server does not run on this machine (its processes are not visible)"
        else:
            who = (f"backends named {self.client_app}" if self.client_app else "every backend of the database but "
                   "the sampler's")
            doc["cpu"]["postgres"] = (f"the PostgreSQL server's processes on this machine (postmaster pid "
                                      f"{self._pg.postmaster}): {who}, and its background processes")

    def _sample(self) -> None:
        doc = self.doc
        sample: dict[str, Any] = {"t": round(time.time(), 3), "cpu_s": {}}
        machine = proc.machine_cpu()
        if machine is not None:
            sample["cpu_s"]["machine_busy"], sample["cpu_s"]["machine_total"] = round(machine[0], 2), round(
                machine[1], 2)
        if doc["cpu"]["api"] is not None:
            sample["cpu_s"]["api"] = round(proc.tree_seconds(proc.process_table(), self.api_pid), 3)
        if self._pg is not None and self.doc["cpu"]["postgres"] is not None:
            try:
                own = self._pg.own_cpu()
                if self._pg_cpu is None:
                    self._pg_cpu = CpuAccumulator(own)
                sample["cpu_s"]["postgres"] = round(self._pg_cpu.add(own), 3)
            except Exception as exc:
                self._drop("postgres", exc)
        if self._conn is not None and doc["relations"]:
            try:
                sample["blocks"] = read_blocks(self._conn, doc["relations"])
            except Exception as exc:
                self._drop("blocks", exc)
        doc["samples"].append(sample)

    def _drop(self, series: str, exc: Exception) -> None:
        self.doc["not_measured"][series] = f"stopped reading: {str(exc).strip().splitlines()[0]}"
        if series == "postgres":
            self.doc["cpu"]["postgres"] = None
        else:
            self._conn = None  # the relations stay listed: the samples taken so far still price the cases they cover
