"""The gRPC edge of errors: one mapper from domain errors to rich statuses.

Domain modules raise `hpcgate.server.errors.DomainError`; servicers may raise `ApiError`
(the same, named with a `grpc.StatusCode`). The interceptor sends either through
`to_status`: the canonical code, the message, a google.rpc.BadRequest per bad field and a
google.rpc.RetryInfo when the error says when to retry (also sent as the
`grpc-retry-pushback-ms` trailer). Anything else that escapes a handler becomes INTERNAL
with a reference id that is also in the server log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hpcgate.server.errors import (
    Code,
    DomainError,
    FieldViolations,
    from_os_error,
    from_privsep,
    invalid_argument,
    not_found,
    unavailable,
)

__all__ = [
    "ApiError",
    "DomainError",
    "FieldViolations",
    "from_os_error",
    "from_privsep",
    "grpc_code",
    "invalid_argument",
    "not_found",
    "to_status",
    "unavailable",
]

# A client drops a status whose metadata passes 8 KiB (grpc's default soft limit) and
# reports RESOURCE_EXHAUSTED instead. Messages and violations echo request values, so they
# are clipped: at most 1000 bytes of message (3 KB once percent-encoded), ten violations.
MAX_MESSAGE_BYTES = 1000
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 200
MAX_VIOLATIONS = 10
# Trailing metadata with the same hint as RetryInfo, in milliseconds: what gRPC's own
# retry machinery (a service config's retryPolicy, in any language) waits before retrying.
PUSHBACK_KEY = "grpc-retry-pushback-ms"


class ApiError(DomainError):
    """A domain error raised at the edge, where the gRPC code is the natural name."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(Code(code.value[0]), message)


def grpc_code(code: Code) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == code)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, marked with '...' when cut."""
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def _packed(message: error_details_pb2.BadRequest | error_details_pb2.RetryInfo) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def _bad_request(violations: tuple[tuple[str, str], ...]) -> error_details_pb2.BadRequest:
    pairs = [
        (clip(f, MAX_FIELD_BYTES), clip(d, MAX_DESCRIPTION_BYTES))
        for f, d in violations[:MAX_VIOLATIONS]
    ]
    if len(violations) > MAX_VIOLATIONS:
        pairs.append(("...", f"and {len(violations) - MAX_VIOLATIONS} more"))
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in pairs
        ]
    )


def to_status(error: DomainError) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    details = []
    if error.violations:
        details.append(_packed(_bad_request(error.violations)))
    if error.retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(round(error.retry_after * 1e9))
        details.append(_packed(retry))
    message = error.message
    if error.violations and message.startswith("invalid request: "):
        # The summary repeats every violation: keep it to the clipped ones.
        shown = _bad_request(error.violations).field_violations
        message = "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in shown)
    status = status_pb2.Status(
        code=int(error.code), message=clip(message, MAX_MESSAGE_BYTES), details=details
    )
    rich = rpc_status.to_status(status)
    if error.retry_after is None:
        return rich
    pushback = (PUSHBACK_KEY, str(math.ceil(error.retry_after * 1000)))
    return _Status(rich.code, rich.details, (*rich.trailing_metadata, pushback))


@dataclass(frozen=True)
class _Status(grpc.Status):
    """A status with more trailing metadata than grpc_status puts in."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


assert (
    grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT == Code.INVALID_ARGUMENT
)
