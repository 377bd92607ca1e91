"""The command-line adapter: Slurm's own tools, parsed. Works with any Slurm >= 22.05."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from hpcgate.server.config import SlurmConfig
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import (
    AccountInfo,
    ControllerPing,
    FairShareInfo,
    JobRecord,
    NodeInfo,
    PartitionInfo,
    ReservationOrder,
    ReservationRecord,
    SlurmError,
    SlurmUnavailable,
    UsageRecord,
    UserAssociations,
)
from hpcgate.server.slurm.commands import SlurmCommands
from hpcgate.server.slurm.job_control import JobControl
from hpcgate.server.slurm.membership import MembershipControl
from hpcgate.server.slurm.parsing import (
    ACCOUNT_FIELDS,
    SACCT_DELIMITER,
    SACCT_FIELDS,
    SHARE_FIELDS,
    USAGE_FIELDS,
    USER_ASSOC_FIELDS,
    parse_accounts,
    parse_cluster_name,
    parse_fair_share,
    parse_nodes_json,
    parse_partitions,
    parse_ping,
    parse_reservations,
    parse_sacct,
    parse_squeue_json,
    parse_tres_used,
    parse_usage,
    parse_user_associations,
    parse_user_default_account,
    select_jobs,
)

# TRES whose usage sreport is asked for (a TRES the site does not track is left out).
USAGE_TRES = ("cpu", "gres/gpu")
# What squeue/sacct say for a job id or user they do not know: an empty answer for us.
_UNKNOWN_SELECTION = ("invalid job id", "invalid user")
# sacct's earliest start for lookups by job id: Epoch 0 in any time zone.
_EPOCH = "1970-01-02T00:00:00"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class CommandLineAdapter:
    """SlurmAdapter over sinfo/scontrol/squeue/sacct run as async subprocesses."""

    def __init__(self, settings: SlurmConfig, metrics: Metrics | None = None) -> None:
        self.commands = SlurmCommands(
            settings.bin_dir, settings.command_timeout, settings.cluster, metrics
        )
        self.jobs = JobControl(settings.bin_dir, settings.cluster)
        self.members = MembershipControl(settings.bin_dir, settings.cluster)
        self._cluster_args = ("-M", settings.cluster) if settings.cluster else ()
        self._nodes_via_scontrol = False  # switched on for Slurm >= 23.02 (see nodes())
        # The cluster whose accounting we read: the configured one, else the local
        # ClusterName, looked up once (slurmdbd may serve several clusters).
        self._accounting_cluster = settings.cluster
        self._cluster_known = bool(settings.cluster)
        self._cluster_lock = asyncio.Lock()

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

    # --- Accounting ---

    async def _cluster_where(self) -> tuple[str, ...]:
        """`cluster=NAME` for sacctmgr's where clause; () while the name is unknown.

        Without a configured cluster the local ClusterName is read once from
        `scontrol show config`; if the controller does not answer, this query goes
        unfiltered (right for a slurmdbd that serves one cluster) and the next one retries.
        """
        if not self._cluster_known:
            async with self._cluster_lock:
                if not self._cluster_known:
                    try:
                        result = await self.commands.run("scontrol", "show", "config")
                    except SlurmError:
                        return ()
                    self._accounting_cluster = parse_cluster_name(result.stdout)
                    self._cluster_known = True
        return (f"cluster={self._accounting_cluster}",) if self._accounting_cluster else ()

    async def _sacctmgr(self, *args: str) -> str:
        result = await self.commands.run("sacctmgr", "--noheader", "--parsable2", *args)
        return result.stdout

    async def user_default_account(self, user: str) -> str:
        where = ("where", f"name={user}", *await self._cluster_where())
        out = await self._sacctmgr("show", "user", *where, "format=User,DefaultAccount")
        return parse_user_default_account(out)

    async def user_associations(self, user: str) -> UserAssociations:
        where = ("where", f"name={user}", *await self._cluster_where())
        out = await self._sacctmgr(
            "show", "user", *where, "withassoc", "format=" + ",".join(USER_ASSOC_FIELDS)
        )
        return parse_user_associations(out, user)

    async def accounts(self, names: Sequence[str]) -> list[AccountInfo]:
        if not names:
            return []
        # `user=` (empty) keeps only the accounts' own associations, which carry the parent.
        where = ("where", "name=" + ",".join(names), *await self._cluster_where())
        out = await self._sacctmgr("show", "account", *where, "withassoc", "withcoord", "user=",
                                   "format=" + ",".join(ACCOUNT_FIELDS))  # fmt: skip
        return parse_accounts(out)

    async def project_members(self, account: str) -> UserAssociations:
        where = ("where", f"account={account}", *await self._cluster_where())
        out = await self._sacctmgr(
            "show", "user", "withassoc", *where, "format=" + ",".join(USER_ASSOC_FIELDS)
        )
        return parse_user_associations(out, "")

    async def tres_used_minutes(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]:
        if not accounts:
            return {}
        result = await self.commands.run(
            "sshare", *self._cluster_args, "--noheader", "--parsable2",
            "--accounts=" + ",".join(accounts), "--format=Account,User,GrpTRESRaw",
        )  # fmt: skip
        return parse_tres_used(result.stdout)

    async def fair_share(self, user: str) -> list[FairShareInfo]:
        result = await self.commands.run(
            "sshare",
            *self._cluster_args,
            "--noheader",
            "--parsable2",
            "--Users",
            f"--users={user}",
            "--format=" + ",".join(SHARE_FIELDS),
        )
        return parse_fair_share(result.stdout)

    async def usage(
        self, accounts: Sequence[str], start: datetime, end: datetime
    ) -> list[UsageRecord]:
        if not accounts or end <= start:
            return []
        # sreport reads times in the server's local time zone.
        fmt = "%Y-%m-%dT%H:%M:%S"
        clusters = (f"clusters={self._accounting_cluster}",) if self._accounting_cluster else ()
        result = await self.commands.run(
            "sreport",
            "--noheader",
            "--parsable2",
            "-t",
            "seconds",
            "--tres=" + ",".join(USAGE_TRES),
            "cluster",
            "AccountUtilizationByUser",
            f"start={start.astimezone().strftime(fmt)}",
            f"end={end.astimezone().strftime(fmt)}",
            "accounts=" + ",".join(accounts),
            *clusters,
            "format=" + ",".join(USAGE_FIELDS),
        )
        return parse_usage(result.stdout)

    # --- Jobs and reservations ---

    async def _selection(self, tool: str, *args: str) -> str | None:
        """Run a squeue/sacct query; None when it names a job or user Slurm does not know."""
        try:
            result = await self.commands.run(tool, *args)
        except SlurmError as e:
            if any(phrase in str(e).lower() for phrase in _UNKNOWN_SELECTION):
                return None
            raise
        return result.stdout

    async def queue_jobs(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        # Slurm 22.05's `squeue --json` ignores every filter option and also lists jobs
        # that ended within MinJobAge; later releases apply the filters (hence
        # --states=all). Filters are passed and applied here as well, for both.
        args = [*self._cluster_args, "--json", "--states=all"]
        if job_ids:
            args.append("--jobs=" + ",".join(job_ids))
        if users:
            args.append("--users=" + ",".join(users))
        output = await self._selection("squeue", *args)
        if output is None:
            return []
        return select_jobs(parse_squeue_json(output), job_ids, users)

    async def accounting_jobs(
        self,
        job_ids: Sequence[str] = (),
        users: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        steps: bool = True,
    ) -> list[JobRecord]:
        # Text, not `sacct --json`: 22.05's JSON reports exit code 0 for failed jobs
        # and a reservation name of 0; `-P` output is the same in every release.
        if start is not None and start >= (end or datetime.now(UTC)):
            return []  # an empty window (sacct refuses a start after its end)
        args = [
            *self._cluster_args,
            "--noheader",
            "--parsable2",
            f"--delimiter={SACCT_DELIMITER}",
            "--format=" + ",".join(SACCT_FIELDS),
        ]
        if not steps:
            args.append("--allocations")
        if job_ids:
            args.append("--jobs=" + ",".join(job_ids))
        args.append("--user=" + ",".join(users) if users else "--allusers")
        if start is not None:
            args.append("--starttime=" + start.astimezone().strftime(_TIME_FORMAT))
        elif job_ids:
            args.append("--starttime=" + _EPOCH)  # Slurm's default with -j, made explicit
        if end is not None:
            args.append("--endtime=" + end.astimezone().strftime(_TIME_FORMAT))
        output = await self._selection("sacct", *args)
        if output is None:
            return []
        return select_jobs(parse_sacct(output), job_ids, users)

    async def reservations(self) -> list[ReservationRecord]:
        result = await self.commands.run(
            "scontrol", *self._cluster_args, "--oneliner", "show", "reservation"
        )
        return parse_reservations(result.stdout)

    async def create_reservation(self, request: ReservationOrder) -> ReservationRecord:
        start = request.start.astimezone().strftime("%Y-%m-%dT%H:%M:%S") if request.start \
            else "now"  # fmt: skip
        spec = [f"ReservationName={request.name}", f"StartTime={start}",
                f"Duration={request.minutes}", f"NodeCnt={request.node_count}",
                "Accounts=" + ",".join(request.accounts)]  # fmt: skip
        if request.users:
            spec.append("Users=" + ",".join(request.users))
        if request.partition:
            spec.append(f"PartitionName={request.partition}")
        await self.commands.run("scontrol", *self._cluster_args, "create", "reservation", *spec)
        result = await self.commands.run(
            "scontrol", *self._cluster_args, "--oneliner", "show", "reservation", request.name
        )
        found = parse_reservations(result.stdout)
        if not found:
            raise SlurmError(f"reservation {request.name} was created but Slurm does not show it")
        return found[0]

    async def delete_reservation(self, name: str) -> None:
        result = await self.commands.run(
            "scontrol", *self._cluster_args, "delete", f"ReservationName={name}", check=False
        )
        # Gone already is fine: 22.05 and 24.11 say "Requested reservation is invalid".
        gone = ("invalid reservation name", "requested reservation is invalid")
        if result.returncode != 0 and not any(g in result.stderr.lower() for g in gone):
            raise SlurmError(result.stderr.strip() or f"scontrol delete exited {result.returncode}")
