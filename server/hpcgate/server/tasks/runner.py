"""Runs durable tasks: a registry of kinds, bounded concurrency, cancellation, recovery.

A kind plugs in with `runner.register(kind, handler, resumable=...)`. The handler is an
async function of a `TaskContext`; it returns the task's result (JSON), raises
`TaskFailed` to fail it, and cleans up in `finally` blocks: cancellation is delivered as
`asyncio.CancelledError` at the handler's next `await`.

Lifecycle: PENDING (queued; waits while the user has `max_running_per_user` or the
system `max_running_per_system` tasks running) -> RUNNING -> SUCCEEDED, FAILED or
CANCELLED. Every change is committed to the store first, then published to watchers.

Leases. Starting a task claims it in the store under a lease: this runner's replica id
(`owner`), a new token, and an expiry (`tasks.lease_seconds`). The runner's writes to
the task are fenced by the token (tasks/store.py): once another runner has taken the
task over, they change nothing, and the handler is cancelled without a further write.

Restarts. A graceful stop interrupts running tasks: those of resumable kinds go back to
PENDING (checkpoint kept) and continue at the next start (or on another replica); the
others end FAILED with the reason. A task left RUNNING by a crash is taken up again:
resumable ones are requeued and their handler gets the last checkpoint; the others end
FAILED. A task started `max_attempts` times ends FAILED, so none stays RUNNING forever
(nor loops).

One store, one server or many. On SQLite (`store.shared` False) one server owns the
state directory: tasks created here are queued in memory, and every task found RUNNING
at start-up is the previous run's, recovered at once. On PostgreSQL several replicas
share the tasks, and each runs loops of its own:
- the lease keeper renews the leases of the tasks running here every
  min(1 s, lease/3); a task it finds cancelled (CancelTask on any replica) is cancelled
  here within about a second, and a lease it finds lost stops the handler silently;
- the claimer takes PENDING tasks from the shared queue (FOR UPDATE SKIP LOCKED),
  oldest first, within this replica's per-user and per-system limits: at once when a
  task is created or ends here, else every CLAIM_INTERVAL seconds;
- the reaper (at start-up, then every lease/3) takes over tasks whose lease expired (a
  replica died or froze) and requeues or ends them as above; a RUNNING task under a
  live lease is another replica's and is left alone;
- the follower re-reads, every FOLLOW_INTERVAL seconds, the tasks watched here that
  run elsewhere, and publishes their changes, so WatchTask works on any replica.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hpcgate.server.config import TasksConfig
from hpcgate.server.errors import Code
from hpcgate.server.metrics import Metrics
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
# Seconds between two cancellations of a handler that has not stopped yet (_stop_handler).
RECANCEL_INTERVAL = 0.5

Handler = Callable[["TaskContext"], Awaitable[Json | None]]
# Request ids are remembered this long (StartTransfer: "within 24 hours").
REQUEST_ID_TTL = 86400.0
PURGE_INTERVAL = 3600.0
# Shared store: seconds between looks for tasks queued by other replicas, and between
# re-reads of watched tasks that run elsewhere.
CLAIM_INTERVAL = 0.5
FOLLOW_INTERVAL = 0.5


def default_owner() -> str:
    """This process's replica id in task leases: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
      continues one interrupted by a server stop or crash (possibly on another replica);
      False / None on a first run.
    - `await progress(...)`: report progress. Committed and published at most every
      `tasks.progress_interval` seconds (the latest value is flushed after the interval),
      so it is cheap to call per chunk.
    - `await save_checkpoint(data)`: commit resumable state (JSON) now, together with the
      current progress; after a crash the next run gets exactly this. Once another
      runner has taken the task over, writes are refused and the handler is cancelled.
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
                self._runner.store.save_checkpoint,
                self.task.id,
                self.task.lease_token,
                data,
                self._progress,
            )
            self._persisted_at = time.monotonic()
        self.checkpoint = data
        self._runner._written(self.task, record)

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
                self._runner.store.update_progress,
                self.task.id,
                self.task.lease_token,
                self._progress,
            )
            self._persisted_at = time.monotonic()
        self._runner._written(self.task, record)

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
    """A task this runner is responsible for: queued (SQLite only), then running."""

    record: TaskRecord
    spec: KindSpec
    task: asyncio.Task[None] | None = None
    ctx: TaskContext | None = None
    token: int | None = None  # the lease token, once claimed
    cancel_requested: bool = False
    lost: bool = False  # another runner took the task over: write nothing more
    handler_done: bool = False
    # Set once the store says RUNNING (or that the task already ended): until then a
    # cancel waits, so it never answers while the record still reads PENDING.
    started: asyncio.Event = field(default_factory=asyncio.Event)
    stopper: asyncio.Task[None] | None = None  # see _stop_handler


