"""memload's version and the name its reference API gives itself on GET /health (and in `x-memload-api`).

The version is the one in the source tree's pyproject.toml (an editable install's metadata can lag behind it), or
the installed package's metadata where no source tree is around.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

from memload.config import REPO_ROOT

REFERENCE_SERVER_NAME = "memload-reference"


def _version() -> str:
    try:
        with (REPO_ROOT / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        try:
            return metadata.version("memload")
        except metadata.PackageNotFoundError:
            return "unknown"


MEMLOAD_VERSION = _version()
