"""Durable task records: the `TaskStore` interface and its SQLite implementation.

`TaskStore` is what the runner and the API need; a PostgreSQL implementation satisfies
it with the same transactions (`SELECT ... FOR UPDATE` where SQLite uses BEGIN
IMMEDIATE). Every method is synchronous and short: async code calls them through
`asyncio.to_thread`. State transitions are conditional on the current state, so a late
write can never revive an ended task.

SQLite runs in WAL mode (state/store.py): a commit survives a crash of the server.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hpcgate.server.state.store import StateStore
from hpcgate.server.tasks.model import (
    UNFINISHED,
    Json,
    NewTask,
    Progress,
    RequestIdConflict,
    TaskError,
    TaskQuery,
    TaskRecord,
    TaskState,
    TooManyTasks,
)


class TaskStore(Protocol):
    """Persistence of tasks. Implementations must be safe to call from several threads."""

    def create(
        self, task: NewTask, *, max_unfinished_per_user: int, request_id_ttl: float
    ) -> tuple[TaskRecord, bool]:
        """Insert a PENDING task; returns (task, True). With a request id already used by
        the user within `request_id_ttl` seconds: (that task, False) if the request hash
        matches, else RequestIdConflict. TooManyTasks when the user already has
        `max_unfinished_per_user` PENDING or RUNNING tasks."""
        ...

    def get(self, task_id: str) -> TaskRecord | None: ...

    def find_request(
        self, user: str, request_id: str, request_hash: str, *, request_id_ttl: float
    ) -> TaskRecord | None:
        """The task `user` created with `request_id` within `request_id_ttl` seconds, in
        whatever state; None if there is none. RequestIdConflict if it was created for a
        request with another hash."""
        ...

    def list_tasks(self, user: str, query: TaskQuery, offset: int, limit: int) -> list[TaskRecord]:
        """The user's tasks matching `query`, newest first, `limit` from `offset`."""
        ...

    def unfinished(self) -> list[TaskRecord]:
        """Every PENDING or RUNNING task, oldest first (start-up recovery)."""
        ...

    def mark_running(self, task_id: str) -> TaskRecord | None:
        """PENDING -> RUNNING (attempts + 1, start time set once); None if not PENDING."""
        ...

    def requeue(self, task_id: str, progress: Progress | None = None) -> TaskRecord | None:
        """RUNNING -> PENDING, keeping the checkpoint (and progress, or the given one), to
        resume after a restart; None if it was not RUNNING."""
        ...

    def update_progress(self, task_id: str, progress: Progress) -> TaskRecord | None:
        """New progress of a RUNNING task; None if it is not RUNNING."""
        ...

    def save_checkpoint(
        self, task_id: str, checkpoint: Json, progress: Progress
    ) -> TaskRecord | None:
        """Checkpoint and progress together, in one commit; None if not RUNNING."""
        ...

    def load_checkpoint(self, task_id: str) -> Json | None: ...

    def request_cancel(self, task_id: str) -> TaskRecord | None:
        """Set cancel_requested on an unfinished task; returns the task as it is after."""
        ...

    def finish(
        self,
        task_id: str,
        state: TaskState,
        *,
        progress: Progress | None = None,
        result: Json | None = None,
        error: TaskError | None = None,
    ) -> TaskRecord | None:
        """Unfinished -> SUCCEEDED/FAILED/CANCELLED; None if it had already ended."""
        ...

    def purge(self, ended_before: datetime, *, requests_since: datetime | None = None) -> int:
        """Delete tasks that ended before `ended_before`, except those created with a
        request id at or after `requests_since` (a retry must still find them); returns
        how many."""
        ...


_COLUMNS = (
    "id, user, kind, state, system, description, labels, request, request_id, request_hash, "
    "bytes_done, bytes_total, files_done, files_total, message, bytes_per_second, result, "
    "error_code, error_message, error_path, cancel_requested, attempts, revision, "
    "create_time, update_time, start_time, end_time"
)
_UNFINISHED_SQL = "('PENDING', 'RUNNING')"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
assert {s.value for s in UNFINISHED} == {"PENDING", "RUNNING"}


