"""Client credentials: sign an assertion with the client's key, exchange it for an access
token, keep it fresh, and attach it to every call as `authorization: Bearer ...`."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hpcgate.v1 import auth_pb2, auth_pb2_grpc

REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is renewed


def make_assertion(
    client_id: str, private_key_pem: bytes, audience: str, lifetime: float = 60.0
) -> str:
    """An RFC 7523 client assertion: iss = sub = client id, aud, short exp, unique jti."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = "RS256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = "EdDSA"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = "ES256" if isinstance(key.curve, ec.SECP256R1) else "ES384"
    else:
        raise ValueError("unsupported private key type")
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + int(lifetime),
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


class ClientCredentials:
    """A registered client's id and private key; exchanges them for access tokens on demand."""

    def __init__(self, client_id: str, private_key_pem: bytes, audience: str = "hpcgate") -> None:
        self.client_id = client_id
        self.private_key_pem = private_key_pem
        self.audience = audience
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_files(
        cls, client_id: str, key_file: str | Path, audience: str = "hpcgate"
    ) -> ClientCredentials:
        return cls(client_id, Path(key_file).read_bytes(), audience)

    async def token(self, channel: grpc.aio.Channel) -> str:
        """A valid access token, exchanged anew when the current one is about to expire."""
        async with self._lock:
            if time.time() < self._expires - REFRESH_MARGIN:
                return self._token
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            reply = await stub.ExchangeToken(
                auth_pb2.ExchangeTokenRequest(
                    client_assertion=make_assertion(
                        self.client_id, self.private_key_pem, self.audience
                    )
                )
            )
            self._token = reply.access_token
            self._expires = reply.expires_at.ToDatetime().timestamp()
            return self._token


TokenGetter = Callable[[], Awaitable[str]]


_PUBLIC_EXCHANGE = "/hpcgate.v1.AuthService/ExchangeToken"


class _BearerBase:
    def __init__(self, get_token: TokenGetter) -> None:
        self.get_token = get_token

    async def _with_token(self, details: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method == _PUBLIC_EXCHANGE:  # the exchange itself carries no token
            return details
        metadata = list(details.metadata or [])
        metadata.append(("authorization", f"Bearer {await self.get_token()}"))
        return details._replace(metadata=metadata)


class _UnaryUnary(_BearerBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc,type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(await self._with_token(details), request)


class _UnaryStream(_BearerBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc,type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(await self._with_token(details), request)


class _StreamUnary(_BearerBase, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc,type-arg]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(await self._with_token(details), requests)


class _StreamStream(_BearerBase, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc,type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(await self._with_token(details), requests)


def bearer_interceptors(get_token: TokenGetter) -> list[Any]:
    """Client interceptors that add `authorization: Bearer <token>` to every call."""
    return [
        _UnaryUnary(get_token),
        _UnaryStream(get_token),
        _StreamUnary(get_token),
        _StreamStream(get_token),
    ]
