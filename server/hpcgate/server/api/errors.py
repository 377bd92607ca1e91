"""Canonical gRPC errors with messages that say what to do, and BadRequest details.

Servicers raise `ApiError` (or call `invalid_argument`); the interceptor turns it into
a rich status. Anything else that escapes a handler becomes INTERNAL with a reference
id that is also in the server log, never a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hpcgate.server import privsep

# A client drops a status whose metadata passes 8 KiB (grpc's default soft limit) and
# reports RESOURCE_EXHAUSTED instead. Messages and violations echo request values, so they
# are clipped: at most 1000 bytes of message (3 KB once percent-encoded), ten violations.
MAX_MESSAGE_BYTES = 1000
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 200
MAX_VIOLATIONS = 10


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, marked with '...' when cut."""
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


class ApiError(Exception):
    """An error to send to the client as-is: a canonical code and a helpful message."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: Iterable[any_pb2.Any] = (),
    ) -> None:
        message = clip(message, MAX_MESSAGE_BYTES)
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)

    def to_status(self) -> grpc.Status:
        status = status_pb2.Status(
            code=self.code.value[0], message=self.message, details=self.details
        )
        return rpc_status.to_status(status)


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


def invalid_argument(violations: Iterable[tuple[str, str]]) -> ApiError:
    """INVALID_ARGUMENT with a google.rpc.BadRequest detail naming each bad field."""
    listed = list(violations)
    pairs = [
        (clip(f, MAX_FIELD_BYTES), clip(d, MAX_DESCRIPTION_BYTES))
        for f, d in listed[:MAX_VIOLATIONS]
    ]
    if len(listed) > MAX_VIOLATIONS:
        pairs.append(("...", f"and {len(listed) - MAX_VIOLATIONS} more"))
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in pairs
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    summary = "; ".join(f"{f}: {d}" for f, d in pairs)
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}", [detail])


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str, retry_after_seconds: int = 5) -> ApiError:
    """UNAVAILABLE with a google.rpc.RetryInfo detail telling clients when to retry."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromSeconds(retry_after_seconds)
    detail = any_pb2.Any()
    detail.Pack(retry)
    return ApiError(
        grpc.StatusCode.UNAVAILABLE, f"{message} (retry in {retry_after_seconds} s)", [detail]
    )


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT


def from_privsep(error: Exception, what: str) -> ApiError:
    """Canonical status for a failure of per-user work (see hpcgate.server.privsep)."""
    if isinstance(error, privsep.UnknownUser):
        return ApiError(grpc.StatusCode.PERMISSION_DENIED, f"{what}: {error}")
    if isinstance(error, privsep.ForbiddenUser):
        return ApiError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{what}: {error}; the gateway does no per-user work as root or system accounts",
        )
    if isinstance(error, TimeoutError):
        return ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: timed out")
    return unavailable(f"{what}: {error}")


def from_os_error(error: OSError, what: str) -> ApiError:
    """Canonical status for an OSError raised while acting as the caller."""
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        return ApiError(grpc.StatusCode.PERMISSION_DENIED, f"{what}: {reason}")
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return ApiError(grpc.StatusCode.NOT_FOUND, f"{what}: {reason}")
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: {reason}")
