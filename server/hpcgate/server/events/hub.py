"""One poller per system reads the whole queue, diffs it against its last snapshot and
publishes job events, each with a revision one higher than the last, into a bounded
history. Every WatchJobs stream, and GetJob/ListJobs where they can, read from here: ten
thousand watchers cost slurmctld what one does.

The interval adapts: `poll_floor` while someone watches or jobs changed at the last poll,
growing to `poll_ceiling` when idle. A controller outage leaves the snapshot as it was;
the first poll after it produces an event for every job that changed meanwhile, asking
accounting about jobs that left the queue while nobody could see them.

Slurm's hooks (slurm/hook.py, events/hook_listener.py) name jobs that just started or
ended: the hub reads those at once (`notified`), one targeted query for every job named
meanwhile, no more often than `hook_min_interval`, and re-reads a job caught in a
passing state (CONFIGURING while the prolog runs, COMPLETING while nodes clean up) a
few times until it settles. The poll stays the fallback and covers what hooks do not.

Cluster mode (a `journal`): only the elected replica polls (events/cluster.py); every
change goes through `_writing`, which commits the events to the shared journal before
anyone sees them, and the other replicas apply them (`catch_up`), so all hubs of a system
hold the same jobs under the same revisions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from hpcgate.server.config import WatchConfig
from hpcgate.server.events.finished import CachedJob, FinishedJobs, decode, encode
from hpcgate.server.events.journal import Journal, Poll, Snapshot, StreamState
from hpcgate.server.events.model import (
    CREATED,
    STATE_CHANGED,
    UPDATED,
    JobEvent,
    SchedulerNotice,
)
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm import SlurmAdapter, SlurmError, SlurmUnavailable
from hpcgate.server.slurm.adapter import JobRecord, merge_job
from hpcgate.server.slurm.parsing import job_matches
from hpcgate.server.state.job_archive import JobArchive

log = logging.getLogger(__name__)
# Accounting ids per sacct call, so that a busy poll never builds an oversized command line.
ACCOUNTING_BATCH = 500
# Polls after which a job accounting does not know is no longer asked about.
ACCOUNTING_ATTEMPTS = 30

# A job a hook named and found in one of these states is read again (after 20, 40, 80 ...
# ms, up to RECHECKS times) until it leaves it; the poll covers it after that.
PASSING_STATES = frozenset({"CONFIGURING", "COMPLETING"})
RECHECK_FIRST = 0.02
RECHECKS = 8
# A hook's call time older than this (or in the future) is not taken as the event time.
NOTICE_MAX_AGE = 60.0
# Jobs named by hooks and waiting for their read, at most: beyond, a full poll instead.
NOTICE_BACKLOG = 10_000

# Fields whose change is an UPDATED event (a state change is always an event).
_WATCHED_FIELDS = ("reason", "node_list", "start_time", "end_time", "exit_code", "signal",
                   "priority", "time_limit_seconds", "partition", "restart_count")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class JobView:
    """A job as the hub knows it: queue and accounting merged, with the revision and time
    of its last change (0 and None when the hub never saw it change)."""

    record: JobRecord
    revision: int = 0
    updated_at: datetime | None = None
    has_steps: bool = True  # False: accounting's steps were not read for this record


class SlowConsumer(Exception):
    """A subscriber's queue overflowed; its stream must end (it can resume by revision)."""


