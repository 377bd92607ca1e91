"""ComputeService: submit, inspect, list and cancel Slurm jobs as the caller.

Jobs are submitted and cancelled by running sbatch/scancel as the caller (through the
privilege-separation component), so Slurm itself sees the real user and output files
belong to them. Reads merge the queue as the system's watch hub last saw it (one shared
poller, see events/hub.py) with accounting; the streams are in job_streams.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc

from hpcgate.server import privsep
from hpcgate.server.api.convert import inventory
from hpcgate.server.api.convert.jobs import job_to_proto, state_to_proto
from hpcgate.server.api.errors import (
    ApiError,
    DomainError,
    FieldViolations,
    from_os_error,
    from_privsep,
    not_found,
    unavailable,
)
from hpcgate.server.api.job_streams import read_job_output, watch_jobs
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.reservations import ReservationEndpoints
from hpcgate.server.api.resources import lookup_system, unknown_system
from hpcgate.server.api.streaming import heartbeat_interval
from hpcgate.server.api.submit_request import Submission, build_submission, submitted_record
from hpcgate.server.api.timeconv import read_timestamp
from hpcgate.server.auth.caller import Caller, current_caller
from hpcgate.server.compute.idempotency import (
    JobRequests,
    RequestRecord,
    job_comment,
    request_fingerprint,
)
from hpcgate.server.compute.jobs import JobReader
from hpcgate.server.compute.reservations import Reservations
from hpcgate.server.config import Config, SystemConfig
from hpcgate.server.errors import from_refusal
from hpcgate.server.events.hub import JobHub, JobView
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm import SlurmAdapter, SlurmError, SlurmUnavailable
from hpcgate.server.slurm.adapter import JobRecord, PartitionInfo
from hpcgate.server.slurm.job_control import JobControl, RefusalKind
from hpcgate.server.state.store import StateStore
from hpcgate.server.status.prober import Inventory, SystemProber
from hpcgate.server.users import identity_of
from hpcgate.v1 import compute_pb2, compute_pb2_grpc

T = TypeVar("T")
_JOB_NAME = re.compile(r"^systems/([a-z][a-z0-9-]{0,62})/jobs/(\d+(?:_\d+)?)$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
             "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}  # fmt: skip

log = logging.getLogger(__name__)


@contextmanager
def slurm_errors(what: str) -> Iterator[None]:
    """Scheduler unreachable -> UNAVAILABLE (retry); Slurm refused -> FAILED_PRECONDITION."""
    try:
        yield
    except SlurmUnavailable as e:
        raise unavailable(f"{what}: the scheduler does not answer ({e})") from None
    except SlurmError as e:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{what}: {e}") from None


refused = from_refusal  # what sbatch's and scancel's refusals mean (errors.py)


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    def __init__(
        self,
        config: Config,
        adapters: dict[str, SlurmAdapter],
        store: StateStore,
        users: privsep.PrivilegeSeparation,
        hubs: dict[str, JobHub],
        draining: asyncio.Event,
        probers: dict[str, SystemProber] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.adapters = adapters
        self.hubs = hubs
        self.draining = draining
        self.probers = probers or {}
        # sbatch and scancel run as the caller (privsep), not through the adapter: counted here.
        self.metrics = metrics or Metrics.unexposed()
        self.readers = {
            sid: JobReader(a, hubs.get(sid), self.metrics) for sid, a in adapters.items()
        }
        self.requests = JobRequests(store)
        self.users = users
        self._request_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._lock_users: dict[tuple[str, str, str], int] = {}  # holders and waiters
        self.reservations = ReservationEndpoints(
            config, Reservations(store, adapters), adapters, draining,
            config.watch.heartbeat_interval,
        )  # fmt: skip

    # -- helpers ------------------------------------------------------------------------

    def _system(self, name: str, field: str, errors: FieldViolations) -> SystemConfig | None:
        return lookup_system(self.config, name, field, errors)

    def _job_name(self, name: str, field: str, errors: FieldViolations) -> tuple[str, str]:
        match = _JOB_NAME.match(name)
        if match is None:
            errors.add(field, f"must look like systems/{{system}}/jobs/{{job_id}}; got {name!r}")
            return "", ""
        if self.config.system(match.group(1)) is None:
            raise unknown_system(self.config, match.group(1))
        return match.group(1), match.group(2)

    async def _identity(self, caller: Caller) -> privsep.UserIdentity:
        return await identity_of(self.users, caller.user)

    def _check_visible(self, job: JobRecord, caller: Caller, job_id: str) -> None:
        if job.user != caller.user and not self.config.compute.show_other_users_jobs:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {job_id} belongs to another user; you can only see your own jobs",
            )

    async def _read_job(self, system_id: str, job_id: str) -> JobView:
        with slurm_errors(f"reading job {job_id}"):
            view = await self.readers[system_id].get(job_id)
        if view is None:
            raise not_found(
                f"no job {job_id} on systems/{system_id} (neither queued nor in accounting)"
            )
        return view

    def _job_proto(self, system_id: str, job: JobRecord) -> compute_pb2.Job:
        hub = self.hubs.get(system_id)
        revision, updated_at = hub.changed(job.job_id) if hub is not None else (0, None)
        return job_to_proto(job, system_id, True, revision, updated_at)

    # -- SubmitJob ----------------------------------------------------------------------

    async def SubmitJob(
        self, request: compute_pb2.SubmitJobRequest, context: Any
    ) -> compute_pb2.SubmitJobResponse:
        caller = current_caller()
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        if request.request_id and not _REQUEST_ID.match(request.request_id):
            errors.add("request_id", "use 1-128 letters, digits and . _ : -")
        partitions = await self._partitions(system.id) if system is not None else []
        jobs = self.adapters[system.id].jobs if system is not None else JobControl()
        submission = build_submission(
            request, partitions, self.config.compute.max_script_bytes, errors, jobs
        )
        errors.raise_if_any()
        assert system is not None
        # Looked up while the request id is recorded (both take a trip to a thread).
        looking_up = asyncio.ensure_future(self._identity(caller))
        looking_up.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not request.request_id:
            job_id, fresh = await self._sbatch(await looking_up, submission, None), True
        else:
            job_id, fresh = await self._submit_once(
                caller, looking_up, system.id, request, submission
            )
        identity = await looking_up
        hub = self.hubs.get(system.id)
        if not fresh or hub is None:  # a retry: the job as it is now
            view = await self._read_job(system.id, job_id)
            return compute_pb2.SubmitJobResponse(
                job=job_to_proto(view.record, system.id, True, view.revision, view.updated_at)
            )
        job = submitted_record(
            request, job_id, caller.user, identity.uid,
            submission.working_directory or identity.home, datetime.now(UTC),
        )  # fmt: skip
        # Watchers and reads (on every replica) see the new job at once; the controller's
        # full record follows with the next poll.
        await hub.submitted(job)
        return compute_pb2.SubmitJobResponse(job=self._job_proto(system.id, hub.get(job_id) or job))

    @staticmethod
    def _directory_error(e: OSError, path: str) -> DomainError:
        """The working directory, opened as the caller when sbatch starts, was refused:
        NOT_FOUND when it does not exist, PERMISSION_DENIED when the caller cannot enter
        it. (Opening it is part of starting sbatch: no separate check, no extra trip.)"""
        reason = e.strerror or str(e)
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return not_found(
                f"working directory {path}: {reason}; create it first, or set "
                "options.working_directory to an existing directory"
            )
        if e.errno in (errno.EACCES, errno.EPERM):
            return ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"working directory {path}: {reason} (you cannot enter it); choose a "
                "directory you can search, such as your home directory",
            )
        return from_os_error(e, f"working directory {path}")

    async def _submit_once(
        self,
        caller: Caller,
        identity: Awaitable[privsep.UserIdentity],
        system_id: str,
        request: compute_pb2.SubmitJobRequest,
        submission: Submission,
    ) -> tuple[str, bool]:
        """Submit at most once per (user, system, request_id), across retries and restarts;
        the job id, and whether this call submitted it."""
        key = (caller.user, system_id, request.request_id)
        fingerprint = request_fingerprint(request.SerializeToString(deterministic=True))
        comment = job_comment(caller.user, request.request_id)
        lock = self._request_locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        recording: asyncio.Future[None] | None = None
        try:
            await lock.acquire()
        except BaseException:
            self._forget_lock(key)
            raise
        held: object = None
        try:
            held = await self._hold_across_replicas(key)
            job_id = await self._sbatch_claimed(key, fingerprint, identity, submission)
            if job_id is None:  # the request id was known: no sbatch ran
                record = await asyncio.to_thread(self.requests.get, *key)
                known = await self._known_request(caller, system_id, request, record)
                if known is not None:
                    return known, False
                # sbatch ran for it once, but no job carries its comment: submit it now.
                try:
                    job_id = await self._sbatch(await identity, submission, comment)
                except ApiError:
                    await asyncio.to_thread(self.requests.abandon, *key)
                    raise
            # Recorded while the answer travels: a retry waits for the lock until it is,
            # and after a crash before it, finds the job by its comment.
            recording = asyncio.ensure_future(asyncio.to_thread(self.requests.finish, *key, job_id))
            return job_id, True
        finally:
            if recording is None:
                self._release(key, lock, held)
            else:
                recording.add_done_callback(lambda _: self._release(key, lock, held))

    async def _hold_across_replicas(self, key: tuple[str, str, str]) -> object:
        """The request id's lock shared by all replicas (cluster mode; None otherwise), so
        that the same request_id sent to two replicas at once submits one job."""
        limit = 2 * self.config.compute.submit_timeout
        holding = asyncio.ensure_future(asyncio.to_thread(self.requests.hold, *key, limit))
        try:
            return await asyncio.shield(holding)
        except asyncio.CancelledError:  # the lock may still come: give it back then
            holding.add_done_callback(lambda done: self._let_go(done, key))
            raise
        except Exception as e:
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE,
                f"another replica is still submitting request_id {key[2]!r} ({e}); retry",
            ) from e

    def _let_go(self, done: asyncio.Future[object], key: tuple[str, str, str]) -> None:
        if not done.cancelled() and done.exception() is None and done.result() is not None:
            self._release_hold(done.result(), key)

    def _release_hold(self, held: object, key: tuple[str, str, str]) -> None:
        if held is not None:
            releasing = asyncio.ensure_future(asyncio.to_thread(self.requests.release, held, *key))
            releasing.add_done_callback(_log_release_failure)

    async def _sbatch_claimed(
        self,
        key: tuple[str, str, str],
        fingerprint: str,
        identity: Awaitable[privsep.UserIdentity],
        submission: Submission,
    ) -> str | None:
        """sbatch once this call has claimed the request id; None if it was claimed before.

        An inline script is what sbatch reads on stdin, so sbatch starts (loads its
        configuration and plugins) while the claim is written, and is fed the script only
        once the claim is durable: it can submit nothing before. A script file sbatch reads
        itself, so then it starts after the claim."""
        comment = job_comment(key[0], key[2])
        claiming = asyncio.ensure_future(asyncio.to_thread(self.requests.claim, *key, fingerprint))

        async def claimed() -> bool:  # shielded: a gate given up on leaves the claim be
            return await asyncio.shield(claiming) is None

        gate = None
        try:
            user = await identity
            if submission.script is None and not await claimed():
                return None
            gate = claimed() if submission.script is not None else None
            return await self._sbatch(user, submission, comment, gate)
        except privsep.CommandWithheld:
            return None
        except ApiError:
            if await claimed():  # give the request id back: a retry may try again
                await asyncio.to_thread(self.requests.abandon, *key)
            raise
        finally:
            if gate is not None:
                gate.close()  # when sbatch never got as far as waiting at it

    async def _known_request(
        self,
        caller: Caller,
        system_id: str,
        request: compute_pb2.SubmitJobRequest,
        record: RequestRecord | None,
    ) -> str | None:
        """A request id seen before: its job, or the job an interrupted call submitted
        (None: that call's sbatch submitted nothing)."""
        if record is None:  # abandoned meanwhile: cannot happen while we hold the lock
            raise ApiError(grpc.StatusCode.ABORTED, "the request changed under us; retry it")
        key = (caller.user, system_id, request.request_id)
        fingerprint = request_fingerprint(request.SerializeToString(deterministic=True))
        if record.request_hash != fingerprint:
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"request_id {request.request_id!r} was used for a different request; "
                "use a new request_id for a new job",
            )
        if record.job_id is not None:
            return record.job_id
        # sbatch ran but we died before recording its answer
        comment = job_comment(caller.user, request.request_id)
        with slurm_errors("looking for an interrupted submission"):
            found = await self.readers[system_id].find_by_comment(caller.user, comment)
        if found is not None:
            await asyncio.to_thread(self.requests.finish, *key, found)
            return found
        return None

    def _release(self, key: tuple[str, str, str], lock: asyncio.Lock, held: object) -> None:
        self._release_hold(held, key)
        lock.release()
        self._forget_lock(key)

    def _forget_lock(self, key: tuple[str, str, str]) -> None:
        """Drop a request's lock once no call holds or waits for it (bounded memory)."""
        self._lock_users[key] -= 1
        if not self._lock_users[key]:
            del self._lock_users[key], self._request_locks[key]

    async def _sbatch(
        self,
        identity: privsep.UserIdentity,
        submission: Submission,
        comment: str | None,
        gate: Awaitable[bool] | None = None,
    ) -> str:
        env = self.users.user_env(identity)
        env.update(submission.environment)
        directory = submission.working_directory or identity.home
        argv = submission.argv(comment)
        try:
            with self.metrics.slurm_command(os.path.basename(argv[0])):
                result = await self.users.run(
                    identity,
                    argv,
                    cwd=directory,
                    env=env,
                    input=submission.script or b"",
                    time_limit=self.config.compute.submit_timeout,
                    gate=gate,
                )
        except OSError as e:
            raise self._directory_error(e, directory) from None
        except privsep.CommandWithheld:
            raise  # the gate said no: the caller knows why
        except privsep.PrivsepError as e:
            raise from_privsep(e, "running sbatch") from None
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace")
            refusal = submission.jobs.submit_refusal(message)
            if refusal.kind is RefusalKind.UNAVAILABLE:
                raise refused(refusal)
            if submission.script_path is not None and submission.jobs.script_unreadable(message):
                # sbatch says the same for a missing and an unreadable script: ask the kernel.
                try:
                    worker = await self.users.worker(identity)
                    os.close(await worker.open_file(submission.script_path))
                except OSError as e:
                    what = f"script_path {submission.script_path}"
                    if e.errno in (errno.ENOENT, errno.ENOTDIR):
                        raise not_found(
                            f"{what}: {e.strerror}; upload the script first, or "
                            "send it inline in `script`"
                        ) from None
                    if e.errno in (errno.EACCES, errno.EPERM):
                        raise ApiError(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"{what}: {e.strerror}; you must be able to read the "
                            "script (and search its directories)",
                        ) from None
                    raise from_os_error(e, what) from None
                except privsep.PrivsepError as e:
                    raise from_privsep(e, "checking script_path") from None
            raise refused(refusal)
        job_id = submission.jobs.submitted_job_id(result.stdout.decode(errors="replace"))
        if job_id is None:
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
        view = await self._read_job(system_id, job_id)
        self._check_visible(view.record, caller, job_id)
        return compute_pb2.GetJobResponse(
            job=job_to_proto(view.record, system_id, True, view.revision, view.updated_at)
        )

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
        start = read_timestamp(request, "submitted_after", errors) or now - timedelta(
            seconds=self.config.compute.default_list_window
        )
        end = read_timestamp(request, "submitted_before", errors)
        if end is not None and end <= start:
            errors.add("submitted_before", "must be later than submitted_after")
        errors.raise_if_any()
        assert system is not None
        users = [f.user or caller.user]
        # Read before the jobs: resuming a watch from it replays anything newer than the list.
        revision = self.hubs[system.id].revision if system.id in self.hubs else 0
        with slurm_errors("listing jobs"):
            views = await self.readers[system.id].list(
                users, start, end, include_steps=request.include_steps
            )
        states = set(f.states)
        views = [
            v for v in views
            if (j := v.record)
            and (not wanted_ids or j.job_id in wanted_ids)
            and (not states or state_to_proto(j.state) in states)
            and (not f.partition or j.partition == f.partition)
            and (not f.job_name or j.job_name == f.job_name)
            and (not f.account or j.account == f.account)
        ]  # fmt: skip
        # Newest (highest job id) first, as the proto says: the reader's order, kept by the
        # filter. (Submit times tie within a second and can be unknown for a moment.)
        page, token = paginate(views, request.page_size, request.page_token)
        return compute_pb2.ListJobsResponse(
            jobs=[
                job_to_proto(v.record, system.id, request.include_steps, v.revision, v.updated_at)
                for v in page
            ],
            next_page_token=token,
            revision=revision,
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
        job = (await self._read_job(system_id, job_id)).record
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
            return compute_pb2.CancelJobResponse(job=self._job_proto(system_id, job))
        if request.signal and job.state != "RUNNING":
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {job_id} is {job.state}, not running; only a running job can be signalled",
            )
        jobs = self.adapters[system_id].jobs
        argv = jobs.cancel_argv(job_id, signal=signal if request.signal else "",
                                batch_only=request.batch_only)  # fmt: skip
        identity = await self._identity(caller)
        try:
            with self.metrics.slurm_command(os.path.basename(argv[0])):
                result = await self.users.run(
                    identity, argv, env=self.users.user_env(identity),
                    time_limit=self.config.compute.submit_timeout,
                )  # fmt: skip
        except privsep.PrivsepError as e:
            raise from_privsep(e, "running scancel") from None
        if result.returncode != 0:
            raise refused(jobs.cancel_refusal(result.stderr.decode(errors="replace")))
        if system_id in self.hubs:
            self.hubs[system_id].poke()
        view = await self._read_job(system_id, job_id)
        return compute_pb2.CancelJobResponse(
            job=job_to_proto(view.record, system_id, True, view.revision, view.updated_at)
        )

    # -- reservation requests (api/reservations.py, compute/reservations.py) -------------

    async def CreateReservation(
        self, request: compute_pb2.CreateReservationRequest, context: Any
    ) -> compute_pb2.CreateReservationResponse:
        return await self.reservations.create(request)

    async def GetReservationRequest(
        self, request: compute_pb2.GetReservationRequestRequest, context: Any
    ) -> compute_pb2.GetReservationRequestResponse:
        return await self.reservations.get(request)

    async def ListReservationRequests(
        self, request: compute_pb2.ListReservationRequestsRequest, context: Any
    ) -> compute_pb2.ListReservationRequestsResponse:
        return await self.reservations.list(request)

    async def WatchReservationRequest(
        self, request: compute_pb2.WatchReservationRequestRequest, context: Any
    ) -> AsyncIterator[compute_pb2.WatchReservationRequestResponse]:
        async for message in self.reservations.watch(request):
            yield message

    async def DeleteReservation(
        self, request: compute_pb2.DeleteReservationRequest, context: Any
    ) -> compute_pb2.DeleteReservationResponse:
        return await self.reservations.delete(request)

    # -- inventory ----------------------------------------------------------------------

    def _inventory_of(self, system_id: str) -> Inventory | None:
        prober = self.probers.get(system_id)
        return prober.fresh_inventory() if prober is not None else None

    async def _partitions(self, system_id: str) -> list[PartitionInfo]:
        """The system's partitions: the prober's (no Slurm call) or, without a recent probe,
        Slurm's."""
        known = self._inventory_of(system_id)
        if known is not None:
            return known.partitions
        with slurm_errors("reading partitions"):
            return await self.adapters[system_id].partitions()

    async def _inventory(
        self,
        request: Any,
        from_snapshot: Callable[[Inventory, str], list[T]],
        live: Callable[[SlurmAdapter, str], Awaitable[list[T]]],
        what: str,
    ) -> tuple[list[T], str]:
        """One page of partitions, nodes or reservations of the request's system, from the
        prober's inventory (as of its last probe) or, without a recent one, from Slurm."""
        errors = FieldViolations()
        system = self._system(request.parent, "parent", errors)
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        assert system is not None
        known = self._inventory_of(system.id)
        if known is not None:
            items = from_snapshot(known, system.id)
        else:
            with slurm_errors(f"listing {what}"):
                items = await live(self.adapters[system.id], system.id)
        return paginate(items, request.page_size, request.page_token)

    def _queued(self, system_id: str) -> list[JobRecord]:
        return list(self.hubs[system_id].jobs.values()) if system_id in self.hubs else []

    async def ListPartitions(
        self, request: compute_pb2.ListPartitionsRequest, context: Any
    ) -> compute_pb2.ListPartitionsResponse:
        page, token = await self._inventory(
            request,
            lambda known, sid: inventory.partitions_from(
                known.partitions, known.nodes, self._queued(sid), sid, known.read_at
            ),
            inventory.list_partitions,
            "partitions",
        )
        return compute_pb2.ListPartitionsResponse(partitions=page, next_page_token=token)

    async def ListNodes(
        self, request: compute_pb2.ListNodesRequest, context: Any
    ) -> compute_pb2.ListNodesResponse:
        page, token = await self._inventory(
            request,
            lambda known, sid: inventory.nodes_from(known.nodes, sid, known.read_at),
            inventory.list_nodes,
            "nodes",
        )
        return compute_pb2.ListNodesResponse(nodes=page, next_page_token=token)

    async def ListReservations(
        self, request: compute_pb2.ListReservationsRequest, context: Any
    ) -> compute_pb2.ListReservationsResponse:
        page, token = await self._inventory(
            request,
            lambda known, sid: inventory.reservations_from(
                known.reservations, known.nodes, sid, datetime.now(UTC)
            ),
            inventory.list_reservations,
            "reservations",
        )
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
        heartbeat = heartbeat_interval(request, errors, self.config.watch.heartbeat_interval)
        errors.raise_if_any()
        assert system is not None
        hub = self.hubs[system.id]
        await hub.wait_first_poll()
        initial = []
        if ids:
            wanted = {job_id for _, job_id in ids}
            for job_id in sorted(wanted):
                job = hub.get(job_id) or (await self._read_job(system.id, job_id)).record
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
        job = hub.get(job_id) or (await self._read_job(system_id, job_id)).record
        if job.user != caller.user:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {job_id} belongs to another user; only its owner can read its output",
            )
        identity = await self._identity(caller)
        async for message in read_job_output(self.users, identity, hub, job, request):
            yield message


def _log_release_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("releasing a request id's lock failed: %s", done.exception())
