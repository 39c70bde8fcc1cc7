"""Shared core of the memload kit: settings, errors, the wire contract, the fake embedder, deterministic ids.

Nothing here starts processes or imports Locust; `memory_api`, `seeding`, `locustfiles` and `scripts` all build on it.
"""

from memload.config import Settings
from memload.errors import ConfigError, DatabaseUnavailable, MemloadError, MigrationError, SafetyRefusal

__all__ = ["ConfigError", "DatabaseUnavailable", "MemloadError", "MigrationError", "SafetyRefusal", "Settings"]