class Subscription:
    """A bounded queue of events for one stream; overflow ends the stream, never memory."""

    def __init__(self, hub: JobHub, matches: Callable[[JobRecord], bool], size: int) -> None:
        self.hub = hub
        self.matches = matches
        self.queue: asyncio.Queue[JobEvent | SchedulerNotice] = asyncio.Queue(size)
        self.overflowed = False

    def offer(self, item: JobEvent | SchedulerNotice) -> None:
        if self.overflowed:
            return
        if isinstance(item, JobEvent) and not self.matches(item.job):
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue = asyncio.Queue(1)  # drop the backlog now
            self.queue.put_nowait(item)  # wake the reader, which then sees `overflowed`

    async def next(self, timeout: float) -> JobEvent | SchedulerNotice | None:  # noqa: ASYNC109
        """The next item, None after `timeout` seconds; raises SlowConsumer after overflow."""
        if self.overflowed:
            raise SlowConsumer
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if self.overflowed:
            raise SlowConsumer
        return item

    def close(self) -> None:
        self.hub._subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobHub:
    """The shared job state of one system: the queue as last polled, accounting for the
    jobs that started or ended, and the final records of ended jobs."""

    def __init__(
        self,
        system_id: str,
        adapter: SlurmAdapter,
        settings: WatchConfig,
        archive: JobArchive | None = None,
        journal: Journal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.system_id = system_id
        self.metrics = metrics or Metrics.unexposed()
        self.adapter = adapter
        self.settings = settings
        self.archive = archive
        self.jobs: dict[str, JobRecord] = {}
        self._finished_at: dict[str, float] = {}  # monotonic time a job was seen finished
        self.revision = 0
        self.history: collections.deque[JobEvent] = collections.deque(maxlen=settings.history_size)
        self._subscriptions: set[Subscription] = set()
        self.scheduler_reachable = True
        self.scheduler_reason = ""
        self.scheduler_since = datetime.now(UTC)
        self.last_poll: float | None = None  # monotonic time of the last good poll
        self.polls = 0
        self._wake = asyncio.Event()
        self._first_poll = asyncio.Event()
        # Accounting's records (with steps) of jobs in `jobs`, and when they were read.
        self.accounting: dict[str, JobRecord] = {}
        self._accounted_at: dict[str, float] = {}
        self._due: set[str] = set()  # jobs whose queue record changed since accounting read
        self._misses: dict[str, int] = {}  # polls accounting did not know a job
        self._changed: dict[str, tuple[int, datetime]] = {}  # job -> revision, time
        self.finished = FinishedJobs(settings.finished_cache_size)
        self._backfilled = settings.backfill <= 0
        self._lookups: dict[str, asyncio.Future[JobView | None]] = {}
        self.accounting_calls = 0  # every sacct call: polls, backfill and reads
        # The ones a reader caused (lookup, fill_steps): settled jobs must cost none,
        # while the poller keeps reading accounting for the other jobs meanwhile.
        self.read_accounting_calls = 0
        # Jobs that left the queue unseen, for the next accounting read; and the signal
        # that one is wanted (the poller never waits for slurmdbd: see `run`).
        self._vanished: set[str] = set()
        self._accounting_wanted = asyncio.Event()
        # Cluster mode: the shared event log (events/journal.py). Changes are written
        # there before anyone sees them; `_outbox` holds them until the commit.
        self.journal = journal
        self.leading = journal is None  # whether this replica polls Slurm for the system
        self._write_lock = asyncio.Lock()
        self._outbox: list[JobEvent] | None = None
        self._removed: list[str] | None = None
        self._follow_wake = asyncio.Event()
        self._archive_mark = 0  # the newest `stored` of finished_jobs taken in (followers)
        # Hooks: jobs to read at once, jobs to read again (due time, attempts), the hook's
        # call time per job (the time of the events it leads to), and whether `run` reads.
        self._noticed: set[str] = set()
        self._rechecks: dict[str, tuple[float, int]] = {}
        self._told: dict[str, float] = {}
        self._notice_wanted = asyncio.Event()
        self._reading_notices = False
        self.notice_reads = 0
        # The monotonic start of the read that last recorded each job: a slower read that
        # began earlier (a full poll beside a targeted one) must not take it back.
        self._read_started: dict[str, float] = {}

    # -- reading ------------------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def fresh(self) -> bool:
        """Whether the snapshot is recent enough to answer reads instead of Slurm."""
        return (
            self.last_poll is not None
            and self.scheduler_reachable
            and time.monotonic() - self.last_poll < 2 * self.settings.poll_ceiling
        )

    async def wait_first_poll(self) -> None:
        await self._first_poll.wait()

    def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    def select(self, matches: Callable[[JobRecord], bool]) -> list[JobRecord]:
        return [job for job in self.jobs.values() if matches(job)]

    def changed(self, job_id: str) -> tuple[int, datetime | None]:
        """The revision and time of the job's last event (0, None if it had none here)."""
        if job_id in self._changed:
            return self._changed[job_id]
        cached = self.finished.get(job_id)
        return (0, None) if cached is None else (cached.revision, cached.updated_at)

    def _live(self, wanted: str) -> JobRecord | None:
        if wanted.isdigit():
            return self.jobs.get(wanted)
        return next((j for j in self.jobs.values() if job_matches(j, wanted)), None)

    def _live_view(self, job: JobRecord) -> JobView:
        accounting = self.accounting.get(job.job_id)
        merged = job if accounting is None or accounting is job else merge_job(job, accounting)
        revision, at = self.changed(job.job_id)
        pending = job.state == "PENDING" and not job.restart_count
        return JobView(merged, revision, at, accounting is not None or pending)

    def view(self, wanted: str) -> JobView | None:
        """What the hub knows of the job `wanted` names (`123` or `123_4`), or None."""
        entry = self.finished.find(wanted)
        if entry is not None:
            return JobView(entry.record, entry.revision, entry.updated_at, entry.has_steps)
        job = self._live(wanted)
        return None if job is None else self._live_view(job)

    def views(self, users: Sequence[str] | None) -> list[JobView]:
        """Every job of `users` (None: everyone) the hub holds, live or ended."""
        wanted = None if users is None else set(users)
        found = {
            e.record.job_id: JobView(e.record, e.revision, e.updated_at, e.has_steps)
            for e in self.finished.of_users(users)
        }
        for job in self.jobs.values():
            if job.job_id not in found and (wanted is None or job.user in wanted):
                found[job.job_id] = self._live_view(job)
        return list(found.values())

    def knows_window(self, start: datetime) -> bool:
        """Whether every job submitted since `start` is in memory (see `views`)."""
        since = self.finished.complete_since
        return self.fresh and since is not None and start >= since

    def oldest_revision(self) -> int:
        """The lowest revision still in the history (revision+1 when it is empty)."""
        return self.history[0].revision if self.history else self.revision + 1

    def events_since(self, revision: int) -> list[JobEvent] | None:
        """Events after `revision`, or None if some have already left the history."""
        if revision > self.revision:
            return None
        if revision + 1 < self.oldest_revision():
            return None
        return [e for e in self.history if e.revision > revision]

    def subscribe(self, matches: Callable[[JobRecord], bool]) -> Subscription:
        subscription = Subscription(self, matches, self.settings.stream_queue_size)
        self._subscriptions.add(subscription)
        self._wake.set()  # a new watcher: poll at the fast rate from now on
        return subscription

    # -- accounting on demand -----------------------------------------------------------

    async def lookup(self, wanted: str) -> JobView | None:
        """Accounting's record of `wanted`, merged with the queue's; one sacct call shared
        by every concurrent caller asking for the same job, kept when the job has ended.
        Raises SlurmError as accounting_jobs does."""
        running = self._lookups.get(wanted)
        if running is None:
            running = asyncio.ensure_future(self._lookup(wanted))
            self._lookups[wanted] = running
            running.add_done_callback(lambda _: self._lookups.pop(wanted, None))
        return await asyncio.shield(running)

    async def _lookup(self, wanted: str) -> JobView | None:
        live = self._live(wanted)
        self.accounting_calls += 1
        self.read_accounting_calls += 1
        records = await self.adapter.accounting_jobs(job_ids=[live.job_id if live else wanted])
        if live is not None:
            accounting = next((j for j in records if j.job_id == live.job_id), None)
        else:
            accounting = next((j for j in records if job_matches(j, wanted)), None)
        if accounting is None:
            return None if live is None else self._live_view(live)
        self._take_accounting([accounting], set())
        return self.view(accounting.job_id)

    async def fill_steps(self, job_ids: Sequence[str]) -> None:
        """Read the steps of ended jobs the cache holds without them (batched calls)."""
        ids = list(job_ids)
        for start in range(0, len(ids), ACCOUNTING_BATCH):
            self.accounting_calls += 1
            self.read_accounting_calls += 1
            chunk = ids[start : start + ACCOUNTING_BATCH]
            self._take_accounting(await self.adapter.accounting_jobs(job_ids=chunk), set())

    # -- writing ------------------------------------------------------------------------

    def _publish(self, kind: str, previous: str, job: JobRecord, now: datetime) -> None:
        self.revision += 1
        event = JobEvent(self.revision, kind, previous, job, now)
        self._changed[job.job_id] = (self.revision, now)
        if self._outbox is not None:
            self._outbox.append(event)  # delivered once committed to the journal
        else:
            self._deliver(event)

    def _deliver(self, event: JobEvent) -> None:
        self.history.append(event)
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    async def submitted(self, job: JobRecord) -> None:
        """A job just submitted through this gateway: readable and watchable at once (on
        every replica: it is in the journal before this returns)."""
        try:
            async with self._writing():
                if self.jobs.get(job.job_id) is None:  # a poll may already have seen it
                    self.record(job)
        except Exception as e:  # the job exists: the next poll will publish it instead
            log.warning("could not journal job %s at once: %s", job.job_id, e)
        self.poke()

    def record(self, job: JobRecord) -> None:
        """Take in one job's current record (a poll, or a job just submitted here).
        In cluster mode only inside `_writing`, which commits what it publishes."""
        if self.journal is not None and self._outbox is None:
            raise RuntimeError("JobHub.record outside a journal write")
        now = self._learned_at(job.job_id)
        old = self.jobs.get(job.job_id)
        self.jobs[job.job_id] = job
        if job.finished:
            self._finished_at.setdefault(job.job_id, time.monotonic())
        elif self.finished.get(job.job_id) is not None:
            self._unsettle(job.job_id)  # requeued: live again
        if old is None:
            self._publish(CREATED, "", job, now)
        elif old.state != job.state:
            self._publish(STATE_CHANGED, old.state, job, now)
        elif any(getattr(old, f) != getattr(job, f) for f in _WATCHED_FIELDS):
            self._publish(UPDATED, old.state, job, now)
        else:
            return
        if job.state != "PENDING" or job.restart_count:
            self._due.add(job.job_id)  # steps, exit status or end: ask accounting

    def _learned_at(self, job_id: str) -> datetime:
        """When the change of `job_id` being recorded was learned: the call time of the
        Slurm hook that named it, if plausible, else now."""
        told = self._told.get(job_id)
        now = time.time()
        if told is None or not now - NOTICE_MAX_AGE <= told <= now:
            return datetime.fromtimestamp(now, UTC)
        return datetime.fromtimestamp(told, UTC)

    def _take_read(self, job: JobRecord, started: float) -> bool:
        """Records a job read by a query that began at `started` (monotonic), unless a
        read that began later has recorded it already; returns whether it did."""
        if self._read_started.get(job.job_id, 0.0) > started:
            return False
        self._read_started[job.job_id] = started
        self.record(job)
        return True

    def _unsettle(self, job_id: str) -> None:
        self.finished.remove(job_id)
        self._finished_at.pop(job_id, None)
        if self.archive is not None:
            self._archive_later(lambda a: a.delete([job_id]))

    def _set_scheduler(self, reachable: bool, reason: str) -> None:
        if reachable == self.scheduler_reachable:
            return
        self.scheduler_reachable, self.scheduler_reason = reachable, reason
        self.scheduler_since = datetime.now(UTC)
        log.warning("scheduler of %s %s: %s", self.system_id,
                    "reachable" if reachable else "unreachable", reason)  # fmt: skip
        notice = SchedulerNotice(self.revision, reachable, reason, self.scheduler_since)
        for subscription in list(self._subscriptions):
            subscription.offer(notice)

    async def poll_once(self) -> bool:
        """One poll of the queue, then the accounting it calls for; returns whether
        anything changed. (The poller runs the two apart: see `run`.)"""
        before = self.revision
        await self.poll_queue()
        await self.read_accounting()
        return self.revision != before

    async def read_accounting(self) -> None:
        """Accounting for every job that needs it now (and the backfill, until done)."""
        vanished, self._vanished = self._vanished, set()
        await self._refresh_accounting(vanished)
        if not self._backfilled:
            await self._backfill()

    async def poll_queue(self) -> bool:
        """One `squeue` of the whole queue, diffed against the last; returns whether
        anything changed. Jobs that need accounting are noted for `read_accounting`."""
        before = self.revision
        started = time.monotonic()
        try:
            queue = await self.adapter.queue_jobs()
        except SlurmUnavailable as e:
            async with self._writing(self._poll(False, str(e))):
                pass
            self._set_scheduler(False, str(e))
            return False
        except SlurmError as e:
            log.warning("polling jobs of %s failed: %s", self.system_id, e)
            return False
        seen = {job.job_id for job in queue}
        async with self._writing(self._poll(True, "")):
            for job in queue:
                self._take_read(job, started)
            # Jobs that left the queue without our seeing them end: ask accounting.
            vanished = {
                jid for jid, job in self.jobs.items()
                if jid not in seen and not job.finished
                and self._misses.get(jid, 0) < ACCOUNTING_ATTEMPTS
            }  # fmt: skip
            self._evict(seen)
        self._set_scheduler(True, "")
        self.last_poll = time.monotonic()
        self.polls += 1
        self._first_poll.set()
        self._vanished |= vanished
        self._accounting_wanted.set()  # the accountant reads only what is due (maybe nothing)
        return self.revision != before

    def _accounting_due(self, vanished: set[str]) -> list[str]:
        """Jobs to ask accounting about now: those that changed, running jobs whose steps
        were read longer than `accounting_interval` ago, and ended jobs accounting has not
        recorded the end of yet."""
        now = time.monotonic()
        due = set(vanished) | {j for j in self._due if j in self.jobs}
        for jid, job in self.jobs.items():
            if jid in due or self._misses.get(jid, 0) >= ACCOUNTING_ATTEMPTS:
                continue
            if job.finished:
                if self.finished.get(jid) is None:
                    due.add(jid)  # until accounting has its end
            elif job.state != "PENDING" and (
                now - self._accounted_at.get(jid, 0.0) >= self.settings.accounting_interval
            ):
                due.add(jid)
        return sorted(due)

    async def _refresh_accounting(self, vanished: set[str]) -> None:
        """One accounting call (per ACCOUNTING_BATCH jobs) for every job that needs it."""
        due = self._accounting_due(vanished)
        self._due.clear()
        for start in range(0, len(due), ACCOUNTING_BATCH):
            chunk = due[start : start + ACCOUNTING_BATCH]
            self.accounting_calls += 1
            try:
                records = await self.adapter.accounting_jobs(job_ids=chunk)
            except SlurmError as e:
                log.warning("accounting of %d jobs of %s failed: %s", len(chunk),
                            self.system_id, e)  # fmt: skip
                self._due.update(chunk)  # try again at the next poll
                continue
            asked, known = set(chunk), {r.job_id for r in records}
            for jid in asked - known:
                self._miss(jid)
            async with self._writing():  # a vanished job's end is an event
                self._take_accounting([r for r in records if r.job_id in asked], vanished)

    def _miss(self, job_id: str) -> None:
        misses = self._misses[job_id] = self._misses.get(job_id, 0) + 1
        job = self.jobs.get(job_id)
        if misses >= ACCOUNTING_ATTEMPTS and job is not None and job.finished:
            # Accounting will not tell more (no slurmdbd, or it lost the job): final as is.
            self._settle([self._live_view(job)])

    def _take_accounting(self, records: list[JobRecord], vanished: set[str]) -> None:
        now = time.monotonic()
        ended = []
        for accounting in records:
            jid = accounting.job_id
            if jid in vanished:
                self.record(accounting)  # its end, which the queue did not show us
            self._due.discard(jid)
            self._misses.pop(jid, None)
            self.accounting[jid] = accounting
            self._accounted_at[jid] = now
            live = self.jobs.get(jid)
            if live is not None:
                merged = self._live_view(live)
            else:  # an ended job read on demand: keep what the cache knew of its changes
                cached = self.finished.get(jid)
                merged = (
                    JobView(accounting)
                    if cached is None
                    else JobView(accounting, cached.revision, cached.updated_at)
                )
            if merged.record.finished and accounting.finished and accounting.end_time:
                ended.append(merged)
        self._settle(ended)

    def _settle(self, views: list[JobView]) -> None:
        """Ended jobs' final records into the finished cache (and the archive)."""
        entries = []
        for v in views:
            # A job that never changed while we watched: revision 0, its end as the time.
            at = v.updated_at or v.record.end_time or datetime.now(UTC)
            revision = v.revision
            entries.append(CachedJob(v.record, revision, at, has_steps=True))
            self.accounting.pop(v.record.job_id, None)
            self._accounted_at.pop(v.record.job_id, None)
        for entry in entries:
            self.finished.put(entry)
        if entries and self.archive is not None:
            rows = [(e.record.job_id, encode(e)) for e in entries]
            self._archive_later(lambda a: a.save(rows))

    def _archive_later(self, write: Callable[[JobArchive], None]) -> None:
        """Run a write to the archive in a thread; a failure costs only a later sacct."""
        archive = self.archive
        assert archive is not None
        task = asyncio.ensure_future(asyncio.to_thread(write, archive))
        task.add_done_callback(_log_archive_failure)

    async def load_archive(self) -> None:
        """Ended jobs a previous run kept (before the first poll)."""
        if self.archive is None:
            return
        try:
            rows = await asyncio.to_thread(self.archive.load)
        except Exception:
            log.exception("could not load the finished-job archive of %s", self.system_id)
            return
        for text in rows:
            try:
                entry = decode(text)
            except (ValueError, KeyError, TypeError):
                continue  # a row from an incompatible version: sacct will answer instead
            self.finished.put(dataclasses.replace(entry, revision=0))

    async def _backfill(self) -> None:
        """Accounting's ended jobs of the last `backfill` seconds, all users, one call
        (without steps: those are read per job the first time someone asks)."""
        start = datetime.now(UTC) - timedelta(seconds=self.settings.backfill)
        self.accounting_calls += 1
        try:
            records = await self.adapter.accounting_jobs(start=start, steps=False)
        except SlurmError as e:
            log.warning("accounting backfill of %s failed (retried): %s", self.system_id, e)
            return
        entries = [
            CachedJob(job, 0, job.end_time, has_steps=False)
            for job in records
            if job.finished and job.end_time and self.finished.get(job.job_id) is None
            and job.job_id not in self.jobs
        ]  # fmt: skip
        for entry in entries:
            self.finished.put(entry)
        if entries and self.journal is not None and self.archive is not None:
            # For the followers; thousands of rows: encoded in the thread, off the loop.
            self._archive_later(lambda a: a.save((e.record.job_id, encode(e)) for e in entries))
        self.finished.complete_since = start
        self._backfilled = True

    def _evict(self, seen: set[str]) -> None:
        """Forget finished jobs that left the queue once `retention` has passed (their
        final record stays in the finished cache)."""
        now = time.monotonic()
        for job_id in [j for j in self._finished_at if j not in seen]:
            if now - self._finished_at[job_id] > self.settings.retention:
                self.jobs.pop(job_id, None)
                self.accounting.pop(job_id, None)
                self._accounted_at.pop(job_id, None)
                self._misses.pop(job_id, None)
                self._changed.pop(job_id, None)  # the finished cache keeps it from here
                self._read_started.pop(job_id, None)
                del self._finished_at[job_id]
                if self._removed is not None:
                    self._removed.append(job_id)

    async def run(self) -> None:
        """Poll forever: fast while watched or busy, slower and slower when idle.

        Accounting is read by a task of its own, woken after each poll that calls for it:
        a slow or absent slurmdbd (each call may take `command_timeout`) never delays the
        queue polls, so state changes and controller outages still reach watchers."""
        await self.load_archive()
        loop = asyncio.get_running_loop()
        helpers = [
            loop.create_task(self._read_accounting_forever()),
            loop.create_task(self._read_notices_forever()),
        ]
        self._reading_notices = True
        try:
            await self._poll_forever()
        finally:
            self._reading_notices = False
            self._noticed.clear()
            self._rechecks.clear()
            self._told.clear()
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read_accounting_forever(self) -> None:
        while True:
            await self._accounting_wanted.wait()
            self._accounting_wanted.clear()
            try:
                await self.read_accounting()
            except Exception:
                log.exception("accounting read of %s failed", self.system_id)

    async def _poll_forever(self) -> None:
        interval = self.settings.poll_floor
        while True:
            started = time.monotonic()
            try:
                changed = await self.poll_queue()
            except Exception:
                log.exception("job poll of %s failed", self.system_id)
                changed = False
            busy = changed or bool(self._subscriptions)
            interval = (
                self.settings.poll_floor if busy
                else min(interval * 2, self.settings.poll_ceiling)
            )  # fmt: skip
            self.metrics.job_poll(self.system_id, time.monotonic() - started, interval)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            # Pokes (new watchers, submissions) coalesce: never poll faster than the floor.
            since = time.monotonic() - started
            if since < self.settings.poll_floor:
                await asyncio.sleep(self.settings.poll_floor - since)

    def poke(self) -> None:
        """Poll soon (e.g. after a submission or cancellation through the gateway)."""
        self._wake.set()

    # -- Slurm's hooks: targeted reads ----------------------------------------------------

    def notified(self, job_id: str, told_at: float) -> bool:
        """Slurm's hook says `job_id` started or ended (at Unix time `told_at`): read it
        soon. Returns False when this hub does not poll (a follower replica: the poller's
        events reach it through the journal) or its backlog is full (then it polls)."""
        if not self._reading_notices:
            return False
        if len(self._noticed) >= NOTICE_BACKLOG:
            self.poke()
            return False
        self._noticed.add(job_id)
        self._told[job_id] = told_at
        self._notice_wanted.set()
        return True

    async def _read_notices_forever(self) -> None:
        """One targeted read for every job named since the last, at most one read per
        `hook_min_interval`: a flood of job ends costs the controller a bounded rate."""
        while True:
            await self._wait_for_notices()
            started = time.monotonic()
            try:
                await self._read_noticed(self._take_noticed())
            except Exception:
                log.exception("reading the jobs Slurm's hooks named on %s failed", self.system_id)
            rest = self.settings.hook_min_interval - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _wait_for_notices(self) -> None:
        while not self._noticed:
            timeout = None
            if self._rechecks:
                timeout = min(due for due, _ in self._rechecks.values()) - time.monotonic()
                if timeout <= 0:
                    return
            self._notice_wanted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notice_wanted.wait(), timeout)

    def _take_noticed(self) -> list[str]:
        now = time.monotonic()
        due = self._noticed | {jid for jid, (at, _) in self._rechecks.items() if at <= now}
        self._noticed = set()
        return sorted(due)

    async def _read_noticed(self, job_ids: list[str]) -> None:
        """One query for `job_ids`; each found job is recorded (an event if it changed),
        a known job the controller no longer has goes to accounting, and one caught in a
        passing state is read again shortly."""
        if not job_ids:
            return
        self.notice_reads += 1
        started = time.monotonic()
        try:
            records = await self.adapter.queue_jobs(job_ids=job_ids)
        except SlurmError as e:
            log.warning("reading jobs named by hooks on %s failed: %s", self.system_id, e)
            for jid in job_ids:
                self._forget_notice(jid)
            self.poke()  # the poll will see what the read could not
            return
        found = {job.job_id: job for job in records}
        async with self._writing():
            for job in found.values():
                self._take_read(job, started)
        for jid in job_ids:
            attempts = self._rechecks.pop(jid, (0.0, 0))[1]
            read = found.get(jid)
            if read is not None and read.state in PASSING_STATES and attempts < RECHECKS:
                due = time.monotonic() + RECHECK_FIRST * 2**attempts
                self._rechecks[jid] = (due, attempts + 1)
                continue
            if read is None and jid in self.jobs and not self.jobs[jid].finished:
                self._vanished.add(jid)  # gone from the controller: accounting has its end
                self._accounting_wanted.set()
            self._forget_notice(jid)

    def _forget_notice(self, job_id: str) -> None:
        self._told.pop(job_id, None)
        self._rechecks.pop(job_id, None)

    # -- cluster mode: the shared journal -----------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self, polled: Poll | None = None) -> AsyncIterator[None]:
        """A change of the job state: without a journal, just that. With one: lock the
        system's stream, apply what other replicas committed meanwhile, run the block
        (whose events wait in `_outbox`), commit, and only then deliver the events. If
        anything fails, the in-memory state goes back to what was committed."""
        async with self._write_lock:
            if self.journal is None:
                yield
                return
            _, missed = await self.journal.begin(self.revision)
            if missed and missed[0].revision != self.revision + 1:
                await self.journal.rollback()  # fell behind the pruned log: start over
                await self._load(await self.journal.snapshot(self.settings.history_size))
                _, missed = await self.journal.begin(self.revision)
            self._apply(missed)
            saved = (dict(self.jobs), dict(self._changed), self.revision)
            self._outbox, self._removed = [], []
            try:
                yield
                await self.journal.commit(self._outbox, self._removed, polled)
            except BaseException:
                self.jobs, self._changed, self.revision = saved
                await self.journal.rollback()
                raise
            finally:
                outbox, self._outbox, self._removed = self._outbox, None, None
            for event in outbox:
                self._deliver(event)

    def _poll(self, reachable: bool, reason: str) -> Poll:
        return Poll(reachable, reason, self.finished.complete_since)

    def _apply(self, events: Sequence[JobEvent]) -> None:
        """Events another replica committed, in revision order."""
        for event in events:
            if event.revision <= self.revision:
                continue
            job = event.job
            self.jobs[job.job_id] = job
            if job.finished:
                self._finished_at.setdefault(job.job_id, time.monotonic())
            else:
                self.finished.remove(job.job_id)
                self._finished_at.pop(job.job_id, None)
            self.revision = event.revision
            self._changed[job.job_id] = (event.revision, event.time)
            self._deliver(event)

    async def _load(self, snapshot: Snapshot) -> None:
        """Start from the journal: its live jobs, newest events and revision."""
        self.jobs = {live.job.job_id: live.job for live in snapshot.jobs}
        self._changed = {live.job.job_id: (live.revision, live.time) for live in snapshot.jobs}
        now = time.monotonic()
        self._finished_at = {jid: now for jid, job in self.jobs.items() if job.finished}
        self.history.clear()
        self.history.extend(snapshot.events)
        self.revision = snapshot.stream.revision
        self._take_stream(snapshot.stream)

    def _take_stream(self, stream: StreamState) -> None:
        """What the elected poller last saw: freshness and the controller's state."""
        if self.leading or stream.polled_at is None:
            return
        self.last_poll = time.monotonic() - max(0.0, time.time() - stream.polled_at)
        self._first_poll.set()
        self._set_scheduler(stream.reachable, stream.reason)
        if stream.complete_since is not None:
            self.finished.complete_since = datetime.fromtimestamp(stream.complete_since, UTC)

    async def _take_finished(self) -> None:
        """Final records the poller archived since the last look (followers only), so
        that ended jobs, and ListJobs windows, are answered from memory here too."""
        assert self.journal is not None
        rows = await self.journal.finished_since(self._archive_mark)
        if not rows:
            return
        self._archive_mark = max(stored for stored, _ in rows)
        # Thousands of rows after a backfill: decoded in a thread, off the loop.
        for entry in await asyncio.to_thread(_decode_all, [text for _, text in rows]):
            self.finished.put(entry)

    async def catch_up(self) -> None:
        """Apply what other replicas committed (a NOTIFY arrived, or a read missed)."""
        if self.journal is None:
            return
        async with self._write_lock:
            stream, events = await self.journal.since(self.revision)
            if events and events[0].revision != self.revision + 1:
                await self._load(await self.journal.snapshot(self.settings.history_size))
            else:
                self._apply(events)
                self._take_stream(stream)
            if not self.leading:
                await self._take_finished()

    def ring(self) -> None:
        """The journal of this system changed (NOTIFY): catch up soon."""
        self._follow_wake.set()

    async def follow(self, interval: float = 1.0) -> None:
        """Cluster mode, every replica: load the journal, then apply its changes as they
        are rung in (at least every `interval`, should a notification be lost)."""
        assert self.journal is not None
        while True:
            try:
                async with self._write_lock:
                    await self._load(await self.journal.snapshot(self.settings.history_size))
                break
            except Exception:
                log.exception("loading the job journal of %s failed; retrying", self.system_id)
                await asyncio.sleep(interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._follow_wake.wait(), interval)
            self._follow_wake.clear()
            try:
                await self.catch_up()
            except Exception:
                log.exception("following the job journal of %s failed", self.system_id)
            if not self.leading:
                self._evict(set())  # the poller forgets ended jobs; so do the followers


def _decode_all(texts: list[str]) -> list[CachedJob]:
    entries = []
    for text in texts:
        try:
            entries.append(decode(text))
        except (ValueError, KeyError, TypeError):
            continue  # a row from an incompatible version: sacct will answer instead
    return entries


def _log_archive_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("writing the finished-job archive failed: %s", task.exception())


def matches_all(predicates: Iterable[Callable[[JobRecord], bool]]) -> Callable[[JobRecord], bool]:
    checks = list(predicates)
    return lambda job: all(check(job) for check in checks)
