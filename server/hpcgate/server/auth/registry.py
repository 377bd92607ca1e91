"""The client registry: key pairs registered for a user, with scopes, networks and expiry.

Like an identity portal, `add` can generate the key pair and hand out the private key
once; only the public key is stored. A site policy bounds powerful clients.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hpcgate.server.auth.scopes import ALL_SCOPES, POWERFUL_SCOPES
from hpcgate.server.config import ClientPolicy
from hpcgate.server.state.store import StateStore

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class RegistryError(ValueError):
    """A client cannot be registered as asked; the message says why."""


@dataclass(frozen=True)
class Client:
    id: str
    user: str
    public_key_pem: str
    scopes: frozenset[str]
    cidrs: tuple[str, ...]
    description: str
    created_at: float
    expires_at: float
    revoked_at: float | None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def public_key(self) -> PublicKey:
        key = serialization.load_pem_public_key(self.public_key_pem.encode())
        if not isinstance(
            key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
        ):
            raise RegistryError("unsupported key type")
        return key

    def algorithms(self) -> list[str]:
        """The one JWS algorithm this client's key may sign with (pinned, never from the token)."""
        key = self.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return ["RS256"]
        if isinstance(key, ed25519.Ed25519PublicKey):
            return ["EdDSA"]
        return ["ES256"] if isinstance(key.curve, ec.SECP256R1) else ["ES384"]

    def allows_address(self, address: str | None) -> bool:
        return address_in(address, self.cidrs)


def address_in(address: str | None, cidrs: tuple[str, ...]) -> bool:
    """True when `cidrs` is empty (no restriction) or `address` lies in one of them."""
    if not cidrs:
        return True
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c, strict=False) for c in cidrs)


def _check_public_key(pem: str) -> str:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise RegistryError("the public key is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise RegistryError("RSA keys must have at least 2048 bits")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise RegistryError("use an RSA (>= 2048 bit), EC P-256/P-384 or Ed25519 key")
    return pem


def _row(r: tuple[object, ...]) -> Client:
    return Client(
        id=str(r[0]),
        user=str(r[1]),
        public_key_pem=str(r[2]),
        scopes=frozenset(json.loads(str(r[3]))),
        cidrs=tuple(json.loads(str(r[4]))),
        description=str(r[5]),
        created_at=float(r[6]),  # type: ignore[arg-type]
        expires_at=float(r[7]),  # type: ignore[arg-type]
        revoked_at=None if r[8] is None else float(r[8]),  # type: ignore[arg-type]
    )


class ClientRegistry:
    def __init__(self, store: StateStore, policy: ClientPolicy) -> None:
        self.store = store
        self.policy = policy

    def check_policy(self, scopes: frozenset[str], cidrs: tuple[str, ...], lifetime: float) -> None:
        unknown = scopes - ALL_SCOPES
        if unknown:
            raise RegistryError(f"unknown scope(s) {sorted(unknown)}; use {sorted(ALL_SCOPES)}")
        if not scopes:
            raise RegistryError("give at least one scope")
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise RegistryError(f"{cidr!r} is not a CIDR such as 192.0.2.0/24") from None
        if lifetime <= 0:
            raise RegistryError("the expiry must be in the future")
        if scopes & POWERFUL_SCOPES:
            limit = self.policy.powerful_max_lifetime
            if not 1 <= len(cidrs) <= self.policy.powerful_max_cidrs:
                raise RegistryError(
                    f"a client with scope {'/'.join(sorted(scopes & POWERFUL_SCOPES))} must name "
                    f"1 to {self.policy.powerful_max_cidrs} source CIDRs (site policy)"
                )
        else:
            limit = self.policy.read_only_max_lifetime
        if lifetime > limit + 1:
            raise RegistryError(
                f"this client may live at most {limit / 86400:g} days (site policy)"
            )

    def add(
        self,
        user: str,
        scopes: frozenset[str],
        cidrs: tuple[str, ...],
        lifetime: float,
        public_key_pem: str | None = None,
        description: str = "",
    ) -> tuple[Client, str | None]:
        """Register a client. Returns it and, if the key pair was generated, the private PEM."""
        self.check_policy(scopes, cidrs, lifetime)
        private_pem = None
        if public_key_pem is None:
            private = ec.generate_private_key(ec.SECP256R1())
            private_pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            public_key_pem = (
                private.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        _check_public_key(public_key_pem)
        now = time.time()
        client = Client(
            id=secrets.token_hex(12),
            user=user,
            public_key_pem=public_key_pem,
            scopes=scopes,
            cidrs=cidrs,
            description=description,
            created_at=now,
            expires_at=now + lifetime,
            revoked_at=None,
        )
        with self.store.connect() as db:
            db.execute(
                "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    client.id,
                    user,
                    public_key_pem,
                    json.dumps(sorted(scopes)),
                    json.dumps(list(cidrs)),
                    description,
                    now,
                    client.expires_at,
                ),
            )
        return client, private_pem

    def get(self, client_id: str) -> Client | None:
        with self.store.connect() as db:
            row = db.execute("SELECT * FROM clients WHERE id = ?", (client_id,)).fetchone()
        return _row(row) if row else None

    def list(self, user: str | None = None) -> list[Client]:
        query, args = "SELECT * FROM clients", tuple[str, ...]()
        if user:
            query, args = query + ' WHERE "user" = ?', (user,)
        with self.store.connect() as db:
            rows = db.execute(query + " ORDER BY created_at", args).fetchall()
        return [_row(r) for r in rows]

    def revoke(self, client_id: str) -> bool:
        with self.store.connect() as db:
            cursor = db.execute(
                "UPDATE clients SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), client_id),
            )
        return cursor.rowcount > 0

    def record_assertion(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Remember a used assertion id; False if it was used before (a replay)."""
        now = time.time()
        with self.store.connect() as db:
            db.execute("DELETE FROM used_assertions WHERE expires_at < ?", (now - 3600,))
            cursor = db.execute(
                "INSERT INTO used_assertions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (jti, client_id, expires_at),
            )
        return cursor.rowcount == 1
