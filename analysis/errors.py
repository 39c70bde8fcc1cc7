"""Errors of the analysis stage: one line that names the file and the column or key at fault."""

from __future__ import annotations

from pathlib import Path

from memload.errors import MemloadError


class MalformedArtifact(MemloadError):
    """An input file exists but cannot be used as its format says (bad JSON, missing column/key, wrong type)."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{self.path.name}: {detail}")


class TemplateError(MemloadError):
    """The report template names a field the renderer does not know."""
