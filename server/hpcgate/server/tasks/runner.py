"""Runs durable tasks: a registry of kinds, bounded concurrency, cancellation, recovery.

A kind plugs in with `runner.register(kind, handler, resumable=...)`. The handler is an
async function of a `TaskContext`; it returns the task's result (JSON), raises
`TaskFailed` to fail it, and cleans up in `finally` blocks: cancellation is delivered as
`asyncio.CancelledError` at the handler's next `await`.

Lifecycle: PENDING (queued; waits while the user has `max_running_per_user` or the
system `max_running_per_system` tasks running) -> RUNNING -> SUCCEEDED, FAILED or
CANCELLED. Every change is committed to the store first, then published to watchers.

Restarts. A graceful stop interrupts running tasks: those of resumable kinds go back to
PENDING (checkpoint kept) and continue at the next start; the others end FAILED with
the reason. After a crash, start-up finds tasks still RUNNING: resumable ones are
requeued and their handler gets the last checkpoint; the others end FAILED. A task
started `max_attempts` times ends FAILED, so none stays RUNNING forever (nor loops).
One server per state directory: two runners on one database would both resume a task.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hpcgate.server.config import TasksConfig
from hpcgate.server.errors import Code
from hpcgate.server.tasks.model import (
    Json,
    NewTask,
    Progress,
    TaskError,
    TaskFailed,
    TaskQuery,
    TaskRecord,
    TaskState,
)
from hpcgate.server.tasks.store import TaskStore
from hpcgate.server.tasks.watch import TaskFeed, TaskWatch

log = logging.getLogger(__name__)

Handler = Callable[["TaskContext"], Awaitable[Json | None]]
# Request ids are remembered this long (StartTransfer: "within 24 hours").
REQUEST_ID_TTL = 86400.0
PURGE_INTERVAL = 3600.0


@dataclass(frozen=True)
class KindSpec:
    handler: Handler
    resumable: bool


def request_hash(kind: str, system: str, request: Json) -> str:
    """Fingerprint of what was asked, to tell a retry from a reuse of a request id."""
    canonical = json.dumps([kind, system, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskContext:
    """What a handler gets: its task, its checkpoint, progress reporting, cancellation.

    - `task`: the record as it was when this run started (`task.request` holds the
      kind's parameters as JSON).
    - `resumed` / `checkpoint`: True and the last saved checkpoint when this run
      continues one interrupted by a server stop or crash; False / None on a first run.
    - `await progress(...)`: report progress. Committed and published at most every
      `tasks.progress_interval` seconds (the latest value is flushed after the interval),
      so it is cheap to call per chunk.
    - `await save_checkpoint(data)`: commit resumable state (JSON) now, together with the
      current progress; after a crash the next run gets exactly this.
    - `result`: set it to describe partial work; it is kept if the task fails or is
      cancelled (a successful handler's return value replaces it).
    - `cancel_requested`: an Event set when CancelTask is called, just before the
      handler is cancelled (for handlers that want to stop at a clean point themselves).
    """

    def __init__(
        self, runner: TaskRunner, task: TaskRecord, checkpoint: Json | None, resumed: bool
    ) -> None:
        self.task = task
        self.checkpoint = checkpoint
        self.resumed = resumed
        self.result: Json | None = None
        self.cancel_requested = asyncio.Event()
        self._runner = runner
        self._interval = runner.settings.progress_interval
        # A resumed run starts from the stored figures; the handler may overwrite them.
        self._progress = replace(task.progress, bytes_per_second=0.0)
        self._persisted_at = 0.0
        self._rate_sample = (time.monotonic(), self._progress.bytes_done)
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def current_progress(self) -> Progress:
        return self._progress

    async def progress(
        self,
        *,
        bytes_done: int | None = None,
        bytes_total: int | None = None,
        files_done: int | None = None,
        files_total: int | None = None,
        message: str | None = None,
    ) -> None:
        """Update the given fields (None leaves a field as it is)."""
        p = self._progress
        self._progress = Progress(
            bytes_done=p.bytes_done if bytes_done is None else bytes_done,
            bytes_total=p.bytes_total if bytes_total is None else bytes_total,
            files_done=p.files_done if files_done is None else files_done,
            files_total=p.files_total if files_total is None else files_total,
            message=p.message if message is None else message,
            bytes_per_second=p.bytes_per_second,
        )
        wait = self._persisted_at + self._interval - time.monotonic()
        if wait <= 0:
            await self._persist()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_after(wait))

    async def save_checkpoint(self, data: Json) -> None:
        """Commit `data` as the task's resumable state, now."""
        async with self._lock:
            self._progress = self._with_rate(self._progress)
            record = await asyncio.to_thread(
                self._runner.store.save_checkpoint, self.task.id, data, self._progress
            )
            self._persisted_at = time.monotonic()
        self.checkpoint = data
        if record is not None:
            self._runner._publish(record)

    def _with_rate(self, p: Progress) -> Progress:
        """Progress with bytes_per_second measured since the previous commit (smoothed)."""
        now = time.monotonic()
        then, bytes_then = self._rate_sample
        if now - then < 0.05:
            return p
        rate = max(0.0, (p.bytes_done - bytes_then) / (now - then))
        self._rate_sample = (now, p.bytes_done)
        smoothed = rate if p.bytes_per_second == 0 else 0.5 * rate + 0.5 * p.bytes_per_second
        return replace(p, bytes_per_second=smoothed)

    async def _persist(self) -> None:
        async with self._lock:
            self._progress = self._with_rate(self._progress)
            record = await asyncio.to_thread(
                self._runner.store.update_progress, self.task.id, self._progress
            )
            self._persisted_at = time.monotonic()
        if record is not None:
            self._runner._publish(record)

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._persist()

    async def _close(self) -> None:
        """Stop the deferred flush; the runner writes the final progress itself."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher


@dataclass
class _Entry:
    """A task this runner is responsible for: queued, then running."""

    record: TaskRecord
    spec: KindSpec
    task: asyncio.Task[None] | None = None
    ctx: TaskContext | None = None
    cancel_requested: bool = False
    handler_done: bool = False
    # Set once the store says RUNNING (or that the task already ended): until then a
    # cancel waits, so it never answers while the record still reads PENDING.
    started: asyncio.Event = field(default_factory=asyncio.Event)


class TaskRunner:
    """Owns every change to tasks after creation, so each one is published to watchers."""

    def __init__(self, store: TaskStore, settings: TasksConfig) -> None:
        self.store = store
        self.settings = settings
        self.feed = TaskFeed()
        self._kinds: dict[str, KindSpec] = {}
        self._queue: dict[str, _Entry] = {}  # insertion order = FIFO
        self._running: dict[str, _Entry] = {}
        self._per_user: collections.Counter[str] = collections.Counter()
        self._per_system: collections.Counter[str] = collections.Counter()
        self._started = False
        self._stopping = False
        self._purger: asyncio.Task[None] | None = None

    # -- kinds --------------------------------------------------------------------------

    def register(self, kind: str, handler: Handler, *, resumable: bool = False) -> None:
        """Make tasks of `kind` runnable. `resumable`: the handler can continue from a
        checkpoint after a restart (it is then called with `ctx.resumed` and
        `ctx.checkpoint`); otherwise an interrupted task of this kind ends FAILED."""
        if kind in self._kinds:
            raise ValueError(f"task kind {kind!r} is already registered")
        self._kinds[kind] = KindSpec(handler, resumable)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def pending_count(self) -> int:
        return len(self._queue)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what the previous server left unfinished, then start running tasks."""
        recovered = 0
        for record in await asyncio.to_thread(self.store.unfinished):
            recovered += await self._recover(record)
        self._started = True
        self._purger = asyncio.create_task(self._purge_forever(), name="tasks-purge")
        self._dispatch()
        if recovered:
            log.info("tasks recovered", extra={"fields": {"requeued": recovered}})

    async def _recover(self, record: TaskRecord) -> int:
        """One unfinished task found at start-up; returns 1 if it was queued again."""
        spec = self._kinds.get(record.kind)
        how = "the server stopped while the task was running"
        if record.cancel_requested:
            await self._end(record.id, TaskState.CANCELLED, None, record.progress)
            return 0
        if spec is None:
            error = TaskError(
                Code.FAILED_PRECONDITION,
                f"this server cannot run tasks of kind {record.kind!r} (no handler); "
                "start the task again on a server that supports it",
            )
            await self._end(record.id, TaskState.FAILED, None, record.progress, error)
            return 0
        if record.state == TaskState.RUNNING and not spec.resumable:
            error = TaskError(
                Code.ABORTED,
                f"{how}; tasks of kind {record.kind!r} cannot be resumed: start it again",
            )
            await self._end(record.id, TaskState.FAILED, None, record.progress, error)
            return 0
        if record.attempts >= self.settings.max_attempts:
            error = TaskError(
                Code.ABORTED,
                f"{how}, {record.attempts} times; giving up so that it cannot keep the server "
                "from working: check the server log, then start the task again",
            )
            await self._end(record.id, TaskState.FAILED, None, record.progress, error)
            return 0
        if record.state == TaskState.RUNNING:
            requeued = await asyncio.to_thread(self.store.requeue, record.id)
            if requeued is None:
                return 0
            record = requeued
            self._publish(record)
        self._queue[record.id] = _Entry(record, spec)
        return 1

    async def stop(self) -> None:
        """Interrupt running tasks; resumable ones stay resumable (see module doc)."""
        self._stopping = True
        if self._purger is not None:
            self._purger.cancel()
        tasks = [e.task for e in self._running.values() if e.task is not None]
        for entry in self._running.values():
            if entry.task is not None and not entry.handler_done:
                entry.task.cancel()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.stop_timeout)
            if late:  # still cleaning up: left RUNNING, start-up will treat it as a crash
                log.warning("%d tasks did not stop within tasks.stop_timeout", len(late))
        if self._purger is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger

    async def _purge_forever(self) -> None:
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention)
            try:
                purged = await asyncio.to_thread(
                    self.store.purge,
                    cutoff,
                    requests_since=datetime.now(UTC) - timedelta(seconds=REQUEST_ID_TTL),
                )
                if purged:
                    log.info("tasks purged", extra={"fields": {"count": purged}})
            except Exception:
                log.exception("purging old tasks failed")
            await asyncio.sleep(PURGE_INTERVAL)

    # -- creating, reading, cancelling --------------------------------------------------

    async def submit(
        self,
        *,
        user: str,
        kind: str,
        request: Json,
        system: str = "",
        description: str = "",
        request_id: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Create a PENDING task and queue it; (task, created). With a `request_id` the
        user already used: (the first task, False), or RequestIdConflict if the request
        differs. TooManyTasks past `tasks.max_unfinished_per_user`."""
        spec = self._kinds.get(kind)
        if spec is None:
            raise ValueError(f"no handler registered for task kind {kind!r}")
        new = NewTask(
            user=user,
            kind=kind,
            system=system,
            request=request,
            description=description,
            request_id=request_id,
            request_hash=request_hash(kind, system, request),
            labels=dict(labels or {}),
        )
        record, created = await asyncio.to_thread(
            self.store.create,
            new,
            max_unfinished_per_user=self.settings.max_unfinished_per_user,
            request_id_ttl=REQUEST_ID_TTL,
        )
        if created:
            self._queue[record.id] = _Entry(record, spec)
            self._dispatch()
            log.info("task created", extra={"fields": _fields(record)})
        return record, created

    async def find_request(
        self, *, user: str, kind: str, request: Json, system: str = "", request_id: str
    ) -> TaskRecord | None:
        """The task `user` already created with `request_id` (within REQUEST_ID_TTL),
        whatever its state, if it was for the same request; None if the id is unused;
        RequestIdConflict if it was used for a different request."""
        return await asyncio.to_thread(
            self.store.find_request,
            user,
            request_id,
            request_hash(kind, system, request),
            request_id_ttl=REQUEST_ID_TTL,
        )

    async def get(self, task_id: str, user: str) -> TaskRecord | None:
        """The task, or None if it does not exist or belongs to someone else."""
        record = await asyncio.to_thread(self.store.get, task_id)
        return record if record is not None and record.user == user else None

    async def list_tasks(
        self, user: str, query: TaskQuery, offset: int, limit: int
    ) -> list[TaskRecord]:
        return await asyncio.to_thread(self.store.list_tasks, user, query, offset, limit)

    async def cancel(self, task_id: str, user: str) -> TaskRecord | None:
        """Ask a task of `user` to stop; None if not found. An ended task is returned as
        it is. A queued task ends CANCELLED at once; a running one soon after."""
        record = await self.get(task_id, user)
        if record is None or record.state.ended:
            return record
        if (queued := self._queue.get(task_id)) is not None:
            queued.cancel_requested = True  # from now on _dispatch passes it by
        record = await asyncio.to_thread(self.store.request_cancel, task_id) or record
        self._publish(record)
        if (queued := self._queue.pop(task_id, None)) is not None:
            ended = await self._end(task_id, TaskState.CANCELLED, None, queued.record.progress)
            self._dispatch()
            return ended or record
        if (running := self._running.get(task_id)) is not None:
            running.cancel_requested = True
            await running.started.wait()  # the handler then sees the request itself
            if running.ctx is not None:
                running.ctx.cancel_requested.set()
            if running.task is not None and not running.handler_done:
                running.task.cancel()
        return record

    def watch(self, task_id: str) -> TaskWatch:
        """Subscribe to a task's changes (use as a context manager)."""
        return self.feed.subscribe(task_id)

    # -- running ------------------------------------------------------------------------

    def _publish(self, record: TaskRecord) -> None:
        self.feed.publish(record)

    def _dispatch(self) -> None:
        """Start queued tasks, oldest first, as far as the concurrency limits allow."""
        if not self._started or self._stopping:
            return
        for task_id, entry in list(self._queue.items()):
            if entry.cancel_requested:  # cancel() is ending it
                continue
            user, system = entry.record.user, entry.record.system
            if self._per_user[user] >= self.settings.max_running_per_user:
                continue
            if self._per_system[system] >= self.settings.max_running_per_system:
                continue
            del self._queue[task_id]
            self._per_user[user] += 1
            self._per_system[system] += 1
            self._running[task_id] = entry
            entry.task = asyncio.create_task(self._run(entry), name=f"task-{task_id}")

    async def _run(self, entry: _Entry) -> None:
        task_id = entry.record.id
        try:
            await self._run_handler(entry)
        except Exception:  # a bug in the runner itself: never leave the slot taken
            log.exception("task %s: runner error", task_id)
        finally:
            self._running.pop(task_id, None)
            self._per_user[entry.record.user] -= 1
            self._per_system[entry.record.system] -= 1
            self._dispatch()

    async def _run_handler(self, entry: _Entry) -> None:
        task_id = entry.record.id
        ctx: TaskContext | None = None
        result: Json | None = None
        failure: BaseException | None = None
        try:
            try:
                record = await asyncio.to_thread(self.store.mark_running, task_id)
            finally:
                entry.started.set()
            if record is None:  # ended (e.g. cancelled) while queued
                return
            self._publish(record)
            log.info("task started", extra={"fields": _fields(record)})
            resumed = record.attempts > 1
            checkpoint = None
            if resumed:
                checkpoint = await asyncio.to_thread(self.store.load_checkpoint, task_id)
            ctx = entry.ctx = TaskContext(self, record, checkpoint, resumed)
            if entry.cancel_requested or record.cancel_requested:
                raise asyncio.CancelledError
            result = await entry.spec.handler(ctx)
        except (asyncio.CancelledError, Exception) as e:
            failure = e
        finally:
            entry.handler_done = True
            if ctx is not None:
                await ctx._close()
        progress = ctx.current_progress if ctx is not None else None
        partial = ctx.result if ctx is not None else None
        if failure is None:
            await self._end(task_id, TaskState.SUCCEEDED, result, progress)
        elif entry.cancel_requested:
            await self._end(task_id, TaskState.CANCELLED, partial, progress)
        elif self._stopping and not isinstance(failure, TaskFailed):
            await self._interrupted(entry, progress)
        elif isinstance(failure, TaskFailed):
            await self._end(task_id, TaskState.FAILED, failure.result or partial, progress,
                            failure.error)  # fmt: skip
        elif isinstance(failure, asyncio.CancelledError):
            await self._end(task_id, TaskState.CANCELLED, partial, progress)
        else:
            reference = uuid.uuid4().hex[:12]
            log.error("task %s failed (reference %s)", task_id, reference, exc_info=failure)
            error = TaskError(
                Code.INTERNAL,
                f"internal error (reference {reference}); report it to the operators",
            )
            await self._end(task_id, TaskState.FAILED, partial, progress, error)

    async def _interrupted(self, entry: _Entry, progress: Progress | None) -> None:
        """The server is stopping: keep resumable work for the next start."""
        record = entry.record
        if entry.spec.resumable:
            requeued = await asyncio.shield(
                asyncio.to_thread(self.store.requeue, record.id, progress)
            )
            if requeued is not None:
                self._publish(requeued)
            return
        error = TaskError(
            Code.ABORTED,
            f"the server was stopped while the task was running; tasks of kind "
            f"{record.kind!r} cannot be resumed: start it again",
        )
        await self._end(record.id, TaskState.FAILED, None, progress, error)

    async def _end(
        self,
        task_id: str,
        state: TaskState,
        result: Json | None,
        progress: Progress | None,
        error: TaskError | None = None,
    ) -> TaskRecord | None:
        """Commit an end state (shielded: a second cancellation cannot lose it)."""
        write = asyncio.to_thread(
            self.store.finish, task_id, state, progress=progress, result=result, error=error
        )
        record = await asyncio.shield(write)
        if record is not None:
            self._publish(record)
            log.info("task ended", extra={"fields": _fields(record)})
        return record


def _fields(record: TaskRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "task": record.id,
        "kind": record.kind,
        "user": record.user,
        "state": record.state.value,
    }
    if record.system:
        fields["system"] = record.system
    if record.error is not None:
        fields["error"] = record.error.message
    return fields
