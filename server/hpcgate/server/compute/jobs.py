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

from hpcgate.server.events.hub import JobHub
from hpcgate.server.slurm.adapter import JobRecord, SlurmAdapter, SlurmError, merge_job
from hpcgate.server.slurm.parsing import job_matches, split_job_id

log = logging.getLogger(__name__)

# How far back find_by_comment looks in accounting when not told (retries of a
# SubmitJob come within the request id's 24 hours).
COMMENT_LOOKBACK = timedelta(days=2)


def _numeric_id(job: JobRecord) -> int:
    return int(job.job_id) if job.job_id.isdigit() else 0


class JobReader:
    """GetJob / ListJobs reads over one system's adapter, at most two Slurm calls each.

    With a hub, the queue half comes from the hub's fresh snapshot instead of squeue, so
    reads cost slurmctld nothing however many clients make them (accounting is slurmdbd).
    """

    def __init__(self, adapter: SlurmAdapter, hub: JobHub | None = None) -> None:
        self.adapter = adapter
        self.hub = hub

    async def _queue(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        hub = self.hub
        if hub is None or not hub.fresh:
            return await self.adapter.queue_jobs(job_ids=job_ids, users=users)
        if job_ids:
            found = [j for j in hub.jobs.values() if any(job_matches(j, i) for i in job_ids)]
            newest = max((_numeric_id(j) for j in hub.jobs.values()), default=0)
            if not found and any(int(i.split("_")[0]) > newest for i in job_ids):
                # Submitted after the hub's last poll (e.g. by sbatch on a login node).
                return await self.adapter.queue_jobs(job_ids=job_ids)
            return found
        wanted = set(users)
        return hub.select(lambda j: not wanted or j.user in wanted)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job `job_id` names (`123` or `123_4`), queue and accounting merged, or None.

        A pending job is answered from the queue alone (one call: it has no steps or
        exit status yet, unless it was requeued); anything else also asks accounting (two
        calls). If accounting fails for a job the queue has, the queue's record is
        returned (without steps) rather than failing a read the controller can answer.
        Raises ValueError for a malformed id, SlurmError/SlurmUnavailable from Slurm.
        """
        split_job_id(job_id)
        queued = await self._queue(job_ids=[job_id])
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

    async def list(
        self,
        users: Sequence[str] | None,
        start: datetime,
        end: datetime | None,
        *,
        include_steps: bool = True,
    ) -> list[JobRecord]:
        """Jobs of `users` (None: every user) submitted in [start, end), plus all their
        jobs that have not ended yet, newest (highest id) first.

        Two concurrent calls: the queue, and accounting for the window (with steps
        only if `include_steps`); records of the same job are merged.
        """
        if users is not None and not users:
            return []
        wanted = tuple(users or ())
        queued, accounted = await asyncio.gather(
            self._queue(users=wanted),
            self.adapter.accounting_jobs(users=wanted, start=start, end=end, steps=include_steps),
        )

        def in_window(job: JobRecord) -> bool:
            submitted = job.submit_time
            if submitted is None:
                return True
            return submitted >= start and (end is None or submitted < end)

        by_id = {j.job_id: j for j in accounted}
        jobs = []
        for queue in queued:
            job = merge_job(queue, by_id.pop(queue.job_id, None))
            if not job.finished or in_window(job):
                jobs.append(job)
        jobs.extend(j for j in by_id.values() if in_window(j))
        jobs.sort(key=_numeric_id, reverse=True)
        return jobs

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
