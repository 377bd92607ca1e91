"""Parsers on recorded Slurm output (22.05 from this machine; 23.11 shape for nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcgate.server.slurm import SlurmError
from hpcgate.server.slurm.parsing import (
    parse_key_values,
    parse_nodes_json,
    parse_partitions,
    parse_ping,
)

DATA = Path(__file__).parent / "data"


def test_ping_up_and_down() -> None:
    up = parse_ping((DATA / "scontrol-ping-up.txt").read_text(), 0.003)
    assert up.up and up.responding_hosts and up.detail == ""
    down = parse_ping((DATA / "scontrol-ping-down.txt").read_text(), 0.01)
    assert not down.up and "DOWN" in down.detail
    garbage = parse_ping("scontrol: error: something odd", 0.01)
    assert not garbage.up and "something odd" in garbage.detail


def test_key_values_keep_spaces_inside_values() -> None:
    kv = parse_key_values("NodeName=c1 Reason=Not responding [slurm@2026-01-01] State=DOWN")
    assert kv == {"NodeName": "c1", "Reason": "Not responding [slurm@2026-01-01]", "State": "DOWN"}
    assert parse_key_values("TRES=cpu=8,mem=8000M,node=1")["TRES"] == "cpu=8,mem=8000M,node=1"


def test_partitions_22_05() -> None:
    parts = parse_partitions((DATA / "scontrol-show-partition-22.05.txt").read_text())
    by_name = {p.name: p for p in parts}
    assert {"debug", "long"} <= set(by_name)
    assert by_name["debug"].is_default and by_name["debug"].state == "UP"
    assert by_name["debug"].total_cpus > 0 and by_name["debug"].total_nodes >= 1
    assert by_name["long"].max_time == "2-00:00:00"


def test_nodes_22_05_sinfo_json() -> None:
    nodes = parse_nodes_json((DATA / "sinfo-json-22.05.json").read_text())
    assert len(nodes) == 1
    node = nodes[0]
    assert node.states[0] in {"IDLE", "MIXED", "ALLOCATED"}
    assert node.available and node.cpus >= 1 and "debug" in node.partitions


def test_nodes_23_11_scontrol_json() -> None:
    nodes = parse_nodes_json((DATA / "scontrol-json-nodes-23.11.json").read_text())
    assert [n.name for n in nodes] == ["c001", "c002"]
    assert nodes[0].available and nodes[0].gres == "gpu:a100:4"
    assert nodes[1].states == ("IDLE", "DRAIN") and not nodes[1].available
    assert nodes[1].real_memory_mb == 256000 and nodes[1].reason == "bad DIMM"


def test_23_sinfo_json_without_nodes_is_reported() -> None:
    with pytest.raises(SlurmError):
        parse_nodes_json('{"sinfo": []}')
    with pytest.raises(SlurmError):
        parse_nodes_json("not json")
