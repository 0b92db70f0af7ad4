"""Typed errors, each mapped to one exit code in one table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from .outcome import Outcome


class ExitCode(IntEnum):
    """Process exit codes of the CLI; documented in the README."""

    OK = 0
    MIGRATION_NEEDED = 1
    USAGE = 2
    LOCK_TIMEOUT = 3
    REFUSED = 4
    FAILED_RESTORED = 5
    FAILED_NOT_RESTORED = 6


@dataclass(frozen=True)
class Refusal:
    """Why one change does not fit the data: where, how many rows, a few of their keys."""

    table: str
    column: str | None
    count: int
    sample_keys: list[Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return asdict(self)


class MigrateError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED_NOT_RESTORED
    outcome: Outcome = Outcome.FAILED
    # The plan of the run that failed or was refused, when there was one (a Plan).
    plan: object | None = None
    # What the pre-checks found, when they refused the run.
    refusals: tuple[Refusal, ...] = ()


class ConfigError(MigrateError):
    """A setting, config file or CLI flag is invalid; nothing was touched."""

    exit_code = ExitCode.USAGE
    outcome = Outcome.INVALID


class TargetError(ConfigError):
    """A models reference does not import, is not a MetaData, or clashes with another."""


class DatabaseUnavailable(ConfigError):
    """The database cannot be opened or reached as configured: not a database file, no server
    listening, no such database, wrong credentials. Nothing was touched, nothing created."""


class LockTimeout(MigrateError):
    """The migration lock was not acquired within LOCK_TIMEOUT."""

    exit_code = ExitCode.LOCK_TIMEOUT
    outcome = Outcome.LOCK_TIMEOUT

    def __init__(self, message: str, lock_file: str | None = None) -> None:
        super().__init__(message)
        self.lock_file = lock_file


class RefusedChange(MigrateError):
    """The run was refused before any change: destructive, too slow, or a pre-check failed."""

    exit_code = ExitCode.REFUSED
    outcome = Outcome.REFUSED

    def __init__(self, message: str, refusals: tuple[Refusal, ...] = ()) -> None:
        super().__init__(message)
        self.refusals = refusals


class MigrationFailed(MigrateError):
    """Applying or verifying failed and the database was restored to its previous state."""

    exit_code = ExitCode.FAILED_RESTORED
    outcome = Outcome.FAILED_RESTORED


class MigrationFailedNotRestored(MigrateError):
    """Applying failed and the database could not be shown to be as it was before."""

    exit_code = ExitCode.FAILED_NOT_RESTORED


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code the CLI uses for an error."""
    if isinstance(error, MigrateError):
        return error.exit_code
    return ExitCode.FAILED_NOT_RESTORED
