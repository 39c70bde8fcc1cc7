"""The files the suite writes next to Locust's CSV files when the run quits (master or local runner).

`<csv prefix>_exact.json` (exact latencies, merged over workers), `<csv prefix>_pacing.csv` (the pacing timeline)
and `<csv prefix>_summary.json` (what `memload bench` reads: options, budgets, preflight, warm-up, per-case counts).
`<csv prefix>_requests.csv` is streamed during the run by `locustfiles.records` and closed here. Their format lives
in this module alone, so it can change without touching the load.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locust import __version__ as LOCUST_VERSION

if TYPE_CHECKING:
    from locustfiles.runtime import Suite


def write_artifacts(suite: Suite) -> None:
    """On quit (master/local): exact.json, pacing.csv and summary.json next to Locust's CSV files."""
    prefix = getattr(suite.env.parsed_options, "csv_prefix", None)
    if not prefix or suite.cfg is None:
        return
    cfg = suite.cfg
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    latency_from = "intended_start" if cfg.open_model else "send"
    Path(f"{prefix}_exact.json").write_text(json.dumps(suite.aggregate.exact_document(latency_from), indent=1))
    with open(f"{prefix}_pacing.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "endpoint_class", "pace_ms", "count_429", "count_ok"])
        w.writerows(suite.aggregate.pacing_csv_rows())
    if suite.records is not None:
        suite.records.close()
    Path(f"{prefix}_summary.json").write_text(json.dumps(summary(suite), indent=1))


def summary(suite: Suite) -> dict[str, Any]:
    """The `_summary.json` document of this process's run."""
    cfg = suite.cfg
    assert cfg is not None
    runner = suite.env.runner
    dispenser = suite.dispenser
    return {
        "locust_version": LOCUST_VERSION,
        "role": suite.role,
        "workers": len(getattr(runner, "worker_indexes", {})) if suite.is_master else 0,
        "host": suite.env.host,
        "auth_mode": suite.auth_mode,
        "options": cfg.as_dict(),
        "budgets": dispenser.budgets if dispenser else {},
        "durations": dispenser.durations if dispenser else {},
        "preflight": suite.preflight,
        "records": {"file": suite.records.path.name if suite.records else None,
                    "rows": suite.aggregate.record_count},
        "completed": suite.completed,
        "stop_reason": suite.stop_reason,
        "started_at": suite.started_at,
        "query_count": len(suite.queries) if not suite.is_master else None,
        "warmup": suite.warmup,
        "cases": {name: cs.summary() for name, cs in sorted(suite.aggregate.cases.items())},
        "pacing": suite.aggregate.pacing_summary(),
        "per_source": {src: {ep: dict(c) for ep, c in sorted(eps.items())}
                       for src, eps in sorted(suite.aggregate.per_source.items())},
        "pid": os.getpid(),
    }
