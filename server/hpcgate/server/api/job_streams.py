"""The two streaming RPCs of ComputeService: WatchJobs and ReadJobOutput.

WatchJobs: subscribe to the system's hub first, then send the snapshot (or the missed
events, when resuming by revision), then live events, scheduler notices and heartbeats.
A stream whose client falls `watch.stream_queue_size` events behind is ended with
RESOURCE_EXHAUSTED (its last revision lets it resume): memory per stream stays bounded.

ReadJobOutput: the job's stdout/stderr, opened by the caller's privsep worker (so the
kernel checks the caller's permissions) and read in chunks; with `follow`, new output is
sent as it is written until the job has ended and the file is drained.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import grpc

from hpcgate.server import privsep
from hpcgate.server.api.convert.jobs import job_to_proto, state_to_proto
from hpcgate.server.api.errors import ApiError, from_privsep
from hpcgate.server.api.streaming import heartbeat as heartbeat_message
from hpcgate.server.api.streaming import unless_draining
from hpcgate.server.api.timeconv import timestamp
from hpcgate.server.events.hub import JobHub, SlowConsumer
from hpcgate.server.events.model import CREATED, STATE_CHANGED, JobEvent, SchedulerNotice
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.v1 import compute_pb2

SNAPSHOT_CHUNK = 500  # jobs per snapshot message, well under the message size limit
_EVENT_TYPE = {
    CREATED: compute_pb2.JOB_EVENT_TYPE_CREATED,
    STATE_CHANGED: compute_pb2.JOB_EVENT_TYPE_STATE_CHANGED,
}


def _event(event: JobEvent, system_id: str) -> compute_pb2.WatchJobsResponse:
    return compute_pb2.WatchJobsResponse(
        revision=event.revision,
        event=compute_pb2.JobEvent(
            revision=event.revision,
            type=_EVENT_TYPE.get(event.kind, compute_pb2.JOB_EVENT_TYPE_UPDATED),
            previous_state=(
                state_to_proto(event.previous_state)
                if event.previous_state
                else compute_pb2.JOB_STATE_UNSPECIFIED
            ),
            state=state_to_proto(event.job.state),
            job=job_to_proto(
                event.job,
                system_id,
                include_steps=False,
                revision=event.revision,
                updated_at=event.time,
            ),
            time=timestamp(event.time),
        ),
    )


def _scheduler(notice: SchedulerNotice | JobHub) -> compute_pb2.SchedulerAvailability:
    if isinstance(notice, JobHub):
        return compute_pb2.SchedulerAvailability(
            reachable=notice.scheduler_reachable, reason=notice.scheduler_reason,
            since=timestamp(notice.scheduler_since),
        )  # fmt: skip
    return compute_pb2.SchedulerAvailability(
        reachable=notice.reachable, reason=notice.reason, since=timestamp(notice.since)
    )


async def watch_jobs(
    hub: JobHub,
    matches: Callable[[JobRecord], bool],
    request: compute_pb2.WatchJobsRequest,
    heartbeat: float,
    draining: asyncio.Event,
    initial: list[JobRecord] | None = None,
) -> AsyncIterator[compute_pb2.WatchJobsResponse]:
    """The WatchJobs stream over `hub` for jobs that `matches`.

    `initial` are records of named jobs the hub no longer holds (finished long ago); they
    go into the snapshot so that the client learns their final state.
    """
    sid = hub.system_id
    named = {j for j in request.names}
    with hub.subscribe(matches) as subscription:
        # Subscribed before reading state: nothing can fall between the two.
        last = 0
        replay = hub.events_since(request.resume_from_revision) if request.resume_from_revision \
            else None  # fmt: skip
        if replay is not None:
            # Taken with the replay, before any yield: an event that arrives while the
            # replay is being sent is not in it, and must still come from the subscription.
            last = hub.revision
            for event in replay:
                if matches(event.job):
                    yield _event(event, sid)
        else:
            if request.resume_from_revision:
                yield compute_pb2.WatchJobsResponse(
                    revision=hub.revision,
                    resync_required=compute_pb2.ResyncRequired(
                        reason=f"revision {request.resume_from_revision} is no longer in the "
                        f"history (oldest kept: {hub.oldest_revision()}); a fresh snapshot "
                        "follows"
                    ),
                )
            last = hub.revision
            jobs = hub.select(matches)
            known = {j.job_id for j in jobs}
            jobs += [j for j in initial or [] if j.job_id not in known]
            jobs.sort(key=lambda j: j.job_id)
            for start in range(0, max(len(jobs), 1), SNAPSHOT_CHUNK):
                chunk = jobs[start : start + SNAPSHOT_CHUNK]
                yield compute_pb2.WatchJobsResponse(
                    revision=last,
                    snapshot=compute_pb2.JobSnapshot(
                        jobs=[job_to_proto(j, sid, False, *hub.changed(j.job_id)) for j in chunk],
                        last=start + SNAPSHOT_CHUNK >= len(jobs),
                    ),
                )
        if not hub.scheduler_reachable:
            yield compute_pb2.WatchJobsResponse(revision=last, scheduler=_scheduler(hub))
        finished: set[str] = {j.job_id for j in hub.select(matches) if j.finished}
        while True:
            if request.until_finished and named and _all_finished(hub, named, finished):
                return
            try:
                item = await unless_draining(
                    subscription.next(heartbeat), draining,
                    f"the server is shutting down; reconnect with resume_from_revision={last}",
                )  # fmt: skip
            except SlowConsumer:
                raise ApiError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this stream fell too far behind; reconnect with resume_from_revision={last}",
                ) from None
            if item is None:
                yield compute_pb2.WatchJobsResponse(revision=last, heartbeat=heartbeat_message())
            elif isinstance(item, SchedulerNotice):
                yield compute_pb2.WatchJobsResponse(revision=last, scheduler=_scheduler(item))
            elif item.revision > last:
                last = item.revision
                if item.job.finished:
                    finished.add(item.job.job_id)
                if item.kind == CREATED or item.kind == STATE_CHANGED or request.include_updates:
                    yield _event(item, sid)


def _all_finished(hub: JobHub, named: set[str], finished: set[str]) -> bool:
    ids = {n.rsplit("/", 1)[-1] for n in named}
    return all(i in finished or ((job := hub.get(i)) is not None and job.finished) for i in ids)


def _output_path(job: JobRecord, stream: int) -> str:
    return job.stderr_path if stream == compute_pb2.JOB_OUTPUT_STREAM_STDERR else job.stdout_path


async def read_job_output(
    users: privsep.PrivilegeSeparation,
    identity: privsep.UserIdentity,
    hub: JobHub,
    job: JobRecord,
    request: compute_pb2.ReadJobOutputRequest,
    poll: float = 0.5,
) -> AsyncIterator[compute_pb2.ReadJobOutputResponse]:
    path = _output_path(job, request.stream)
    while not path.startswith("/"):
        # A job just submitted through the gateway is known before Slurm has said where it
        # writes (the hub's next poll does); a follower waits for that, a reader does not.
        current = hub.get(job.job_id) or job
        path = _output_path(current, request.stream)
        if path.startswith("/"):
            break
        if not request.follow or current.finished:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Slurm does not say where job {job.job_id} writes that stream",
            )
        await asyncio.sleep(poll)
    chunk = min(request.max_chunk_bytes or 64 * 1024, 1024 * 1024)
    worker = await users.worker(identity)
    fd = None
    current = job
    try:
        while fd is None:  # a job that has not started has no file yet: wait for it
            try:
                fd = await worker.open(path, ("read",))
            except FileNotFoundError:
                current = hub.get(job.job_id) or current
                if current.finished:
                    raise ApiError(
                        grpc.StatusCode.NOT_FOUND,
                        f"job {job.job_id} ended without creating {path}",
                    ) from None
                if not request.follow:
                    raise ApiError(
                        grpc.StatusCode.NOT_FOUND, f"{path} does not exist yet"
                    ) from None
                await asyncio.sleep(poll)
            except PermissionError as e:
                raise ApiError(grpc.StatusCode.PERMISSION_DENIED, f"{path}: {e.strerror}") \
                    from None  # fmt: skip
            except privsep.PrivsepError as e:
                raise from_privsep(e, f"opening {path}") from None
        offset = request.offset
        if offset < 0:
            offset = max(0, os.fstat(fd).st_size + offset)
        while True:
            data = await asyncio.to_thread(os.pread, fd, chunk, offset)
            if data:
                current = hub.get(job.job_id) or current
                yield compute_pb2.ReadJobOutputResponse(
                    data=data, offset=offset, path=path,
                    job_state=state_to_proto(current.state),
                )  # fmt: skip
                offset += len(data)
                continue
            current = hub.get(job.job_id) or current
            if not request.follow or current.finished:
                # Drained: the job has ended (or we were asked for what is there now).
                if request.follow and current.finished:
                    await asyncio.sleep(0)  # let a final write land before the last read
                    if await asyncio.to_thread(os.pread, fd, 1, offset):
                        continue
                yield compute_pb2.ReadJobOutputResponse(
                    offset=offset, eof=True, job_finished=current.finished, path=path,
                    job_state=state_to_proto(current.state),
                )  # fmt: skip
                return
            await asyncio.sleep(poll)
    finally:
        if fd is not None:
            os.close(fd)
