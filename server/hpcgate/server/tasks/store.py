"""Durable task records: the `TaskStore` interface and its SQL implementation, on the
server's SQLite database or on the PostgreSQL one the replicas of a cluster share.

Every method is synchronous and short: async code calls them through
`asyncio.to_thread`. State transitions are conditional on the current state, so a late
write can never revive an ended task.

Leases. A runner takes a PENDING task by claiming it: RUNNING, plus a lease (its
replica id, a new token, and an expiry it keeps pushing forward with `renew`). Every
later write of that runner (progress, checkpoint, requeue, finish) is conditional on
the token: once another runner has taken the task over (a new token), the old one's
writes change nothing and return None. On PostgreSQL claims lock their rows with
`FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different tasks; on SQLite
BEGIN IMMEDIATE gives the same exclusivity. Tokens grow strictly per task (PostgreSQL:
the sequence task_lease_tokens, unique across tasks; SQLite: the previous token + 1).
Lease expiries are read against the replicas' clocks, which must agree to well within
`tasks.lease_seconds`.

SQLite runs in WAL mode (state/store.py): a commit survives a crash of the server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hpcgate.server.state.database import POSTGRESQL, Connection
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

    @property
    def shared(self) -> bool:
        """Whether other servers run tasks from the same store (PostgreSQL): then tasks
        are claimed under renewed leases, and RUNNING tasks found at start-up may be
        another server's. False: every RUNNING task found at start-up is the previous
        run's."""
        ...

    def create(
        self, task: NewTask, *, max_unfinished_per_user: int, request_id_ttl: float
    ) -> tuple[TaskRecord, bool]:
        """Insert a PENDING task; returns (task, True). With a request id already used by
        the user within `request_id_ttl` seconds: (that task, False) if the request hash
        matches, else RequestIdConflict. TooManyTasks when the user already has
        `max_unfinished_per_user` PENDING or RUNNING tasks."""
        ...

    def get(self, task_id: str) -> TaskRecord | None: ...

    def get_many(self, task_ids: Collection[str]) -> list[TaskRecord]:
        """The tasks of `task_ids` that exist, in one query (in no particular order)."""
        ...

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

    def mark_running(self, task_id: str, owner: str, lease: float) -> TaskRecord | None:
        """Claim this PENDING task for `owner` for `lease` seconds: RUNNING, a new lease
        token, attempts + 1, start time set once. None if it is not PENDING."""
        ...

    def claim_next(
        self,
        owner: str,
        lease: float,
        limit: int,
        *,
        kinds: Collection[str],
        skip_users: Collection[str] = (),
        skip_systems: Collection[str] = (),
    ) -> list[TaskRecord]:
        """Claim (as mark_running) up to `limit` of the oldest PENDING tasks of `kinds`,
        passing by those of `skip_users` and `skip_systems` (at their limit) and those
        another runner is claiming at the same moment."""
        ...

    def renew(self, owner: str, tokens: Mapping[str, int], lease: float) -> dict[str, bool]:
        """Extend by `lease` seconds from now the leases of `owner` on the tasks of
        `tokens` (task id -> token). Returns, for each task still held (RUNNING with that
        token), whether cancel_requested is set; a task missing from it was lost."""
        ...

    def reap(self, owner: str, lease: float, limit: int = 100) -> list[TaskRecord]:
        """Take over RUNNING tasks whose lease has expired (their runner died or froze):
        each gets a new token held by `owner` for `lease` seconds, so the old runner
        can no longer write and a second reaper finds nothing. The caller then requeues
        or ends them, with the new token."""
        ...

    def requeue(
        self, task_id: str, token: int, progress: Progress | None = None
    ) -> TaskRecord | None:
        """RUNNING under `token` -> PENDING, keeping the checkpoint (and progress, or the
        given one), for a runner to resume it; None if the lease is no longer `token`."""
        ...

    def update_progress(self, task_id: str, token: int, progress: Progress) -> TaskRecord | None:
        """New progress of a task RUNNING under `token`; None if not (any more)."""
        ...

    def save_checkpoint(
        self, task_id: str, token: int, checkpoint: Json, progress: Progress
    ) -> TaskRecord | None:
        """Checkpoint and progress together, in one commit, if still RUNNING under
        `token`; else None and nothing changes."""
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
        token: int | None,
        progress: Progress | None = None,
        result: Json | None = None,
        error: TaskError | None = None,
    ) -> TaskRecord | None:
        """End a task SUCCEEDED, FAILED or CANCELLED: with a `token`, one RUNNING under
        that lease; with None, one still PENDING (never claimed since it was read).
        None if it was not in that state (e.g. another runner took it over)."""
        ...

    def purge(self, ended_before: datetime, *, requests_since: datetime | None = None) -> int:
        """Delete tasks that ended before `ended_before`, except those created with a
        request id at or after `requests_since` (a retry must still find them); returns
        how many."""
        ...


