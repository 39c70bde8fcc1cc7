"""Headless Chromium for the web UI tests: where it is, how it is started here, and reading Locust's statistics table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memload.config import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMG = REPO_ROOT / "docs" / "img"


def request_count(page: Any, name: str) -> int:
    """'# Requests' of the statistics row called `name` (0 when absent)."""
    for row in page.query_selector_all("table tbody tr"):
        cells = [c.inner_text().strip() for c in row.query_selector_all("td")]
        if len(cells) > 2 and cells[1] == name:
            return int(cells[2])
    return 0


def open_and_swarm(pw: Any, ui: str, users: int = 4) -> Any:
    """Chromium on Locust's web UI at `ui`: start a swarm of `users` (spawned at once); returns the page."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(ui + "/")
    page.fill("input[name=userCount]", str(users))
    page.fill("input[name=spawnRate]", str(users))
    page.click("button[type=submit]")
    return page
