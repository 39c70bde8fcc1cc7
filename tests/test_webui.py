"""The Locust web UI over the suite, driven in headless Chromium: start a run with 4 users against the reference
API (tight tenant recall quota, so 429s and the adaptive pace show), see recall and write rows with non-zero
counts and the Pacing tab, stop, screenshot (tmp_path and docs/img/locust_webui.png).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memload.config import REPO_ROOT
from tests.conftest import free_port, wait_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMG = REPO_ROOT / "docs" / "img"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _count(page, name: str) -> int:
    """'# Requests' of the statistics row called `name` (0 when absent)."""
    for row in page.query_selector_all("table tbody tr"):
        cells = [c.inner_text().strip() for c in row.query_selector_all("td")]
        if len(cells) > 2 and cells[1] == name:
            return int(cells[2])
    return 0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing (apt-get install -y chromium)")
def test_web_ui_run_rows_pacing_tab_and_screenshot(start_api, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    api = start_api(tenant_recall_rps="40", tenant_recall_burst="40", tenant_write_rps="100000",
                    tenant_write_burst="100000")
    port = free_port()
    log = (tmp_path / "locust_ui.log").open("w")
    prefix = tmp_path / "ui" / "locust"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "memory_users.py"),
         "--host", api.base_url, "--web-host", "127.0.0.1", "--web-port", str(port), "--scope", "webui",
         "--csv", str(prefix)],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        ui = f"http://127.0.0.1:{port}"
        wait_http(ui + "/", proc=proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(ui + "/")
            page.fill("input[name=userCount]", "4")
            page.fill("input[name=spawnRate]", "4")
            page.click("button[type=submit]")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                page.wait_for_timeout(500)
                if _count(page, "recall_text") > 0 and _count(page, "write") > 0 \
                        and _count(page, "recall_text [429]") > 0:
                    break
            recall, write = _count(page, "recall_text"), _count(page, "write")
            limited = _count(page, "recall_text [429]")
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
            browser.close()
        if os.environ.get("MEMLOAD_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures on request only
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / "locust_webui.png", DOCS_IMG / "locust_webui.png")
            shutil.copyfile(tmp_path / "locust_webui_pacing.png", DOCS_IMG / "locust_webui_pacing.png")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Locust writes its files (and ours) on the way out
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    assert (tmp_path / "locust_webui.png").stat().st_size > 10_000
    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["cases"]["recall_text"]["ok"] > 0 and summary["cases"]["write"]["ok"] > 0
    assert summary["pacing"]["recall"]["count_429"] > 0
