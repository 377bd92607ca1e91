"""UtilitiesService.RunCommand end to end: a real gateway on loopback, real users alice and bob.

Every command runs as the caller through privilege separation, so each refusal below is the
kernel's. Process-group checks read /proc directly: after a timeout or a cancelled call,
nothing of the command may be left.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.api.command_request import command_spec
from hpcgate.server.app import Gateway
from hpcgate.server.config import CommandsConfig
from hpcgate.server.errors import DomainError
from hpcgate.server.files.commands import CommandOutput, CommandResult, CommandRunner
from hpcgate.server.privsep import PrivilegeSeparation
from hpcgate.v1 import utilities_pb2, utilities_pb2_grpc

pytestmark = pytest.mark.slurm
U = utilities_pb2
EXEC = ("execute",)


@pytest.fixture
async def gateway(slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path) -> Gateway:
    """A gateway whose commands get SIGKILL 1 s after SIGTERM (tests stay quick)."""
    config = fast_config(tmp_path)
    commands = replace(config.commands, kill_grace=1.0, max_per_user=2)
    return await gateway_factory(replace(config, commands=commands))


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[utilities_pb2_grpc.UtilitiesServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield utilities_pb2_grpc.UtilitiesServiceStub(ch)


@dataclass
class Outcome:
    stdout: bytes = b""
    stderr: bytes = b""
    result: U.RunCommandResult | None = None
    # (seconds since the call, kind) of every message, in arrival order
    arrivals: list[tuple[float, str]] = field(default_factory=list)


async def run(
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    gateway: Gateway,
    user: str = "alice",
    **fields: object,
) -> Outcome:
    fields.setdefault("system", "local")
    request = U.RunCommandRequest(**fields)  # type: ignore[arg-type]
    outcome = Outcome()
    started = time.monotonic()
    async for message in stub.RunCommand(request, metadata=bearer(gateway, user, EXEC)):
        kind = message.WhichOneof("kind")
        assert outcome.result is None, "the result must be the last message"
        outcome.arrivals.append((time.monotonic() - started, kind))
        if kind == "stdout":
            outcome.stdout += message.stdout
        elif kind == "stderr":
            outcome.stderr += message.stderr
        else:
            outcome.result = message.result
    assert outcome.result is not None, "the stream ended without a result"
    return outcome


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


async def wait_group_gone(pgid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while members := group_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} survived: {members}"
        await asyncio.sleep(0.05)


def pgrep(user: str, pattern: str) -> list[str]:
    import subprocess

    out = subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details and status.details[0].Unpack(detail)
    return {v.field for v in detail.field_violations}


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory of alice's, mode 0700, outside both homes."""
    alice = pwd.getpwnam("alice")
    path = Path(f"/tmp/hpcgate-rc-{uuid.uuid4().hex}")
    path.mkdir(mode=0o700)
    os.chown(path, alice.pw_uid, alice.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- running ----------------------------------------------------------------------------


async def test_runs_as_the_caller(stub, gateway) -> None:
    out = await run(stub, gateway, "alice", argv=["id", "-un"])
    assert out.stdout == b"alice\n"
    assert (out.result.exit_code, out.result.signal, out.result.timed_out) == (0, 0, False)
    assert out.result.duration.ToNanoseconds() > 0
    out = await run(stub, gateway, "bob", argv=["sh", "-c", 'id -un; echo "$HOME"; pwd'])
    assert out.stdout == b"bob\n/home/bob\n/home/bob\n"


async def test_shell_metacharacters_in_argv_are_literal(stub, gateway) -> None:
    marker = Path(f"/tmp/hpcgate-rc-{uuid.uuid4().hex}")
    argv = ["echo", f"a; touch {marker}", "$(id)", "|", "*", "`id`", "&&", ">x"]
    out = await run(stub, gateway, argv=argv)
    assert out.stdout == (" ".join(argv[1:]) + "\n").encode()
    assert out.result.exit_code == 0
    assert not marker.exists()
    assert not Path("/home/alice/x").exists()


async def test_use_shell_runs_the_command_line(stub, gateway) -> None:
    out = await run(stub, gateway, command="echo $((1 + 2)) | tr 3 x; exit 4", use_shell=True)
    assert out.stdout == b"x\n" and out.result.exit_code == 4


async def test_stdout_and_stderr_stream_while_the_command_runs(stub, gateway) -> None:
    script = "echo first; echo oops >&2; sleep 2; echo second"
    out = await run(stub, gateway, argv=["sh", "-c", script])
    assert out.stdout == b"first\nsecond\n" and out.stderr == b"oops\n"
    first_output = out.arrivals[0][0]
    end = out.arrivals[-1][0]
    assert out.arrivals[-1][1] == "result"
    assert first_output < 1.5 and end >= 2.0, out.arrivals
    assert {kind for _, kind in out.arrivals} == {"stdout", "stderr", "result"}


async def test_exit_code_and_signal(stub, gateway) -> None:
    out = await run(stub, gateway, argv=["sh", "-c", "exit 3"])
    assert (out.result.exit_code, out.result.signal) == (3, 0)
    out = await run(stub, gateway, argv=["sh", "-c", "kill -KILL $$"])
    assert (out.result.exit_code, out.result.signal, out.result.timed_out) == (0, 9, False)


async def test_timeout_kills_a_group_that_ignores_sigterm(stub, gateway) -> None:
    marker = f"hpcgate-rc-{uuid.uuid4().hex}"
    # The leader ignores SIGTERM, and so do its child and grandchild (inherited).
    script = (
        "trap '' TERM; echo $$; "
        f"sh -c 'sleep 600 & wait' {marker}-child & "
        f"exec -a {marker}-leader sleep 600"
    )
    started = time.monotonic()
    out = await run(stub, gateway, argv=["bash", "-c", script], timeout=seconds(1.0))
    elapsed = time.monotonic() - started
    assert out.result.timed_out and out.result.signal == 9 and out.result.exit_code == 0
    assert 1.9 <= elapsed < 8, elapsed  # 1 s timeout + 1 s grace
    await wait_group_gone(int(out.stdout.split()[0]))
    assert pgrep("alice", marker) == []


async def test_timeout_reports_a_command_that_exits_on_sigterm(stub, gateway) -> None:
    out = await run(stub, gateway, argv=["sleep", "600"], timeout=seconds(0.5))
    assert out.result.timed_out and out.result.signal == 15
    assert out.result.duration.ToNanoseconds() < 5e9


async def test_background_processes_do_not_outlive_the_command(stub, gateway) -> None:
    marker = f"hpcgate-rc-{uuid.uuid4().hex}"
    script = f"(exec -a {marker} sleep 600) >/dev/null 2>&1 & echo $$"
    out = await run(stub, gateway, argv=["bash", "-c", script])
    assert out.result.exit_code == 0 and not out.result.timed_out
    await wait_group_gone(int(out.stdout.split()[0]), within=2.0)
    assert pgrep("alice", marker) == []


async def test_output_cap_truncates_and_the_command_completes(stub, gateway) -> None:
    script = "head -c 300000 /dev/zero; echo late >&2; exit 7"
    out = await run(stub, gateway, argv=["sh", "-c", script], max_output_bytes=100_000)
    assert len(out.stdout) + len(out.stderr) == 100_000
    assert out.result.output_truncated and out.result.exit_code == 7
    out = await run(stub, gateway, argv=["echo", "small"], max_output_bytes=100_000)
    assert not out.result.output_truncated


async def test_large_output_comes_in_bounded_chunks(stub, gateway) -> None:
    sizes: list[int] = []
    request = U.RunCommandRequest(
        system="local", argv=["head", "-c", "5000000", "/dev/zero"], max_output_bytes=8 << 20
    )
    async for message in stub.RunCommand(request, metadata=bearer(gateway, "alice", EXEC)):
        if message.WhichOneof("kind") == "stdout":
            sizes.append(len(message.stdout))
    assert sum(sizes) == 5_000_000 and max(sizes) <= 64 * 1024


async def test_client_cancellation_kills_the_process_group(stub, gateway) -> None:
    marker = f"hpcgate-rc-{uuid.uuid4().hex}"
    script = f"echo $$; sh -c 'sleep 600 & wait' {marker}-child & exec -a {marker} sleep 600"
    call = stub.RunCommand(
        U.RunCommandRequest(system="local", argv=["bash", "-c", script]),
        metadata=bearer(gateway, "alice", EXEC),
    )
    first = await call.read()
    pgid = int(first.stdout.split()[0])
    deadline = time.monotonic() + 5
    while len(group_members(pgid)) < 3:  # leader, child shell, grandchild sleep
        assert time.monotonic() < deadline, group_members(pgid)
        await asyncio.sleep(0.05)
    call.cancel()
    await wait_group_gone(pgid)
    assert pgrep("alice", marker) == []
    # The slot is given back: alice may run max_per_user (2) commands again.
    await asyncio.sleep(0.2)
    outs = await asyncio.gather(*(run(stub, gateway, argv=["true"]) for _ in range(2)))
    assert all(o.result.exit_code == 0 for o in outs)


async def test_working_directory_environment_and_stdin(stub, gateway) -> None:
    script = 'pwd; printf "%s\\n" "$GREETING" "$USER" "$SHELL"; cat; echo to-stderr > /dev/stderr'
    out = await run(
        stub,
        gateway,
        argv=["sh", "-c", script],
        working_directory="/tmp",
        environment={"GREETING": "hi there; $(id)"},
        stdin=b"from stdin\n",
    )
    assert out.stdout == b"/tmp\nhi there; $(id)\nalice\n/bin/bash\nfrom stdin\n"
    assert out.stderr == b"to-stderr\n" and out.result.exit_code == 0
    # The input pipe belongs to the caller, so it can be reopened by name.
    out = await run(stub, gateway, argv=["cat", "/dev/stdin"], stdin=b"x" * 200_000)
    assert out.stdout == b"x" * 200_000
    out = await run(stub, gateway, argv=["cat"])  # no stdin: /dev/null
    assert out.stdout == b"" and out.result.exit_code == 0


async def test_per_user_limit(stub, gateway) -> None:
    calls = [
        stub.RunCommand(
            U.RunCommandRequest(system="local", argv=["sh", "-c", "echo $$; sleep 600"]),
            metadata=bearer(gateway, "alice", EXEC),
        )
        for _ in range(2)
    ]
    groups = [int((await call.read()).stdout) for call in calls]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, argv=["true"])
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await run(stub, gateway, "bob", argv=["true"])).result.exit_code == 0
    for call in calls:
        call.cancel()
    for pgid in groups:
        await wait_group_gone(pgid)


# -- refusals ---------------------------------------------------------------------------

BAD_REQUESTS = [
    ({}, {"argv"}),
    ({"argv": ["echo"], "command": "echo", "use_shell": True}, {"command", "use_shell"}),
    ({"command": "echo hi"}, {"use_shell"}),
    ({"argv": ["echo", "hi"], "use_shell": True}, {"use_shell"}),
    ({"argv": [""]}, {"argv[0]"}),
    ({"argv": ["echo", "a\0b"]}, {"argv[1]"}),
    ({"command": "echo \0", "use_shell": True}, {"command"}),
    ({"argv": ["pwd"], "working_directory": "tmp"}, {"working_directory"}),
    ({"argv": ["pwd"], "working_directory": "/tmp/../etc"}, {"working_directory"}),
    ({"argv": ["pwd"], "working_directory": "/tmp\0"}, {"working_directory"}),
    ({"argv": ["env"], "environment": {"1X": "a"}}, {"environment"}),
    ({"argv": ["env"], "environment": {"A-B": "a"}}, {"environment"}),
    ({"argv": ["env"], "environment": {"X": "a\0b"}}, {"environment.X"}),
    ({"argv": ["env"], "environment": {"LD_PRELOAD": "/tmp/x.so"}}, {"environment.LD_PRELOAD"}),
    ({"argv": ["env"], "environment": {"GCONV_PATH": "/tmp"}}, {"environment.GCONV_PATH"}),
    ({"argv": ["env"], "environment": {"USER": "root"}}, {"environment.USER"}),
    ({"argv": ["true"], "timeout": duration_pb2.Duration(seconds=-1)}, {"timeout"}),
    ({"argv": ["true"], "timeout": duration_pb2.Duration(seconds=301)}, {"timeout"}),
    ({"argv": ["true"], "max_output_bytes": (16 << 20) + 1}, {"max_output_bytes"}),
    ({"argv": ["cat"], "stdin": b"x" * ((1 << 20) + 1)}, {"stdin"}),
]