def _now() -> int:
    """Microseconds since the epoch: how the tasks table stores times."""
    return time.time_ns() // 1000


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _time(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _record(row: tuple[Any, ...]) -> TaskRecord:
    (id_, user, kind, state, system, description, labels, request, request_id, request_hash,
     bytes_done, bytes_total, files_done, files_total, message, bps, result,
     error_code, error_message, error_path, cancel_requested, attempts, revision,
     create_time, update_time, start_time, end_time) = row  # fmt: skip
    error = None
    if error_code is not None:
        error = TaskError(int(error_code), error_message or "", error_path or "")
    created = _time(create_time)
    updated = _time(update_time)
    assert created is not None and updated is not None
    return TaskRecord(
        id=id_,
        user=user,
        kind=kind,
        state=TaskState(state),
        system=system,
        description=description,
        labels=json.loads(labels),
        request=json.loads(request),
        request_id=request_id,
        request_hash=request_hash,
        progress=Progress(bytes_done, bytes_total, files_done, files_total, message, bps),
        result=None if result is None else json.loads(result),
        error=error,
        cancel_requested=bool(cancel_requested),
        attempts=attempts,
        revision=revision,
        create_time=created,
        update_time=updated,
        start_time=_time(start_time),
        end_time=_time(end_time),
    )


def _dump(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _progress_values(p: Progress) -> tuple[Any, ...]:
    return (p.bytes_done, p.bytes_total, p.files_done, p.files_total, p.message,
            p.bytes_per_second)  # fmt: skip


_SET_PROGRESS = (
    "bytes_done = ?, bytes_total = ?, files_done = ?, files_total = ?, message = ?, "
    "bytes_per_second = ?"
)


class SqliteTaskStore:
    """TaskStore in the server's SQLite database (table `tasks`, see state/store.py)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: read-modify-write without another writer in between."""
        with self.state.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _get(db: sqlite3.Connection, task_id: str) -> TaskRecord | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _record(row) if row else None

    def _update(
        self, task_id: str, assignments: str, values: tuple[Any, ...], condition: str
    ) -> TaskRecord | None:
        """One conditional UPDATE (bumping revision and update_time), then the new row."""
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE tasks SET {assignments}, revision = revision + 1, update_time = ? "
                f"WHERE id = ? AND {condition}",
                (*values, _now(), task_id),
            )
            if cursor.rowcount == 0:
                return None
            return self._get(db, task_id)

    def create(
        self, task: NewTask, *, max_unfinished_per_user: int, request_id_ttl: float
    ) -> tuple[TaskRecord, bool]:
        now = _now()
        with self._transaction() as db:
            if task.request_id:
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE user = ? AND request_id = ?",
                    (task.user, task.request_id),
                ).fetchone()
                if row is not None:
                    existing = _record(row)
                    if _micros(existing.create_time) >= now - int(request_id_ttl * 1e6):
                        if existing.request_hash != task.request_hash:
                            raise RequestIdConflict(task.request_id)
                        return existing, False
                    # Past its lifetime the id is free again; the old task keeps no id.
                    db.execute("UPDATE tasks SET request_id = '' WHERE id = ?", (existing.id,))
            (active,) = db.execute(
                f"SELECT COUNT(*) FROM tasks WHERE user = ? AND state IN {_UNFINISHED_SQL}",
                (task.user,),
            ).fetchone()
            if active >= max_unfinished_per_user:
                raise TooManyTasks(f"{task.user} has {active} unfinished tasks")
            task_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO tasks (id, user, kind, state, system, description, labels, "
                "request, request_id, request_hash, create_time, update_time) "
                "VALUES (?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, task.user, task.kind, task.system, task.description,
                 _dump(dict(task.labels)), _dump(task.request), task.request_id,
                 task.request_hash, now, now),
            )  # fmt: skip
            record = self._get(db, task_id)
            assert record is not None
            return record, True

    def get(self, task_id: str) -> TaskRecord | None:
        with self.state.connect() as db:
            return self._get(db, task_id)

    def find_request(
        self, user: str, request_id: str, request_hash: str, *, request_id_ttl: float
    ) -> TaskRecord | None:
        with self.state.connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE user = ? AND request_id = ?",
                (user, request_id),
            ).fetchone()
        if row is None:
            return None
        existing = _record(row)
        if _micros(existing.create_time) < _now() - int(request_id_ttl * 1e6):
            return None
        if existing.request_hash != request_hash:
            raise RequestIdConflict(request_id)
        return existing

    def list_tasks(self, user: str, query: TaskQuery, offset: int, limit: int) -> list[TaskRecord]:
        where: list[str] = ["user = ?"]
        args: list[str | int] = [user]
        if query.states:
            where.append(f"state IN ({', '.join('?' * len(query.states))})")
            args += [s.value for s in query.states]
        if query.kinds:
            where.append(f"kind IN ({', '.join('?' * len(query.kinds))})")
            args += list(query.kinds)
        if query.created_after is not None:
            where.append("create_time >= ?")
            args.append(_micros(query.created_after))
        if query.created_before is not None:
            where.append("create_time < ?")
            args.append(_micros(query.created_before))
        sql = (
            f"SELECT {_COLUMNS} FROM tasks WHERE {' AND '.join(where)} "
            "ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?"
        )
        with self.state.connect() as db:
            rows = db.execute(sql, (*args, limit, offset)).fetchall()
        return [_record(r) for r in rows]

    def unfinished(self) -> list[TaskRecord]:
        with self.state.connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE state IN {_UNFINISHED_SQL} "
                "ORDER BY create_time, id"
            ).fetchall()
        return [_record(r) for r in rows]

    def mark_running(self, task_id: str) -> TaskRecord | None:
        return self._update(
            task_id,
            "state = 'RUNNING', attempts = attempts + 1, start_time = COALESCE(start_time, ?)",
            (_now(),),
            "state = 'PENDING'",
        )

    def requeue(self, task_id: str, progress: Progress | None = None) -> TaskRecord | None:
        if progress is None:
            return self._update(task_id, "state = 'PENDING'", (), "state = 'RUNNING'")
        return self._update(
            task_id,
            f"state = 'PENDING', {_SET_PROGRESS}",
            _progress_values(progress),
            "state = 'RUNNING'",
        )

    def update_progress(self, task_id: str, progress: Progress) -> TaskRecord | None:
        return self._update(task_id, _SET_PROGRESS, _progress_values(progress), "state = 'RUNNING'")

    def save_checkpoint(
        self, task_id: str, checkpoint: Json, progress: Progress
    ) -> TaskRecord | None:
        return self._update(
            task_id,
            f"{_SET_PROGRESS}, checkpoint = ?",
            (*_progress_values(progress), _dump(checkpoint)),
            "state = 'RUNNING'",
        )

    def load_checkpoint(self, task_id: str) -> Json | None:
        with self.state.connect() as db:
            row = db.execute("SELECT checkpoint FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def request_cancel(self, task_id: str) -> TaskRecord | None:
        with self.state.connect() as db:
            db.execute(
                "UPDATE tasks SET cancel_requested = 1, revision = revision + 1, "
                f"update_time = ? WHERE id = ? AND state IN {_UNFINISHED_SQL} "
                "AND cancel_requested = 0",
                (_now(), task_id),
            )
            return self._get(db, task_id)

    def finish(
        self,
        task_id: str,
        state: TaskState,
        *,
        progress: Progress | None = None,
        result: Json | None = None,
        error: TaskError | None = None,
    ) -> TaskRecord | None:
        if not state.ended:
            raise ValueError(f"finish() needs an end state, not {state}")
        assignments = "state = ?, end_time = ?, result = ?, error_code = ?, error_message = ?, " \
            "error_path = ?"  # fmt: skip
        values: tuple[Any, ...] = (
            state.value,
            _now(),
            None if result is None else _dump(result),
            error.code if error else None,
            error.message if error else None,
            error.path if error else None,
        )
        if progress is not None:
            assignments += f", {_SET_PROGRESS}"
            values += _progress_values(progress)
        return self._update(task_id, assignments, values, f"state IN {_UNFINISHED_SQL}")

    def purge(self, ended_before: datetime, *, requests_since: datetime | None = None) -> int:
        keep = _micros(requests_since) if requests_since is not None else None
        with self.state.connect() as db:
            cursor = db.execute(
                f"DELETE FROM tasks WHERE state NOT IN {_UNFINISHED_SQL} AND end_time < ? "
                "AND NOT (request_id != '' AND ? IS NOT NULL AND create_time >= ?)",
                (_micros(ended_before), keep, keep),
            )
            return cursor.rowcount
