"""The HTTP listener: hypercorn (HTTP/1.1 and cleartext HTTP/2) serving the front
(front.py) in the gateway's event loop, and the private Unix socket through which its
calls reach the gateway's gRPC server (forwarding.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from pathlib import Path

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from hpcgate.server.config import Config
from hpcgate.server.web.forwarding import Forwarder
from hpcgate.server.web.front import HttpFront, application

log = logging.getLogger("hpcgate.http")


class HttpListener:
    """`attach()` before the gRPC server starts, `start()` after it, `stop()` at the end."""

    def __init__(self, config: Config, services: list[ServiceDescriptor]) -> None:
        self.config = config
        self.services = services
        self.port = 0
        # 0700, this process's own: only it can reach the gRPC server through here (and
        # the path stays short: a Unix socket path is limited to 107 bytes).
        self._private = Path(tempfile.mkdtemp(prefix="hpcgate-http-"))
        self._socket_path = self._private / "grpc.sock"
        self._channel: grpc.aio.Channel | None = None
        self._stopping = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None

    def attach(self, server: grpc.aio.Server) -> None:
        """Adds the private Unix socket to the gRPC server (before it starts)."""
        if server.add_insecure_port(f"unix:{self._socket_path}") == 0:
            raise OSError(f"cannot listen on the private socket {self._socket_path}")

    async def start(self) -> int:
        """Binds [http] listen (fatal when taken, like the gRPC address) and serves."""
        listen = self.config.http.listen
        sock = _bind(listen)
        self.port = sock.getsockname()[1]
        max_bytes = self.config.limits.max_message_bytes
        self._channel = grpc.aio.insecure_channel(
            f"unix:{self._socket_path}",
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
            ],
        )
        front = HttpFront(Forwarder(self._channel).endpoints(self.services), max_bytes)
        settings = HypercornConfig()
        # hypercorn takes the socket over (and closes it): bound here so port 0 works.
        settings.bind = [f"fd://{sock.detach()}"]
        settings.accesslog = None  # every call is logged once, by the gRPC interceptor
        settings.errorlog = log
        settings.graceful_timeout = self.config.server.shutdown_grace
        settings.keep_alive_timeout = self.config.server.keepalive_time
        settings.include_server_header = False
        self._serving = asyncio.create_task(
            serve(application(front, self.config.http), settings,
                  shutdown_trigger=self._stopping.wait, mode="asgi"),
            name="http",
        )  # fmt: skip
        host = listen.rsplit(":", 1)[0]
        log.info("http listening", extra={"fields": {"address": f"{host}:{self.port}"}})
        return self.port

    def begin_stop(self) -> None:
        """Stops accepting connections; open calls end when the gRPC server ends them."""
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        if self._serving is not None:
            try:
                await asyncio.wait_for(self._serving, self.config.server.shutdown_grace + 2)
            except (TimeoutError, asyncio.CancelledError):
                self._serving.cancel()
                with contextlib.suppress(BaseException):
                    await self._serving
        if self._channel is not None:
            await self._channel.close(None)
        shutil.rmtree(self._private, ignore_errors=True)


def _bind(listen: str) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as e:
        sock.close()
        raise OSError(
            f"cannot serve HTTP on {listen}: {e.strerror}; choose another [http] listen "
            'address, or set it to "" to serve gRPC only'
        ) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock
