"""`client.jobs` and `Job` against a real server and the real Slurm: submit, wait on
WatchJobs (across a server restart), follow output, list pages, cancel, typed errors,
the blocking SyncClient, and retried submissions that never submit twice."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest

from conftest import GatewayFactory, bearer, cluster, fast_config
from hpcgate.client import (
    Client,
    DeadlineExceeded,
    HpcgateError,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    SyncClient,
    connect,
)
from hpcgate.server.app import Gateway

pytestmark = pytest.mark.slurm
SLEEPER = "#!/bin/sh\nsleep 60\n"


def token_of(gateway: Gateway, user: str = "alice") -> str:
    return bearer(gateway, user, ("read", "write", "execute"))[0][1].removeprefix("Bearer ")


def address(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    async with connect(address(gateway), token=token_of(gateway), system="local") as c:
        yield c


@pytest.fixture
def home_file() -> Iterator[Callable[[str], Path]]:
    """Unique files in alice's home (where her jobs may write), removed afterwards."""
    made: list[Path] = []

    def make(tag: str) -> Path:
        made.append(Path(f"/home/alice/client-jobs-{tag}-{uuid.uuid4().hex[:8]}.out"))
        return made[-1]

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def slurm_jobs_named(name: str) -> set[str]:
    """Job ids with this job name according to Slurm itself (queue and accounting)."""
    queue = subprocess.run(["squeue", "--states=all", "-h", "-n", name, "-o", "%i"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    accounting = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-S", "now-1hour", "--name", name, "-o", "JobID"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(queue.split()) | set(accounting.split())


async def test_submit_inline_and_local_scripts_then_wait_for_their_exit_codes(
    client: Client, home_file: Callable[[str], Path], tmp_path: Path
) -> None:
    out, err = home_file("hello"), home_file("oops")
    ok = await client.jobs.submit(
        script="#!/bin/sh\necho hello $1\n", arguments=["world"], stdout_path=str(out),
        job_name="client-hello", time_limit=5,
    )  # fmt: skip
    local = tmp_path / "fails.sh"
    local.write_text("#!/bin/sh\necho oops >&2\nexit 3\n")
    bad = await client.jobs.submit(local_script=local, stdout_path="/dev/null",
                                   stderr_path=str(err))  # fmt: skip
    assert ok.name == f"systems/local/jobs/{ok.id}" and not ok.finished
    assert (await client.jobs.get(bad.id)).id == bad.id  # visible at once
    await asyncio.gather(ok.wait(timeout=60), bad.wait(timeout=60))
    assert (ok.state, ok.exit_code, ok.finished) == ("COMPLETED", 0, True)
    assert (bad.state, bad.exit_code, bad.job_name) == ("FAILED", 3, "fails.sh")
    assert "".join([str(c) async for c in ok.output()]) == "hello world\n"
    chunks = [c async for c in bad.output("stderr", text=False)]
    assert all(isinstance(c, bytes) for c in chunks) and b"".join(map(bytes, chunks)) == b"oops\n"
    assert (await ok.wait()).state == "COMPLETED"  # already over: no call at all


async def test_get_list_over_pages_and_cancel(client: Client) -> None:
    name = f"client-list-{uuid.uuid4().hex[:8]}"
    jobs = [
        await client.jobs.submit(script=SLEEPER, job_name=name, stdout_path="/dev/null")
        for _ in range(3)
    ]
    ids = [j.id for j in jobs]
    try:
        assert (await client.jobs.get(jobs[0].name)).id == ids[0]
        listed = [j.id async for j in client.jobs.list(job_name=name, page_size=2)]
        assert listed == sorted(ids, key=int, reverse=True)  # newest first, both pages
        # CONFIGURING too: while Slurm's PrologSlurmctld runs (the hook) a starting job is so.
        live = ["PENDING", "CONFIGURING", "RUNNING"]
        only = [j.id async for j in client.jobs.list(names=[ids[1]], states=live)]
        assert only == [ids[1]]
    finally:
        cancelled = [
            await client.jobs.cancel(ids[0]),
            await jobs[1].cancel(),
            await jobs[2].cancel(),
        ]
    await asyncio.gather(*(j.wait(timeout=60) for j in cancelled))
    assert {j.state for j in cancelled} == {"CANCELLED"}
    again = await client.jobs.cancel(ids[0])  # an ended job: nothing to do, no error
    assert again.state == "CANCELLED"
    gone = [j async for j in client.jobs.list(job_name=name, states=["RUNNING", "PENDING"])]
    assert gone == []


async def test_follow_streams_output_while_the_job_writes_it(
    client: Client, home_file: Callable[[str], Path]
) -> None:
    out = home_file("follow")
    script = '#!/bin/bash\nfor i in 1 2 3 4 5; do echo "línea $i"; sleep 0.6; done\n'
    job = await client.jobs.submit(script=script, stdout_path=str(out))
    arrivals: list[tuple[float, str]] = []
    async for chunk in job.output(follow=True):
        assert isinstance(chunk, str)
        arrivals.append((time.monotonic(), chunk))
    text = "".join(c for _, c in arrivals)
    assert text.splitlines() == [f"línea {i}" for i in range(1, 6)]
    assert len(arrivals) >= 2 and arrivals[-1][0] - arrivals[0][0] > 1.0  # streamed, not at end
    await job.wait(timeout=30)
    assert job.state == "COMPLETED"


async def test_follow_right_after_submit_waits_for_slurm_to_name_the_file(
    client: Client,
) -> None:
    """Without stdout_path the file is Slurm's default (slurm-ID.out in the working
    directory), which the server learns only at its next poll: following waits for it."""
    job = await client.jobs.submit(script="#!/bin/sh\necho default-output\n")
    try:
        text = "".join([str(c) async for c in job.output(follow=True)])
        assert text == "default-output\n"
    finally:
        Path(f"/home/alice/slurm-{job.id}.out").unlink(missing_ok=True)


async def test_wait_until_running_then_a_timeout_raises_deadline_exceeded(client: Client) -> None:
    job = await client.jobs.submit(script=SLEEPER, stdout_path="/dev/null")
    try:
        await job.wait(until="running", timeout=30)
        assert job.state == "RUNNING" and not job.finished
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as late:
            await job.wait(timeout=1)
        assert 0.9 < time.monotonic() - started < 5
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and job.id in late.value.message
        with pytest.raises(ValueError):
            await job.wait(until="soon")
    finally:
        await job.cancel()
    assert (await job.wait(timeout=30)).state == "CANCELLED"
    assert (await job.wait(until="running")).state == "CANCELLED"  # ended counts as started


async def test_errors_are_typed(client: Client) -> None:
    with pytest.raises(NotFound):
        await client.jobs.get("999999999")
    with pytest.raises(InvalidArgument) as bad:
        await client.jobs.submit(
            script="#!/bin/sh\ntrue\n", partition="nope", time_limit="whenever"
        )
    assert {v.field for v in bad.value.violations} == {"options.partition", "options.time_limit"}
    with pytest.raises(InvalidArgument) as none:
        await client.jobs.submit()
    assert none.value.violations[0].field == "script"
    with pytest.raises(TypeError, match="no_such_option"):
        await client.jobs.submit(script="#!/bin/sh\n", no_such_option=1)
    with pytest.raises(InvalidArgument):
        [j async for j in client.jobs.list(states=["SLEEPING"])]


async def test_sync_client_submits_waits_reads_and_lists(
    gateway: Gateway, home_file: Callable[[str], Path]
) -> None:
    out = home_file("sync")

    def blocking() -> None:
        with SyncClient.connect(address(gateway), token=token_of(gateway), system="local") as c:
            job = c.jobs.submit(script="#!/bin/sh\necho synchronous\n", stdout_path=str(out))
            assert job.wait(timeout=60).state == "COMPLETED" and job.exit_code == 0
            assert "".join(job.output()) == "synchronous\n"
            assert [j.id for j in c.jobs.list(names=[job.id])] == [job.id]
            with pytest.raises(NotFound):
                c.jobs.get("999999998")

    await asyncio.to_thread(blocking)  # the gateway runs on this test's loop


async def test_sync_client_wait_timeout_and_cancel(gateway: Gateway) -> None:
    def blocking() -> None:
        with SyncClient.connect(address(gateway), token=token_of(gateway), system="local") as c:
            job = c.jobs.submit(script=SLEEPER, stdout_path="/dev/null")
            with pytest.raises(DeadlineExceeded):
                job.wait(until="finished", timeout=0.5)
            assert c.jobs.cancel(job.id).id == job.id
            assert job.wait(timeout=30).state == "CANCELLED"

    await asyncio.to_thread(blocking)


async def test_wait_survives_a_server_restart(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    port = free_port()  # the restarted server listens where the client reconnects
    config = fast_config(tmp_path)
    config = replace(config, server=replace(config.server, listen=f"127.0.0.1:{port}"))
    first = await gateway_factory(config)
    retry = RetryPolicy(attempts=10, initial_delay=0.2, max_delay=1.0)
    async with connect(f"127.0.0.1:{port}", token=token_of(first), system="local",
                       retry=retry) as client:  # fmt: skip
        job = await client.jobs.submit(script="#!/bin/sh\nsleep 4\n", stdout_path="/dev/null")
        await job.wait(until="running", timeout=30)
        waiting = asyncio.ensure_future(job.wait(timeout=60))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await first.stop()  # the watch stream ends UNAVAILABLE
        await asyncio.sleep(4)  # the job ends while no server is there to see it
        assert not waiting.done()
        second = await gateway_factory(replace(config))  # same port, same state directory
        assert second.port == port
        await asyncio.wait_for(waiting, 60)
        assert job.state == "COMPLETED" and job.exit_code == 0


@dataclass(frozen=True)
class RecordingPolicy(RetryPolicy):
    """A real retry policy that also remembers each failure it was asked to wait after."""

    failures: list[HpcgateError] = field(default_factory=list)

    def delay(self, attempt: int, error: HpcgateError) -> float:
        self.failures.append(error)
        return super().delay(attempt, error)


async def test_retried_submit_never_duplicates_while_slurmctld_restarts(
    gateway: Gateway, restore_slurmctld: None
) -> None:
    name = f"client-once-{uuid.uuid4().hex[:8]}"
    policy = RecordingPolicy(attempts=30, initial_delay=0.5, max_delay=2.0)
    async with connect(address(gateway), token=token_of(gateway), system="local",
                       retry=policy) as client:  # fmt: skip
        await asyncio.to_thread(cluster, "stop", "slurmctld")
        submitting = asyncio.ensure_future(
            client.jobs.submit(script="#!/bin/sh\ntrue\n", job_name=name, stdout_path="/dev/null")
        )
        for _ in range(120):  # until an attempt has failed for want of a controller
            if policy.failures or submitting.done():
                break
            await asyncio.sleep(0.25)
        assert not submitting.done() and policy.failures
        assert policy.failures[0].code == grpc.StatusCode.UNAVAILABLE
        await asyncio.to_thread(cluster, "start", "slurmctld")
        job = await asyncio.wait_for(submitting, 90)
        listed = [j.id async for j in client.jobs.list(job_name=name)]
        assert listed == [job.id]
    assert slurm_jobs_named(name) == {job.id}
