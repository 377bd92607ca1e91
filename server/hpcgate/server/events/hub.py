"""One poller per system reads the whole queue, diffs it against its last snapshot and
publishes job events, each with a revision one higher than the last, into a bounded
history. Every WatchJobs stream, and GetJob/ListJobs where they can, read from here: ten
thousand watchers cost slurmctld what one does.

The interval adapts: `poll_floor` while someone watches or jobs changed at the last poll,
growing to `poll_ceiling` when idle. A controller outage leaves the snapshot as it was;
the first poll after it produces an event for every job that changed meanwhile, asking
accounting about jobs that left the queue while nobody could see them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from hpcgate.server.config import WatchConfig
from hpcgate.server.slurm import SlurmAdapter, SlurmError, SlurmUnavailable
from hpcgate.server.slurm.adapter import JobRecord

log = logging.getLogger(__name__)

CREATED, STATE_CHANGED, UPDATED = "created", "state_changed", "updated"
# Fields whose change is an UPDATED event (a state change is always an event).
_WATCHED_FIELDS = ("reason", "node_list", "start_time", "end_time", "exit_code", "signal",
                   "priority", "time_limit_seconds", "partition", "restart_count")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class JobEvent:
    revision: int
    kind: str  # CREATED, STATE_CHANGED or UPDATED
    previous_state: str  # "" for CREATED
    job: JobRecord
    time: datetime


@dataclasses.dataclass(frozen=True)
class SchedulerNotice:
    """The controller became (un)reachable; not part of the revision history."""

    revision: int
    reachable: bool
    reason: str
    since: datetime


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
    """The shared job state of one system."""

    def __init__(self, system_id: str, adapter: SlurmAdapter, settings: WatchConfig) -> None:
        self.system_id = system_id
        self.adapter = adapter
        self.settings = settings
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

    # -- writing ------------------------------------------------------------------------

    def _publish(self, kind: str, previous: str, job: JobRecord, now: datetime) -> None:
        self.revision += 1
        event = JobEvent(self.revision, kind, previous, job, now)
        self.history.append(event)
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    def record(self, job: JobRecord) -> None:
        """Take in one job's current record (a poll, or a job just submitted here)."""
        now = datetime.now(UTC)
        old = self.jobs.get(job.job_id)
        self.jobs[job.job_id] = job
        if job.finished:
            self._finished_at.setdefault(job.job_id, time.monotonic())
        if old is None:
            self._publish(CREATED, "", job, now)
        elif old.state != job.state:
            self._publish(STATE_CHANGED, old.state, job, now)
        elif any(getattr(old, f) != getattr(job, f) for f in _WATCHED_FIELDS):
            self._publish(UPDATED, old.state, job, now)

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
        """One poll; returns whether anything changed."""
        before = self.revision
        try:
            queue = await self.adapter.queue_jobs()
        except SlurmUnavailable as e:
            self._set_scheduler(False, str(e))
            return False
        except SlurmError as e:
            log.warning("polling jobs of %s failed: %s", self.system_id, e)
            return False
        seen = {job.job_id for job in queue}
        for job in queue:
            self.record(job)
        # Jobs that left the queue without our seeing them end: ask accounting.
        vanished = [jid for jid, job in self.jobs.items() if jid not in seen and not job.finished]
        if vanished:
            try:
                for job in await self.adapter.accounting_jobs(job_ids=vanished, steps=False):
                    if job.job_id in self.jobs:
                        self.record(job)
            except SlurmError as e:
                log.warning("accounting lookup of %d vanished jobs failed: %s", len(vanished), e)
        self._evict(seen)
        self._set_scheduler(True, "")
        self.last_poll = time.monotonic()
        self.polls += 1
        self._first_poll.set()
        return self.revision != before

    def _evict(self, seen: set[str]) -> None:
        """Forget finished jobs that left the queue once `retention` has passed."""
        now = time.monotonic()
        for job_id in [j for j in self._finished_at if j not in seen]:
            if now - self._finished_at[job_id] > self.settings.retention:
                self.jobs.pop(job_id, None)
                del self._finished_at[job_id]

    async def run(self) -> None:
        """Poll forever: fast while watched or busy, slower and slower when idle."""
        interval = self.settings.poll_floor
        while True:
            started = time.monotonic()
            try:
                changed = await self.poll_once()
            except Exception:
                log.exception("job poll of %s failed", self.system_id)
                changed = False
            busy = changed or bool(self._subscriptions)
            interval = (
                self.settings.poll_floor if busy
                else min(interval * 2, self.settings.poll_ceiling)
            )  # fmt: skip
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


def matches_all(predicates: Iterable[Callable[[JobRecord], bool]]) -> Callable[[JobRecord], bool]:
    checks = list(predicates)
    return lambda job: all(check(job) for check in checks)
