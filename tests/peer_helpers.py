"""Two hpcgate servers on loopback, A trusting B as a peer facility (for transfer tests).

B registers a client for its user `peer_user` (scopes read and write, from 127.0.0.1
only); A's configuration has a `[[peers]]` table for B with that client's id and private
key, so A acts at B as `peer_user`. Each gateway has its own state directory.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import GatewayFactory, fast_config
from hpcgate.server.app import Gateway
from hpcgate.server.config import Config, PeerConfig

PEER_ID = "site-b"


def register_service_client(
    gateway: Gateway, user: str, key_file: Path, scopes: tuple[str, ...] = ("read", "write")
) -> str:
    """Registers a client of `gateway` acting as `user` (what `hpcgate-server clients add
    --public-key` does) and writes its private key to `key_file`; returns the client id."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client, _ = gateway.tokens.registry.add(
        user, frozenset(scopes), ("127.0.0.1/32",), 3600, public, "peer service account (test)"
    )
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_file, 0o600)
    return client.id


def with_peer(config: Config, peer: PeerConfig) -> Config:
    return replace(config, peers=(*config.peers, peer))


async def peer_pair(
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    *,
    peer_user: str = "bob",
    allowed_users: tuple[str, ...] = ("alice",),
    peer_id: str = PEER_ID,
) -> tuple[Gateway, Gateway, str]:
    """Starts B, registers B's client for `peer_user`, then starts A with B as peer
    `peer_id` (allowed to `allowed_users` of A). Returns (A, B, peer_id); A's
    `config.peer(peer_id)` is the PeerConfig. Neither waits for Slurm probes."""
    b = await gateway_factory(fast_config(tmp_path / "gateway-b"), wait_ready=False)
    key_file = tmp_path / f"{peer_id}.pem"
    client_id = register_service_client(b, peer_user, key_file)
    peer = PeerConfig(
        id=peer_id,
        address=f"127.0.0.1:{b.port}",
        client_id=client_id,
        private_key_file=key_file,
        audience=b.config.auth.audience,
        allowed_users=allowed_users,
        timeout=10.0,
    )
    a = await gateway_factory(
        with_peer(fast_config(tmp_path / "gateway-a"), peer), wait_ready=False
    )
    return a, b, peer_id
