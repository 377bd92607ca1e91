"""Bad input answers INVALID_ARGUMENT, never INTERNAL or UNKNOWN (issue 11 item 4).

Out-of-range Timestamps and Durations (one RPC per family), requests that cannot be
decoded (unary, server-streaming and client-streaming), and error statuses too large for
a client to read. These are the regressions for what tests/test_fuzz.py found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from files_helpers import field_violations, user_dir
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import bearer
from hpcgate.server.api.errors import FieldViolations, invalid_argument, to_status
from hpcgate.server.api.timeconv import read_duration, read_timestamp
from hpcgate.server.app import Gateway
from hpcgate.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    utilities_pb2,
    utilities_pb2_grpc,
)

Timestamp = timestamp_pb2.Timestamp
Duration = duration_pb2.Duration
ALL = ("read", "write", "execute")
# A proto3 string (field 1) holding invalid UTF-8, and bytes that are no message at all.
BAD_UTF8 = b"\x0a\x02\xc3\x28"
CORRUPT = b"\x0a\x7fab"  # a length past the end of the data
NESTED_BAD_UTF8 = b"\x0a\x04" + BAD_UTF8  # an UploadRequest whose header.system is bad

# --- the conversions -----------------------------------------------------------------

BAD_TIMESTAMPS = [
    Timestamp(seconds=-62_135_596_801),  # before 0001-01-01
    Timestamp(seconds=253_402_300_800),  # after 9999-12-31T23:59:59
    Timestamp(seconds=2**63 - 1),
    Timestamp(seconds=0, nanos=-1),
    Timestamp(seconds=0, nanos=1_000_000_000),
]
BAD_DURATIONS = [
    Duration(seconds=315_576_000_001),
    Duration(seconds=-315_576_000_001),
    Duration(seconds=-(2**63)),
    Duration(seconds=1, nanos=-1),  # mismatched signs
    Duration(seconds=-1, nanos=1),
    Duration(nanos=1_000_000_000),
]


@pytest.mark.parametrize("value", BAD_TIMESTAMPS, ids=str)
def test_read_timestamp_reports_out_of_range_values(value: Timestamp) -> None:
    errors = FieldViolations()
    request = tasks_pb2.ListTasksRequest(created_after=value)
    assert read_timestamp(request, "created_after", errors) is None
    assert [f for f, _ in errors.violations] == ["created_after"]


@pytest.mark.parametrize("value", BAD_DURATIONS, ids=str)
def test_read_duration_reports_out_of_range_values(value: Duration) -> None:
    errors = FieldViolations()
    watch = tasks_pb2.WatchTaskRequest(heartbeat_interval=value)
    assert read_duration(watch, "heartbeat_interval", errors, "x.heartbeat_interval") is None
    assert [f for f, _ in errors.violations] == ["x.heartbeat_interval"]


def test_the_ends_of_the_ranges_are_accepted() -> None:
    errors = FieldViolations()
    first = tasks_pb2.ListTasksRequest(created_after=Timestamp(seconds=-62_135_596_800))
    last = tasks_pb2.ListTasksRequest(
        created_after=Timestamp(seconds=253_402_300_799, nanos=999_999_999)
    )
    longest = tasks_pb2.WatchTaskRequest(
        heartbeat_interval=Duration(seconds=-315_576_000_000, nanos=-999_999_999)
    )
    assert read_timestamp(first, "created_after", errors) == datetime(1, 1, 1, tzinfo=UTC)
    assert read_timestamp(last, "created_after", errors) is not None
    assert read_duration(longest, "heartbeat_interval", errors) is not None
    assert read_timestamp(tasks_pb2.ListTasksRequest(), "created_after", errors) is None
    unset = tasks_pb2.WatchTaskRequest()
    assert read_duration(unset, "heartbeat_interval", errors) is None
    assert not errors
    small = tasks_pb2.WatchTaskRequest(heartbeat_interval=Duration(seconds=2, nanos=500_000_000))
    assert read_duration(small, "heartbeat_interval", errors) == timedelta(seconds=2.5)


def test_error_statuses_stay_small_enough_for_clients() -> None:
    error = invalid_argument([(f"names[{i}]", "x" * 5000) for i in range(50)])
    status = to_status(error)
    assert len(status.details.encode()) <= 1000
    details_bytes = sum(len(value) for key, value in status.trailing_metadata)
    assert details_bytes < 4096
    assert "..." in status.details


# --- the server ----------------------------------------------------------------------


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


async def invalid(call: object) -> dict[str, str]:
    """The field violations of the INVALID_ARGUMENT that `call` must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return field_violations(info.value)


async def first_message(stream: grpc.aio.UnaryStreamCall) -> object:
    async for message in stream:
        return message
    return None


@pytest.mark.slurm
async def test_status_watch_rejects_an_out_of_range_heartbeat(
    channel: grpc.aio.Channel,
) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)  # public: no token
    request = status_pb2.WatchSystemsRequest(heartbeat_interval=Duration(seconds=2**62))
    bad = await invalid(first_message(stub.WatchSystems(request, timeout=10)))
    assert "heartbeat_interval" in bad


@pytest.mark.slurm
async def test_exchange_token_rejects_an_out_of_range_lifetime(
    channel: grpc.aio.Channel,
) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    request = auth_pb2.ExchangeTokenRequest(
        client_assertion="a.b.c", requested_lifetime=Duration(seconds=60, nanos=-1)
    )
    bad = await invalid(stub.ExchangeToken(request, timeout=10))
    assert bad["requested_lifetime"] == "seconds and nanos must have the same sign"


