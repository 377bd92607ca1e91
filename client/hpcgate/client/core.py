"""The asyncio `Client`: one channel, credentials, deadlines, retries and typed errors.

The service areas hang off it (`client.jobs`, `client.files`, `client.storage`,
`client.tasks`, `client.status`, `client.account`); each is a small class in its own
module that calls the generated stubs through `Client.unary` / `Client.stream`, which turn
gRPC failures into `hpcgate.client.errors` exceptions and retry what is safe to retry.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import subprocess
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from hpcgate.client.auth import ClientCredentials, bearer_interceptors
from hpcgate.client.channel import channel_options, default_address
from hpcgate.client.errors import (
    HpcgateError,
    InvalidArgument,
    Unauthenticated,
    from_rpc_error,
    retryable,
)

if TYPE_CHECKING:
    from hpcgate.client.account import Account
    from hpcgate.client.files import Files
    from hpcgate.client.jobs import Jobs
    from hpcgate.client.reservations import Reservations
    from hpcgate.client.status import Status
    from hpcgate.client.tasks import Storage, Tasks

Request = TypeVar("Request")
Response = TypeVar("Response")

TOKEN_ENV = "HPCGATE_TOKEN"  # noqa: S105 (the variable's name, not a secret)
SYSTEM_ENV = "HPCGATE_SYSTEM"
DEFAULT_TIMEOUT = 60.0  # seconds a unary call may take (streams have none by default)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; RetryInfo from the server wins when given."""

    attempts: int = 6  # calls in all, the first included
    initial_delay: float = 0.2
    max_delay: float = 10.0

    def should_retry(self, attempt: int, error: HpcgateError) -> bool:
        """Whether to try once more after `attempt` (0 = the first call) failed with
        `error`. Not when a rate limit asks for a longer wait than `max_delay`: retrying
        sooner would only be refused again. (An unavailable server is tried again every
        `max_delay` at most, whatever it hinted: it may be back sooner.)"""
        if attempt + 1 >= self.attempts or not retryable(error):
            return False
        if error.code != grpc.StatusCode.RESOURCE_EXHAUSTED or error.retry_delay is None:
            return True
        return error.retry_delay <= self.max_delay

    def delay(self, attempt: int, error: HpcgateError) -> float:
        if error.retry_delay is not None:
            return min(error.retry_delay, self.max_delay)
        backoff: float = min(self.initial_delay * 2.0**attempt, self.max_delay)
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not secrecy)


class TokenCommand:
    """Credentials from a command that prints an access token (e.g. a site's `get-token`);
    run again every `refresh` seconds (set it below the tokens' lifetime)."""

    def __init__(self, command: str | Sequence[str], refresh: float = 300.0) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        self.refresh = refresh
        self._token = ""
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if time.monotonic() < self._until:
                return self._token
            result = await asyncio.to_thread(
                subprocess.run, self.argv, capture_output=True, text=True, check=False
            )
            if result.returncode != 0 or not result.stdout.strip():
                raise Unauthenticated(
                    f"the token command {shlex.join(self.argv)!r} failed "
                    f"(exit {result.returncode}): {result.stderr.strip()[:500]}"
                )
            self._token = result.stdout.strip().splitlines()[-1]
            self._until = time.monotonic() + self.refresh
            return self._token


Credentials = str | ClientCredentials | TokenCommand


