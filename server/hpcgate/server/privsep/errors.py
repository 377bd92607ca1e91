"""What privilege separation raises, so callers can map each case to one API status.

Failures of an operation the kernel refused as the user (open, stat, ...) are plain
`OSError`s built from the worker's errno name, so they arrive as `PermissionError`,
`FileNotFoundError`, ... with `errno`, `strerror` and `filename` set: the kernel's decision,
unchanged. Everything about the mechanism itself is a `PrivsepError`.
"""

from __future__ import annotations

import errno


class PrivsepError(Exception):
    """Base class for failures of the privilege-separation mechanism itself."""


class UnknownUser(PrivsepError, LookupError):
    """The name has no account on this machine (passwd/NSS)."""


class ForbiddenUser(PrivsepError):
    """The account exists but per-user work may not run as it (root, system accounts, or
    anyone but the served user in single-user mode)."""


class WorkerUnavailable(PrivsepError):
    """The user's worker could not be started, or died while a request was in flight."""


class WorkerTimeout(PrivsepError, TimeoutError):
    """The worker did not answer in time (e.g. an operation stuck on a dead mount)."""


class CommandTimeout(PrivsepError, TimeoutError):
    """A command run as the user exceeded its deadline; its process group was killed."""


class CommandWithheld(PrivsepError):
    """A gated command was not let go (its gate said no): it was killed unfed."""


def os_error(name: str, message: str, filename: str | None = None) -> OSError:
    """An OSError for the errno `name` ("EACCES"); OSError picks the subclass from the errno."""
    number = getattr(errno, name, None)
    if not isinstance(number, int):
        number = errno.EIO
        message = f"{name}: {message}"
    if filename is None:
        return OSError(number, message)
    return OSError(number, message, filename)
