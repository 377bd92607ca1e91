"""Who you are and what the facility looks like: whoami, projects, status, watch,
outages, notes."""

from __future__ import annotations

from datetime import timedelta

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.session import Session, async_command
from hpcgate.v1 import account_pb2, auth_pb2, auth_pb2_grpc, status_pb2

_STATE_WORD = {
    status_pb2.SYSTEM_STATE_UNSPECIFIED: "unknown",
    status_pb2.SYSTEM_STATE_ACTIVE: "active",
    status_pb2.SYSTEM_STATE_DEGRADED: "degraded",
    status_pb2.SYSTEM_STATE_UNAVAILABLE: "unavailable",
    status_pb2.SYSTEM_STATE_MAINTENANCE: "maintenance",
}


def print_system(system: status_pb2.System, verbose: bool = True) -> None:
    word = _STATE_WORD[system.state]
    output.line(f"{system.name:<20} {word:<12} {system.reason}".rstrip(),
                style=output.STATE_STYLES.get(word.upper(), ""))  # fmt: skip
    if verbose:
        for c in system.components:
            output.line(f"  {c.display_name:<18} {_STATE_WORD[c.state]:<12} {c.reason}".rstrip())


@click.command()
@async_command
async def whoami(s: Session) -> None:
    """Who the server thinks you are."""
    stub = auth_pb2_grpc.AuthServiceStub(s.client.channel)
    info = await s.client.unary(stub.GetTokenInfo, auth_pb2.GetTokenInfoRequest(), retry=True)
    if s.json:
        return output.emit_json(info)
    output.line(f"user: {info.user} (uid {info.uid})")
    output.line(f"client: {info.client_id}")
    output.line(f"scopes: {' '.join(info.scopes)}")
    output.line(f"expires: {info.expires_at.ToDatetime().isoformat()}Z")


_ROLES = {account_pb2.PROJECT_ROLE_COORDINATOR: "coordinator",
          account_pb2.PROJECT_ROLE_MEMBER: "member"}  # fmt: skip


@click.group(invoke_without_command=True)
@click.pass_context
def projects(ctx: click.Context) -> int | None:
    """Your projects (Slurm accounts), role and usage; members of one (`members`)."""
    if ctx.invoked_subcommand is None:
        status: int = ctx.invoke(_list_projects)
        return status  # the exit status, as for any command
    return None


@click.command("list")
@async_command
async def _list_projects(s: Session) -> None:
    """Your projects (Slurm accounts), your role, usage and allocation."""
    found = await s.client.account.projects()
    if s.json:
        return output.emit_json({"projects": found})
    output.table(
        ["PROJECT", "DEFAULT", "ROLE", "CPU-H USED", "CPU-H ALLOCATED", "DESCRIPTION"],
        ([p.name, "*" if p.is_default else "", _ROLES.get(p.role, ""), *_usage(p.project_usage),
          p.description] for p in found),
    )  # fmt: skip


@projects.command("members")
@click.argument("project")
@async_command
async def project_members(s: Session, project: str) -> None:
    """The members of PROJECT, with their roles and limits."""
    found = await s.client.account.members(project)
    if s.json:
        return output.emit_json({"members": found})
    output.table(
        ["USER", "ROLE", "MAX JOBS", "MAX SUBMIT", "MAX WALL"],
        ([m.user, _ROLES.get(m.role, ""), _optional(m.limits, "max_jobs"),
          _optional(m.limits, "max_submit_jobs"),
          f"{m.limits.max_wall_per_job.seconds // 60} min"
          if m.limits.HasField("max_wall_per_job") else "-"] for m in found),
    )  # fmt: skip


def _optional(message: account_pb2.AssociationLimits, field: str) -> str:
    return str(getattr(message, field)) if message.HasField(field) else "-"


