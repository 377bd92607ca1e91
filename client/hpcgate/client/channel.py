"""Opening a channel to an hpcgate server, plaintext on loopback or TLS elsewhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc

from hpcgate.client.auth import ClientCredentials, bearer_interceptors

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "HPCGATE_ADDRESS"
# Pings every 45 s, idle channels included, so that a NAT or firewall with a 60 s idle
# timeout never drops the connection under a quiet channel; a dead server is noticed
# 20 s after a ping goes unanswered. The server accepts pings every 30 s or slower
# (`server.min_client_ping_interval`): a client pinging more often gets GOAWAY
# "too_many_pings". Without max_pings_without_data = 0, grpc stops pinging after two
# pings with no data sent in between, and the NAT drops the connection after all.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 45_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


# Calls spread over every address of a target that names several replicas
# (`ipv4:127.0.0.1:50061,127.0.0.1:50062`), instead of all going to the first.
ROUND_ROBIN = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))


def default_address() -> str:
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def channel_options(address: str) -> list[tuple[str, object]]:
    """Keepalive and size limits; round robin when `address` lists several servers."""
    options: list[tuple[str, object]] = list(KEEPALIVE_OPTIONS)
    if "," in address:
        options.append(ROUND_ROBIN)
    return options


def connect(
    address: str | None = None,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    tls: bool | None = None,
    token: str | None = None,
    client: ClientCredentials | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel. TLS is used when asked for or when a CA/cert is given.

    `cert_file`/`key_file` present a client certificate (mutual TLS between facilities).
    With `token` every call carries that access token; with `client` the channel
    exchanges the client's credentials for tokens and renews them before they expire.
    """
    address = address or default_address()
    use_tls = tls if tls is not None else bool(ca_file or cert_file)
    channel: grpc.aio.Channel | None = None
    interceptors = []
    if token:
        static = token

        async def get_static() -> str:
            return static

        interceptors = bearer_interceptors(get_static)
    elif client is not None:
        client_credentials = client

        async def get_exchanged() -> str:
            assert channel is not None
            return await client_credentials.token(channel)

        interceptors = bearer_interceptors(get_exchanged)
    if not use_tls:
        channel = grpc.aio.insecure_channel(
            address, options=channel_options(address), interceptors=interceptors
        )
        return channel
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file else None,
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )
    channel = grpc.aio.secure_channel(
        address, credentials, options=channel_options(address), interceptors=interceptors
    )
    return channel
