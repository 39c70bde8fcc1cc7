"""The kit's exception hierarchy: one module, so callers catch `MemloadError` and print one line."""

from __future__ import annotations


class MemloadError(Exception):
    """Base class: an error the CLI reports as a single line (no traceback), exit code `exit_code`."""

    exit_code = 1


class ConfigError(MemloadError):
    """A flag or environment variable has an invalid value; the message names it."""

    exit_code = 2


class DatabaseUnavailable(MemloadError):
    """The database named by DATABASE_URL (or the embedded one) cannot be reached."""


class MigrationError(MemloadError):
    """A migration failed, or an applied migration file changed on disk."""


class SafetyRefusal(MemloadError):
    """A destructive job was refused by a guard (source scope, offline window, fail-on-delete)."""

    exit_code = 3