class Client:
    """An hpcgate server, over one channel. Use as `async with connect(...) as client:`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        system: str | None = None,
    ) -> None:
        from hpcgate.client.account import Account
        from hpcgate.client.files import Files
        from hpcgate.client.jobs import Jobs
        from hpcgate.client.reservations import Reservations
        from hpcgate.client.status import Status
        from hpcgate.client.tasks import Storage, Tasks

        self.channel = channel
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.default_system = system
        self.jobs: Jobs = Jobs(self)
        self.files: Files = Files(self)
        self.storage: Storage = Storage(self)
        self.tasks: Tasks = Tasks(self)
        self.status: Status = Status(self)
        self.account: Account = Account(self)
        self.reservations: Reservations = Reservations(self)

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        tls: bool | None = None,
        ca_file: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        system: str | None = None,
    ) -> Client:
        """A client for the server at `address` (default $HPCGATE_ADDRESS, else
        127.0.0.1:50051). TLS when asked for or when `ca_file` is given.

        `token` is an access token; `credentials` is a token too, or `ClientCredentials`
        (a registered client's id and key: tokens are exchanged and renewed before they
        expire), or a `TokenCommand`; with neither, $HPCGATE_TOKEN if set. `system` is the
        default for calls that take one (default $HPCGATE_SYSTEM)."""
        if token is None and credentials is None:
            token = os.environ.get(TOKEN_ENV) or None
        system = system or os.environ.get(SYSTEM_ENV) or None
        channel = open_channel(address, token=token, credentials=credentials, tls=tls,
                               ca_file=ca_file)  # fmt: skip
        return cls(channel, timeout=timeout, retry=retry, system=system)

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def system(self, system: str | None) -> str:
        """`systems/<id>` for a system id (or name), or the client's default system."""
        chosen = system or self.default_system
        if not chosen:
            raise InvalidArgument("no system given: pass system=... or connect(..., system=...)")
        return chosen if chosen.startswith("systems/") else f"systems/{chosen}"

    async def unary(
        self,
        method: Callable[..., Awaitable[Response]],
        request: Any,
        *,
        retry: bool,
        deadline: float | None = None,
    ) -> Response:
        """One unary call of a stub method with a deadline (seconds; the client's timeout
        by default); UNAVAILABLE and rate limits (RESOURCE_EXHAUSTED with a retry hint,
        waited out) retried with backoff when `retry` (reads, and writes that carry a
        request_id)."""
        attempt = 0
        while True:
            try:
                return await method(request, timeout=deadline or self.timeout)
            except grpc.RpcError as e:
                error = from_rpc_error(e)
            if not retry or not self.retry.should_retry(attempt, error):
                raise error
            await asyncio.sleep(self.retry.delay(attempt, error))
            attempt += 1

    async def stream(
        self,
        method: Callable[..., AsyncIterable[Response]],
        request: Any,
        *,
        deadline: float | None = None,
    ) -> AsyncIterator[Response]:
        """The messages of a server stream, failures as HpcgateError (no retry: resuming
        a stream is the caller's business, e.g. WatchJobs from its last revision)."""
        call = method(request, timeout=deadline)
        try:
            async for message in call:
                yield message
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            cancel = getattr(call, "cancel", None)
            if cancel is not None:
                cancel()


def open_channel(
    address: str | None = None,
    *,
    token: str | None = None,
    credentials: Credentials | None = None,
    tls: bool | None = None,
    ca_file: str | Path | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel with keepalive settings the server accepts, carrying the token."""
    address = address or default_address()
    channel: grpc.aio.Channel | None = None
    source = credentials if credentials is not None else token

    async def current_token() -> str:
        if isinstance(source, str):
            return source
        if isinstance(source, ClientCredentials):
            assert channel is not None
            return await source.token(channel)
        assert isinstance(source, TokenCommand)
        return await source.token()

    interceptors = bearer_interceptors(current_token) if source else []
    if tls or (tls is None and ca_file is not None):
        roots = Path(ca_file).read_bytes() if ca_file else None
        channel = grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(roots), options=channel_options(address),
            interceptors=interceptors,
        )  # fmt: skip
    else:
        channel = grpc.aio.insecure_channel(
            address, options=channel_options(address), interceptors=interceptors
        )
    return channel


def connect(
    address: str | None = None,
    *,
    token: str | None = None,
    credentials: Credentials | None = None,
    tls: bool | None = None,
    ca_file: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    system: str | None = None,
) -> Client:
    """`Client.connect`: `async with connect(token=...) as client: ...`."""
    return Client.connect(address, token=token, credentials=credentials, tls=tls,
                          ca_file=ca_file, timeout=timeout, retry=retry, system=system)  # fmt: skip
