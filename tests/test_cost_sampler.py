"""The cost sampler: CPU of a changing set of processes, and a sampler that never fails the benchmark it watches."""

from __future__ import annotations

import json
import time
from pathlib import Path

from memload.net import free_port
from scripts.cost_sampler import CostSampler
from scripts.pg_processes import CpuAccumulator


def test_cpu_accumulator_counts_new_processes_from_their_start_and_keeps_what_exited_ones_used() -> None:
    acc = CpuAccumulator({1: 10.0, 2: 5.0})  # the baseline: nothing counted yet
    assert acc.add({1: 10.5, 2: 5.25}) == 0.75
    assert acc.add({1: 11.0, 3: 0.5}) == 1.75  # 2 exited (its 0.25 s stay counted), 3 started: all its 0.5 s
    assert acc.add({1: 11.0, 3: 0.5}) == 1.75  # idle
    assert acc.add({1: 10.0, 3: 0.75}) == 2.0  # a counter never goes back: a reused pid's lower value adds nothing


def test_a_database_out_of_reach_is_recorded_as_not_measured_and_the_file_still_written(tmp_path: Path) -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    out = tmp_path / "cost_1000.json"
    sampler = CostSampler(out, database_url=url, scale=1000, scope="s", scope_key="s", api_pid=None,
                          client_app=None, host_mem_mb=1024.0, interval_s=0.05).start()
    time.sleep(0.3)  # the machine's clock ticks on, busy or idle
    assert sampler.stop() == out
    doc = json.loads(out.read_text())
    assert doc["relations"] == [] and doc["cpu"]["postgres"] is None and doc["cpu"]["api"] is None
    assert set(doc["not_measured"]) == {"api", "postgres", "blocks"}
    assert doc["not_measured"]["blocks"].startswith("the database was not reachable: cannot connect")
    samples = doc["samples"]
    assert len(samples) >= 2 and all("blocks" not in s and set(s["cpu_s"]) == {"machine_busy", "machine_total"}
                                     for s in samples)
    assert samples[-1]["cpu_s"]["machine_total"] > samples[0]["cpu_s"]["machine_total"]
