"""The HTTP listener's application: API paths go to the Connect application (Connect,
gRPC-Web and gRPC protocols, connectrpc), `/` and `/static/*` to the status page, and,
when origins are configured, CORS (Starlette's middleware) around both."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.server import ConnectASGIApplication
from google.protobuf.json_format import MessageToJson, Parse
from google.protobuf.message import Message
from starlette.middleware.cors import CORSMiddleware

from hpcgate.server.config import HttpConfig

log = logging.getLogger("hpcgate.http")
STATIC_DIR = Path(__file__).with_name("static")
# What the page may load: itself only; no inline scripts, no other hosts.
_PAGE_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]
# The page's files, by URL path: a fixed list read at start (no paths from requests).
_PAGE_FILES = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/index.html": ("index.html", b"text/html; charset=utf-8"),
    "/static/status.css": ("status.css", b"text/css; charset=utf-8"),
    "/static/status.js": ("status.js", b"text/javascript; charset=utf-8"),
}
# What a browser's Connect and gRPC-Web clients send and must be allowed to read.
CORS_REQUEST_HEADERS = [
    "authorization", "content-type", "connect-protocol-version", "connect-timeout-ms",
    "connect-accept-encoding", "connect-content-encoding", "grpc-timeout",
    "grpc-accept-encoding", "x-grpc-web", "x-user-agent",
]  # fmt: skip
CORS_RESPONSE_HEADERS = [
    "grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-retry-pushback-ms",
    "grpc-encoding", "connect-content-encoding", "retry-after",
]  # fmt: skip


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: bytes


class CompactJsonCodec(Codec[Message, Message]):
    """The proto3 JSON mapping on one line (connectrpc.compat's indents it: bigger and
    slower for every streamed event); unknown fields are refused, as in gRPC."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        return Parse(bytes(data), message_class())


class _ApiApplication(ConnectASGIApplication[None]):
    """All services' endpoints in one Connect application (connectrpc's generated
    applications are one per service; the forwarder builds them from descriptors)."""

    @property
    def path(self) -> str:
        return "/"


class HttpFront:
    """The ASGI application of the HTTP listener."""

    def __init__(self, endpoints: dict[str, Any], max_message_bytes: int) -> None:
        self.paths = frozenset(endpoints)
        self.api = _ApiApplication(
            service=None,
            endpoints=lambda _service: endpoints,
            read_max_bytes=max_message_bytes,
            codecs=[google_protobuf_binary_codec(), CompactJsonCodec()],
        )
        self.files = _page_files()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] != "http":
            await _respond(send, 404, b"not found\n")
        elif scope["path"] in self.paths:
            await self.api(scope, receive, send)
        elif (page := self.files.get(scope["path"])) is not None:
            await _serve_file(scope, send, page)
        else:
            await _respond(
                send, 404, b"not found: API calls are POST /hpcgate.v1.<Service>/<Method>\n"
            )


def application(front: HttpFront, config: HttpConfig) -> Any:
    """The front, inside CORS when origins are configured (none: no CORS headers, so
    browsers allow same-origin pages only)."""
    if not config.cors_allowed_origins:
        return front
    return CORSMiddleware(
        front,
        allow_origins=list(config.cors_allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_RESPONSE_HEADERS,
        max_age=config.cors_max_age,
    )


def _page_files() -> dict[str, _File]:
    files: dict[str, _File] = {}
    for url, (name, content_type) in _PAGE_FILES.items():
        path = STATIC_DIR / name
        try:
            files[url] = _File(path.read_bytes(), content_type)
        except FileNotFoundError:
            log.warning("status page: %s is missing (run `make web` to build it)", path)
    return files


async def _serve_file(scope: Any, send: Any, page: _File) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _respond(send, 405, b"the status page answers GET only\n", [(b"allow", b"GET, HEAD")])
        return
    headers = [
        (b"content-type", page.content_type),
        (b"content-length", str(len(page.body)).encode()),
        *_PAGE_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else page.body
    await send({"type": "http.response.body", "body": body})


async def _respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
