"""Domain errors: what went wrong, in the canonical codes' words, without gRPC.

Everything below the servicers raises `DomainError` (through the helpers here): a
canonical `Code` (the google.rpc.Code numbers, which gRPC shares), a message that says
what to do, the bad fields of a request and how long to wait before retrying.
`hpcgate.server.api.errors.to_status` is the one place that turns them into a gRPC status
with BadRequest and RetryInfo details.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterable

from hpcgate.server import privsep
from hpcgate.server.slurm.job_control import Refusal, RefusalKind


class Code(enum.IntEnum):
    """The canonical error codes (google.rpc.Code)."""

    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class DomainError(Exception):
    """A failure to report to the client as it is: code, message, bad fields, retry hint."""

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        violations: Iterable[tuple[str, str]] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)
        self.retry_after = retry_after


class FieldViolations:
    """Collects every bad field of a request, then raises one INVALID_ARGUMENT for all."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append((field, description))

    def __bool__(self) -> bool:
        return bool(self.violations)

    def raise_if_any(self) -> None:
        if self.violations:
            raise invalid_argument(self.violations)


def invalid_argument(violations: Iterable[tuple[str, str]]) -> DomainError:
    """INVALID_ARGUMENT naming each bad field (sent as a google.rpc.BadRequest)."""
    listed = list(violations)
    summary = "; ".join(f"{field}: {description}" for field, description in listed)
    return DomainError(Code.INVALID_ARGUMENT, f"invalid request: {summary}", violations=listed)


def not_found(message: str) -> DomainError:
    return DomainError(Code.NOT_FOUND, message)


def unavailable(message: str, retry_after_seconds: int = 5) -> DomainError:
    """UNAVAILABLE telling clients when to retry (sent as a google.rpc.RetryInfo)."""
    return DomainError(
        Code.UNAVAILABLE,
        f"{message} (retry in {retry_after_seconds} s)",
        retry_after=retry_after_seconds,
    )


def from_privsep(error: Exception, what: str) -> DomainError:
    """The failure of per-user work (see hpcgate.server.privsep), in canonical terms."""
    if isinstance(error, privsep.UnknownUser):
        return DomainError(Code.PERMISSION_DENIED, f"{what}: {error}")
    if isinstance(error, privsep.ForbiddenUser):
        return DomainError(
            Code.PERMISSION_DENIED,
            f"{what}: {error}; the gateway does no per-user work as root or system accounts",
        )
    if isinstance(error, TimeoutError):
        return DomainError(Code.DEADLINE_EXCEEDED, f"{what}: timed out")
    return unavailable(f"{what}: {error}")


def from_os_error(error: OSError, what: str) -> DomainError:
    """An OSError raised while acting as the caller, in canonical terms."""
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        return DomainError(Code.PERMISSION_DENIED, f"{what}: {reason}")
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return DomainError(Code.NOT_FOUND, f"{what}: {reason}")
    return DomainError(Code.FAILED_PRECONDITION, f"{what}: {reason}")


def from_refusal(refusal: Refusal) -> DomainError:
    """Slurm's refusal of a command run as the caller (sbatch, scancel, sacctmgr)."""
    if refusal.kind is RefusalKind.INVALID:
        return invalid_argument([(refusal.field, refusal.message)])
    if refusal.kind is RefusalKind.UNAVAILABLE:
        return unavailable(refusal.message)
    code = {
        RefusalKind.DENIED: Code.PERMISSION_DENIED,
        RefusalKind.EXHAUSTED: Code.RESOURCE_EXHAUSTED,
    }.get(refusal.kind, Code.FAILED_PRECONDITION)
    return DomainError(code, refusal.message)
