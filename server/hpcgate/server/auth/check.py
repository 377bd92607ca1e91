"""The per-RPC auth check: token, source address, scope, and the single-user rule.

Called by the interceptor for every RPC before the handler runs. Public RPCs (status,
ExchangeToken, health, reflection) pass without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Any
from urllib.parse import unquote

from hpcgate.server.auth.caller import Caller
from hpcgate.server.auth.registry import address_in
from hpcgate.server.auth.scopes import METHOD_SCOPES, PUBLIC_METHODS
from hpcgate.server.auth.tokens import TokenService, unauthenticated
from hpcgate.server.errors import Code, DomainError

# The HTTP front (Connect, gRPC-Web: http/) forwards each call to this process's own gRPC
# server and names the HTTP client's address in FORWARDED_PEER. Only a call that also
# carries this process's secret (never sent anywhere else) is believed: anyone else who
# sends the header is judged by their own address, as before.
FORWARDED_PEER = "x-hpcgate-forwarded-peer"
FORWARDED_KEY = "x-hpcgate-forwarded-key"
FORWARDING_SECRET = secrets.token_urlsafe(32)


def caller_peer(context: Any) -> str:
    """The caller's address in grpc's peer form (`ipv4:10.0.0.1:5000`): the HTTP client's
    for calls the HTTP front forwarded, the connection's own for all others."""
    forwarded = key = None
    for name, value in context.invocation_metadata() or ():
        if name == FORWARDED_PEER:
            forwarded = value
        elif name == FORWARDED_KEY:
            key = value
    if (
        isinstance(forwarded, str)
        and isinstance(key, str)
        and hmac.compare_digest(key.encode(), FORWARDING_SECRET.encode())
    ):
        return forwarded
    return str(context.peer())


def peer_address(peer: str) -> str | None:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` -> the IP; None for unix sockets etc."""
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def bearer_token(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise unauthenticated("authorization metadata must be 'Bearer <access token>'")
    return None


class Authenticator:
    """Decides, per RPC, who the caller is and whether they may call it."""

    def __init__(self, tokens: TokenService, served_user: str | None) -> None:
        self.tokens = tokens
        # Single-user mode (server not running as root): the only user it serves.
        self.served_user = served_user

    async def authenticate(self, method: str, context: Any) -> Caller | None:
        if method in PUBLIC_METHODS:
            return None
        token = bearer_token(context)
        if token is None:
            raise unauthenticated("missing access token: send 'authorization: Bearer <token>'")
        verified = await self.tokens.verify(token)
        caller = verified.caller
        if not address_in(peer_address(caller_peer(context)), verified.cidrs):
            raise DomainError(
                Code.PERMISSION_DENIED,
                "this token's client is not allowed to connect from your address",
            )
        if self.served_user is not None and caller.user != self.served_user:
            raise DomainError(
                Code.PERMISSION_DENIED,
                f"this server runs in single-user mode for {self.served_user!r} and serves "
                f"no other user",
            )
        if method not in METHOD_SCOPES:
            raise DomainError(Code.PERMISSION_DENIED, f"{method} is not open to clients")
        needed = METHOD_SCOPES[method]
        if needed is not None and needed not in caller.scopes:
            have = ", ".join(sorted(caller.scopes)) or "none"
            raise DomainError(
                Code.PERMISSION_DENIED,
                f"this RPC needs the '{needed}' scope; your token has: {have}",
            )
        return caller
