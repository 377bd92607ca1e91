"""ComputeService end to end as alice and bob, against the real cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import SLURM_CLUSTER, GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.v1 import compute_pb2, compute_pb2_grpc
from slurm_accounts import COUNTED_QOS, LIMIT_ACCOUNT, SHORT_QOS, remove_limit_accounts

pytestmark = pytest.mark.slurm
S = compute_pb2
EXEC = ("read", "execute")


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[compute_pb2_grpc.ComputeServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield compute_pb2_grpc.ComputeServiceStub(ch)


async def submit(stub, gateway: Gateway, user: str, script: str, **options) -> S.Job:
    request_id = options.pop("request_id", "")
    reply = await stub.SubmitJob(
        S.SubmitJobRequest(
            parent="systems/local",
            script=script,
            request_id=request_id,
            options=S.JobOptions(**options),
        ),
        metadata=bearer(gateway, user, EXEC),
    )
    return reply.job


async def wait_state(
    stub, gateway: Gateway, user: str, job: S.Job, states: set[int], timeout: float = 60
) -> S.Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await stub.GetJob(S.GetJobRequest(name=job.name), metadata=bearer(gateway, user))
        if reply.job.state in states:
            return reply.job
        assert asyncio.get_running_loop().time() < deadline, S.JobState.Name(reply.job.state)
        await asyncio.sleep(0.5)


def jobs_with_comment(comment: str) -> set[str]:
    """Job ids carrying `comment`, from the queue and from accounting."""
    queue = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%k"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    accounting = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-S", "now-1hour", "-o", "JobID,Comment"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = queue.splitlines() + accounting.splitlines()
    return {line.split("|")[0] for line in lines if line.endswith(f"|{comment}")}


def bad_fields(error: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return {v.field for v in detail.field_violations}


async def test_job_runs_to_completion_as_alice_and_stays_readable(stub, gateway) -> None:
    marker = uuid.uuid4().hex
    job = await submit(
        stub,
        gateway,
        "alice",
        f"#!/bin/bash\necho {marker}\nid -un\n",
        job_name="hello",
        stdout_path=f"/home/alice/hello-{marker}.out",
    )
    assert job.state in (S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING, S.JOB_STATE_COMPLETED)
    assert job.user == "alice" and job.name == f"systems/local/jobs/{job.job_id}"
    # Read-your-writes: GetJob right after SubmitJob finds it.
    again = await stub.GetJob(S.GetJobRequest(name=job.name), metadata=bearer(gateway, "alice"))
    assert again.job.job_id == job.job_id
    done = await wait_state(stub, gateway, "alice", job, {S.JOB_STATE_COMPLETED})
    assert done.exit_code == 0 and done.job_name == "hello"
    out = Path(f"/home/alice/hello-{marker}.out")
    assert out.stat().st_uid == 1001
    assert out.read_text().split() == [marker, "alice"]
    # After MinJobAge (15 s) the job has left the queue; accounting still knows it.
    for _ in range(60):
        queue = subprocess.run(
            ["squeue", "--states=all", "-h", "-j", job.job_id],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if not queue.strip():
            break
        await asyncio.sleep(1)
    assert not queue.strip(), "the job never left the queue"
    old = await stub.GetJob(S.GetJobRequest(name=job.name), metadata=bearer(gateway, "alice"))
    assert old.job.state == S.JOB_STATE_COMPLETED and old.job.exit_code == 0
    out.unlink()


async def test_failing_job_reports_its_exit_code(stub, gateway) -> None:
    job = await submit(stub, gateway, "bob", "#!/bin/bash\nexit 3\n", stdout_path="/dev/null")
    done = await wait_state(stub, gateway, "bob", job, {S.JOB_STATE_FAILED})
    assert done.exit_code == 3


async def test_long_job_is_cancelled(stub, gateway) -> None:
    job = await submit(
        stub, gateway, "alice", "#!/bin/bash\nsleep 300\n", stdout_path="/dev/null", time_limit="10"
    )
    await wait_state(stub, gateway, "alice", job, {S.JOB_STATE_RUNNING})
    reply = await stub.CancelJob(
        S.CancelJobRequest(name=job.name), metadata=bearer(gateway, "alice", EXEC)
    )
    assert reply.job.job_id == job.job_id
    await wait_state(stub, gateway, "alice", job, {S.JOB_STATE_CANCELLED})
    again = await stub.CancelJob(
        S.CancelJobRequest(name=job.name), metadata=bearer(gateway, "alice", EXEC)
    )
    assert again.job.state == S.JOB_STATE_CANCELLED  # cancelling an ended job is a no-op


async def test_bob_cannot_see_or_cancel_alices_job(stub, gateway) -> None:
    job = await submit(stub, gateway, "alice", "#!/bin/bash\nsleep 60\n", stdout_path="/dev/null")
    try:
        for call in (
            stub.GetJob(S.GetJobRequest(name=job.name), metadata=bearer(gateway, "bob")),
            stub.CancelJob(
                S.CancelJobRequest(name=job.name), metadata=bearer(gateway, "bob", EXEC)
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        mine = await stub.ListJobs(
            S.ListJobsRequest(parent="systems/local"), metadata=bearer(gateway, "bob")
        )
        assert job.job_id not in {j.job_id for j in mine.jobs}
        assert all(j.user == "bob" for j in mine.jobs)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ListJobs(
                S.ListJobsRequest(parent="systems/local", filter=S.JobFilter(user="alice")),
                metadata=bearer(gateway, "bob"),
            )
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = await stub.ListJobs(
            S.ListJobsRequest(parent="systems/local"), metadata=bearer(gateway, "alice")
        )
        assert job.job_id in {j.job_id for j in listed.jobs}
    finally:
        await stub.CancelJob(
            S.CancelJobRequest(name=job.name), metadata=bearer(gateway, "alice", EXEC)
        )


async def test_validation_errors_come_back_per_field(stub, gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.SubmitJob(
            S.SubmitJobRequest(
                parent="systems/local",
                script="echo no shebang",
                options=S.JobOptions(
                    partition="nope",
                    memory_per_cpu_mib=0,
                    time_limit="whenever",
                    working_directory="relative/dir",
                ),
            ),
            metadata=bearer(gateway, "alice", EXEC),
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(e.value) == {
        "script",
        "options.partition",
        "options.memory_per_cpu_mib",
        "options.time_limit",
        "options.working_directory",
    }
    # The working directory is checked (as alice) only once the request is valid.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await submit(stub, gateway, "alice", "#!/bin/sh\n", working_directory="relative/dir")
    assert bad_fields(e.value) == {"options.working_directory"}


async def test_slurm_refusal_carries_slurms_message(stub, gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await submit(stub, gateway, "alice", "#!/bin/sh\ntrue\n", account="beta")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "account" in (e.value.details() or "").lower()


async def test_root_gets_no_jobs(stub, gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await submit(stub, gateway, "root", "#!/bin/sh\ntrue\n")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_request_id_submits_once_even_across_a_restart(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    config = fast_config(tmp_path)
    request_id = f"test-{uuid.uuid4().hex}"
    first_gateway = await gateway_factory(config)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first_gateway.port}") as ch:
        stub = compute_pb2_grpc.ComputeServiceStub(ch)
        first = await submit(
            stub,
            first_gateway,
            "bob",
            "#!/bin/sh\nsleep 1\n",
            stdout_path="/dev/null",
            request_id=request_id,
        )
        retry = await submit(
            stub,
            first_gateway,
            "bob",
            "#!/bin/sh\nsleep 1\n",
            stdout_path="/dev/null",
            request_id=request_id,
        )
        assert retry.job_id == first.job_id
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await submit(
                stub,
                first_gateway,
                "bob",
                "#!/bin/sh\nsleep 2\n",
                stdout_path="/dev/null",
                request_id=request_id,
            )
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await first_gateway.stop()
    second_gateway = await gateway_factory(replace(config))  # same state directory
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second_gateway.port}") as ch:
        stub = compute_pb2_grpc.ComputeServiceStub(ch)
        after_restart = await submit(
            stub,
            second_gateway,
            "bob",
            "#!/bin/sh\nsleep 1\n",
            stdout_path="/dev/null",
            request_id=request_id,
        )
        assert after_restart.job_id == first.job_id
    from hpcgate.server.compute.idempotency import job_comment

    assert jobs_with_comment(job_comment("bob", request_id)) == {first.job_id}


async def test_array_and_dependency(stub, gateway) -> None:
    first = await submit(
        stub, gateway, "bob", "#!/bin/sh\nsleep 2\n", array="0-2", stdout_path="/dev/null"
    )
    assert first.array_task_spec or first.array_job_id
    second = await submit(
        stub,
        gateway,
        "bob",
        "#!/bin/sh\ntrue\n",
        dependency=f"afterok:{first.job_id}",
        stdout_path="/dev/null",
    )
    assert str(first.job_id) in second.dependency
    done = await wait_state(stub, gateway, "bob", second, {S.JOB_STATE_COMPLETED}, timeout=90)
    assert done.exit_code == 0
    listed = await stub.ListJobs(
        S.ListJobsRequest(parent="systems/local"), metadata=bearer(gateway, "bob")
    )
    tasks = [j for j in listed.jobs if j.array_job_id == int(first.job_id)]
    assert len(tasks) >= 3


async def test_partitions_nodes_reservations(stub, gateway) -> None:
    md = bearer(gateway, "alice")
    parts = await stub.ListPartitions(S.ListPartitionsRequest(parent="systems/local"), metadata=md)
    by_name = {p.partition: p for p in parts.partitions}
    assert by_name["debug"].is_default and by_name["long"].max_time.seconds == 2 * 86400
    nodes = await stub.ListNodes(S.ListNodesRequest(parent="systems/local"), metadata=md)
    assert len(nodes.nodes) == 1 and nodes.nodes[0].cpus == 8
    reservations = await stub.ListReservations(
        S.ListReservationsRequest(parent="systems/local"), metadata=md
    )
    assert isinstance(list(reservations.reservations), list)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.ListNodes(S.ListNodesRequest(parent="systems/mars"), metadata=md)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert os.geteuid() == 0


async def test_retry_after_a_crash_between_sbatch_and_the_record_adopts_the_job(
    stub, gateway
) -> None:
    from hpcgate.server.compute.idempotency import job_comment, request_fingerprint

    request_id = f"crash-{uuid.uuid4().hex}"
    request = S.SubmitJobRequest(
        parent="systems/local",
        script="#!/bin/sh\nsleep 1\n",
        request_id=request_id,
        options=S.JobOptions(stdout_path="/dev/null"),
    )
    # What a server that died right after sbatch leaves behind: a pending record, and a
    # job that carries the request's comment.
    from hpcgate.server.compute.idempotency import JobRequests

    JobRequests(gateway.store).begin(
        "bob",
        "local",
        request_id,
        request_fingerprint(request.SerializeToString(deterministic=True)),
    )
    sbatch = subprocess.run(
        [
            "runuser",
            "-u",
            "bob",
            "--",
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            f"--comment={job_comment('bob', request_id)}",
            "--wrap",
            "sleep 1",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/tmp",
    )
    orphan = sbatch.stdout.strip()
    reply = await stub.SubmitJob(request, metadata=bearer(gateway, "bob", EXEC))
    assert reply.job.job_id == orphan
    assert jobs_with_comment(job_comment("bob", request_id)) == {orphan}


async def test_missing_or_forbidden_paths_are_not_found_or_permission_denied(
    stub, gateway, tmp_path: Path
) -> None:
    """Issue 11: SubmitJob answers as compute.proto documents: NOT_FOUND for a working
    directory or script_path that does not exist, PERMISSION_DENIED for one alice cannot
    enter or read (bob's home, a script of bob's), INVALID_ARGUMENT for relative paths."""
    md = bearer(gateway, "alice", EXEC)
    script = "#!/bin/sh\ntrue\n"
    marker = uuid.uuid4().hex[:8]
    bobs = Path(f"/home/bob/hpcgate-test-{marker}.sh")
    bobs.write_text(script)
    os.chown(bobs, 1002, 1003)
    os.chmod(bobs, 0o600)
    not_a_dir = Path(f"/home/alice/hpcgate-test-{marker}.txt")
    not_a_dir.write_text("a file")
    os.chown(not_a_dir, 1001, 1002)
    cases = [
        ({"working_directory": f"/home/alice/missing-{marker}"}, None, "NOT_FOUND"),
        ({"working_directory": f"{not_a_dir}/sub"}, None, "NOT_FOUND"),
        ({"working_directory": "/home/bob"}, None, "PERMISSION_DENIED"),
        ({}, f"/home/alice/missing-{marker}.sh", "NOT_FOUND"),
        ({}, str(bobs), "PERMISSION_DENIED"),
        ({}, "/home/bob/anything.sh", "PERMISSION_DENIED"),  # cannot search /home/bob
    ]
    try:
        for options, script_path, code in cases:
            request = S.SubmitJobRequest(
                parent="systems/local", options=S.JobOptions(stdout_path="/dev/null", **options)
            )
            if script_path is None:
                request.script = script
            else:
                request.script_path = script_path
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.SubmitJob(request, metadata=md)
            assert e.value.code().name == code, (options, script_path, e.value.details())
            details = e.value.details() or ""
            assert (script_path or options["working_directory"]) in details, details
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitJob(
                S.SubmitJobRequest(parent="systems/local", script_path="job.sh"), metadata=md
            )
        assert bad_fields(e.value) == {"script_path"}
        # The same script is fine for bob, and alice's own directory for alice.
        job = (
            await stub.SubmitJob(
                S.SubmitJobRequest(
                    parent="systems/local",
                    script_path=str(bobs),
                    options=S.JobOptions(stdout_path="/dev/null"),
                ),
                metadata=bearer(gateway, "bob", EXEC),
            )
        ).job
        assert job.user == "bob"
        job = await submit(
            stub, gateway, "alice", script, working_directory="/tmp", stdout_path="/dev/null"
        )
        assert job.user == "alice"
    finally:
        bobs.unlink()
        not_a_dir.unlink()


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def limited_account() -> Iterator[tuple[str, str, str]]:
    """A Slurm account of alice's alone with MaxSubmitJobs=2, a QOS with
    MaxSubmitJobsPerUser=1 and one with MaxWall=10 minutes (DenyOnLimit): (account,
    counted QOS, short QOS). Removed afterwards with every job in them."""
    remove_limit_accounts()
    tag = uuid.uuid4().hex[:6]
    account, counted, short = f"{LIMIT_ACCOUNT}{tag}", f"{COUNTED_QOS}{tag}", f"{SHORT_QOS}{tag}"
    sacctmgr("add", "qos", counted, "maxsubmitjobsperuser=1")
    sacctmgr("add", "qos", short, "maxwall=00:10:00", "flags=DenyOnLimit")
    sacctmgr("add", "account", account, f"cluster={SLURM_CLUSTER}", "description=limit test")
    sacctmgr(
        "add", "user", "alice", f"account={account}", "maxsubmitjobs=2",
        f"qos=normal,{counted},{short}",
    )  # fmt: skip
    try:
        yield account, counted, short
    finally:
        subprocess.run(["scancel", "-A", account], check=False)
        for _ in range(30):
            queue = subprocess.run(
                ["squeue", "-h", "-A", account], capture_output=True, text=True, check=False
            )
            if not queue.stdout.strip():
                break
            time.sleep(0.5)
        remove_limit_accounts()


async def test_qos_and_association_limits_are_resource_exhausted(
    stub, gateway, limited_account: tuple[str, str, str]
) -> None:
    """Issue 11: a refusal for a QOS or association submit limit (MaxSubmitJobs) is
    RESOURCE_EXHAUSTED with Slurm's reason; a per-job limit (MaxWall) is INVALID_ARGUMENT
    naming options.time_limit."""
    account, counted, short = limited_account

    async def attempt(qos: str, time_limit: str = "5") -> S.Job:
        return await submit(
            stub, gateway, "alice", "#!/bin/sh\ntrue\n", account=account, qos=qos,
            time_limit=time_limit, stdout_path="/dev/null", extra_arguments=["--hold"],
        )  # fmt: skip

    for _ in range(40):  # slurmctld learns of the new association from slurmdbd
        try:
            first = await attempt(counted)
            break
        except grpc.aio.AioRpcError as e:  # "Invalid account" or "Invalid qos" meanwhile
            assert e.code() in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
            ), e.details()
            await asyncio.sleep(0.25)
    else:
        pytest.fail(f"slurmctld never accepted a job in the new account {account}")
    assert first.account == account

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await attempt(counted)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert "QOSMaxSubmitJobPerUserLimit" in (e.value.details() or "")
    assert "retry when some have ended" in (e.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await attempt(short, time_limit="20")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert bad_fields(e.value) == {"options.time_limit"}
    assert "QOSMaxWallDurationPerJobLimit" in (e.value.details() or "")

    await attempt("normal")  # the association's second job
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await attempt("normal")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert "AssocMaxSubmitJobLimit" in (e.value.details() or "")
