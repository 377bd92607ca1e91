"""`client.jobs`: submit, read, wait for and follow Slurm jobs.

`Jobs` is the service area (`submit`, `get`, `list`, `cancel`); each returns `Job`
handles. A handle keeps the job's latest `compute_pb2.Job` in `.message` and waits on
WatchJobs (never by polling), resuming from its last revision when the stream drops, so
that a server restart or a network blip costs a wait nothing but a short delay:

    job = await client.jobs.submit(script="#!/bin/sh\\nhostname\\n", time_limit="5")
    async for text in job.output(follow=True):
        print(text, end="")
    await job.wait()
    print(job.state, job.exit_code)
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from hpcgate.client.errors import DeadlineExceeded, FieldViolation, HpcgateError, InvalidArgument
from hpcgate.v1 import compute_pb2, compute_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client

S = compute_pb2
FINISHED = frozenset({
    S.JOB_STATE_COMPLETED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED, S.JOB_STATE_TIMEOUT,
    S.JOB_STATE_NODE_FAIL, S.JOB_STATE_PREEMPTED, S.JOB_STATE_OUT_OF_MEMORY,
    S.JOB_STATE_BOOT_FAIL, S.JOB_STATE_DEADLINE,
})  # fmt: skip
# Has started (or is past starting): what wait(until="running") waits for.
STARTED = FINISHED | {S.JOB_STATE_RUNNING, S.JOB_STATE_SUSPENDED, S.JOB_STATE_COMPLETING}
# Stream failures that mean "reconnect and resume", not "give up": the server went away
# or restarted (UNAVAILABLE, CANCELLED), or cut off a consumer that fell behind / was
# rate limited (RESOURCE_EXHAUSTED, which says when to come back).
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED})  # fmt: skip
RECONNECT_WINDOW = 900.0  # seconds a stream keeps reconnecting before the error is raised
WATCH_HEARTBEAT = 5  # seconds; a reconnected stream's first message comes at most this late
_OPTION_FIELDS = frozenset(S.JobOptions.DESCRIPTOR.fields_by_name)
T = TypeVar("T")


def job_resource(client: Client, job_id: str, system: str | None = None) -> str:
    """`systems/<system>/jobs/<id>` for a job id (or that name itself)."""
    if job_id.startswith("systems/"):
        return job_id
    return f"{client.system(system)}/jobs/{job_id}"


def state_name(state: int) -> str:
    """PENDING, RUNNING, COMPLETED, ... for a JobState value."""
    return S.JobState.Name(state).removeprefix("JOB_STATE_")


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a stream as soon as we stop reading it (its call is cancelled at once, not
    whenever the garbage collector gets to it)."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


class _Reconnect:
    """Backoff between reconnections of one stream. Raises the last error once the server
    has been unreachable for RECONNECT_WINDOW seconds in a row; a stream that delivered
    something starts the count afresh (`reset`)."""

    def __init__(self, client: Client) -> None:
        self._policy = client.retry
        self._attempt = 0
        self._since: float | None = None

    def reset(self) -> None:
        self._attempt, self._since = 0, None

    async def pause(self, error: HpcgateError) -> None:
        now = time.monotonic()
        self._since = now if self._since is None else self._since
        if now - self._since > RECONNECT_WINDOW:
            raise error
        await asyncio.sleep(self._policy.delay(self._attempt, error))
        self._attempt += 1


class Job:
    """A Slurm job. `message` is its latest `compute_pb2.Job`; `name` is the resource
    name (`systems/local/jobs/123`), `job_name` Slurm's `--job-name`."""

    def __init__(self, client: Client, message: compute_pb2.Job) -> None:
        self._client = client
        self.message = message

    @property
    def id(self) -> str:
        return self.message.job_id

    @property
    def name(self) -> str:
        return self.message.name

    @property
    def job_name(self) -> str:
        return self.message.job_name

    @property
    def system(self) -> str:
        return self.message.system

    @property
    def state(self) -> str:
        """PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ..."""
        return state_name(self.message.state)

    @property
    def exit_code(self) -> int:
        """The batch script's exit code (meaningful once `finished`)."""
        return self.message.exit_code

    @property
    def finished(self) -> bool:
        """In a terminal state: it will not change any more (unless requeued)."""
        return self.message.state in FINISHED

    def __repr__(self) -> str:
        return f"Job({self.id!r}, state={self.state})"

    def _stub(self) -> compute_pb2_grpc.ComputeServiceAsyncStub:
        return compute_pb2_grpc.ComputeServiceStub(self._client.channel)

    async def refresh(self) -> Job:
        """Re-read the job (GetJob, with its steps)."""
        request = S.GetJobRequest(name=self.name)
        self.message = (await self._client.unary(self._stub().GetJob, request, retry=True)).job
        return self

    async def cancel(self, *, signal: str | None = None) -> Job:
        """Cancel the job (or send it `signal`, e.g. "USR1"); see `Jobs.cancel`."""
        self.message = (await self._client.jobs._cancel(self.name, signal)).job
        return self

    async def wait(
        self,
        until: str = "finished",
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the reconnections too)
    ) -> Job:
        """Until the job has ended (or, with until="running", has started or ended), on a
        WatchJobs stream of this job alone. A dropped stream is resumed from the last
        revision seen. `timeout` (seconds) raises DeadlineExceeded."""
        if until not in ("finished", "running"):
            raise ValueError(f"until must be 'finished' or 'running', not {until!r}")
        wanted = FINISHED if until == "finished" else STARTED
        if self.message.state in wanted:
            return self
        try:
            async with asyncio.timeout(timeout):
                await self._watch_until(wanted)
        except TimeoutError:
            raise DeadlineExceeded(
                f"job {self.id} is still {self.state} after {timeout:g} s (waited until {until})"
            ) from None
        return self

    async def _watch_until(self, wanted: frozenset[int]) -> None:
        """Follow WatchJobs until the job's state is in `wanted`. After a reconnection the
        server replays what came after our revision, but a restarted server numbers its
        revisions afresh: so once the new stream is up (its first message), the job is
        re-read too, and an end that fell between the two streams is still seen."""
        revision = 0
        backoff = _Reconnect(self._client)
        while True:
            resumed = revision != 0
            stream = self._client.stream(self._stub().WatchJobs, self._watch_request(revision))
            try:
                async with _closing(stream):
                    async for reply in stream:
                        revision = reply.revision
                        backoff.reset()
                        self._take(reply)
                        if resumed:
                            resumed = False
                            await self.refresh()
                        if self.message.state in wanted:
                            return
                error = HpcgateError("the server ended the watch", code=grpc.StatusCode.UNAVAILABLE)
            except HpcgateError as e:
                if e.code not in RESUMABLE:
                    raise
                error = e
            await backoff.pause(error)

    def _watch_request(self, revision: int) -> compute_pb2.WatchJobsRequest:
        return S.WatchJobsRequest(
            parent=self.name.rsplit("/jobs/", 1)[0],
            names=[self.name],
            resume_from_revision=revision,
            heartbeat_interval=duration_pb2.Duration(seconds=WATCH_HEARTBEAT),
        )

    def _take(self, reply: compute_pb2.WatchJobsResponse) -> None:
        """Keep the job's record from a snapshot or event."""
        kind = reply.WhichOneof("kind")
        if kind == "snapshot":
            for job in reply.snapshot.jobs:
                if job.job_id == self.id:
                    self.message = job
        elif kind == "event" and reply.event.job.job_id == self.id:
            self.message = reply.event.job

    async def output(
        self, stream: str = "stdout", *, follow: bool = False,
        text: bool = True, offset: int = 0,
    ) -> AsyncIterator[str | bytes]:  # fmt: skip
        """The job's stdout (or stderr) file in chunks, as str (UTF-8, decoded across chunk
        boundaries) or bytes. With `follow`, new output until the job has ended (waiting
        for a pending job's file); a dropped stream resumes at the next byte. `offset` < 0
        counts from the end (like `tail -c`)."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if text else None
        chunks = self._output_bytes(stream, follow, offset)
        async with _closing(chunks):
            async for data in chunks:
                if decoder is None:
                    yield data
                elif piece := decoder.decode(data):
                    yield piece
        if decoder is not None and (rest := decoder.decode(b"", final=True)):
            yield rest

    async def _output_bytes(self, stream: str, follow: bool, offset: int) -> AsyncIterator[bytes]:
        which = S.JOB_OUTPUT_STREAM_STDERR if stream == "stderr" else S.JOB_OUTPUT_STREAM_STDOUT
        backoff = _Reconnect(self._client)
        while True:
            request = S.ReadJobOutputRequest(name=self.name, stream=which, offset=offset,
                                             follow=follow)  # fmt: skip
            replies = self._client.stream(self._stub().ReadJobOutput, request)
            try:
                async with _closing(replies):
                    async for reply in replies:
                        backoff.reset()
                        offset = reply.offset + len(reply.data)
                        if reply.data:
                            yield reply.data
                return
            except HpcgateError as e:
                if not follow or e.code not in RESUMABLE:
                    raise
                await backoff.pause(e)


class Jobs:
    """`client.jobs`: submit, get, list and cancel Slurm jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self) -> compute_pb2_grpc.ComputeServiceAsyncStub:
        return compute_pb2_grpc.ComputeServiceStub(self._client.channel)

    async def submit(
        self,
        system: str | None = None,
        *,
        script: str | None = None,
        script_path: str | None = None,
        local_script: str | Path | None = None,
        arguments: Sequence[str] = (),
        request_id: str | None = None,
        **options: Any,
    ) -> Job:
        """Submit a batch script: `script` (its text), `script_path` (a file on the
        system) or `local_script` (a local file, sent inline; its file name is the
        default job name). `options` are JobOptions fields (job_name, partition,
        time_limit, nodes, ntasks, cpus_per_task, memory_per_node_mib, working_directory,
        environment, stdout_path, ...). Retried when the server is unavailable: the
        request_id (made up unless given) guarantees that a retry never submits twice."""
        if sum(source is not None for source in (script, script_path, local_script)) != 1:
            raise InvalidArgument(
                "give exactly one of script, script_path or local_script",
                violations=(FieldViolation("script", "exactly one script source is needed"),),
            )
        if local_script is not None:
            script = await asyncio.to_thread(Path(local_script).read_text)
            options.setdefault("job_name", Path(local_script).name)
        request = S.SubmitJobRequest(
            parent=self._client.system(system),
            options=job_options(**options),
            script_arguments=list(arguments),
            request_id=request_id or f"client-{uuid.uuid4().hex}",
        )
        if script is not None:
            request.script = script
        else:
            request.script_path = script_path or ""
        reply = await self._client.unary(self._stub().SubmitJob, request, retry=True)
        return Job(self._client, reply.job)

    async def get(self, job_id: str, system: str | None = None) -> Job:
        """The job `job_id` (an id such as "123", or `systems/<system>/jobs/<id>`)."""
        request = S.GetJobRequest(name=job_resource(self._client, job_id, system))
        reply = await self._client.unary(self._stub().GetJob, request, retry=True)
        return Job(self._client, reply.job)

    async def cancel(
        self, job_id: str, system: str | None = None, *, signal: str | None = None
    ) -> Job:
        """Cancel a job (cancelling an ended job is a no-op), or send it `signal`. The job
        comes back as it is right after the request: `wait()` to see it end."""
        reply = await self._cancel(job_resource(self._client, job_id, system), signal)
        return Job(self._client, reply.job)

    async def _cancel(self, name: str, signal: str | None) -> compute_pb2.CancelJobResponse:
        request = S.CancelJobRequest(name=name, signal=signal or "")
        # A cancellation is idempotent and safe to retry; a signal is not.
        return await self._client.unary(self._stub().CancelJob, request, retry=not signal)

    async def list(
        self,
        system: str | None = None,
        *,
        states: Iterable[str | int] | None = None,
        all_users: bool = False,
        user: str | None = None,
        job_name: str | None = None,
        partition: str | None = None,
        account: str | None = None,
        names: Iterable[str] = (),
        submitted_after: datetime | None = None,
        submitted_before: datetime | None = None,
        include_steps: bool = False,
        page_size: int = 200,
    ) -> AsyncIterator[Job]:
        """The caller's jobs (everyone's with all_users, where the server allows it),
        newest first, over every page. By default those submitted in the last day plus
        any still pending or running; `states` are names such as "RUNNING"."""
        request = S.ListJobsRequest(
            parent=self._client.system(system),
            page_size=page_size,
            filter=S.JobFilter(
                states=[_state_value(s) for s in states or ()],
                user="*" if all_users else user or "",
                job_name=job_name or "", partition=partition or "", account=account or "",
            ),
            names=[job_resource(self._client, n, system) for n in names],
            include_steps=include_steps,
        )  # fmt: skip
        for field, when in (("submitted_after", submitted_after),
                            ("submitted_before", submitted_before)):  # fmt: skip
            if when is not None:
                stamp = timestamp_pb2.Timestamp()
                stamp.FromDatetime(when)
                getattr(request, field).CopyFrom(stamp)
        while True:
            reply = await self._client.unary(self._stub().ListJobs, request, retry=True)
            for message in reply.jobs:
                yield Job(self._client, message)
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token


