"""`hpcgate`: a small command-line client (status for now; more with each service)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2

from hpcgate.client.auth import ClientCredentials
from hpcgate.client.channel import connect, default_address
from hpcgate.v1 import auth_pb2, auth_pb2_grpc, status_pb2, status_pb2_grpc

if TYPE_CHECKING:  # the async stub class exists only in the generated type stubs
    Stub = status_pb2_grpc.StatusServiceAsyncStub
    Command = Callable[[grpc.aio.Channel, argparse.Namespace], Awaitable[int]]

_STATE_WORD = {
    status_pb2.SYSTEM_STATE_UNSPECIFIED: "unknown",
    status_pb2.SYSTEM_STATE_ACTIVE: "active",
    status_pb2.SYSTEM_STATE_DEGRADED: "degraded",
    status_pb2.SYSTEM_STATE_UNAVAILABLE: "unavailable",
    status_pb2.SYSTEM_STATE_MAINTENANCE: "maintenance",
}


def _system_name(value: str) -> str:
    return value if value.startswith("systems/") else f"systems/{value}"


def print_system(system: status_pb2.System, verbose: bool = True) -> None:
    line = f"{system.name:<20} {_STATE_WORD[system.state]:<12} {system.reason}"
    print(line.rstrip())
    if verbose:
        for c in system.components:
            print(f"  {c.display_name:<18} {_STATE_WORD[c.state]:<12} {c.reason}".rstrip())


async def cmd_status(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub: Stub = status_pb2_grpc.StatusServiceStub(channel)
    if args.system:
        reply = await stub.GetSystem(status_pb2.GetSystemRequest(name=_system_name(args.system)))
        print_system(reply.system)
        return 0
    systems = await stub.ListSystems(status_pb2.ListSystemsRequest())
    for system in systems.systems:
        print_system(system, verbose=args.verbose)
    return 0


async def cmd_watch(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub: Stub = status_pb2_grpc.StatusServiceStub(channel)
    request = status_pb2.WatchSystemsRequest(
        names=[_system_name(s) for s in args.system],
        heartbeat_interval=duration_pb2.Duration(seconds=args.heartbeat),
    )
    async for message in stub.WatchSystems(request):
        kind = message.WhichOneof("kind")
        if kind == "snapshot":
            for system in message.snapshot.systems:
                print_system(system)
        elif kind == "change":
            before = _STATE_WORD[message.change.previous_state]
            print(f"-- change (was {before}):")
            print_system(message.change.system)
        elif args.heartbeats:
            print(f"-- heartbeat {message.heartbeat.time.ToDatetime().isoformat()}")
        sys.stdout.flush()
    return 0


async def cmd_outages(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub: Stub = status_pb2_grpc.StatusServiceStub(channel)
    reply = await stub.ListOutages(status_pb2.ListOutagesRequest(system=args.system or ""))
    for o in reply.outages:
        end = o.end_time.ToDatetime().isoformat() if o.HasField("end_time") else "open-ended"
        status = status_pb2.OutageStatus.Name(o.status).removeprefix("OUTAGE_STATUS_").lower()
        print(
            f"{o.system:<10} {status:<10} {o.start_time.ToDatetime().isoformat()} -> {end}  "
            f"{o.description}"
        )
    return 0


async def cmd_notes(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub: Stub = status_pb2_grpc.StatusServiceStub(channel)
    reply = await stub.ListNotes(status_pb2.ListNotesRequest(system=args.system or ""))
    for n in reply.notes:
        print(f"{n.system:<10} {n.create_time.ToDatetime().isoformat()}  {n.author}: {n.text}")
    return 0


async def cmd_whoami(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    info = await stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest())
    print(f"user: {info.user} (uid {info.uid})")
    print(f"client: {info.client_id}")
    print(f"scopes: {' '.join(info.scopes)}")
    print(f"expires: {info.expires_at.ToDatetime().isoformat()}Z")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcgate", description="Client for an hpcgate server.")
    parser.add_argument(
        "--address",
        default=default_address(),
        help="HOST:PORT of the server (default: $HPCGATE_ADDRESS or 127.0.0.1:50051)",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", type=Path, help="CA certificate to verify the server (PEM)")
    parser.add_argument(
        "--token",
        default=os.environ.get("HPCGATE_TOKEN"),
        help="access token (default: $HPCGATE_TOKEN)",
    )
    parser.add_argument(
        "--client-id",
        default=os.environ.get("HPCGATE_CLIENT_ID"),
        help="registered client id (default: $HPCGATE_CLIENT_ID)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=os.environ.get("HPCGATE_KEY_FILE"),
        help="the client's private key, PEM (default: $HPCGATE_KEY_FILE)",
    )
    parser.add_argument(
        "--audience",
        default=os.environ.get("HPCGATE_AUDIENCE", "hpcgate"),
        help="the server's audience (default: $HPCGATE_AUDIENCE or hpcgate)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    whoami = sub.add_parser("whoami", help="who the server thinks you are (needs a token)")
    whoami.set_defaults(run=cmd_whoami)
    status = sub.add_parser("status", help="state of the systems and their components")
    status.add_argument("system", nargs="?", help="one system, e.g. local")
    status.add_argument("-v", "--verbose", action="store_true", help="show components")
    status.set_defaults(run=cmd_status)
    watch = sub.add_parser("watch", help="follow system state changes")
    watch.add_argument("system", nargs="*", help="systems to watch (default: all)")
    watch.add_argument("--heartbeat", type=int, default=15, help="heartbeat seconds")
    watch.add_argument("--heartbeats", action="store_true", help="print heartbeats")
    watch.set_defaults(run=cmd_watch)
    outages = sub.add_parser("outages", help="current, planned and past outages")
    outages.add_argument("--system")
    outages.set_defaults(run=cmd_outages)
    notes = sub.add_parser("notes", help="operator notes")
    notes.add_argument("--system")
    notes.set_defaults(run=cmd_notes)
    return parser


async def _run(args: argparse.Namespace) -> int:
    client = None
    if args.client_id and args.key_file:
        client = ClientCredentials.from_files(args.client_id, Path(args.key_file), args.audience)
    async with connect(
        args.address, ca_file=args.ca_file, tls=args.tls or None, token=args.token, client=client
    ) as channel:
        command: Command = args.run
        return await command(channel, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except grpc.aio.AioRpcError as e:
        print(f"hpcgate: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
