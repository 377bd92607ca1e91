"""`hpcgate login`: check a server address and credentials, then store them as a profile."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from hpcgate.client.channel import DEFAULT_ADDRESS
from hpcgate.client.cli import output
from hpcgate.client.cli.profile import active_name, load_config, save_profile
from hpcgate.client.cli.session import Session, execute
from hpcgate.client.cli.settings import Settings
from hpcgate.v1 import auth_pb2, auth_pb2_grpc


@click.command()
@click.option(
    "--profile", "profile_", help="Profile name [the global --profile, else the default]."
)
@click.option("--address", "address_", metavar="HOST:PORT", help="The server.")
@click.option("--token", "token_", help="An access token to store (prompted for when no "
              "credentials are given).")  # fmt: skip
@click.option("--client-id", "client_id_", help="A registered client's id, to store with ...")
@click.option("--key-file", "key_file_", type=click.Path(dir_okay=False, exists=True),
              help="... its private key file (stored as an absolute path).")  # fmt: skip
@click.option("--audience", "audience_", help="The server's token audience.")
@click.option("--ca-file", "ca_file_", type=click.Path(dir_okay=False, exists=True),
              help="CA certificate (PEM) of the server; implies TLS.")  # fmt: skip
@click.option("--tls", "tls_", is_flag=True, help="Connect with TLS.")
@click.option("--system", "system_", help="Default system for this profile.")
@click.option("--default", "make_default", is_flag=True, help="Make this the default profile.")
@click.option("--no-verify", is_flag=True, help="Store without checking with the server.")
@click.pass_obj
def login(settings: Settings, /, make_default: bool, no_verify: bool, **given: Any) -> int:
    """Store a profile for later commands.

    Server, credentials and default system, checked with the server first. Options
    given here win over the global ones (and $HPCGATE_*).

    The profile is written to $XDG_CONFIG_HOME/hpcgate/config.toml (~/.config/hpcgate/
    by default), readable only by you."""
    new = _merged(settings, {k.rstrip("_"): v for k, v in given.items()})
    if not new.token and not (new.client_id and new.key_file):
        new.token = click.prompt("Access token", hide_input=True).strip()
    if not no_verify:
        code = execute(new, _verify)
        if code:
            return code
    name = active_name(new.profile, load_config())
    values = {"address": new.address, "system": new.system, "audience": new.audience,
              "tls": new.tls or None, "ca_file": new.ca_file}  # fmt: skip
    if new.token:
        values["token"] = new.token
    else:
        values |= {"client_id": new.client_id, "key_file": new.key_file}
    path = save_profile(name, values, make_default=make_default)
    output.note(f"saved profile {name!r} in {path}", style="green")
    return 0


def _merged(settings: Settings, given: dict[str, Any]) -> Settings:
    """The global settings with login's own options on top; credentials go as a unit (a
    --token here drops a global client id, and the other way round)."""
    chosen = {k: v for k, v in given.items() if v}
    if "token" in chosen:
        chosen |= {"client_id": None, "key_file": None}
    elif "client_id" in chosen or "key_file" in chosen:
        chosen["token"] = None
    new = dataclasses.replace(settings, **chosen, use_profile=False)
    new.address = new.address or DEFAULT_ADDRESS
    new.key_file = str(Path(new.key_file).resolve()) if new.key_file else None
    new.ca_file = str(Path(new.ca_file).resolve()) if new.ca_file else None
    return new


async def _verify(s: Session) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(s.client.channel)
    info = await s.client.unary(stub.GetTokenInfo, auth_pb2.GetTokenInfoRequest(), retry=True)
    if s.conn.system:
        await s.client.status.system(s.conn.system)  # a typo fails now, not later
    output.note(f"logged in to {s.conn.address} as {info.user} (uid {info.uid})", style="")
