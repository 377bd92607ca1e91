"""The per-RPC auth check: token, source address, scope, and the single-user rule.

Called by the interceptor for every RPC before the handler runs. Public RPCs (status,
ExchangeToken, health, reflection) pass without a token.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

from hpcgate.server.auth.caller import Caller
from hpcgate.server.auth.registry import address_in
from hpcgate.server.auth.scopes import METHOD_SCOPES, PUBLIC_METHODS
from hpcgate.server.auth.tokens import TokenService, unauthenticated
from hpcgate.server.errors import Code, DomainError


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
        if not address_in(peer_address(context.peer()), verified.cidrs):
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
