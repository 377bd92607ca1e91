"""Opening a channel to an hpcgate server, plaintext on loopback or TLS elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "HPCGATE_ADDRESS"


def default_address() -> str:
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def connect(
    address: str | None = None,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    tls: bool | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel. TLS is used when asked for or when a CA/cert is given.

    `cert_file`/`key_file` present a client certificate (mutual TLS between facilities).
    """
    address = address or default_address()
    use_tls = tls if tls is not None else bool(ca_file or cert_file)
    if not use_tls:
        return grpc.aio.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file else None,
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )
    return grpc.aio.secure_channel(address, credentials)
