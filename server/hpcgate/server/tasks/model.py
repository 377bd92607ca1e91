"""What a task is, independent of storage and protobuf: states, progress, errors.

Error codes are google.rpc.Code numbers (`hpcgate.server.errors.Code`, an IntEnum: no
grpc here); the API layer sends them as they are in `Task.error.code`.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hpcgate.server.errors import Code

# JSON-compatible values: what requests, results and checkpoints are made of.
Json = Any


class TaskState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def ended(self) -> bool:
        return self not in (TaskState.PENDING, TaskState.RUNNING)


UNFINISHED = (TaskState.PENDING, TaskState.RUNNING)


@dataclass(frozen=True)
class Progress:
    """How far a task has got. Totals are None until known."""

    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None
    message: str = ""
    bytes_per_second: float = 0.0

    @property
    def percent(self) -> float | None:
        """Completion estimate from bytes, else from files; None while unknown."""
        if self.bytes_total:
            return min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(100.0, 100.0 * self.files_done / self.files_total)
        return None


@dataclass(frozen=True)
class TaskError:
    code: int  # google.rpc.Code
    message: str
    path: str = ""


@dataclass(frozen=True)
class TaskRecord:
    """One task as stored. The checkpoint is not part of it (it may be large): the runner
    loads it only when it resumes a task."""

    id: str
    user: str
    kind: str
    state: TaskState
    system: str
    description: str
    labels: Mapping[str, str]
    request: Json
    request_id: str
    request_hash: str
    progress: Progress
    result: Json | None
    error: TaskError | None
    cancel_requested: bool
    attempts: int  # how many times it was started (1 + resumes)
    revision: int  # +1 on every change; lets watchers drop stale copies
    create_time: datetime
    update_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    # The lease of the runner that claimed the task last (tasks/store.py): its replica
    # id, the token that fences its writes, and until when it holds the task unless it
    # renews. Internal: not part of the API's Task.
    lease_owner: str = ""
    lease_token: int = 0
    lease_until: datetime | None = None

    @property
    def name(self) -> str:
        return f"tasks/{self.id}"


@dataclass(frozen=True)
class NewTask:
    """What `TaskStore.create` needs; `request` is the kind's parameters as JSON."""

    user: str
    kind: str
    system: str
    request: Json
    description: str = ""
    request_id: str = ""
    request_hash: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskQuery:
    """Filters of ListTasks; empty tuples and None mean "any"."""

    states: tuple[TaskState, ...] = ()
    kinds: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None


class RequestIdConflict(Exception):
    """The request id was used by the same user for a different request."""


class TooManyTasks(Exception):
    """The user already has the maximum number of unfinished tasks."""


class TaskFailed(Exception):
    """Raised by a handler to end its task FAILED with a code, a message and a path.

    `result` may describe the work done before the failure (e.g. files already copied).
    """

    def __init__(self, code: int, message: str, path: str = "", result: Json | None = None):
        super().__init__(message)
        self.error = TaskError(code, message, path)
        self.result = result

    @classmethod
    def from_os_error(cls, error: OSError, what: str = "") -> TaskFailed:
        """The canonical code for a failed file operation done as the user."""
        code = {
            errno.EACCES: Code.PERMISSION_DENIED,
            errno.EPERM: Code.PERMISSION_DENIED,
            errno.EROFS: Code.PERMISSION_DENIED,
            errno.ENOENT: Code.NOT_FOUND,
            errno.ENOTDIR: Code.NOT_FOUND,
            errno.EEXIST: Code.ALREADY_EXISTS,
            errno.ENOSPC: Code.RESOURCE_EXHAUSTED,
            errno.EDQUOT: Code.RESOURCE_EXHAUSTED,
            errno.EIO: Code.UNAVAILABLE,
            errno.ESTALE: Code.UNAVAILABLE,
            errno.ETIMEDOUT: Code.UNAVAILABLE,
        }.get(error.errno or 0, Code.FAILED_PRECONDITION)
        reason = error.strerror or str(error)
        path = str(error.filename) if error.filename is not None else ""
        prefix = f"{what}: " if what else ""
        return cls(code, f"{prefix}{reason}" + (f" ({path})" if path else ""), path)
