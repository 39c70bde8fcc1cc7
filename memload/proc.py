"""CPU seconds from /proc (Linux): of one process, of a process tree, of the whole machine; and its memory.

One reader for every place the kit prices work in CPU: the load generator's own cost, the HNSW build, the API and
PostgreSQL per request. /proc counts clock ticks (usually 10 ms), so a figure is exact only over many ticks.
/proc/meminfo sizes the embedded server and the HNSW build, and describes the host.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Fields of /proc/<pid>/stat after the command name, index 0 = state (man 5 proc numbers them from 3).
PPID, UTIME, STIME, CUTIME, CSTIME = 1, 11, 12, 13, 14


def meminfo_mb(field: str, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """A /proc/meminfo field (MemTotal, MemAvailable, Shmem...) in MiB; None when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def stat_fields(pid: int | str = "self") -> list[str]:
    """Fields of /proc/<pid>/stat after `(comm)`, robust to spaces and parentheses in the command name."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].decode("ascii", "replace").split()


def cpu_seconds(pid: int | str = "self", *, reaped: bool = False) -> float:
    """user + system CPU seconds of a process (all its threads); with `reaped`, plus what its exited children used."""
    f = stat_fields(pid)
    ticks = int(f[UTIME]) + int(f[STIME]) + (int(f[CUTIME]) + int(f[CSTIME]) if reaped else 0)
    return ticks / CLK_TCK


ProcTable = dict[int, tuple[str, int, float]]


def process_table(*, reaped: bool = True) -> ProcTable:
    """pid -> (command name, parent pid, CPU seconds) of every visible process; empty where /proc is missing. With
    `reaped`, a process's exited children count too (a worker process that exits during a measurement is not lost)."""
    out: ProcTable = {}
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        comm = data[data.index("(") + 1:data.rindex(")")]
        f = data[data.rindex(")") + 2:].split()
        ticks = int(f[UTIME]) + int(f[STIME]) + (int(f[CUTIME]) + int(f[CSTIME]) if reaped else 0)
        out[pid] = (comm, int(f[PPID]), ticks / CLK_TCK)
    return out


def descendants(table: ProcTable, root: int) -> set[int]:
    """root and every process below it in `table`."""
    tree = {root}
    grew = True
    while grew:
        new = {pid for pid, (_, ppid, _) in table.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def tree_seconds(table: ProcTable, root: int) -> float:
    """CPU seconds of `root` and every process below it in `table` (0 when root is not there)."""
    return sum(table[pid][2] for pid in descendants(table, root) if pid in table)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat; busy excludes idle and iowait. None where
    /proc/stat is missing."""
    try:
        with open("/proc/stat") as fh:
            line = fh.readline().split()
    except OSError:
        return None
    if not line or line[0] != "cpu":
        return None
    ticks = [int(x) for x in line[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) / CLK_TCK, total / CLK_TCK