@pytest.mark.parametrize(("fields", "expected"), BAD_REQUESTS)
async def test_invalid_requests_name_each_field(stub, gateway, fields, expected) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error.value) == expected
    if "timeout" in expected and fields["timeout"].seconds > 0:
        assert "300 s" in (error.value.details() or "")


async def test_missing_and_unrunnable_executables(stub, gateway, private_dir) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, argv=["hpcgate-no-such-command"])
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "hpcgate-no-such-command" in (error.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, argv=["/etc/passwd"])
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # alice's own script, not executable, then executable (relative to the cwd).
    script = private_dir / "job.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    alice = pwd.getpwnam("alice")
    os.chown(script, alice.pw_uid, alice.pw_gid)
    script.chmod(0o600)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, argv=["./job.sh"], working_directory=str(private_dir))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    script.chmod(0o700)
    out = await run(stub, gateway, argv=["./job.sh"], working_directory=str(private_dir))
    assert out.stdout == b"ran\n"
    # bob cannot even reach it: the kernel refuses the lookup as bob.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, "bob", argv=[str(script)])
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A PATH of the request's environment is the one searched.
    out = await run(stub, gateway, argv=["job.sh"], environment={"PATH": str(private_dir)})
    assert out.stdout == b"ran\n"


async def test_working_directory_errors(stub, gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, argv=["pwd"], working_directory="/nonexistent-hpcgate")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "/nonexistent-hpcgate" in (error.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await run(stub, gateway, "alice", argv=["pwd"], working_directory="/home/bob")
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bob_cannot_write_into_alices_private_directory(stub, gateway, private_dir) -> None:
    target = private_dir / "from-bob"
    out = await run(stub, gateway, "bob", argv=["touch", str(target)])
    assert out.result.exit_code != 0 and b"Permission denied" in out.stderr
    assert not target.exists()
    out = await run(stub, gateway, "alice", argv=["touch", str(target)])
    assert out.result.exit_code == 0 and target.stat().st_uid == pwd.getpwnam("alice").pw_uid


async def test_needs_the_execute_scope(stub, gateway) -> None:
    request = U.RunCommandRequest(system="local", argv=["true"])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in stub.RunCommand(request, metadata=bearer(gateway, "alice", ("read",))):
            pass
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_disabled_by_configuration(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    config = fast_config(tmp_path / "off")
    off = await gateway_factory(
        replace(config, commands=replace(config.commands, enabled=False)), wait_ready=False
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{off.port}") as ch:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await run(stub, off, argv=["true"])
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_cancelling_a_flooding_command_kills_it(stub, gateway) -> None:
    """The server may be blocked writing to a slow client when the call is cancelled."""
    marker = f"hpcgate-rc-{uuid.uuid4().hex}"
    call = stub.RunCommand(
        U.RunCommandRequest(
            system="local",
            argv=["bash", "-c", f"echo $$; exec -a {marker} yes flood"],
            max_output_bytes=16 << 20,
        ),
        metadata=bearer(gateway, "alice", EXEC),
    )
    pgid = int((await call.read()).stdout.split()[0])
    await asyncio.sleep(0.5)  # the pipes and the HTTP/2 window fill up
    call.cancel()
    await wait_group_gone(pgid)
    assert pgrep("alice", marker) == []


async def test_client_deadline_kills_the_command(stub, gateway) -> None:
    marker = f"hpcgate-rc-{uuid.uuid4().hex}"
    call = stub.RunCommand(
        U.RunCommandRequest(
            system="local", argv=["bash", "-c", f"echo $$; exec -a {marker} sleep 600"]
        ),
        metadata=bearer(gateway, "alice", EXEC),
        timeout=1.0,
    )
    pgid = int((await call.read()).stdout.split()[0])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        while await call.read() != grpc.aio.EOF:
            pass
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_group_gone(pgid)
    assert pgrep("alice", marker) == []


# -- shutdown (the runner directly) -----------------------------------------------------


async def _first_output(runner: CommandRunner, user, script: str):  # type: ignore[no-untyped-def]
    """Starts `script`, consumes it in a task; returns (task, pgid printed by the script)."""
    first: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    results: list[CommandResult] = []

    async def consume() -> list[CommandResult]:
        request = U.RunCommandRequest(system="local", argv=["sh", "-c", script])
        async for item in runner.stream(user, command_spec(request, runner.config)):
            if isinstance(item, CommandOutput) and not first.done():
                first.set_result(int(item.data.split()[0]))
            if isinstance(item, CommandResult):
                results.append(item)
        return results

    task = asyncio.create_task(consume())
    return task, await asyncio.wait_for(first, 10)


async def test_runner_close_kills_running_commands(slurm_cluster: None) -> None:
    ps = PrivilegeSeparation()
    runner = CommandRunner(CommandsConfig(), ps)
    try:
        alice = await ps.identity("alice")
        task, pgid = await _first_output(runner, alice, "echo $$; sleep 600 & sleep 600")
        await runner.close()
        assert group_members(pgid) == []
        results = await asyncio.wait_for(task, 5)
        assert results[0].signal == 9 and runner.running("alice") == 0
    finally:
        await ps.close()


async def test_command_dies_even_when_privsep_closed_first(slurm_cluster: None) -> None:
    ps = PrivilegeSeparation()
    runner = CommandRunner(CommandsConfig(), ps)
    alice = await ps.identity("alice")
    task, pgid = await _first_output(runner, alice, "echo $$; sleep 600 & sleep 600")
    await ps.close()  # the worker exits, and kills the commands it started
    task.cancel()
    # Cancelled, or UNAVAILABLE first: the exit status went with the worker.
    with pytest.raises((asyncio.CancelledError, DomainError)):
        await task
    await wait_group_gone(pgid, within=5)
    # The slot is freed by the command's cleanup, a task of its own that may still be
    # waiting for an exit status the closed worker can no longer give (up to REAP_TIMEOUT).
    await asyncio.wait_for(runner.close(), 15)
    assert runner.running("alice") == 0
