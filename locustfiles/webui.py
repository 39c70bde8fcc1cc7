"""The suite's tab in Locust's web UI: "Pacing (429)", one row per endpoint class, merged over the workers.

Kept apart from the run state so the UI can change without touching the load: it only reads the suite's pacing
snapshots (a master reads the ones its workers shipped) and adds them to Locust's `/stats/requests` answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locustfiles.runtime import Suite

PACING_TAB = "memload-pacing"
PACING_COLUMNS = (("endpoint_class", "Endpoint class"), ("adaptive", "Adaptive"), ("users", "Users"),
                  ("pace_ms", "Pace (ms)"), ("max_pace_ms", "Max pace (ms)"), ("blocked_ms", "Retry-After hold (ms)"),
                  ("count_429", "429s"), ("count_ok", "Successes"), ("estimated_rate", "Granted rate (req/s)"))


def pacing_table(suite: Suite) -> list[dict[str, Any]]:
    """Rows of the Pacing tab (merged over workers on a master)."""
    if not suite.is_master:
        suite.snapshot_states()
        return [dict(suite.recorder.pacing_state[c]) for c in sorted(suite.recorder.pacing_state)]
    rows = []
    for cls, by_source in sorted(suite.aggregate.pacing_state.items()):
        states = list(by_source.values())
        rows.append({
            "endpoint_class": cls, "adaptive": states[0].get("adaptive"),
            "users": sum(s["users"] for s in states), "pace_ms": max(s["pace_ms"] for s in states),
            "max_pace_ms": max(s["max_pace_ms"] for s in states),
            "blocked_ms": max(s["blocked_ms"] for s in states),
            "count_429": sum(s["count_429"] for s in states), "count_ok": sum(s["count_ok"] for s in states),
            "estimated_rate": sum(s["estimated_rate"] or 0 for s in states) or None,
        })
    return rows


def extend_web_ui(suite: Suite, web_ui: Any) -> None:
    """A "Pacing (429)" tab: current pace, Retry-After hold, 429 and success counts per endpoint class."""
    from flask import request

    web_ui.template_args["extended_tabs"] = [{"title": "Pacing (429)", "key": PACING_TAB}]
    web_ui.template_args["extended_tables"] = [
        {"key": PACING_TAB, "structure": [{"key": k, "title": t} for k, t in PACING_COLUMNS]}]

    @web_ui.app.after_request
    def _add_pacing(response: Any) -> Any:
        if request.path != "/stats/requests" or response.status_code != 200 or not response.is_json:
            return response
        data = response.get_json()
        data["extended_stats"] = [{"key": PACING_TAB, "data": pacing_table(suite)}]
        response.set_data(json.dumps(data))
        return response
