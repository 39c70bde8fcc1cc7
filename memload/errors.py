"""The kit's exception hierarchy and exit codes: one module, so callers catch `MemloadError` and print one line.

Every `memload` command exits with one of `ExitCode`; each code means the same thing in every command.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes shared by every command; `EXIT_CODE_MEANINGS` says what each one means."""

    OK = 0
    ERROR = 1
    TARGET_FAILING = 2
    GATE_FAILED = 3
    WRITES_LOST = 4
    REFUSED = 5
    USAGE = 64
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "everything asked for ran, and every gate passed",
    ExitCode.ERROR: "a stage failed or could not run (database unreachable, empty scope, a crash)",
    ExitCode.TARGET_FAILING: "the target failed under load: transport errors or 5xx above the threshold, "
                             "a dead target included",
    ExitCode.GATE_FAILED: "a measured result missed its gate: SLO breach, planner check, FAIL verdict, "
                          "significant regression",
    ExitCode.WRITES_LOST: "an acknowledged write is missing, or a rejected one was applied (--verify-writes)",
    ExitCode.REFUSED: "a safety guard refused a destructive action (source scope, offline window, fallback delete)",
    ExitCode.USAGE: "a bad flag, environment variable or argument; nothing was done",
    ExitCode.INTERRUPTED: "stopped by Ctrl-C or SIGTERM; what had been measured is kept",
}
EXIT_CODES_TEXT = "exit codes (the same in every command):\n" + "\n".join(
    f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)


class MemloadError(Exception):
    """Base class: an error the CLI reports as a single line (no traceback), exit code `exit_code`."""

    exit_code: int = ExitCode.ERROR


class ConfigError(MemloadError):
    """A flag or environment variable has an invalid value; the message names it."""

    exit_code = ExitCode.USAGE


class DatabaseUnavailable(MemloadError):
    """The database named by DATABASE_URL (or the embedded one) cannot be reached."""


class MigrationError(MemloadError):
    """A migration failed, or an applied migration file changed on disk."""


class SafetyRefusal(MemloadError):
    """A destructive job was refused by a guard (source scope, offline window, fail-on-delete)."""

    exit_code = ExitCode.REFUSED
