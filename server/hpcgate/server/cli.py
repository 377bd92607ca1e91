"""`hpcgate-server`: serve the API, and manage its state (outages, notes, clients, keys).

Every subcommand finds the configuration and state directory the same way (see
paths.py), so no flags are needed on a machine set up with `make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hpcgate.server import config as config_module
from hpcgate.server import log as log_setup
from hpcgate.server.config import Config, ConfigError
from hpcgate.server.state.store import StateStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> datetime:
    """`now`, or ISO 8601 (`2026-12-01T08:00`, local time unless an offset is given)."""
    if text == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 'now' or ISO 8601 such as 2026-12-01T08:00"
        ) from None
    if value.tzinfo is None:
        value = value.astimezone()  # the operator's local time zone
    return value.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use e.g. 90m, 4h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _fmt(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M %Z") if value else "open-ended"


# Commands that read and write the state directory (run as root, they act as the
# service account when it owns that directory).
ADMIN_COMMANDS = frozenset({"outages", "notes", "clients", "token", "keys", "reservations"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcgate-server",
        description="The hpcgate gRPC gateway to an HPC facility. Configuration keys are "
        "documented in the example printed by `hpcgate-server config example`.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $HPCGATE_CONFIG, else /etc/hpcgate/hpcgate.toml "
        "if present, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="serve the API (the default command)")
    serve.add_argument("--listen", help="HOST:PORT, overrides server.listen")
    serve.add_argument(
        "--http-listen",
        help='HOST:PORT of Connect/gRPC-Web and the status page, overrides http.listen ("" off)',
    )
    serve.add_argument(
        "--spawner",
        action="store_true",
        help="get per-user workers from the root spawner (sets privsep.use_spawner; how "
        "root's `serve` starts the unprivileged gateway)",
    )
    sub.add_parser(
        "spawner",
        help="run only the root spawner of per-user workers (a second systemd unit beside "
        "a gateway started as the service account with `serve --spawner`)",
    )

    notify = sub.add_parser(
        "notify",
        help="tell the running gateways that a job started or ended (what Slurm's hook, "
        "slurm/hook.py, does; never blocks, exits 0 even when no gateway listens)",
    )
    notify.add_argument("--job", required=True, help="Slurm job id")
    notify.add_argument("--event", choices=("started", "ended"), default="ended")
    notify.add_argument("--system", default="", help="the gateway's system id (default: all)")
    notify.add_argument("--cluster", default="", help="Slurm's ClusterName (default: any)")

    cfg = sub.add_parser("config", help="show or check the configuration")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    cfg_sub.add_parser("example", help="print an example configuration with every key documented")
    cfg_sub.add_parser("check", help="load the configuration and print what it resolves to")

    outages = sub.add_parser("outages", help="manage planned outages")
    o_sub = outages.add_subparsers(dest="action", required=True)
    add = o_sub.add_parser("add", help="record an outage (in progress when it has started)")
    add.add_argument("--system", required=True, help="system id, e.g. local")
    add.add_argument("--start", type=parse_time, required=True, help="'now' or ISO 8601")
    end = add.add_mutually_exclusive_group()
    end.add_argument("--end", type=parse_time, help="ISO 8601; omit for open-ended")
    end.add_argument("--duration", type=parse_duration, help="e.g. 90m, 4h, 2d")
    add.add_argument("--description", required=True, help="what happens, what users should expect")
    lst = o_sub.add_parser("list", help="list outages")
    lst.add_argument("--system")
    rm = o_sub.add_parser("remove", help="delete an outage")
    rm.add_argument("id")

    notes = sub.add_parser("notes", help="manage operator notes")
    n_sub = notes.add_subparsers(dest="action", required=True)
    nadd = n_sub.add_parser("add", help="publish a note")
    nadd.add_argument("--system", required=True)
    nadd.add_argument("--text", required=True)
    nadd.add_argument("--author", default=getpass.getuser())
    nlst = n_sub.add_parser("list", help="list notes")
    nlst.add_argument("--system")
    nrm = n_sub.add_parser("remove", help="delete a note")
    nrm.add_argument("id")
    clients = sub.add_parser("clients", help="manage registered API clients (key pairs)")
    c_sub = clients.add_subparsers(dest="action", required=True)
    cadd = c_sub.add_parser(
        "add", help="register a client; prints its id and (once) a generated private key"
    )
    cadd.add_argument("--user", required=True, help="POSIX user the client acts as")
    cadd.add_argument(
        "--scope",
        action="append",
        choices=["read", "write", "execute"],
        required=True,
        help="repeat for several scopes",
    )
    cadd.add_argument(
        "--cidr",
        action="append",
        default=[],
        help="source network allowed, e.g. 192.0.2.0/24 (repeatable)",
    )
    cadd.add_argument(
        "--expires",
        type=parse_expiry,
        help="lifetime (e.g. 2d, 12h) or ISO 8601 end; default: the policy's maximum",
    )
    cadd.add_argument(
        "--public-key",
        type=Path,
        help="register this PEM public key instead of generating a key pair",
    )
    cadd.add_argument("--description", default="", help="what the client is for")
    clst = c_sub.add_parser("list", help="list clients")
    clst.add_argument("--user")
    crev = c_sub.add_parser("revoke", help="revoke a client: its tokens stop working")
    crev.add_argument("id")

    token = sub.add_parser("token", help="print an access token (for automation and tests)")
    token.add_argument("--user", default=getpass.getuser(), help="default: the current user")
    token.add_argument(
        "--scope",
        action="append",
        choices=["read", "write", "execute"],
        help="repeatable; default: read",
    )
    token.add_argument("--ttl", type=float, default=600.0, help="seconds (default 600)")
    token.add_argument(
        "--cidr",
        action="append",
        help="networks the token may be used from (default: loopback only)",
    )

    reservations = sub.add_parser("reservations", help="decide users' reservation requests")
    r_sub = reservations.add_subparsers(dest="action", required=True)
    r_sub.add_parser("list", help="every request, newest first")
    for action, text in (
        ("approve", "grant a PENDING_APPROVAL request (creates it in Slurm)"),
        ("deny", "reject a PENDING_APPROVAL request"),
        ("delete", "cancel a request; a granted one leaves Slurm"),
    ):
        one = r_sub.add_parser(action, help=text)
        one.add_argument("id", help="the request's id (see `reservations list`)")
        if action == "deny":
            one.add_argument("--reason", default="", help="told to the requester")

    keys = sub.add_parser("keys", help="the server's token-signing keys")
    k_sub = keys.add_subparsers(dest="action", required=True)
    k_sub.add_parser("list", help="list signing keys")
    k_sub.add_parser("rotate", help="start signing with a new key; old ones verify until expiry")
    k_sub.add_parser("jwks", help="print the public keys as JWKS")
    return parser


def parse_expiry(text: str) -> float:
    """Seconds from now: a duration such as 2d, or an ISO 8601 end time."""
    if _DURATION.match(text):
        return parse_duration(text).total_seconds()
    return (parse_time(text) - datetime.now(UTC)).total_seconds()


def _clients(config: Config, args: argparse.Namespace) -> int:
    from hpcgate.server.auth.registry import ClientRegistry, RegistryError
    from hpcgate.server.auth.scopes import POWERFUL_SCOPES

    registry = ClientRegistry(StateStore.open(config), config.auth.policy)
    if args.action == "add":
        scopes = frozenset(args.scope)
        policy = config.auth.policy
        lifetime = args.expires or (
            policy.powerful_max_lifetime
            if scopes & POWERFUL_SCOPES
            else policy.read_only_max_lifetime
        )
        public_pem = args.public_key.read_text() if args.public_key else None
        try:
            client, private_pem = registry.add(
                args.user, scopes, tuple(args.cidr), lifetime, public_pem, args.description
            )
        except RegistryError as e:
            sys.exit(f"hpcgate-server: {e}")
        print(f"client id: {client.id}")
        print(
            f"user: {client.user}  scopes: {' '.join(sorted(client.scopes))}  "
            f"cidrs: {' '.join(client.cidrs) or 'any'}  "
            f"expires: {_fmt(datetime.fromtimestamp(client.expires_at, UTC))}"
        )
        print(f"audience: {config.auth.audience}")
        if private_pem:
            print("private key (shown once; store it where only the client can read it):")
            print(private_pem, end="")
    elif args.action == "list":
        now = datetime.now(UTC).timestamp()
        for c in registry.list(args.user):
            state = "revoked" if c.revoked_at else ("expired" if c.expires_at <= now else "active")
            print(
                f"{c.id}  {c.user:<12} {state:<8} {' '.join(sorted(c.scopes)):<20} "
                f"{' '.join(c.cidrs) or 'any':<24} "
                f"{_fmt(datetime.fromtimestamp(c.expires_at, UTC))}  {c.description}"
            )
    elif not registry.revoke(args.id):
        sys.exit(f"hpcgate-server: no active client {args.id!r} (see `clients list`)")
    else:
        print(f"revoked client {args.id}")
    return 0


def _token(config: Config, args: argparse.Namespace) -> int:
    from hpcgate.server.app import token_service
    from hpcgate.server.auth.tokens import ADMIN_CLIENT_ID

    if not 0 < args.ttl <= config.auth.max_access_token_ttl:
        sys.exit(f"hpcgate-server: --ttl must be in (0, {config.auth.max_access_token_ttl:g}]")
    tokens = token_service(config, StateStore.open(config))
    cidrs = tuple(args.cidr) if args.cidr else ("127.0.0.0/8", "::1/128")
    token, _ = tokens.mint(
        args.user, ADMIN_CLIENT_ID, frozenset(args.scope or ["read"]), args.ttl, cidrs
    )
    print(token)
    return 0


def _keys(config: Config, args: argparse.Namespace) -> int:
    from hpcgate.server.auth.keys import ServerKeys
    from hpcgate.server.auth.tokens import jwks

    keys = ServerKeys(config.server.state_dir, config.auth.max_access_token_ttl)
    if args.action == "rotate":
        print(f"now signing with key {keys.rotate().kid}")
    elif args.action == "jwks":
        print(jwks(keys))
    else:
        for key in keys.all():
            state = "current" if key.retired_at is None else "retired (verifies only)"
            print(f"{key.kid}  {_fmt(datetime.fromtimestamp(key.created_at, UTC))}  {state}")
    return 0


def _check_system(config: Config, system: str | None) -> None:
    if system and config.system(system) is None:
        known = ", ".join(s.id for s in config.systems)
        sys.exit(f"hpcgate-server: unknown system {system!r}; configured systems: {known}")


def _outages(config: Config, args: argparse.Namespace) -> int:
    store = StateStore.open(config)
    now = datetime.now(UTC)
    if args.action == "add":
        _check_system(config, args.system)
        end = args.end or (args.start + args.duration if args.duration else None)
        try:
            outage = store.add_outage(args.system, args.start, end, args.description)
        except ValueError as e:
            sys.exit(f"hpcgate-server: {e}")
        print(
            f"added outage {outage.id} ({outage.status(now)}): {_fmt(outage.start_time)} "
            f"to {_fmt(outage.end_time)} on {outage.system}"
        )
    elif args.action == "list":
        _check_system(config, args.system)
        for o in store.list_outages(args.system):
            print(
                f"{o.id}  {o.system:<10} {o.status(now):<9} {_fmt(o.start_time)} -> "
                f"{_fmt(o.end_time)}  {o.description}"
            )
    elif not store.remove_outage(args.id):
        sys.exit(f"hpcgate-server: no outage with id {args.id!r} (see `outages list`)")
    else:
        print(f"removed outage {args.id}")
    return 0


def _notes(config: Config, args: argparse.Namespace) -> int:
    store = StateStore.open(config)
    if args.action == "add":
        _check_system(config, args.system)
        note = store.add_note(args.system, args.text, args.author)
        print(f"added note {note.id} on {note.system}")
    elif args.action == "list":
        _check_system(config, args.system)
        for n in store.list_notes(args.system):
            print(f"{n.id}  {n.system:<10} {_fmt(n.create_time)}  {n.author}: {n.text}")
    elif not store.remove_note(args.id):
        sys.exit(f"hpcgate-server: no note with id {args.id!r} (see `notes list`)")
    else:
        print(f"removed note {args.id}")
    return 0


def _reservations(config: Config, args: argparse.Namespace) -> int:
    """The operator's side of reservation requests; the running server sees each decision
    at its next read of the request (watchers within a second)."""
    from hpcgate.server.compute.reservations import Reservations
    from hpcgate.server.errors import DomainError
    from hpcgate.server.slurm.factory import make_adapter

    adapters = {system.id: make_adapter(system) for system in config.systems}
    service = Reservations(StateStore.open(config), adapters)
    operator = os.environ.get("SUDO_USER") or os.environ.get("USER") or "operator"

    async def act() -> None:
        if args.action == "list":
            for r in await service.list(None):
                start = _fmt(r.start) if r.start else "asap"
                print(
                    f"{r.id}  {r.state:<16} {r.system:<10} {r.owner:<10} {r.project:<10} "
                    f"{r.node_count} nodes  {start}  {r.duration / 60:g} min  {r.reason}"
                )
            return
        if args.action == "delete":
            done = await service.delete(args.id, operator, operator=True)
        else:
            done = await service.decide(
                args.id, args.action == "approve", operator, getattr(args, "reason", "")
            )
        print(
            f"request {done.id}: {done.state}"
            + (f" ({done.reason})" if done.reason else "")
            + (f", reservation {done.slurm_name} on {done.nodes}" if done.slurm_name else "")
        )

    try:
        asyncio.run(act())
    except DomainError as e:
        sys.exit(f"hpcgate-server: {e.message}")
    return 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    log_setup.setup(config.server.log_level)
    if os.geteuid() == 0 and config.privsep.service_user and not config.privsep.use_spawner:
        # Root: the gRPC server runs as the service account; only the spawner stays root.
        from hpcgate.server.supervisor import supervise

        argv = ["--config", str(args.config)] if args.config else []
        argv += ["serve", *(["--listen", args.listen] if getattr(args, "listen", None) else [])]
        if getattr(args, "http_listen", None) is not None:
            argv += ["--http-listen", args.http_listen]
        return asyncio.run(supervise(config, argv))
    if os.geteuid() == 0:
        logging.getLogger(__name__).warning(
            'privsep.service_user = "": the network-facing process runs as root'
        )
    from hpcgate.server.app import Gateway  # the server's heavy imports only when serving

    async def main() -> None:
        gateway = Gateway(config)
        await gateway.start()
        await gateway.serve_until_signal()

    asyncio.run(main())
    return 0


def _spawner(config: Config) -> int:
    """Only the spawner, until SIGTERM/SIGINT (root; for a two-unit deployment)."""
    from hpcgate.server.privsep import Policy, Spawner
    from hpcgate.server.privsep.launcher import WorkerLauncher
    from hpcgate.server.supervisor import service_account

    log_setup.setup(config.server.log_level)
    if os.geteuid() != 0:
        raise ConfigError("the spawner must be started by root")
    account = service_account(config.privsep.service_user)

    async def main() -> None:
        spawner = Spawner(
            config.privsep.socket,
            client_uid=account.uid,
            client_gid=account.gid,
            policy=Policy(config.privsep.min_uid, frozenset(config.privsep.deny_users)),
            launcher=WorkerLauncher(),
        )
        await spawner.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await spawner.close()

    asyncio.run(main())
    return 0


def _notify(args: argparse.Namespace) -> int:
    """Best effort, like the hook: a bad configuration still notifies the default place."""
    from hpcgate.server.slurm.hook import HOOK_DIR, Notice, encode_notice, parse_notice, send

    notice = parse_notice(
        encode_notice(Notice(args.event, args.job, args.cluster, args.system, time.time()))
    )
    if notice is None:
        print(f"hpcgate-server notify: not a valid job id or name: {args.job!r}", file=sys.stderr)
        return 2
    try:
        socket = config_module.load(args.config).watch.hook_socket
    except ConfigError:
        socket = None
    directory = str(socket.parent) if socket is not None else HOOK_DIR
    delivered = send(notice, directory)
    print(f"notified {delivered} gateway socket(s) in {directory}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "notify":
        return _notify(args)
    if args.command == "config" and args.action == "example":
        print(config_module.EXAMPLE_CONFIG.read_text(), end="")
        return 0
    try:
        config = config_module.load(args.config)
        if getattr(args, "listen", None):
            config = replace(config, server=replace(config.server, listen=args.listen))
            if ":" not in args.listen:
                raise ConfigError(f"--listen {args.listen!r} must be HOST:PORT")
        http_listen = getattr(args, "http_listen", None)
        if http_listen is not None:
            if http_listen and ":" not in http_listen:
                raise ConfigError(f'--http-listen {http_listen!r} must be HOST:PORT, or ""')
            config = replace(config, http=replace(config.http, listen=http_listen))
    except ConfigError as e:
        print(f"hpcgate-server: configuration error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "spawner", False):
        config = replace(config, privsep=replace(config.privsep, use_spawner=True))
    if args.command in ADMIN_COMMANDS:
        from hpcgate.server.supervisor import drop_to_service_account

        drop_to_service_account(config)  # files it creates stay the service account's
    if args.command == "outages":
        return _outages(config, args)
    if args.command == "notes":
        return _notes(config, args)
    if args.command == "clients":
        return _clients(config, args)
    if args.command == "token":
        return _token(config, args)
    if args.command == "keys":
        return _keys(config, args)
    if args.command == "reservations":
        return _reservations(config, args)
    if args.command == "config":
        print(f"source: {config.source or 'built-in defaults'}")
        print(f"state_dir: {config.server.state_dir}")
        print(f"listen: {config.server.listen} (tls: {'yes' if config.server.tls else 'no'})")
        print(f"metrics: {config.metrics.listen or 'off'}")
        print(f"http (Connect, gRPC-Web, status page): {config.http.listen or 'off'}")
        for s in config.systems:
            fs = ", ".join(f"{f.name}={f.path}" for f in s.filesystems)
            print(f"system {s.id}: adapter={s.slurm.adapter} filesystems: {fs}")
        return 0
    try:
        if args.command == "spawner":
            return _spawner(config)
        return _serve(config, args)
    except ConfigError as e:
        print(f"hpcgate-server: configuration error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hpcgate-server: {e}", file=sys.stderr)
        return 1
