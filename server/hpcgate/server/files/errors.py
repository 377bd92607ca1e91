"""Canonical statuses for failures of file work done as the caller (see utilities.proto)."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from hpcgate.server import privsep
from hpcgate.server.errors import Code, DomainError, from_privsep, unavailable
from hpcgate.server.files.paths import display

_CODES: dict[int, Code] = {
    errno.EACCES: Code.PERMISSION_DENIED,
    errno.EPERM: Code.PERMISSION_DENIED,
    errno.EROFS: Code.PERMISSION_DENIED,
    errno.ENOENT: Code.NOT_FOUND,
    errno.EEXIST: Code.ALREADY_EXISTS,
    errno.ENOTEMPTY: Code.FAILED_PRECONDITION,
    errno.ENOTDIR: Code.FAILED_PRECONDITION,
    errno.EISDIR: Code.FAILED_PRECONDITION,
    errno.ELOOP: Code.FAILED_PRECONDITION,
    errno.EBUSY: Code.FAILED_PRECONDITION,
    errno.EXDEV: Code.FAILED_PRECONDITION,
    errno.EINVAL: Code.INVALID_ARGUMENT,
    errno.ENAMETOOLONG: Code.INVALID_ARGUMENT,
    errno.ENOSPC: Code.RESOURCE_EXHAUSTED,
    errno.EDQUOT: Code.RESOURCE_EXHAUSTED,
    errno.EFBIG: Code.RESOURCE_EXHAUSTED,
    errno.EMFILE: Code.RESOURCE_EXHAUSTED,
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
    error: Exception, what: str, overrides: Mapping[int, Code] | None = None
) -> DomainError:
    """The DomainError for an OSError (the kernel's decision as the caller) or a privsep
    failure raised while doing `what` (e.g. "listing /home/alice")."""
    if not isinstance(error, OSError) or isinstance(error, privsep.PrivsepError):
        return from_privsep(error, what)
    number = error.errno or errno.EIO
    reason = display(error.strerror or str(error))
    if isinstance(error.filename, str) and error.filename:
        reason = f"{reason}: {display(error.filename)}"
    if number in _UNAVAILABLE:
        return unavailable(f"{what}: {reason}; the filesystem does not respond properly")
    code = (overrides or {}).get(number) or _CODES.get(number, Code.FAILED_PRECONDITION)
    hint = _HINTS.get(number)
    if number == errno.EACCES and ("outside the directories" in reason or "belongs to" in reason):
        hint = None  # the worker's message already says what is allowed, or whose it is
    return DomainError(code, f"{what}: {reason}" + (f" ({hint})" if hint else ""))