_COLUMNS = (
    'id, "user", kind, state, system, description, labels, request, request_id, request_hash, '
    "bytes_done, bytes_total, files_done, files_total, message, bytes_per_second, result, "
    "error_code, error_message, error_path, cancel_requested, attempts, revision, "
    "create_time, update_time, start_time, end_time, lease_owner, lease_token, lease_until"
)
_UNFINISHED_SQL = "('PENDING', 'RUNNING')"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
assert {s.value for s in UNFINISHED} == {"PENDING", "RUNNING"}
# The condition of every write a lease holder makes: it still holds the task.
_HELD = "state = 'RUNNING' AND lease_token = ?"


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
     create_time, update_time, start_time, end_time, lease_owner, lease_token,
     lease_until) = row  # fmt: skip
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
        lease_owner=lease_owner,
        lease_token=lease_token,
        lease_until=_time(lease_until),
    )


def _dump(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _progress_values(p: Progress) -> tuple[Any, ...]:
    return (p.bytes_done, p.bytes_total, p.files_done, p.files_total, p.message,
            p.bytes_per_second)  # fmt: skip


def _marks(values: Collection[Any]) -> str:
    """`?, ?, ...`: one placeholder per value, for `IN (...)`."""
    return ", ".join("?" * len(values))


_SET_PROGRESS = (
    "bytes_done = ?, bytes_total = ?, files_done = ?, files_total = ?, message = ?, "
    "bytes_per_second = ?"
)


class SqlTaskStore:
    """TaskStore in the server's database, SQLite or PostgreSQL (table `tasks`)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        postgres = state.dialect == POSTGRESQL
        # How a claim locks its rows and draws a new token (see the module doc).
        self._lock_rows = " FOR UPDATE SKIP LOCKED" if postgres else ""
        self._new_token = "nextval('task_lease_tokens')" if postgres else "lease_token + 1"

    @property
    def shared(self) -> bool:
        return self.state.shared

    def _transaction(self) -> AbstractContextManager[Connection]:
        """Read-modify-write without another writer in between."""
        return self.state.transaction()

    @staticmethod
    def _get(db: Connection, task_id: str) -> TaskRecord | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _record(row) if row else None

    def _update(
        self,
        task_id: str,
        assignments: str,
        values: tuple[Any, ...],
        condition: str,
        condition_values: tuple[Any, ...] = (),
    ) -> TaskRecord | None:
        """One conditional UPDATE (bumping revision and update_time); the new row, or
        None if the condition did not hold."""
        with self.state.connect() as db:
            # fetchall, not fetchone: SQLite commits a RETURNING statement once it is done.
            rows = db.execute(
                f"UPDATE tasks SET {assignments}, revision = revision + 1, update_time = ? "
                f"WHERE id = ? AND {condition} RETURNING {_COLUMNS}",
                (*values, _now(), task_id, *condition_values),
            ).fetchall()
        return _record(rows[0]) if rows else None

    def _take(
        self,
        where: str,
        args: tuple[Any, ...],
        limit: int,
        assignments: str,
        values: tuple[Any, ...],
    ) -> list[TaskRecord]:
        """Lock up to `limit` of the oldest tasks matching `where` that no other runner
        is taking at this moment, and apply `assignments` to them, all in one
        transaction; the updated rows, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT id FROM tasks WHERE {where} ORDER BY create_time, id LIMIT ?"
                f"{self._lock_rows}",
                (*args, limit),
            ).fetchall()
            if not rows:
                return []
            ids = [r[0] for r in rows]
            updated = db.execute(
                f"UPDATE tasks SET {assignments} WHERE id IN ({_marks(ids)}) RETURNING {_COLUMNS}",
                (*values, *ids),
            ).fetchall()
        return sorted((_record(r) for r in updated), key=lambda r: (r.create_time, r.id))

    def _claim(
        self, where: str, args: tuple[Any, ...], limit: int, owner: str, lease: float
    ) -> list[TaskRecord]:
        """Claim (see mark_running) the tasks `_take` picks, for `owner`."""
        now = _now()
        return self._take(
            where,
            args,
            limit,
            "state = 'RUNNING', attempts = attempts + 1, start_time = COALESCE(start_time, ?), "
            f"lease_owner = ?, lease_token = {self._new_token}, lease_until = ?, "
            "revision = revision + 1, update_time = ?",
            (now, owner, now + int(lease * 1e6), now),
        )

    def _lock_user(self, db: Connection, user: str) -> None:
        """PostgreSQL: serialise the creations of one user's tasks across replicas (until
        the transaction ends), so that the request id lookup and the unfinished count
        see each other's inserts, as under SQLite's BEGIN IMMEDIATE."""
        if self.state.dialect == POSTGRESQL:
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"tasks:{user}",))

    def create(
        self, task: NewTask, *, max_unfinished_per_user: int, request_id_ttl: float
    ) -> tuple[TaskRecord, bool]:
        with self._transaction() as db:
            self._lock_user(db, task.user)
            now = _now()
            if task.request_id:
                row = db.execute(
                    f'SELECT {_COLUMNS} FROM tasks WHERE "user" = ? AND request_id = ?',
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
                f'SELECT COUNT(*) FROM tasks WHERE "user" = ? AND state IN {_UNFINISHED_SQL}',
                (task.user,),
            ).fetchone()
            if active >= max_unfinished_per_user:
                raise TooManyTasks(f"{task.user} has {active} unfinished tasks")
            task_id = uuid.uuid4().hex
            (row,) = db.execute(
                'INSERT INTO tasks (id, "user", kind, state, system, description, labels, '
                "request, request_id, request_hash, create_time, update_time) "
                f"VALUES (?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (task_id, task.user, task.kind, task.system, task.description,
                 _dump(dict(task.labels)), _dump(task.request), task.request_id,
                 task.request_hash, now, now),
            ).fetchall()  # fmt: skip
            return _record(row), True

    def get(self, task_id: str) -> TaskRecord | None:
        with self.state.connect() as db:
            return self._get(db, task_id)

    def get_many(self, task_ids: Collection[str]) -> list[TaskRecord]:
        if not task_ids:
            return []
        ids = list(task_ids)
        with self.state.connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE id IN ({_marks(ids)})", ids
            ).fetchall()
        return [_record(r) for r in rows]

    def find_request(
        self, user: str, request_id: str, request_hash: str, *, request_id_ttl: float
    ) -> TaskRecord | None:
        with self.state.connect() as db:
            row = db.execute(
                f'SELECT {_COLUMNS} FROM tasks WHERE "user" = ? AND request_id = ?',
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
        where: list[str] = ['"user" = ?']
        args: list[str | int] = [user]
        if query.states:
            where.append(f"state IN ({_marks(query.states)})")
            args += [s.value for s in query.states]
        if query.kinds:
            where.append(f"kind IN ({_marks(query.kinds)})")
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

    def mark_running(self, task_id: str, owner: str, lease: float) -> TaskRecord | None:
        claimed = self._claim("id = ? AND state = 'PENDING'", (task_id,), 1, owner, lease)
        return claimed[0] if claimed else None

    def claim_next(
        self,
        owner: str,
        lease: float,
        limit: int,
        *,
        kinds: Collection[str],
        skip_users: Collection[str] = (),
        skip_systems: Collection[str] = (),
    ) -> list[TaskRecord]:
        if not kinds or limit <= 0:
            return []
        # A PENDING task with cancel_requested is claimed too: its canceller died before
        # ending it, and the claimer ends it CANCELLED without running it.
        where = f"state = 'PENDING' AND kind IN ({_marks(kinds)})"
        args: tuple[Any, ...] = tuple(kinds)
        if skip_users:
            where += f' AND "user" NOT IN ({_marks(skip_users)})'
            args += tuple(skip_users)
        if skip_systems:
            where += f" AND system NOT IN ({_marks(skip_systems)})"
            args += tuple(skip_systems)
        return self._claim(where, args, limit, owner, lease)

    def renew(self, owner: str, tokens: Mapping[str, int], lease: float) -> dict[str, bool]:
        if not tokens:
            return {}
        held = " OR ".join("(id = ? AND lease_token = ?)" for _ in tokens)
        pairs = [value for pair in tokens.items() for value in pair]
        with self.state.connect() as db:
            rows = db.execute(
                f"UPDATE tasks SET lease_until = ? WHERE state = 'RUNNING' AND lease_owner = ? "
                f"AND ({held}) RETURNING id, cancel_requested",
                (_now() + int(lease * 1e6), owner, *pairs),
            ).fetchall()
        return {task_id: bool(cancel) for task_id, cancel in rows}

    def reap(self, owner: str, lease: float, limit: int = 100) -> list[TaskRecord]:
        now = _now()
        # No lease at all: a RUNNING row written before leases existed.
        return self._take(
            "state = 'RUNNING' AND (lease_until IS NULL OR lease_until < ?)",
            (now,),
            limit,
            f"lease_owner = ?, lease_token = {self._new_token}, lease_until = ?",
            (owner, now + int(lease * 1e6)),
        )

    def requeue(
        self, task_id: str, token: int, progress: Progress | None = None
    ) -> TaskRecord | None:
        assignments = "state = 'PENDING', lease_owner = '', lease_until = NULL"
        values: tuple[Any, ...] = ()
        if progress is not None:
            assignments += f", {_SET_PROGRESS}"
            values = _progress_values(progress)
        return self._update(task_id, assignments, values, _HELD, (token,))

    def update_progress(self, task_id: str, token: int, progress: Progress) -> TaskRecord | None:
        return self._update(task_id, _SET_PROGRESS, _progress_values(progress), _HELD, (token,))

    def save_checkpoint(
        self, task_id: str, token: int, checkpoint: Json, progress: Progress
    ) -> TaskRecord | None:
        return self._update(
            task_id,
            f"{_SET_PROGRESS}, checkpoint = ?",
            (*_progress_values(progress), _dump(checkpoint)),
            _HELD,
            (token,),
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
        token: int | None,
        progress: Progress | None = None,
        result: Json | None = None,
        error: TaskError | None = None,
    ) -> TaskRecord | None:
        if not state.ended:
            raise ValueError(f"finish() needs an end state, not {state}")
        assignments = "state = ?, end_time = ?, result = ?, error_code = ?, error_message = ?, " \
            "error_path = ?, lease_until = NULL"  # fmt: skip
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
        if token is None:
            return self._update(task_id, assignments, values, "state = 'PENDING'")
        return self._update(task_id, assignments, values, _HELD, (token,))

    def purge(self, ended_before: datetime, *, requests_since: datetime | None = None) -> int:
        sql = f"DELETE FROM tasks WHERE state NOT IN {_UNFINISHED_SQL} AND end_time < ?"
        args = [_micros(ended_before)]
        if requests_since is not None:
            sql += " AND NOT (request_id != '' AND create_time >= ?)"
            args.append(_micros(requests_since))
        with self.state.connect() as db:
            return db.execute(sql, args).rowcount
