"""ComputeService: submit, inspect, list and cancel Slurm jobs as the caller.

Jobs are submitted and cancelled by running sbatch/scancel as the caller (through the
privilege-separation component), so Slurm itself sees the real user and output files
belong to them. Reads merge the queue as the system's watch hub last saw it (one shared
poller, see events/hub.py) with accounting; the streams are in job_streams.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc

from hpcgate.server import privsep
from hpcgate.server.api.errors import (
    ApiError,
    FieldViolations,
    from_os_error,
    from_privsep,
    not_found,
    unavailable,
)
from hpcgate.server.api.job_streams import read_job_output, watch_jobs
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.resources import system_id_from_name
from hpcgate.server.auth.caller import Caller, current_caller
from hpcgate.server.compute import inventory
from hpcgate.server.compute.convert import job_to_proto, state_to_proto
from hpcgate.server.compute.idempotency import JobRequests, job_comment, request_fingerprint
from hpcgate.server.compute.jobs import JobReader
from hpcgate.server.compute.submit import Submission, build_submission
from hpcgate.server.config import Config, SystemConfig
from hpcgate.server.events.hub import JobHub
from hpcgate.server.slurm import SlurmAdapter, SlurmError, SlurmUnavailable
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.server.state.store import StateStore
from hpcgate.v1 import compute_pb2, compute_pb2_grpc

T = TypeVar("T")
_JOB_NAME = re.compile(r"^systems/([a-z][a-z0-9-]{0,62})/jobs/(\d+(?:_\d+)?)$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
             "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}  # fmt: skip
# How Slurm's refusals of a submission map to canonical codes (first match wins).
_SBATCH_REFUSALS = [
    (re.compile(r"invalid account|not permitted|access denied|user's group not permitted",
                re.I), grpc.StatusCode.PERMISSION_DENIED),
    (re.compile(r"invalid partition|invalid qos|invalid feature|invalid generic resource|"
                r"requested time limit is invalid|invalid dependency|"
                r"node count specification invalid", re.I), grpc.StatusCode.INVALID_ARGUMENT),
]  # fmt: skip


@contextmanager
def slurm_errors(what: str) -> Iterator[None]:
    """Scheduler unreachable -> UNAVAILABLE (retry); Slurm refused -> FAILED_PRECONDITION."""
    try:
        yield
    except SlurmUnavailable as e:
        raise unavailable(f"{what}: the scheduler does not answer ({e})") from None
    except SlurmError as e:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: {e}") from None


def _refusal(message: str) -> ApiError:
    text = message.strip().removeprefix("sbatch: error: ").strip()
    for pattern, code in _SBATCH_REFUSALS:
        if pattern.search(text):
            return ApiError(code, f"Slurm refused the job: {text}")
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"Slurm refused the job: {text}")


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    def __init__(
        self,
        config: Config,
        adapters: dict[str, SlurmAdapter],
        store: StateStore,
        users: privsep.PrivilegeSeparation,
        hubs: dict[str, JobHub],
        draining: asyncio.Event,
    ) -> None:
        self.config = config
        self.adapters = adapters
        self.hubs = hubs
        self.draining = draining
        self.readers = {sid: JobReader(a, hubs.get(sid)) for sid, a in adapters.items()}
        self.requests = JobRequests(store)
        self.users = users
        self._request_locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    # -- helpers ------------------------------------------------------------------------

    def _system(self, name: str, field: str, errors: FieldViolations) -> SystemConfig | None:
        system_id = system_id_from_name(name, field, errors)
        if not system_id:
            return None
        system = self.config.system(system_id)
        if system is None:
            raise not_found(f"no system {name!r}; known: "
                            + ", ".join(s.name for s in self.config.systems))  # fmt: skip
        return system

    def _job_name(self, name: str, field: str, errors: FieldViolations) -> tuple[str, str]:
        match = _JOB_NAME.match(name)
        if match is None:
            errors.add(field, f"must look like systems/{{system}}/jobs/{{job_id}}; got {name!r}")
            return "", ""
        if self.config.system(match.group(1)) is None:
            raise not_found(f"no system 'systems/{match.group(1)}'")
        return match.group(1), match.group(2)

    async def _identity(self, caller: Caller) -> privsep.UserIdentity:
        try:
            return await self.users.identity(caller.user)
        except privsep.PrivsepError as e:
            raise from_privsep(e, f"cannot act as {caller.user!r}") from None

    def _check_visible(self, job: JobRecord, caller: Caller, job_id: str) -> None:
        if job.user != caller.user and not self.config.compute.show_other_users_jobs:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {job_id} belongs to another user; you can only see your own jobs",
            )

    async def _read_job(self, system_id: str, job_id: str) -> JobRecord:
        with slurm_errors(f"reading job {job_id}"):
            job = await self.readers[system_id].get(job_id)
        if job is None:
            raise not_found(
                f"no job {job_id} on systems/{system_id} (neither queued nor in accounting)"
            )
        return job

    # -- SubmitJob ----------------------------------------------------------------------

    async def SubmitJob(
        self, request: compute_pb2.SubmitJobRequest, context: Any
    ) -> compute_pb2.SubmitJobResponse:
        caller = current_caller()
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        if request.request_id and not _REQUEST_ID.match(request.request_id):
            errors.add("request_id", "use 1-128 letters, digits and . _ : -")
        partitions = []
        if system is not None:
            with slurm_errors("reading partitions"):
                partitions = await self.adapters[system.id].partitions()
        submission = build_submission(
            request, partitions, self.config.compute.max_script_bytes, errors
        )
        identity = await self._identity(caller)
        if not submission.working_directory:
            submission.working_directory = identity.home
        await self._check_directory(identity, submission.working_directory, errors)
        errors.raise_if_any()
        assert system is not None
        if not request.request_id:
            job_id = await self._sbatch(identity, submission, None)
        else:
            job_id = await self._submit_once(caller, identity, system.id, request, submission)
        job = await self._read_job(system.id, job_id)
        if system.id in self.hubs:  # watchers and reads see the new job at once
            self.hubs[system.id].record(job)
            self.hubs[system.id].poke()
        return compute_pb2.SubmitJobResponse(job=job_to_proto(job, system.id))

    async def _check_directory(
        self, identity: privsep.UserIdentity, path: str, errors: FieldViolations
    ) -> None:
        """The working directory must be a directory the caller can enter."""
        if not path.startswith("/"):
            return  # already reported
        try:
            worker = await self.users.worker(identity)
            os.close(await worker.directory(path))  # opened as the caller, then dropped
        except OSError as e:
            errors.add("options.working_directory", f"{path}: {e.strerror or e}")
        except privsep.PrivsepError as e:
            raise from_privsep(e, "checking the working directory") from None

    async def _submit_once(
        self,
        caller: Caller,
        identity: privsep.UserIdentity,
        system_id: str,
        request: compute_pb2.SubmitJobRequest,
        submission: Submission,
    ) -> str:
        """Submit at most once per (user, system, request_id), across retries and restarts."""
        key = (caller.user, system_id, request.request_id)
        fingerprint = request_fingerprint(request.SerializeToString(deterministic=True))
        comment = job_comment(caller.user, request.request_id)
        lock = self._request_locks.setdefault(key, asyncio.Lock())
        async with lock:
            record = await asyncio.to_thread(self.requests.get, *key)
            if record is not None and record.request_hash != fingerprint:
                raise ApiError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"request_id {request.request_id!r} was used for a different request; "
                    "use a new request_id for a new job",
                )
            if record is not None and record.job_id is not None:
                return record.job_id
            if record is not None:  # sbatch ran but we died before recording its answer
                with slurm_errors("looking for an interrupted submission"):
                    found = await self.readers[system_id].find_by_comment(caller.user, comment)
                if found is not None:
                    await asyncio.to_thread(self.requests.finish, *key, found)
                    return found
            else:
                await asyncio.to_thread(self.requests.begin, *key, fingerprint)
            try:
                job_id = await self._sbatch(identity, submission, comment)
            except ApiError:
                await asyncio.to_thread(self.requests.abandon, *key)
                raise
            await asyncio.to_thread(self.requests.finish, *key, job_id)
            return job_id

    async def _sbatch(
        self, identity: privsep.UserIdentity, submission: Submission, comment: str | None
    ) -> str:
        env = self.users.user_env(identity)
        env.update(submission.environment)
        try:
            result = await self.users.run(
                identity,
                submission.argv(comment),
                cwd=submission.working_directory,
                env=env,
                input=submission.script or b"",
                time_limit=self.config.compute.submit_timeout,
            )
        except OSError as e:
            raise from_os_error(e, f"working directory {submission.working_directory}") from None
        except privsep.PrivsepError as e:
            raise from_privsep(e, "running sbatch") from None
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace")
            if "unable to contact slurm controller" in message.lower():
                raise unavailable(f"the scheduler does not answer: {message.strip()}")
            raise _refusal(message)
        job_id = result.stdout.decode().strip().split(";")[0]
        if not job_id.isdigit():
            raise ApiError(grpc.StatusCode.INTERNAL, "sbatch gave no job id")
        return job_id

    # -- reads --------------------------------------------------------------------------

    async def GetJob(
        self, request: compute_pb2.GetJobRequest, context: Any
    ) -> compute_pb2.GetJobResponse:
        caller = current_caller()
        errors = FieldViolations()
        system_id, job_id = self._job_name(request.name, "name", errors)
        errors.raise_if_any()
        job = await self._read_job(system_id, job_id)
        self._check_visible(job, caller, job_id)
        return compute_pb2.GetJobResponse(job=job_to_proto(job, system_id))

    async def ListJobs(
        self, request: compute_pb2.ListJobsRequest, context: Any
    ) -> compute_pb2.ListJobsResponse:
        caller = current_caller()
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        check_page_request(request.page_size, request.page_token, errors)
        wanted_ids = {self._job_name(n, f"names[{i}]", errors)[1] for i, n in
                      enumerate(request.names)}  # fmt: skip
        f = request.filter
        if f.user and f.user != caller.user and not self.config.compute.show_other_users_jobs:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                "listing other users' jobs is not allowed on this server",
            )
        now = datetime.now(UTC)
        start = (
            request.submitted_after.ToDatetime(UTC)
            if request.HasField("submitted_after")
            else now - timedelta(seconds=self.config.compute.default_list_window)
        )
        end = request.submitted_before.ToDatetime(UTC) if request.HasField("submitted_before") \
            else None  # fmt: skip
        if end is not None and end <= start:
            errors.add("submitted_before", "must be later than submitted_after")
        errors.raise_if_any()
        assert system is not None
        users = [f.user or caller.user]
        with slurm_errors("listing jobs"):
            jobs = await self.readers[system.id].list(users, start, end)
        states = set(f.states)
        jobs = [
            j for j in jobs
            if (not wanted_ids or j.job_id in wanted_ids)
            and (not states or state_to_proto(j.state) in states)
            and (not f.partition or j.partition == f.partition)
            and (not f.job_name or j.job_name == f.job_name)
            and (not f.account or j.account == f.account)
        ]  # fmt: skip
        jobs.sort(key=lambda j: (j.submit_time or now, j.job_id), reverse=True)
        page, token = paginate(jobs, request.page_size, request.page_token)
        return compute_pb2.ListJobsResponse(
            jobs=[job_to_proto(j, system.id, include_steps=request.include_steps) for j in page],
            next_page_token=token,
        )

    # -- CancelJob ----------------------------------------------------------------------

    async def CancelJob(
        self, request: compute_pb2.CancelJobRequest, context: Any
    ) -> compute_pb2.CancelJobResponse:
        caller = current_caller()
        errors = FieldViolations()
        system_id, job_id = self._job_name(request.name, "name", errors)
        signal = request.signal.upper().removeprefix("SIG")
        if request.signal and not (signal.isdigit() or re.match(r"^[A-Z0-9]{2,8}$", signal)):
            errors.add("signal", "must be a signal name such as SIGUSR1 or a number")
        errors.raise_if_any()
        job = await self._read_job(system_id, job_id)
        if job.user != caller.user:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {job_id} belongs to another user; you can only cancel your own jobs",
            )
        if job.state in _FINISHED:
            if request.signal:
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"job {job_id} has ended ({job.state}); there is nothing to signal",
                )
            return compute_pb2.CancelJobResponse(job=job_to_proto(job, system_id))
        if request.signal and job.state != "RUNNING":
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {job_id} is {job.state}, not running; only a running job can be signalled",
            )
        argv = ["scancel"]
        if request.signal:
            argv.append(f"--signal={signal}")
        if request.batch_only:
            argv.append("--batch")
        argv.append(job_id)
        identity = await self._identity(caller)
        try:
            result = await self.users.run(
                identity, argv, env=self.users.user_env(identity),
                time_limit=self.config.compute.submit_timeout,
            )  # fmt: skip
        except privsep.PrivsepError as e:
            raise from_privsep(e, "running scancel") from None
        if result.returncode != 0:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Slurm refused: {result.stderr.decode(errors='replace').strip()}",
            )
        if system_id in self.hubs:
            self.hubs[system_id].poke()
        job = await self._read_job(system_id, job_id)
        return compute_pb2.CancelJobResponse(job=job_to_proto(job, system_id))

    # -- inventory ----------------------------------------------------------------------

    async def _inventory(
        self, request: Any, lister: Callable[[SlurmAdapter, str], Awaitable[list[T]]], what: str
    ) -> tuple[list[T], str]:
        """One page of partitions, nodes or reservations of the request's system."""
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        assert system is not None
        with slurm_errors(f"listing {what}"):
            items = await lister(self.adapters[system.id], system.id)
        return paginate(items, request.page_size, request.page_token)

    async def ListPartitions(
        self, request: compute_pb2.ListPartitionsRequest, context: Any
    ) -> compute_pb2.ListPartitionsResponse:
        page, token = await self._inventory(request, inventory.list_partitions, "partitions")
        return compute_pb2.ListPartitionsResponse(partitions=page, next_page_token=token)

    async def ListNodes(
        self, request: compute_pb2.ListNodesRequest, context: Any
    ) -> compute_pb2.ListNodesResponse:
        page, token = await self._inventory(request, inventory.list_nodes, "nodes")
        return compute_pb2.ListNodesResponse(nodes=page, next_page_token=token)

    async def ListReservations(
        self, request: compute_pb2.ListReservationsRequest, context: Any
    ) -> compute_pb2.ListReservationsResponse:
        page, token = await self._inventory(request, inventory.list_reservations, "reservations")
        return compute_pb2.ListReservationsResponse(reservations=page, next_page_token=token)

    async def WatchJobs(
        self, request: compute_pb2.WatchJobsRequest, context: Any
    ) -> AsyncIterator[compute_pb2.WatchJobsResponse]:
        caller = current_caller()
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        ids = [self._job_name(n, f"names[{i}]", errors) for i, n in enumerate(request.names)]
        if system is not None and any(sid != system.id for sid, _ in ids if sid):
            errors.add("names", f"every job must belong to {request.parent}")
        if request.names and request.HasField("filter"):
            errors.add("filter", "give either names or a filter, not both")
        if len(request.names) > 10_000:
            errors.add("names", "at most 10000 jobs per stream")
        f = request.filter
        others = self.config.compute.show_other_users_jobs
        if f.user and f.user != caller.user and not others:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED, "watching other users' jobs is not allowed"
            )
        heartbeat = self.config.watch.heartbeat_interval
        if request.HasField("heartbeat_interval"):
            heartbeat = min(max(request.heartbeat_interval.ToTimedelta().total_seconds(), 1), 300)
        errors.raise_if_any()
        assert system is not None
        hub = self.hubs[system.id]
        await hub.wait_first_poll()
        initial = []
        if ids:
            wanted = {job_id for _, job_id in ids}
            for job_id in sorted(wanted):
                job = hub.get(job_id) or await self._read_job(system.id, job_id)
                self._check_visible(job, caller, job_id)
                if hub.get(job_id) is None:
                    initial.append(job)
            matches: Callable[[JobRecord], bool] = lambda j: j.job_id in wanted  # noqa: E731
        else:
            user = f.user or caller.user
            states = set(f.states)
            matches = lambda j: (  # noqa: E731
                j.user == user
                and (not states or state_to_proto(j.state) in states)
                and (not f.partition or j.partition == f.partition)
                and (not f.job_name or j.job_name == f.job_name)
                and (not f.account or j.account == f.account)
            )
        async for message in watch_jobs(hub, matches, request, heartbeat, self.draining, initial):
            yield message

    async def ReadJobOutput(
        self, request: compute_pb2.ReadJobOutputRequest, context: Any
    ) -> AsyncIterator[compute_pb2.ReadJobOutputResponse]:
        caller = current_caller()
        errors = FieldViolations()
        system_id, job_id = self._job_name(request.name, "name", errors)
        if request.stream not in (
            compute_pb2.JOB_OUTPUT_STREAM_UNSPECIFIED,
            compute_pb2.JOB_OUTPUT_STREAM_STDOUT,
            compute_pb2.JOB_OUTPUT_STREAM_STDERR,
        ):
            errors.add("stream", "must be STDOUT or STDERR")
        errors.raise_if_any()
        hub = self.hubs[system_id]
        job = hub.get(job_id) or await self._read_job(system_id, job_id)
        if job.user != caller.user:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {job_id} belongs to another user; only its owner can read its output",
            )
        identity = await self._identity(caller)
        async for message in read_job_output(self.users, identity, hub, job, request):
            yield message
