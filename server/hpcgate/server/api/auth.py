"""AuthService: client credentials become access tokens; GetTokenInfo says who you are."""

from __future__ import annotations

import asyncio
import pwd
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2

from hpcgate.server.api.errors import FieldViolations
from hpcgate.server.api.timeconv import read_duration, timestamp
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.auth.check import caller_peer, peer_address
from hpcgate.server.auth.scopes import ALL_SCOPES
from hpcgate.server.auth.tokens import TokenService
from hpcgate.v1 import auth_pb2, auth_pb2_grpc

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return 0


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    async def ExchangeToken(
        self, request: auth_pb2.ExchangeTokenRequest, context: Any
    ) -> auth_pb2.ExchangeTokenResponse:
        errors = FieldViolations()
        if not request.client_assertion:
            errors.add("client_assertion", "is required: a JWT signed with the client's key")
        if request.grant_type not in ("", GRANT_TYPE):
            errors.add("grant_type", f"must be '{GRANT_TYPE}' (or empty)")
        if request.client_assertion_type not in ("", ASSERTION_TYPE):
            errors.add("client_assertion_type", f"must be '{ASSERTION_TYPE}' (or empty)")
        for i, scope in enumerate(request.scopes):
            if scope not in ALL_SCOPES:
                errors.add(f"scopes[{i}]", f"unknown scope; use one of {sorted(ALL_SCOPES)}")
        lifetime = None
        if (asked := read_duration(request, "requested_lifetime", errors)) is not None:
            lifetime = asked.total_seconds()
            if lifetime <= 0:
                errors.add("requested_lifetime", "must be positive")
        errors.raise_if_any()
        token, claims, client = await self.tokens.exchange(
            request.client_assertion,
            peer_address(caller_peer(context)),
            frozenset(request.scopes),
            lifetime,
        )
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        expires_in = duration_pb2.Duration(seconds=int(claims["exp"]) - int(claims["iat"]))
        return auth_pb2.ExchangeTokenResponse(
            access_token=token,
            token_type="Bearer",  # noqa: S106 (the OAuth2 token type, not a secret)
            expires_at=timestamp(expires_at),
            expires_in=expires_in,
            scopes=sorted(claims["scope"].split()),
            user=client.user,
        )

    async def GetTokenInfo(
        self, request: auth_pb2.GetTokenInfoRequest, context: Any
    ) -> auth_pb2.GetTokenInfoResponse:
        caller = current_caller()
        return auth_pb2.GetTokenInfoResponse(
            user=caller.user,
            uid=await asyncio.to_thread(_uid, caller.user),
            client_id=caller.client_id,
            scopes=sorted(caller.scopes),
            issued_at=timestamp(caller.issued_at),
            expires_at=timestamp(caller.expires_at),
            issuer=caller.issuer,
            audience=caller.audience,
            token_id=caller.token_id,
        )
