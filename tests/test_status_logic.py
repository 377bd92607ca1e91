"""How component and system states are derived, and the hub's fan-out (no Slurm needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcgate.server.slurm import NodeInfo, PartitionInfo
from hpcgate.server.state.store import Outage
from hpcgate.server.status import filesystem_probe
from hpcgate.server.status.filesystem_probe import FilesystemProbe
from hpcgate.server.status.hub import StatusHub
from hpcgate.server.status.model import State, SystemStatus
from hpcgate.server.status.prober import nodes_component, overall_state, partition_component

NOW = datetime.now(UTC)


def node(name: str, *states: str, parts: tuple[str, ...] = ("batch",)) -> NodeInfo:
    return NodeInfo(name, states, 8, 0, 1000, parts)


def part(state: str = "UP") -> PartitionInfo:
    return PartitionInfo("batch", state, "n[1-3]", 3, 24)


def test_partition_states() -> None:
    healthy = {n: node(n, "IDLE") for n in ("n1", "n2", "n3")}
    assert partition_component("s", part(), healthy, NOW).state is State.ACTIVE
    some_down = dict(healthy, n2=node("n2", "IDLE", "DRAIN"))
    c = partition_component("s", part(), some_down, NOW)
    assert c.state is State.DEGRADED and "1 of 3" in c.reason and "n2" in c.reason
    all_down = {n: node(n, "DOWN") for n in healthy}
    assert partition_component("s", part(), all_down, NOW).state is State.UNAVAILABLE
    c = partition_component("s", part("INACTIVE"), healthy, NOW)
    assert c.state is State.UNAVAILABLE and "INACTIVE" in c.reason


def test_nodes_component_names_the_bad_nodes() -> None:
    c = nodes_component("s", [node("a", "IDLE"), node("b", "DOWN", "NOT_RESPONDING")], NOW)
    assert c.state is State.DEGRADED and "b (DOWN+NOT_RESPONDING)" in c.reason
    assert nodes_component("s", [], NOW).state is State.UNAVAILABLE


def test_overall_state_precedence() -> None:
    controller = nodes_component("s", [node("a", "IDLE")], NOW)
    down = partition_component("s", part("DOWN"), {}, NOW)
    assert overall_state([controller], controller, []) == (State.ACTIVE, "")
    state, reason = overall_state([controller, down], controller, [])
    assert state is State.DEGRADED and "batch" in reason
    outage = Outage("o1", "s", NOW, None, "upgrade", NOW)
    assert overall_state([controller, down], controller, [outage])[0] is State.MAINTENANCE


async def test_hub_coalesces_for_slow_watchers_and_frees_subscriptions() -> None:
    hub = StatusHub(["s"])

    def status(state: State, reason: str = "") -> SystemStatus:
        return SystemStatus("s", "S", "", state, reason, NOW, NOW)

    hub.publish(status(State.ACTIVE))
    assert hub.ready
    with hub.subscribe(["s"]) as sub:
        hub.publish(status(State.ACTIVE))  # same signature: no change
        assert await sub.next_changes(0.05) == []
        for i in range(1000):  # a slow watcher: still one pending entry per system
            hub.publish(status(State.DEGRADED, f"r{i}"))
        changes = await sub.next_changes(0.05)
        assert len(changes) == 1
        assert changes[0].previous_state is State.ACTIVE and changes[0].status.reason == "r999"
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0


async def test_filesystem_probe_reads_figures(tmp_path: Path) -> None:
    reading = await FilesystemProbe(str(tmp_path), timeout=10).check()
    assert reading.ok and reading.total_bytes > 0 and reading.available_bytes > 0
    missing = await FilesystemProbe(str(tmp_path / "nope"), timeout=10).check()
    assert not missing.ok and "No such file" in missing.error


async def test_a_hanging_filesystem_times_out_without_blocking_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Stand-in for a dead mount: the check never finishes.
    monkeypatch.setattr(filesystem_probe, "_CHECK", "import time; time.sleep(60)")
    probe = FilesystemProbe(str(tmp_path), timeout=0.5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    reading = await probe.check()
    task.cancel()
    assert not reading.ok and "did not answer within 0.5 s" in reading.error
    assert ticks >= 5  # the event loop kept running meanwhile
    again = await probe.check()  # a stuck check is not started twice
    assert not again.ok
