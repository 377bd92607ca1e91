"""The `hpcgate` command group and its global options."""

from __future__ import annotations

import click

from hpcgate.client.cli.settings import Settings

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Commands(click.Group):
    """Commands listed in the order they were added (jobs, files, transfers, the rest)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=Commands, context_settings=CONTEXT, no_args_is_help=True)
@click.option(
    "--address",
    envvar="HPCGATE_ADDRESS",
    metavar="HOST:PORT",
    help="The server [$HPCGATE_ADDRESS, else the profile's, else 127.0.0.1:50051].",
)
@click.option("--token", envvar="HPCGATE_TOKEN", help="Access token [$HPCGATE_TOKEN].")
@click.option(
    "--client-id",
    envvar="HPCGATE_CLIENT_ID",
    help="Registered client id, with --key-file [$HPCGATE_CLIENT_ID].",
)
@click.option(
    "--key-file",
    envvar="HPCGATE_KEY_FILE",
    type=click.Path(dir_okay=False),
    help="The client's private key, PEM [$HPCGATE_KEY_FILE].",
)
@click.option(
    "--audience",
    envvar="HPCGATE_AUDIENCE",
    help="The server's token audience [$HPCGATE_AUDIENCE, else hpcgate].",
)
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    help="CA certificate (PEM) to verify the server; implies --tls.",
)
@click.option(
    "--profile",
    envvar="HPCGATE_PROFILE",
    help="Profile from the config file [$HPCGATE_PROFILE, else the default one].",
)
@click.option(
    "--system",
    envvar="HPCGATE_SYSTEM",
    help="System to work on [$HPCGATE_SYSTEM, else the profile's, else the only one].",
)
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds each call may take."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (one document; one line per message for streams).",
)
@click.option("-v", "--verbose", count=True, help="Say more (on stderr).")
@click.version_option(package_name="hpcgate", prog_name="hpcgate")
@click.pass_context
def cli(
    ctx: click.Context, address: str | None, token: str | None, client_id: str | None,
    key_file: str | None, audience: str | None, tls: bool, ca_file: str | None,
    profile: str | None, system: str | None, timeout: float, as_json: bool, verbose: int,
) -> None:  # fmt: skip
    """A client for an hpcgate server: Slurm jobs, files and transfers on HPC systems.

    Remote paths are absolute, or relative to your home directory on the system.
    Errors exit with the gRPC status code (5 NOT_FOUND, 7 PERMISSION_DENIED, ...)."""
    ctx.obj = Settings(address=address, token=token, client_id=client_id, key_file=key_file,
                       audience=audience, tls=tls, ca_file=ca_file, profile=profile,
                       system=system, timeout=timeout, json=as_json, verbose=verbose)  # fmt: skip