def job_options(**given: Any) -> compute_pb2.JobOptions:
    """JobOptions from keyword arguments; None means "not set". `time_limit` may also be
    minutes (int) or a timedelta, `export_environment` a word ("minimal", "none",
    "login"). An unknown name is a TypeError naming the fields there are."""
    options = {k: v for k, v in given.items() if v is not None}
    unknown = set(options) - _OPTION_FIELDS
    if unknown:
        raise TypeError(f"unknown job option(s) {sorted(unknown)}; JobOptions has "
                        f"{sorted(_OPTION_FIELDS)}")  # fmt: skip
    limit = options.get("time_limit")
    if isinstance(limit, timedelta):
        options["time_limit"] = slurm_duration(limit)
    elif isinstance(limit, int):
        options["time_limit"] = str(limit)
    export = options.get("export_environment")
    if isinstance(export, str):
        options["export_environment"] = S.ExportEnvironment.Value(
            f"EXPORT_ENVIRONMENT_{export.upper()}"
        )
    return S.JobOptions(**options)


def slurm_duration(length: timedelta) -> str:
    """Slurm's `D-HH:MM:SS` for a time limit given as a timedelta."""
    minutes, seconds = divmod(int(length.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours // 24}-{hours % 24:02d}:{minutes:02d}:{seconds:02d}"


def _state_value(state: str | int) -> compute_pb2.JobState:
    """A JobState from its name ("RUNNING", "job_state_running") or number."""
    try:
        if isinstance(state, str):
            state = S.JobState.Value(f"JOB_STATE_{state.upper().removeprefix('JOB_STATE_')}")
        S.JobState.Name(state)  # a known number
        return cast(compute_pb2.JobState, state)
    except ValueError:
        raise InvalidArgument(
            f"unknown job state {state!r}",
            violations=(FieldViolation("filter.states", f"{state!r} is not a job state"),),
        ) from None
