"""What a plot function returns: a drawn file or the reason it was not drawn (kept apart from matplotlib, so the
report and compare modules can use these types without importing it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Plot:
    key: str
    title: str
    path: Path
    caption: str


@dataclass
class Skipped:
    key: str
    title: str
    reason: str
