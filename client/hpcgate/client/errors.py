"""One exception hierarchy for every failure the server reports.

Every RPC error becomes an `HpcgateError` subclass named after its canonical gRPC code
(`NotFound`, `InvalidArgument`, ...), carrying the server's message, each BadRequest field
violation and RetryInfo's delay (else the `grpc-retry-pushback-ms` trailer's), so callers
catch what they can handle and print the rest:

    try:
        job = await client.jobs.get("perlmutter", "123")
    except NotFound:
        ...
    except HpcgateError as e:
        print(e)            # message and every field violation
        sys.exit(e.exit_code)
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

PUSHBACK_KEY = "grpc-retry-pushback-ms"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: its path (`options.time_limit`) and what to do about it."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class HpcgateError(Exception):
    """A call failed; `code` is the gRPC status, `message` the server's explanation."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        violations: tuple[FieldViolation, ...] = (),
        retry_delay: float | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations
        self.retry_delay = retry_delay
        if code is not None:
            self.code = code

    @property
    def exit_code(self) -> int:
        """The process exit status the CLI uses for this failure: the gRPC code's number
        (1 for CANCELLED ... 16 for UNAUTHENTICATED; never 0)."""
        return int(self.code.value[0]) or 1

    def __str__(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        lines += [f"  {v}" for v in self.violations]
        if self.retry_delay is not None:
            lines.append(f"  retry in {self.retry_delay:g} s")
        return "\n".join(lines)


class Cancelled(HpcgateError):
    code = grpc.StatusCode.CANCELLED


class Unknown(HpcgateError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(HpcgateError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(HpcgateError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(HpcgateError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HpcgateError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(HpcgateError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(HpcgateError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(HpcgateError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(HpcgateError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(HpcgateError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(HpcgateError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(HpcgateError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(HpcgateError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(HpcgateError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(HpcgateError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[HpcgateError]] = {
    cls.code: cls
    for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
        PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
        Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated,
    )
}  # fmt: skip


def error_class(code: grpc.StatusCode) -> type[HpcgateError]:
    return _BY_CODE.get(code, HpcgateError)


def from_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> HpcgateError:
    """The HpcgateError for a failed call, with the details the server attached."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (error.details() if callable(getattr(error, "details", None)) else "") or ""
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    status = _status_of(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry_delay = info.retry_delay.ToTimedelta().total_seconds()
    if retry_delay is None:
        retry_delay = _pushback(error)
    cls = error_class(code)
    return cls(message, violations=tuple(violations), retry_delay=retry_delay, code=code)


def retryable(error: HpcgateError) -> bool:
    """UNAVAILABLE, and RESOURCE_EXHAUSTED that says when to come back (a rate limit, a
    full stream cap: waiting helps); not one without (a size limit, a quota: it does not)."""
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return True
    return error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None


def _pushback(error: grpc.RpcError) -> float | None:
    """Seconds from a `grpc-retry-pushback-ms` trailer: the hint of a server (or proxy)
    that sends no RetryInfo. Malformed or negative values (gRPC: "do not retry") count
    as no hint."""
    trailers = getattr(error, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == PUSHBACK_KEY and isinstance(value, str) and value.isdigit():
            return int(value) / 1000
    return None


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        return None
    return status


__all__ = [
    "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded",
    "FailedPrecondition", "FieldViolation", "HpcgateError", "Internal", "InvalidArgument",
    "NotFound", "OutOfRange", "PermissionDenied", "ResourceExhausted", "Unauthenticated",
    "Unavailable", "Unimplemented", "Unknown", "error_class", "from_rpc_error",
]  # fmt: skip
