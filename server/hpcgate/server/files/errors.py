"""Canonical statuses for failures of file work done as the caller (see utilities.proto)."""

from __future__ import annotations

import errno
from collections.abc import Mapping

import grpc

from hpcgate.server import privsep
from hpcgate.server.api.errors import ApiError, from_privsep, unavailable
from hpcgate.server.files.paths import display

_CODES: dict[int, grpc.StatusCode] = {
    errno.EACCES: grpc.StatusCode.PERMISSION_DENIED,
    errno.EPERM: grpc.StatusCode.PERMISSION_DENIED,
    errno.EROFS: grpc.StatusCode.PERMISSION_DENIED,
    errno.ENOENT: grpc.StatusCode.NOT_FOUND,
    errno.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
    errno.ENOTEMPTY: grpc.StatusCode.FAILED_PRECONDITION,
    errno.ENOTDIR: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EISDIR: grpc.StatusCode.FAILED_PRECONDITION,
    errno.ELOOP: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EBUSY: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EXDEV: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
    errno.ENAMETOOLONG: grpc.StatusCode.INVALID_ARGUMENT,
    errno.ENOSPC: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.EDQUOT: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.EFBIG: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.EMFILE: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_HINTS: dict[int, str] = {
    errno.EACCES: "the kernel denied this as you; check the permissions (Stat shows them)",
    errno.EEXIST: "set overwrite to replace it",
    errno.ENOTEMPTY: "set recursive to remove a directory with everything below it",
    errno.ENOSPC: "the filesystem is full",
    errno.EDQUOT: "you are over your quota (StorageService.ListFilesystems shows it)",
}
_UNAVAILABLE = {errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EHOSTDOWN, errno.ENOTCONN}


def file_error(
    error: Exception, what: str, overrides: Mapping[int, grpc.StatusCode] | None = None
) -> ApiError:
    """The ApiError for an OSError (the kernel's decision as the caller) or a privsep
    failure raised while doing `what` (e.g. "listing /home/alice")."""
    if not isinstance(error, OSError) or isinstance(error, privsep.PrivsepError):
        return from_privsep(error, what)
    number = error.errno or errno.EIO
    reason = display(error.strerror or str(error))
    if isinstance(error.filename, str) and error.filename:
        reason = f"{reason}: {display(error.filename)}"
    if number in _UNAVAILABLE:
        return unavailable(f"{what}: {reason}; the filesystem does not respond properly")
    code = (overrides or {}).get(number) or _CODES.get(number, grpc.StatusCode.FAILED_PRECONDITION)
    hint = _HINTS.get(number)
    if number == errno.EACCES and ("outside the directories" in reason or "belongs to" in reason):
        hint = None  # the worker's message already says what is allowed, or whose it is
    return ApiError(code, f"{what}: {reason}" + (f" ({hint})" if hint else ""))
