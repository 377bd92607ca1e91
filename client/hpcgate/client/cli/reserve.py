"""`hpcgate reserve` and `hpcgate reservations`: advance reservations within the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.reservations import state_name
from hpcgate.v1 import compute_pb2 as C


def _when(stamp: C.ReservationRequest, field: str) -> str:
    if not stamp.HasField(field):
        return "asap" if field == "start_time" else "-"
    value: datetime = getattr(stamp, field).ToDatetime(UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def _show(r: C.ReservationRequest) -> None:
    line = f"request {r.id}: {state_name(r.state)}"
    if r.reservation:
        line += f"; submit with --reservation={r.reservation} (nodes {r.nodes}, "
        line += f"{_when(r, 'granted_start_time')} to {_when(r, 'end_time')})"
    if r.reason:
        line += f"; {r.reason}"
    output.line(line)


@click.command()
@click.argument("project")
@click.option("-N", "--nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "-t", "--time", "minutes", type=click.IntRange(min=1), required=True, help="Length, minutes."
)
@click.option(
    "--start", type=click.DateTime(), help="Start (local time); default: as soon as possible."
)
@click.option("-p", "--partition", default="", help="Partition of the nodes.")
@click.option("-u", "--user", "users", multiple=True, help="Only these users (repeatable).")
@click.option("-W", "--wait", is_flag=True, help="Wait for an operator's decision.")
@async_command
async def reserve(
    s: Session,
    project: str,
    nodes: int,
    minutes: int,
    start: datetime | None,
    partition: str,
    users: tuple[str, ...],
    wait: bool,
) -> int:
    """Reserve nodes for PROJECT ahead of time (within the system's policy)."""
    made = await s.client.reservations.create(
        project,
        nodes,
        timedelta(minutes=minutes),
        partition=partition,
        users=users,
        start=start.astimezone() if start else None,
        system=await s.system(),
    )
    if wait and made.state == C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL:
        made = await s.client.reservations.wait_decided(made.id, await s.system())
    if s.json:
        output.emit_json({"reservation_request": made})
    else:
        _show(made)
    return (
        0
        if made.state
        in (C.RESERVATION_REQUEST_STATE_ACTIVE, C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL)
        else 9
    )


@click.command()
@click.option("--cancel", "cancel", multiple=True, help="Cancel this request (repeatable).")
@async_command
async def reservations(s: Session, cancel: tuple[str, ...]) -> None:
    """Your reservation requests (or cancel some)."""
    for request_id in cancel:
        _show(await s.client.reservations.delete(request_id, await s.system()))
    if cancel:
        return
    found = await s.client.reservations.list(await s.system())
    if s.json:
        return output.emit_json({"reservation_requests": found})
    output.table(
        ["ID", "STATE", "PROJECT", "NODES", "START", "END", "RESERVATION", "REASON"],
        (
            [
                r.id,
                state_name(r.state),
                r.project,
                str(r.node_count),
                _when(r, "granted_start_time") if r.reservation else _when(r, "start_time"),
                _when(r, "end_time"),
                r.reservation,
                r.reason,
            ]
            for r in found
        ),
    )
