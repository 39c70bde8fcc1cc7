"""The Locust web UI over the suite: its start runs the preflight (an empty scope is refused, a seeded one runs and
streams the per-request records), driven over Locust's HTTP API; and, in headless Chromium, a run with 4 users
against the reference API on a seeded scope with its query set (tight tenant recall quota, so 429s and the adaptive
pace show): recall and write rows with non-zero counts and the Pacing tab, stop, screenshot (tmp_path and
docs/img/locust_webui.png).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from memload.config import REPO_ROOT
from memload.net import free_port
from tests.support.api import wait_http
from tests.support.bench import HIGH_LIMITS, query_set, seed_answers
from tests.support.browser import CHROMIUM, DOCS_IMG, open_and_swarm, request_count

QUERIES = ["perf topic #1", "perf topic #2", "perf topic #3"]


def _start_ui(base_url: str, port: int, scope: str, prefix: Path, log: Any, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "memory_users.py"),
         "--host", base_url, "--web-host", "127.0.0.1", "--web-port", str(port), "--scope", scope,
         "--csv", str(prefix), *extra],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def _stop_ui(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # Locust writes its files (and ours) on the way out
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ui(url: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _wait_stats(ui: str, done: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll /stats/requests until `done(stats)` or the deadline (a bound, not an assertion on time)."""
    deadline = time.monotonic() + timeout_s
    stats = _ui(ui + "/stats/requests")
    while not done(stats) and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = _ui(ui + "/stats/requests")
    return stats


def _requests(stats: dict[str, Any], name: str) -> int:
    return sum(int(r["num_requests"]) for r in stats.get("stats", []) if r.get("name") == name)


def test_web_ui_start_runs_the_preflight_and_streams_the_records(start_api, tmp_path: Path) -> None:
    api = start_api(**HIGH_LIMITS)
    scope = f"webui_pf_{uuid.uuid4().hex[:8]}"
    port = free_port()
    prefix = tmp_path / "ui" / "locust"
    log_path = tmp_path / "locust_ui.log"
    with log_path.open("w") as log:
        proc = _start_ui(api.base_url, port, scope, prefix, log)
        try:
            ui = f"http://127.0.0.1:{port}"
            wait_http(ui + "/", proc=proc)
            form = {"user_count": "2", "spawn_rate": "2", "host": api.base_url}
            _ui(ui + "/swarm", form)  # empty scope: the preflight stops the run before any user request
            stats = _wait_stats(ui, lambda s: s.get("state") == "stopped")
            assert stats["state"] == "stopped" and _requests(stats, "recall_text") == 0
            assert "has no recallable memories" in log_path.read_text()

            seed_answers(api.base_url, scope, ["memory graph perf"])  # now the constant query has an answer
            _ui(ui + "/swarm", form)
            stats = _wait_stats(ui, lambda s: _requests(s, "recall_text") > 0 and _requests(s, "write") > 0)
            assert _requests(stats, "recall_text") > 0 and _requests(stats, "write") > 0, stats.get("state")
            _ui(ui + "/stop", {})
        finally:
            _stop_ui(proc)
    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["preflight"]["scope_nonempty"] is True and summary["preflight"]["seeds_seen"] == 1
    with open(f"{prefix}_requests.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(c["total"] for c in summary["cases"].values()) == summary["records"]["rows"] > 0
    assert all(r["server_ms"] for r in rows if r["category"] == "ok")  # the reference API's Server-Timing


@pytest.mark.browser
@pytest.mark.slow


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing (apt-get install -y chromium)")
def test_web_ui_run_rows_pacing_tab_and_screenshot(start_api, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    api = start_api(tenant_recall_rps="40", tenant_recall_burst="40", tenant_write_rps="100000",
                    tenant_write_burst="100000")
    scope = f"webui_{uuid.uuid4().hex[:8]}"
    seed_answers(api.base_url, scope, QUERIES)  # real, non-empty recalls in the screenshot
    qs = query_set(tmp_path / "query_set.json", scope, QUERIES)
    port = free_port()
    log = (tmp_path / "locust_ui.log").open("w")
    prefix = tmp_path / "ui" / "locust"
    proc = _start_ui(api.base_url, port, scope, prefix, log, "--query-set", str(qs))
    try:
        ui = f"http://127.0.0.1:{port}"
        wait_http(ui + "/", proc=proc)
        with sync_playwright() as pw:
            page = open_and_swarm(pw, ui)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                page.wait_for_timeout(500)
                if request_count(page, "recall_text") > 0 and request_count(page, "write") > 0 \
                        and request_count(page, "recall_text [429]") > 0:
                    break
            recall, write = request_count(page, "recall_text"), request_count(page, "write")
            limited = request_count(page, "recall_text [429]")
            assert recall > 0 and write > 0, page.inner_text("body")
            assert limited > 0  # 429s have their own row, apart from the recall percentiles
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "locust_webui.png"))

            page.get_by_role("tab", name="Pacing (429)").click()
            page.wait_for_timeout(3500)  # the table refreshes with the stats poll
            body = page.inner_text("body")
            assert "Endpoint class" in body and "recall" in body
            page.screenshot(path=str(tmp_path / "locust_webui_pacing.png"))

            page.get_by_role("button", name="Stop").click()
            page.wait_for_selector("text=STOPPED", timeout=15000)
            page.context.browser.close()
        if os.environ.get("MEMLOAD_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures on request only
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / "locust_webui.png", DOCS_IMG / "locust_webui.png")
            shutil.copyfile(tmp_path / "locust_webui_pacing.png", DOCS_IMG / "locust_webui_pacing.png")
    finally:
        _stop_ui(proc)
        log.close()
    assert (tmp_path / "locust_webui.png").stat().st_size > 10_000
    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["cases"]["recall_text"]["ok"] > 0 and summary["cases"]["write"]["ok"] > 0
    assert summary["pacing"]["recall"]["count_429"] > 0
