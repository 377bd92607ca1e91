"""The command-line adapter: Slurm's own tools, parsed. Works with any Slurm >= 22.05."""

from __future__ import annotations

import time
from dataclasses import replace

from hpcgate.server.config import SlurmConfig
from hpcgate.server.slurm.adapter import (
    ControllerPing,
    NodeInfo,
    PartitionInfo,
    SlurmError,
    SlurmUnavailable,
)
from hpcgate.server.slurm.commands import SlurmCommands
from hpcgate.server.slurm.parsing import parse_nodes_json, parse_partitions, parse_ping


class CommandLineAdapter:
    """SlurmAdapter over sinfo/scontrol/squeue/sacct run as async subprocesses."""

    def __init__(self, settings: SlurmConfig) -> None:
        self.commands = SlurmCommands(settings.bin_dir, settings.command_timeout, settings.cluster)
        self._cluster_args = ("-M", settings.cluster) if settings.cluster else ()
        self._nodes_via_scontrol = False  # switched on for Slurm >= 23.02 (see nodes())

    async def ping(self) -> ControllerPing:
        started = time.monotonic()
        try:
            result = await self.commands.run("scontrol", *self._cluster_args, "ping", check=False)
        except SlurmUnavailable as e:
            return ControllerPing(False, (), str(e), time.monotonic() - started)
        ping = parse_ping(result.stdout + result.stderr, time.monotonic() - started)
        if not ping.up and not ping.detail:
            ping = replace(ping, detail=f"scontrol ping exited {result.returncode}")
        return ping

    async def version(self) -> str:
        result = await self.commands.run("scontrol", "--version")
        return result.stdout.split()[-1] if result.stdout.split() else ""

    async def partitions(self) -> list[PartitionInfo]:
        result = await self.commands.run(
            "scontrol", *self._cluster_args, "--oneliner", "show", "partition"
        )
        return parse_partitions(result.stdout)

    async def nodes(self) -> list[NodeInfo]:
        # Slurm 22.05's `sinfo --json` lists nodes; from 23.02 on it lists aggregated
        # sinfo rows instead and `scontrol --json show nodes` has the node list.
        if not self._nodes_via_scontrol:
            result = await self.commands.run("sinfo", *self._cluster_args, "--json")
            try:
                return parse_nodes_json(result.stdout)
            except SlurmError:
                self._nodes_via_scontrol = True
        result = await self.commands.run("scontrol", *self._cluster_args, "--json", "show", "nodes")
        return parse_nodes_json(result.stdout)