@projects.command("add-member")
@click.argument("project")
@click.argument("user")
@click.option("--max-jobs", type=click.IntRange(min=0), help="Jobs running at once.")
@click.option("--max-submit", type=click.IntRange(min=0), help="Jobs queued at once.")
@click.option("--max-wall", type=click.IntRange(min=1), help="Longest job, minutes.")
@async_command
async def add_member(
    s: Session, project: str, user: str, max_jobs: int | None, max_submit: int | None,
    max_wall: int | None,
) -> None:  # fmt: skip
    """Add USER to PROJECT (you must coordinate it)."""
    wall = timedelta(minutes=max_wall) if max_wall is not None else None
    member = await s.client.account.add_member(
        project, user, max_jobs=max_jobs, max_submit_jobs=max_submit, max_wall=wall
    )
    if s.json:
        return output.emit_json({"member": member})
    output.line(f"added {member.user} to {project}")


@projects.command("remove-member")
@click.argument("project")
@click.argument("user")
@async_command
async def remove_member(s: Session, project: str, user: str) -> None:
    """Remove USER from PROJECT (you must coordinate it)."""
    await s.client.account.remove_member(project, user)
    if s.json:
        return output.emit_json({"removed": {"project": project, "user": user}})
    output.line(f"removed {user} from {project}")


def _usage(usage: account_pb2.ComputeUsage) -> list[str]:
    if not usage.known:
        return ["-", "-"]
    allocated = usage.cpu_hours_allocated if usage.HasField("cpu_hours_allocated") else None
    return [f"{usage.cpu_hours_used:.1f}", "-" if allocated is None else f"{allocated:.1f}"]


@click.command()
@click.argument("system", required=False)
@click.option("-v", "--verbose", is_flag=True, help="Show every component.")
@async_command
async def status(s: Session, system: str | None, verbose: bool) -> None:
    """State of the systems (no token needed)."""
    chosen = system or (s.conn.system if s.conn.explicit_system else None)
    if chosen:
        one = await s.client.status.system(chosen)
        return output.emit_json(one) if s.json else print_system(one)
    systems = await s.client.status.systems()
    if s.json:
        return output.emit_json({"systems": systems})
    for one in systems:
        print_system(one, verbose=verbose or s.settings.verbose > 0)


@click.command()
@click.argument("systems", nargs=-1)
@click.option("--heartbeat", type=int, default=15, show_default=True, help="Heartbeat seconds.")
@click.option("--heartbeats", is_flag=True, help="Print heartbeats too.")
@async_command
async def watch(s: Session, systems: tuple[str, ...], heartbeat: int, heartbeats: bool) -> None:
    """Follow system state changes.

    Until interrupted; one JSON line per change with --json."""
    async for message in s.client.status.watch(list(systems), heartbeat=heartbeat):
        kind = message.WhichOneof("kind")
        if s.json:
            if kind != "heartbeat" or heartbeats:
                output.emit_line(message)
        elif kind == "snapshot":
            for system in message.snapshot.systems:
                print_system(system)
        elif kind == "change":
            output.line(f"-- change (was {_STATE_WORD[message.change.previous_state]}):")
            print_system(message.change.system)
        elif heartbeats:
            output.line(f"-- heartbeat {message.heartbeat.time.ToDatetime().isoformat()}")


@click.command()
@click.option("--system", "only", help="Only this system.")
@async_command
async def outages(s: Session, only: str | None) -> None:
    """Current, planned and past outages."""
    found = await s.client.status.outages(only or _explicit(s))
    if s.json:
        return output.emit_json({"outages": found})
    for o in found:
        end = o.end_time.ToDatetime().isoformat() if o.HasField("end_time") else "open-ended"
        word = status_pb2.OutageStatus.Name(o.status).removeprefix("OUTAGE_STATUS_").lower()
        start = o.start_time.ToDatetime().isoformat()
        output.line(f"{o.system:<10} {word:<10} {start} -> {end}  {o.description}")


@click.command()
@click.option("--system", "only", help="Only this system.")
@async_command
async def notes(s: Session, only: str | None) -> None:
    """Operator notes."""
    found = await s.client.status.notes(only or _explicit(s))
    if s.json:
        return output.emit_json({"notes": found})
    for n in found:
        created = n.create_time.ToDatetime().isoformat()
        output.line(f"{n.system:<10} {created}  {n.author}: {n.text}")


def _explicit(s: Session) -> str | None:
    """The system given with --system / $HPCGATE_SYSTEM; a profile's default does not
    narrow the facility-wide listings."""
    return s.conn.system if s.conn.explicit_system else None
