"""StatusService end to end: real Slurm daemons, a real gateway on loopback."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import GatewayFactory, cluster, fast_config
from hpcgate.server.app import Gateway
from hpcgate.v1 import status_pb2, status_pb2_grpc

pytestmark = pytest.mark.slurm
ACTIVE = status_pb2.SYSTEM_STATE_ACTIVE
DEGRADED = status_pb2.SYSTEM_STATE_DEGRADED
UNAVAILABLE = status_pb2.SYSTEM_STATE_UNAVAILABLE
MAINTENANCE = status_pb2.SYSTEM_STATE_MAINTENANCE


def components(system: status_pb2.System, kind: int) -> list[status_pb2.Component]:
    return [c for c in system.components if c.kind == kind]


async def test_list_systems_reports_local_active_with_components(channel: grpc.aio.Channel) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    reply = await stub.ListSystems(status_pb2.ListSystemsRequest())
    assert [s.name for s in reply.systems] == ["systems/local"]
    system = reply.systems[0]
    assert system.state == ACTIVE, system.reason
    assert system.scheduler_version.startswith("slurm ")
    controller = components(system, status_pb2.COMPONENT_KIND_SCHEDULER)
    assert len(controller) == 1 and controller[0].state == ACTIVE
    assert controller[0].controller.responding_hosts
    partitions = {
        c.display_name: c for c in components(system, status_pb2.COMPONENT_KIND_PARTITION)
    }
    assert {"debug", "long"} <= set(partitions)
    assert partitions["debug"].name == "systems/local/partitions/debug"
    assert partitions["debug"].partition.total_nodes >= 1
    nodes = components(system, status_pb2.COMPONENT_KIND_NODES)
    assert len(nodes) == 1 and nodes[0].nodes.available_nodes >= 1
    filesystems = {
        c.display_name: c for c in components(system, status_pb2.COMPONENT_KIND_FILESYSTEM)
    }
    assert set(filesystems) == {"home", "tmp"}
    assert filesystems["home"].state == ACTIVE
    assert filesystems["home"].filesystem.total_bytes > 0
    assert system.updated_at.ToDatetime(UTC) > datetime.now(UTC) - timedelta(minutes=1)


async def test_get_system_and_its_errors(channel: grpc.aio.Channel) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    reply = await stub.GetSystem(status_pb2.GetSystemRequest(name="systems/local"))
    assert reply.system.name == "systems/local"

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSystem(status_pb2.GetSystemRequest(name="systems/nowhere"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "systems/local" in (missing.value.details() or "")  # tells what exists

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetSystem(status_pb2.GetSystemRequest(name="local/../x"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(bad.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["name"]


async def test_list_outages_reports_every_bad_field(channel: grpc.aio.Channel) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListOutages(
            status_pb2.ListOutagesRequest(system="Bad System", page_size=-1, page_token="zzz")
        )
    status = rpc_status.from_call(bad.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert {v.field for v in bad_request.field_violations} == {"system", "page_size", "page_token"}


async def next_change(stream: grpc.aio.UnaryStreamCall, timeout: float) -> status_pb2.SystemChange:
    """The next `change` message, skipping heartbeats."""

    async def wait() -> status_pb2.SystemChange:
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF, "stream ended"
            if message.WhichOneof("kind") == "change":
                return message.change

    return await asyncio.wait_for(wait(), timeout)


async def wait_for_state(
    stream: grpc.aio.UnaryStreamCall, state: int, timeout: float
) -> status_pb2.SystemChange:
    async def wait() -> status_pb2.SystemChange:
        while True:
            change = await next_change(stream, timeout)
            if change.system.state == state:
                return change

    return await asyncio.wait_for(wait(), timeout)


async def test_slurmctld_outage_is_data_and_watchers_see_it(
    gateway: Gateway, channel: grpc.aio.Channel, restore_slurmctld: None
) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    interval = gateway.config.status.probe_interval
    stream = stub.WatchSystems(
        status_pb2.WatchSystemsRequest(heartbeat_interval=duration_pb2.Duration(seconds=1))
    )
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.WhichOneof("kind") == "snapshot"
    assert first.snapshot.systems[0].state == ACTIVE

    await asyncio.to_thread(cluster, "stop", "slurmctld")
    stopped_at = asyncio.get_running_loop().time()
    change = await wait_for_state(stream, UNAVAILABLE, timeout=2 * interval + 10)
    # Detected within two probe intervals (plus the time a probe itself takes).
    assert asyncio.get_running_loop().time() - stopped_at < 2 * interval + 5
    assert change.previous_state == ACTIVE
    assert "controller" in change.system.reason
    controller = components(change.system, status_pb2.COMPONENT_KIND_SCHEDULER)[0]
    assert controller.state == UNAVAILABLE and controller.reason

    # A down Slurm is data, not an RPC error.
    reply = await stub.ListSystems(status_pb2.ListSystemsRequest())
    assert reply.systems[0].state == UNAVAILABLE

    await asyncio.to_thread(cluster, "start", "slurmctld")
    # The controller is back first; the node may take a few seconds to re-register
    # (a DEGRADED step), and then the system is ACTIVE again.
    change = await next_change(stream, timeout=60)
    assert change.previous_state == UNAVAILABLE
    assert change.system.state in (ACTIVE, DEGRADED)
    if change.system.state != ACTIVE:
        await wait_for_state(stream, ACTIVE, timeout=60)
    stream.cancel()


async def test_down_partition_degrades_the_system(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    stream = stub.WatchSystems(status_pb2.WatchSystemsRequest(names=["systems/local"]))
    await stream.read()  # snapshot
    subprocess.run(["scontrol", "update", "PartitionName=long", "State=DOWN"], check=True)
    try:
        change = await wait_for_state(stream, DEGRADED, timeout=30)
        long = next(c for c in change.system.components if c.display_name == "long")
        assert long.state == UNAVAILABLE
        assert "DOWN" in long.reason
        assert "long" in change.system.reason
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=long", "State=UP"], check=True)
    await wait_for_state(stream, ACTIVE, timeout=30)
    stream.cancel()


async def test_unreachable_filesystem_is_a_degraded_component(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    from dataclasses import replace

    from hpcgate.server.config import FilesystemConfig

    base = fast_config(tmp_path)
    system = replace(
        base.systems[0],
        filesystems=(FilesystemConfig("gone", tmp_path / "not-mounted", "scratch"),),
    )
    gateway = await gateway_factory(replace(base, systems=(system,)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        reply = await status_pb2_grpc.StatusServiceStub(ch).GetSystem(
            status_pb2.GetSystemRequest(name="systems/local")
        )
    assert reply.system.state == DEGRADED
    fs = components(reply.system, status_pb2.COMPONENT_KIND_FILESYSTEM)[0]
    assert fs.state == UNAVAILABLE
    assert "not-mounted" in fs.reason and "No such file" in fs.reason


async def test_active_outage_means_maintenance_and_future_one_is_planned(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    now = datetime.now(UTC)
    future = gateway.store.add_outage(
        "local", now + timedelta(days=3), now + timedelta(days=3, hours=4), "OS upgrade"
    )
    past = gateway.store.add_outage(
        "local", now - timedelta(days=3), now - timedelta(days=2), "old"
    )
    stub = status_pb2_grpc.StatusServiceStub(channel)
    stream = stub.WatchSystems(status_pb2.WatchSystemsRequest())
    await stream.read()
    active = gateway.store.add_outage("local", now - timedelta(minutes=1), None, "disk swap")
    change = await wait_for_state(stream, MAINTENANCE, timeout=15)
    assert "disk swap" in change.system.reason
    assert [o.name for o in change.system.active_outages] == [f"systems/local/outages/{active.id}"]

    listed = await stub.ListOutages(status_pb2.ListOutagesRequest(system="local"))
    by_id = {o.name.rsplit("/", 1)[1]: o.status for o in listed.outages}
    assert by_id == {
        future.id: status_pb2.OUTAGE_STATUS_PLANNED,
        active.id: status_pb2.OUTAGE_STATUS_ACTIVE,
        past.id: status_pb2.OUTAGE_STATUS_COMPLETED,
    }
    planned = await stub.ListOutages(
        status_pb2.ListOutagesRequest(statuses=[status_pb2.OUTAGE_STATUS_PLANNED])
    )
    assert [o.description for o in planned.outages] == ["OS upgrade"]

    gateway.store.remove_outage(active.id)
    await wait_for_state(stream, ACTIVE, timeout=15)
    stream.cancel()


async def test_notes_and_pagination(gateway: Gateway, channel: grpc.aio.Channel) -> None:
    for i in range(5):
        gateway.store.add_note("local", f"note {i}", "ops")
    stub = status_pb2_grpc.StatusServiceStub(channel)
    seen, token = [], ""
    while True:
        page = await stub.ListNotes(status_pb2.ListNotesRequest(page_size=2, page_token=token))
        assert len(page.notes) <= 2
        seen += [n.text for n in page.notes]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"note {i}" for i in range(5)]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.ListNotes(status_pb2.ListNotesRequest(system="elsewhere"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_sends_heartbeats_and_frees_its_subscription(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    stream = stub.WatchSystems(
        status_pb2.WatchSystemsRequest(heartbeat_interval=duration_pb2.Duration(seconds=1))
    )
    await stream.read()
    kinds = [(await asyncio.wait_for(stream.read(), 5)).WhichOneof("kind") for _ in range(2)]
    assert "heartbeat" in kinds
    assert gateway.hub.subscriber_count == 1
    stream.cancel()
    for _ in range(50):
        if gateway.hub.subscriber_count == 0:
            break
        await asyncio.sleep(0.1)
    assert gateway.hub.subscriber_count == 0


async def test_every_documented_error_of_each_rpc(channel: grpc.aio.Channel) -> None:
    """status.proto's Errors lines, one call each: INVALID_ARGUMENT naming the field, or
    NOT_FOUND naming the known systems."""
    stub = status_pb2_grpc.StatusServiceStub(channel)

    async def refused(call: object) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            if hasattr(call, "__aiter__"):
                async for _ in call:  # type: ignore[attr-defined]
                    pass
            else:
                await call  # type: ignore[misc]
        return e.value

    def fields(error: grpc.aio.AioRpcError) -> set[str]:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        status = rpc_status.from_call(error)
        assert status is not None
        bad_request = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad_request)
        return {v.field for v in bad_request.field_violations}

    assert fields(await refused(stub.ListSystems(status_pb2.ListSystemsRequest(
        page_token="not-a-token")))) == {"page_token"}  # fmt: skip
    assert fields(await refused(stub.WatchSystems(status_pb2.WatchSystemsRequest(
        names=["systems/local", "Bad Name"])))) == {"names[1]"}  # fmt: skip
    assert fields(await refused(stub.ListOutages(status_pb2.ListOutagesRequest(
        statuses=[status_pb2.OUTAGE_STATUS_UNSPECIFIED])))) == {"statuses[0]"}  # fmt: skip
    assert fields(await refused(stub.ListNotes(status_pb2.ListNotesRequest(
        system="Bad System", page_token="zzz")))) == {"system", "page_token"}  # fmt: skip
    for call in (
        stub.WatchSystems(status_pb2.WatchSystemsRequest(names=["systems/nowhere"])),
        stub.ListOutages(status_pb2.ListOutagesRequest(system="nowhere")),
        stub.ListNotes(status_pb2.ListNotesRequest(system="systems/nowhere")),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
        assert "local" in (error.details() or ""), error.details()