@pytest.mark.slurm
async def test_compute_rejects_out_of_range_times(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    stub = compute_pb2_grpc.ComputeServiceStub(channel)
    md = bearer(gateway, "alice")
    listing = compute_pb2.ListJobsRequest(
        parent="systems/local",
        submitted_after=Timestamp(seconds=-62_135_596_801),
        submitted_before=Timestamp(seconds=0, nanos=-1),
    )
    bad = await invalid(stub.ListJobs(listing, metadata=md, timeout=10))
    assert {"submitted_after", "submitted_before"} <= set(bad)
    watch = compute_pb2.WatchJobsRequest(
        parent="systems/local", heartbeat_interval=Duration(seconds=315_576_000_001)
    )
    bad = await invalid(first_message(stub.WatchJobs(watch, metadata=md, timeout=10)))
    assert "heartbeat_interval" in bad


@pytest.mark.slurm
async def test_tasks_reject_out_of_range_times(gateway: Gateway, channel: grpc.aio.Channel) -> None:
    stub = tasks_pb2_grpc.TasksServiceStub(channel)
    md = bearer(gateway, "alice")
    listing = tasks_pb2.ListTasksRequest(
        created_after=Timestamp(seconds=253_402_300_800),
        created_before=Timestamp(seconds=1, nanos=1_000_000_000),
    )
    bad = await invalid(stub.ListTasks(listing, metadata=md, timeout=10))
    assert {"created_after", "created_before"} <= set(bad)
    watch = tasks_pb2.WatchTaskRequest(
        name="tasks/00000000-0000-0000-0000-000000000000",
        heartbeat_interval=Duration(seconds=-(2**63)),
    )
    bad = await invalid(first_message(stub.WatchTask(watch, metadata=md, timeout=10)))
    assert "heartbeat_interval" in bad


@pytest.mark.slurm
async def test_utilities_reject_out_of_range_times(
    gateway: Gateway, channel: grpc.aio.Channel, alice_dir: Path
) -> None:
    stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
    md = bearer(gateway, "alice", ALL)
    header = utilities_pb2.UploadHeader(
        system="local", path=f"{alice_dir}/f", mtime=Timestamp(seconds=2**62)
    )
    upload = stub.Upload(iter([utilities_pb2.UploadRequest(header=header)]), metadata=md)
    assert "header.mtime" in await invalid(upload)
    assert not (alice_dir / "f").exists()
    command = utilities_pb2.RunCommandRequest(
        system="local", argv=["/bin/true"], timeout=Duration(seconds=1, nanos=-5)
    )
    bad = await invalid(first_message(stub.RunCommand(command, metadata=md, timeout=10)))
    assert "timeout" in bad


def assert_plain_decode_error(error: grpc.aio.AioRpcError) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    details = error.details() or ""
    assert details.startswith("the request could not be decoded: "), details
    assert "DecodeError" not in details and "<class" not in details


@pytest.mark.slurm
@pytest.mark.parametrize("data", [BAD_UTF8, CORRUPT], ids=["bad-utf8", "corrupt"])
async def test_undecodable_unary_request_is_invalid_argument(
    gateway: Gateway, channel: grpc.aio.Channel, data: bytes
) -> None:
    public = channel.unary_unary("/hpcgate.v1.StatusService/GetSystem")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await public(data, timeout=10)
    assert_plain_decode_error(info.value)
    private = channel.unary_unary("/hpcgate.v1.ComputeService/GetJob")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await private(data, metadata=bearer(gateway, "alice"), timeout=10)
    assert_plain_decode_error(info.value)
    # The caller is checked first: without a token the answer is about the token.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await private(data, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.slurm
async def test_undecodable_server_streaming_request_is_invalid_argument(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    watch = channel.unary_stream("/hpcgate.v1.StatusService/WatchSystems")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await first_message(watch(BAD_UTF8, timeout=10))
    assert_plain_decode_error(info.value)
    output = channel.unary_stream("/hpcgate.v1.ComputeService/ReadJobOutput")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await first_message(output(CORRUPT, metadata=bearer(gateway, "alice"), timeout=10))
    assert_plain_decode_error(info.value)


@pytest.mark.slurm
async def test_undecodable_client_stream_message_is_invalid_argument(
    gateway: Gateway, channel: grpc.aio.Channel, alice_dir: Path
) -> None:
    upload = channel.stream_unary("/hpcgate.v1.UtilitiesService/Upload")
    md = bearer(gateway, "alice", ALL)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the header itself
        await upload(iter([CORRUPT]), metadata=md, timeout=10)
    assert_plain_decode_error(info.value)
    header = utilities_pb2.UploadRequest(
        header=utilities_pb2.UploadHeader(system="local", path=f"{alice_dir}/g")
    ).SerializeToString()
    chunk = utilities_pb2.UploadRequest(chunk=utilities_pb2.UploadChunk(data=b"x" * 10))
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a chunk after a good header
        await upload(
            iter([header, chunk.SerializeToString(), NESTED_BAD_UTF8]), metadata=md, timeout=10
        )
    assert_plain_decode_error(info.value)
    # Nothing under the target name, and no temporary file left beside it.
    assert os.listdir(alice_dir) == []
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slurm
async def test_huge_echoed_values_still_give_a_readable_error(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    status = status_pb2_grpc.StatusServiceStub(channel)
    bad = await invalid(status.GetSystem(status_pb2.GetSystemRequest(name="\U0001f600" * 4000)))
    assert bad["name"].endswith("...")
    compute = compute_pb2_grpc.ComputeServiceStub(channel)
    many = compute_pb2.ListJobsRequest(parent="systems/local", names=["z" * 3000] * 100)
    bad = await invalid(compute.ListJobs(many, metadata=bearer(gateway, "alice"), timeout=10))
    assert len(bad) == 11 and bad["..."].startswith("and ")