class TaskRunner:
    """Owns every change to tasks after creation, so each one is published to watchers.

    `owner` names this replica in task leases (default: host name and process id); two
    runners sharing a store must have different owners."""

    def __init__(
        self,
        store: TaskStore,
        settings: TasksConfig,
        owner: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner or default_owner()
        self.metrics = metrics or Metrics.unexposed()
        self.metrics.track_tasks(lambda: self.pending_count, lambda: self.running_count)
        self.feed = TaskFeed()
        self._kinds: dict[str, KindSpec] = {}
        self._queue: dict[str, _Entry] = {}  # insertion order = FIFO (SQLite only)
        self._running: dict[str, _Entry] = {}
        self._per_user: collections.Counter[str] = collections.Counter()
        self._per_system: collections.Counter[str] = collections.Counter()
        self._started = False
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._claimer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # shared store: look for tasks to claim now
        # Shared store: the last revision published of each watched task, so that the
        # follower publishes only what is new.
        self._revisions: dict[str, int] = {}

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
        """Tasks queued in this process (SQLite; a shared store's queue is the database)."""
        return len(self._queue)

    @property
    def lease(self) -> float:
        """Seconds a claim on a task lasts unless renewed (tasks.lease_seconds)."""
        return self.settings.lease_seconds

    @property
    def renew_interval(self) -> float:
        """Leases are renewed well within their length, and at least every second, so
        that a cancel asked on another replica is acted on within about a second."""
        return min(1.0, self.lease / 3)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Take up what was left unfinished (see the module doc), then run tasks."""
        if self.store.shared:
            await self._reap()
        else:
            await self._recover_all()
        self._started = True
        self._spawn("purging old tasks", PURGE_INTERVAL, self._purge)
        if self.store.shared:
            self._spawn("renewing task leases", self.renew_interval, self._renew)
            self._spawn("reaping expired task leases", self.lease / 3, self._reap)
            self._spawn("following watched tasks", FOLLOW_INTERVAL, self._follow)
            self._claimer = asyncio.create_task(self._claim_forever(), name="tasks-claim")
        self._dispatch()

    async def _recover_all(self) -> None:
        """SQLite: every unfinished task is the previous run's; queue or end each."""
        recovered = 0
        for record in await asyncio.to_thread(self.store.unfinished):
            recovered += await self._recover(record)
        if recovered:
            log.info("tasks recovered", extra={"fields": {"requeued": recovered}})

    async def _recover(self, record: TaskRecord) -> int:
        """One unfinished task found at start-up; returns 1 if it was queued again."""
        verdict = self._verdict(record, "the server stopped while the task was running")
        if verdict is not None:
            state, error = verdict
            await self._end(record.id, state, None, record.progress, error, token=_held(record))
            return 0
        if record.state == TaskState.RUNNING:
            requeued = await asyncio.to_thread(self.store.requeue, record.id, record.lease_token)
            if requeued is None:
                return 0
            record = requeued
            self._publish(record)
        self._queue[record.id] = _Entry(record, self._kinds[record.kind])
        return 1

    def _verdict(self, record: TaskRecord, how: str) -> tuple[TaskState, TaskError | None] | None:
        """How an unfinished task that its runner left behind ends (`how` it was left),
        or None if it is to run (again)."""
        spec = self._kinds.get(record.kind)
        if record.cancel_requested:
            return TaskState.CANCELLED, None
        if spec is None:
            return TaskState.FAILED, TaskError(
                Code.FAILED_PRECONDITION,
                f"this server cannot run tasks of kind {record.kind!r} (no handler); "
                "start the task again on a server that supports it",
            )
        if record.state == TaskState.RUNNING and not spec.resumable:
            return TaskState.FAILED, TaskError(
                Code.ABORTED,
                f"{how}; tasks of kind {record.kind!r} cannot be resumed: start it again",
            )
        if record.attempts >= self.settings.max_attempts:
            return TaskState.FAILED, TaskError(
                Code.ABORTED,
                f"{how}, {record.attempts} times; giving up so that it cannot keep the server "
                "from working: check the server log, then start the task again",
            )
        return None

    async def stop(self) -> None:
        """Interrupt running tasks; resumable ones stay resumable (see module doc)."""
        self._stopping = True
        self._wake.set()
        if self._claimer is not None:
            await self._claimer  # returns once the claim in flight (if any) is settled
        tasks = [e.task for e in self._running.values() if e.task is not None]
        for entry in self._running.values():
            _stop_handler(entry)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.stop_timeout)
            if late:  # left RUNNING: a crash for the next start-up, or another replica
                log.warning("%d tasks did not stop within tasks.stop_timeout", len(late))
        # The lease keeper stops last: leases stay renewed while handlers clean up.
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    def _spawn(self, what: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` now and then every `interval` seconds until stop()."""
        name = "tasks: " + what
        self._loops.append(asyncio.create_task(_repeat(what, interval, step), name=name))

    async def _purge(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention)
        purged = await asyncio.to_thread(
            self.store.purge,
            cutoff,
            requests_since=datetime.now(UTC) - timedelta(seconds=REQUEST_ID_TTL),
        )
        if purged:
            log.info("tasks purged", extra={"fields": {"count": purged}})

    # -- leases (shared store) ----------------------------------------------------------

    async def _renew(self) -> None:
        """Renew the leases of the tasks running here; stop those lost or cancelled."""
        tokens = {i: e.token for i, e in self._running.items() if e.token is not None}
        if not tokens:
            return
        held = await asyncio.to_thread(self.store.renew, self.owner, tokens, self.lease)
        for task_id, token in tokens.items():
            entry = self._running.get(task_id)
            if entry is None or entry.token != token:
                continue
            if task_id not in held:
                self._lose(entry)
            elif held[task_id] and not entry.cancel_requested:  # CancelTask elsewhere
                self._interrupt(entry)

    def _lose(self, entry: _Entry) -> None:
        """Another runner has taken the task over (this one's lease lapsed): stop the
        handler and write nothing more, since the task is theirs now."""
        if entry.lost or entry.handler_done:
            return  # a final write in flight is fenced: refused if the lease is gone
        entry.lost = True
        log.warning("task lease lost: stopped here", extra={"fields": _fields(entry.record)})
        _stop_handler(entry)

    def _written(self, task: TaskRecord, record: TaskRecord | None) -> None:
        """After a handler's fenced write: publish it; refused, the lease is lost."""
        if record is not None:
            self._publish(record)
            return
        entry = self._running.get(task.id)
        if entry is not None and entry.token == task.lease_token:
            self._lose(entry)

    async def _reap(self) -> None:
        """Take over tasks whose lease expired (their replica died or froze), and
        requeue or end them as start-up recovery does."""
        for record in await asyncio.to_thread(self.store.reap, self.owner, self.lease):
            how = "the server running the task stopped responding (its lease expired)"
            verdict = self._verdict(record, how)
            if verdict is not None:
                state, error = verdict
                await self._end(record.id, state, None, record.progress, error,
                                token=record.lease_token)  # fmt: skip
                continue
            requeued = await asyncio.to_thread(self.store.requeue, record.id, record.lease_token)
            if requeued is not None:
                self._publish(requeued)
                log.info("task requeued: its lease expired", extra={"fields": _fields(requeued)})
                self._dispatch()

    async def _claim_forever(self) -> None:
        """Claim tasks when woken (a task was created or ended here) or every
        CLAIM_INTERVAL seconds (tasks created on other replicas), until stop()."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self._claim()
            except Exception:
                log.exception("tasks: claiming tasks failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CLAIM_INTERVAL)

    async def _claim(self) -> None:
        """Claim PENDING tasks one at a time, oldest first, while this replica's limits
        allow: each one claimed may fill its user's or its system's share."""
        while not self._stopping:
            claimed = await asyncio.to_thread(
                self.store.claim_next,
                self.owner,
                self.lease,
                1,
                kinds=tuple(self._kinds),
                skip_users=_full(self._per_user, self.settings.max_running_per_user),
                skip_systems=_full(self._per_system, self.settings.max_running_per_system),
            )
            if not claimed:
                return
            for record in claimed:
                await self._start_claimed(record)

    async def _start_claimed(self, record: TaskRecord) -> None:
        """Run a task the claimer took, or give it back if the server began to stop."""
        if self._stopping:
            requeued = await asyncio.to_thread(self.store.requeue, record.id, record.lease_token)
            if requeued is not None:
                self._publish(requeued)
            return
        self._publish(record)
        log.info("task started", extra={"fields": _fields(record)})
        entry = _Entry(record, self._kinds[record.kind], token=record.lease_token)
        entry.started.set()
        self._launch(entry)

    async def _follow(self) -> None:
        """Publish the changes other replicas made to tasks watched here."""
        watched = self.feed.task_ids()
        self._revisions = {i: self._revisions.get(i, 0) for i in watched}
        elsewhere = [i for i in watched if i not in self._running]
        if elsewhere:
            for record in await asyncio.to_thread(self.store.get_many, elsewhere):
                self._publish(record)

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
            if not self.store.shared:
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
        it is. A PENDING task ends CANCELLED at once; a running one soon after: here by
        cancelling its handler, on another replica when its lease keeper sees the
        request (within about a second)."""
        record = await self.get(task_id, user)
        if record is None or record.state.ended:
            return record
        self._queue.pop(task_id, None)  # queued here: it will not start
        if (starting := self._running.get(task_id)) is not None:
            starting.cancel_requested = True  # checked once its claim returns
        record = await asyncio.to_thread(self.store.request_cancel, task_id) or record
        self._publish(record)
        if record.state == TaskState.PENDING:  # claimed by no runner: end it here
            ended = await self._end(task_id, TaskState.CANCELLED, None, record.progress,
                                    token=None)  # fmt: skip
            if ended is not None:
                return ended
        if (running := self._running.get(task_id)) is not None:
            await running.started.wait()  # the handler then sees the request itself
            self._interrupt(running)
        return record

    def watch(self, task_id: str) -> TaskWatch:
        """Subscribe to a task's changes (use as a context manager)."""
        if self.store.shared:
            self._revisions.setdefault(task_id, 0)
        return self.feed.subscribe(task_id)

    # -- running ------------------------------------------------------------------------

    def _publish(self, record: TaskRecord) -> None:
        """Offer a committed record to its watchers, unless a newer one was published
        (the follower and the local writes can race)."""
        last = self._revisions.get(record.id)
        if last is not None:
            if record.revision <= last:
                return
            self._revisions[record.id] = record.revision
        self.feed.publish(record)

    def _dispatch(self) -> None:
        """Start queued tasks, oldest first, as far as the concurrency limits allow. On a
        shared store the queue is the database: wake the claimer instead."""
        if not self._started or self._stopping:
            return
        if self.store.shared:
            self._wake.set()
            return
        for task_id, entry in list(self._queue.items()):
            user, system = entry.record.user, entry.record.system
            if self._per_user[user] >= self.settings.max_running_per_user:
                continue
            if self._per_system[system] >= self.settings.max_running_per_system:
                continue
            del self._queue[task_id]
            self._launch(entry)

    def _launch(self, entry: _Entry) -> None:
        """Count the task against its user's and system's limits and run it."""
        task_id = entry.record.id
        self._per_user[entry.record.user] += 1
        self._per_system[entry.record.system] += 1
        self._running[task_id] = entry
        entry.task = asyncio.create_task(self._run(entry), name=f"task-{task_id}")

    @staticmethod
    def _interrupt(entry: _Entry) -> None:
        """Cancel a running handler because its task was cancelled: it ends CANCELLED."""
        entry.cancel_requested = True
        if entry.ctx is not None:
            entry.ctx.cancel_requested.set()
        _stop_handler(entry)

    async def _run(self, entry: _Entry) -> None:
        task_id = entry.record.id
        try:
            outcome = await self._execute(entry)
            if outcome is not None and not entry.lost:  # else: nothing of ours to write
                await self._conclude(entry, *outcome)
        except Exception:  # a bug in the runner itself: never leave the slot taken
            log.exception("task %s: runner error", task_id)
        finally:
            if self._running.get(task_id) is entry:  # (a lost task may be claimed again)
                del self._running[task_id]
            self._per_user[entry.record.user] -= 1
            self._per_system[entry.record.system] -= 1
            self._dispatch()

    async def _execute(
        self, entry: _Entry
    ) -> tuple[TaskContext | None, Json | None, BaseException | None] | None:
        """Claim the task if it was queued here, then run its handler: (context, result,
        failure). None if the claim found the task no longer PENDING."""
        ctx: TaskContext | None = None
        try:
            if entry.token is None and not await self._mark_running(entry):
                return None  # ended (e.g. cancelled) while queued
            record = entry.record
            resumed = record.attempts > 1
            checkpoint = None
            if resumed:
                checkpoint = await asyncio.to_thread(self.store.load_checkpoint, record.id)
            ctx = entry.ctx = TaskContext(self, record, checkpoint, resumed)
            if entry.cancel_requested or record.cancel_requested:
                raise asyncio.CancelledError
            return ctx, await entry.spec.handler(ctx), None
        except (asyncio.CancelledError, Exception) as e:
            return ctx, None, e
        finally:
            entry.handler_done = True
            if ctx is not None:
                await ctx._close()

    async def _mark_running(self, entry: _Entry) -> bool:
        """Claim a task queued here (SQLite); False if it is no longer PENDING. (Should
        stop() cancel this wait, a claim that still commits leaves the task RUNNING for
        the next start-up to recover, as after a crash.)"""
        try:
            record = await asyncio.to_thread(
                self.store.mark_running, entry.record.id, self.owner, self.lease
            )
        finally:
            entry.started.set()
        if record is None:
            return False
        entry.record, entry.token = record, record.lease_token
        self._publish(record)
        log.info("task started", extra={"fields": _fields(record)})
        return True

    async def _conclude(
        self,
        entry: _Entry,
        ctx: TaskContext | None,
        result: Json | None,
        failure: BaseException | None,
    ) -> None:
        """Commit how the run ended, under this runner's lease."""
        task_id, token = entry.record.id, entry.token
        progress = ctx.current_progress if ctx is not None else None
        partial = ctx.result if ctx is not None else None
        if failure is None:
            await self._end(task_id, TaskState.SUCCEEDED, result, progress, token=token)
        elif entry.cancel_requested:
            await self._end(task_id, TaskState.CANCELLED, partial, progress, token=token)
        elif self._stopping and not isinstance(failure, TaskFailed):
            await self._interrupted(entry, progress)
        elif isinstance(failure, TaskFailed):
            await self._end(task_id, TaskState.FAILED, failure.result or partial, progress,
                            failure.error, token=token)  # fmt: skip
        elif isinstance(failure, asyncio.CancelledError):
            await self._end(task_id, TaskState.CANCELLED, partial, progress, token=token)
        else:
            reference = uuid.uuid4().hex[:12]
            log.error("task %s failed (reference %s)", task_id, reference, exc_info=failure)
            error = TaskError(
                Code.INTERNAL,
                f"internal error (reference {reference}); report it to the operators",
            )
            await self._end(task_id, TaskState.FAILED, partial, progress, error, token=token)

    async def _interrupted(self, entry: _Entry, progress: Progress | None) -> None:
        """The server is stopping: keep resumable work, and tasks whose handler had not
        begun, for the next start or another replica."""
        record = entry.record
        if entry.token is None:  # the claim never returned (see _mark_running)
            return
        if entry.spec.resumable or entry.ctx is None:
            requeued = await asyncio.shield(
                asyncio.to_thread(self.store.requeue, record.id, entry.token, progress)
            )
            if requeued is not None:
                self._publish(requeued)
            return
        error = TaskError(
            Code.ABORTED,
            f"the server was stopped while the task was running; tasks of kind "
            f"{record.kind!r} cannot be resumed: start it again",
        )
        await self._end(record.id, TaskState.FAILED, None, progress, error, token=entry.token)

    async def _end(
        self,
        task_id: str,
        state: TaskState,
        result: Json | None,
        progress: Progress | None,
        error: TaskError | None = None,
        *,
        token: int | None,
    ) -> TaskRecord | None:
        """Commit an end state: of the task RUNNING under lease `token`, or PENDING if
        None. Shielded: a second cancellation cannot lose it."""
        write = asyncio.to_thread(
            self.store.finish,
            task_id,
            state,
            token=token,
            progress=progress,
            result=result,
            error=error,
        )
        record = await asyncio.shield(write)
        if record is not None:
            if record.start_time is not None and record.end_time is not None:
                seconds = (record.end_time - record.start_time).total_seconds()
                self.metrics.task_ended(record.kind, record.state.value, seconds)
            self._publish(record)
            log.info("task ended", extra={"fields": _fields(record)})
        elif token is not None:
            log.warning("task %s: not ended here: another server has taken it over", task_id)
        return record


def _stop_handler(entry: _Entry) -> None:
    """Cancel the handler, and again every RECANCEL_INTERVAL until it has ended: in
    Python 3.11 asyncio.wait_for loses a cancellation that lands just as the call it
    waits for completes (CPython gh-86296), and the handlers make thousands of such
    calls (privsep requests); a cancelled task must not run on to the end."""
    if entry.stopper is not None or entry.task is None or entry.handler_done:
        return

    async def keep_cancelling(task: asyncio.Task[None]) -> None:
        while not entry.handler_done and not task.done():
            task.cancel()
            await asyncio.sleep(RECANCEL_INTERVAL)

    entry.stopper = asyncio.get_running_loop().create_task(keep_cancelling(entry.task))


async def _repeat(what: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
    """`step` now and then every `interval` seconds until cancelled; a failed step (the
    database unreachable, say) is logged and tried again at the next interval."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("tasks: %s failed", what)
        await asyncio.sleep(interval)


def _held(record: TaskRecord) -> int | None:
    """The lease token that fences an end of `record`: None for a PENDING task."""
    return record.lease_token if record.state == TaskState.RUNNING else None


def _full(counts: collections.Counter[str], limit: int) -> list[str]:
    """The keys (users, systems) that have reached `limit` running tasks here."""
    return [key for key, count in counts.items() if count >= limit]


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
