"""Reading jobs: the live queue first (cheap, current), accounting for steps, exit status
and jobs the controller has already forgotten (after MinJobAge).

Job ids are Slurm's: `123` is the job (or array task) whose own id is 123; `123_4` is
task 4 of array job 123, which is also the pending array record of 123 while task 4 has
not been split off yet (it has no id of its own then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hpcgate.server.events.hub import JobHub, JobView
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import JobRecord, SlurmAdapter, SlurmError, merge_job
from hpcgate.server.slurm.parsing import job_matches, split_job_id

log = logging.getLogger(__name__)

# How far back find_by_comment looks in accounting when not told (retries of a
# SubmitJob come within the request id's 24 hours).
COMMENT_LOOKBACK = timedelta(days=2)


def _numeric_id(job: JobRecord) -> int:
    return int(job.job_id) if job.job_id.isdigit() else 0


class JobReader:
    """GetJob / ListJobs reads over one system's adapter.

    With a hub (the server always has one), reads are answered from its shared state: the
    queue as last polled, accounting it read once for every job that started or ended,
    and the final records of ended jobs. Slurm is asked only for what the hub cannot know
    (a job older than the hub's window, submitted outside the gateway since the last
    poll, or a window older than the hub's backfill), and such answers are kept. Without
    a hub (or while its snapshot is stale), at most two Slurm calls per read.
    """

    def __init__(
        self, adapter: SlurmAdapter, hub: JobHub | None = None, metrics: Metrics | None = None
    ) -> None:
        self.adapter = adapter
        self.hub = hub
        self.metrics = metrics or Metrics.unexposed()

    def _counted(self, *, hit: bool) -> None:
        """How often the hub answers a read alone: the point of having it (metrics)."""
        self.metrics.job_read(self.hub.system_id if self.hub else "", hit=hit)

    def _changed(self, job: JobRecord) -> JobView:
        if self.hub is None:
            return JobView(job)
        return JobView(job, *self.hub.changed(job.job_id))

    async def get(self, job_id: str) -> JobView | None:
        """The job `job_id` names (`123` or `123_4`), queue and accounting merged, or None.

        Raises ValueError for a malformed id, SlurmError/SlurmUnavailable from Slurm.
        """
        number, _ = split_job_id(job_id)
        hub = self.hub
        if hub is None or not hub.fresh:
            self._counted(hit=False)
            job = await self._get_from_slurm(job_id)
            return None if job is None else self._changed(job)
        view = hub.view(job_id)
        if view is None and hub.journal is not None:
            try:  # perhaps just submitted through another replica
                await hub.catch_up()
            except Exception as e:
                log.warning("job journal unreadable (%s); asking Slurm", e)
            view = hub.view(job_id)
        if view is not None and (view.has_steps or hub.get(view.record.job_id) is not None):
            # A job in the queue: the hub reads its accounting at every poll until it has
            # it, so readers never wait for a sacct of their own (steps follow shortly).
            self._counted(hit=True)
            return view
        self._counted(hit=False)
        if view is None and number > max((_numeric_id(j) for j in hub.jobs.values()), default=0):
            # Submitted after the hub's last poll (e.g. by sbatch on a login node).
            queued = await self.adapter.queue_jobs(job_ids=[job_id])
            found = next((j for j in queued if job_matches(j, job_id)), None)
            if found is not None:
                return JobView(found)
        try:
            return await hub.lookup(job_id)
        except SlurmError:
            if view is None:
                raise
            log.warning("accounting unavailable; job %s answered without steps", job_id)
            return view

    async def _get_from_slurm(self, job_id: str) -> JobRecord | None:
        """A pending job is answered from the queue alone (one call: it has no steps or
        exit status yet, unless it was requeued); anything else also asks accounting (two
        calls). If accounting fails for a job the queue has, the queue's record is
        returned (without steps) rather than failing a read the controller can answer.
        """
        queued = await self.adapter.queue_jobs(job_ids=[job_id])
        queue = next((j for j in queued if job_matches(j, job_id)), None)
        if queue is not None and queue.state == "PENDING" and not queue.restart_count:
            return queue
        try:
            accounted = await self.adapter.accounting_jobs(
                job_ids=[queue.job_id if queue else job_id]
            )
        except SlurmError:
            if queue is None:
                raise
            log.warning("accounting unavailable; job %s answered from the queue", job_id)
            return queue
        if queue is not None:
            accounting = next((j for j in accounted if j.job_id == queue.job_id), None)
        else:
            accounting = next((j for j in accounted if job_matches(j, job_id)), None)
        if queue is None and accounting is None:
            return None
        return merge_job(queue, accounting)

    async def _list_from_slurm(
        self, users: Sequence[str] | None, start: datetime, end: datetime | None,
        include_steps: bool,
    ) -> list[JobRecord]:  # fmt: skip
        wanted = tuple(users or ())
        queued, accounted = await asyncio.gather(
            self.adapter.queue_jobs(users=wanted),
            self.adapter.accounting_jobs(users=wanted, start=start, end=end, steps=include_steps),
        )
        by_id = {j.job_id: j for j in accounted}
        jobs = [merge_job(queue, by_id.pop(queue.job_id, None)) for queue in queued]
        return jobs + list(by_id.values())

    async def list(
        self,
        users: Sequence[str] | None,
        start: datetime,
        end: datetime | None,
        *,
        include_steps: bool = True,
    ) -> list[JobView]:
        """Jobs of `users` (None: every user) submitted in [start, end), plus all their
        jobs that have not ended yet, newest (highest id) first.

        From the hub when it knows every job since `start` (its backfill window); else
        two concurrent calls: the queue, and accounting for the window (with steps only
        if `include_steps`); records of the same job are merged.
        """
        if users is not None and not users:
            return []

        def wanted(job: JobRecord) -> bool:
            submitted = job.submit_time
            in_window = submitted is None or (
                submitted >= start and (end is None or submitted < end)
            )
            return in_window or not job.finished

        hub = self.hub
        if hub is not None and hub.knows_window(start):
            views = [v for v in hub.views(users) if wanted(v.record)]
            missing = [v.record.job_id for v in views if not v.has_steps]
            if include_steps and missing:
                await hub.fill_steps(missing)
                views = [v for v in hub.views(users) if wanted(v.record)]
        else:
            views = [self._changed(j) for j in await self._list_from_slurm(
                users, start, end, include_steps) if wanted(j)]  # fmt: skip
        views.sort(key=lambda v: _numeric_id(v.record), reverse=True)
        return views

    async def find_by_comment(
        self, user: str, comment: str, since: datetime | None = None
    ) -> str | None:
        """The id of `user`'s job whose Slurm comment is `comment`, or None.

        Queue first, then accounting from `since` (default: two days ago); at most two
        calls. Accounting keeps comments only with AccountingStoreFlags=job_comment.
        """
        for job in await self.adapter.queue_jobs(users=[user]):
            if job.comment == comment:
                return job.job_id
        start = since or datetime.now(UTC) - COMMENT_LOOKBACK
        for job in await self.adapter.accounting_jobs(users=[user], start=start, steps=False):
            if job.comment == comment:
                return job.job_id
        return None
