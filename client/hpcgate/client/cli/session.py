"""The `Session` each command runs in — one `Client`, the system it works on, remote
paths made absolute — and the runner that maps failures to exit codes."""

from __future__ import annotations

import asyncio
import functools
import os
import posixpath
import sys
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec

import click
import grpc

from hpcgate.client.cli import output
from hpcgate.client.cli.settings import Connection, Settings, connection
from hpcgate.client.core import Client
from hpcgate.client.errors import HpcgateError

P = ParamSpec("P")


class Session:
    """What a command works with: `client`, `json`, `await system()`, `await path(p)`."""

    def __init__(self, settings: Settings, conn: Connection, client: Client) -> None:
        self.settings = settings
        self.conn = conn
        self.client = client
        self.json = settings.json
        self._system: str | None = None
        self._home: str | None = None

    async def system(self) -> str:
        """The system id: --system, $HPCGATE_SYSTEM, the profile's, else the only one."""
        if self._system is None:
            chosen = self.conn.system or await self._only_system()
            self._system = chosen.removeprefix("systems/")
            self.client.default_system = self._system
        return self._system

    async def _only_system(self) -> str:
        systems = [s.name.removeprefix("systems/") for s in await self.client.status.systems()]
        if len(systems) == 1:
            return systems[0]
        raise HpcgateError(
            f"which system? the server has {', '.join(systems) or 'none'}: "
            "pass --system, set $HPCGATE_SYSTEM, or store one with `hpcgate login --system`",
            code=grpc.StatusCode.INVALID_ARGUMENT,
        )

    async def path(self, path: str) -> str:
        """An absolute remote path: `~`, `~/x` and relative paths are under your home."""
        if not path.startswith("/"):
            if self._home is None:
                self._home = (await self.client.account.user()).home_directory or "/"
            rest = path[1:].lstrip("/") if path == "~" or path.startswith("~/") else path
            path = posixpath.join(self._home, rest)
        normal = posixpath.normpath(path)
        return "/" if normal.startswith("//") else normal


def async_command(
    fn: Callable[Concatenate[Session, P], Awaitable[int | None]],
) -> Callable[P, int]:
    """A click callback that runs `fn(session, ...)` with asyncio.run and returns its exit
    status; an HpcgateError prints its message and violations and exits with its code."""

    @functools.wraps(fn)
    def callback(*args: P.args, **kwargs: P.kwargs) -> int:
        settings = click.get_current_context().find_object(Settings) or Settings()
        return execute(settings, lambda session: fn(session, *args, **kwargs))

    return callback


def execute(settings: Settings, body: Callable[[Session], Awaitable[int | None]]) -> int:
    try:
        return asyncio.run(_run(settings, body))
    except HpcgateError as e:
        output.stderr.print(f"hpcgate: {e}", markup=False)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # local files: put, get, sbatch of a script, login's key file
        output.stderr.print(f"hpcgate: {e}", markup=False)
        return 1


async def _run(settings: Settings, body: Callable[[Session], Awaitable[int | None]]) -> int:
    conn = connection(settings)
    if settings.verbose:
        output.note(f"hpcgate: {conn.describe}, system {conn.system or '(the only one)'}")
    async with Client.connect(conn.address, credentials=conn.credentials, tls=conn.tls,
                              ca_file=conn.ca_file, timeout=settings.timeout,
                              system=conn.system) as client:  # fmt: skip
        return await body(Session(settings, conn, client)) or 0
