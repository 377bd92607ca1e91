"""Access tokens: minted by this server, exchanged for client assertions, and verified.

Every check pins the algorithm from our side (never from the token header), and
requires exp, iat, iss, aud and sub, with a small leeway. Failures are UNAUTHENTICATED
with a terse message; the detail goes to the server log only.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from hpcgate.server.auth.caller import Caller
from hpcgate.server.auth.keys import ALGORITHM, ServerKeys
from hpcgate.server.auth.registry import Client, ClientRegistry
from hpcgate.server.auth.scopes import ALL_SCOPES
from hpcgate.server.config import AuthConfig, ExternalIssuer
from hpcgate.server.errors import Code, DomainError

log = logging.getLogger(__name__)
# Client id of tokens made by `hpcgate-server token` (not a registered client).
ADMIN_CLIENT_ID = "hpcgate-server-token"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_REGISTRY_CACHE_SECONDS = 2.0
# Verified tokens remembered (oldest forgotten first); each entry is a few hundred bytes.
VERIFIED_CACHE_SIZE = 10_000


def unauthenticated(message: str) -> DomainError:
    return DomainError(Code.UNAUTHENTICATED, message)


@dataclass(frozen=True)
class VerifiedToken:
    caller: Caller
    # Source networks the token may be used from; () means anywhere.
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class _Remembered:
    """An own token whose signature, audience, issuer and claims were verified once."""

    kid: str
    expires: int  # `exp`, seconds since the epoch
    verified: VerifiedToken


def _decode_error(e: jwt.InvalidTokenError) -> DomainError:
    """Terse client-facing wording for pyjwt's failures."""
    if isinstance(e, jwt.ExpiredSignatureError):
        return unauthenticated("token expired")
    if isinstance(e, jwt.ImmatureSignatureError):
        return unauthenticated("token not yet valid")
    if isinstance(e, jwt.InvalidAudienceError):
        return unauthenticated("token audience mismatch")
    if isinstance(e, jwt.InvalidIssuerError):
        return unauthenticated("token issuer mismatch")
    if isinstance(e, jwt.MissingRequiredClaimError):
        return unauthenticated(f"token lacks the {e.claim} claim")
    if isinstance(e, jwt.InvalidSignatureError):
        return unauthenticated("token signature invalid")
    return unauthenticated("invalid token")


class _ExternalKeys:
    """JWKS of one external issuer, from a file or (fetched off the loop) a URL."""

    def __init__(self, issuer: ExternalIssuer) -> None:
        self.issuer = issuer
        self._client = (
            jwt.PyJWKClient(issuer.jwks_url, cache_keys=True) if issuer.jwks_url else None
        )
        self._file_keys: dict[str, Any] = {}
        if issuer.jwks_file is not None:
            jwks = jwt.PyJWKSet.from_json(issuer.jwks_file.read_text())
            self._file_keys = {k.key_id: k.key for k in jwks.keys if k.key_id}

    async def key(self, kid: str) -> Any:
        if self._client is not None:
            try:
                signing_key = await asyncio.to_thread(self._client.get_signing_key, kid)
            except jwt.PyJWKClientError:
                return None
            return signing_key.key
        return self._file_keys.get(kid)


class TokenService:
    def __init__(self, settings: AuthConfig, keys: ServerKeys, registry: ClientRegistry) -> None:
        self.settings = settings
        self.keys = keys
        self.registry = registry
        self._external = {i.issuer: _ExternalKeys(i) for i in settings.issuers}
        self._client_cache: dict[str, tuple[float, Client | None]] = {}
        # Claims of our own tokens whose signature, audience and issuer were verified:
        # ES256 verification was 0.3-0.4 ms of every RPC (measured). Expiry, the signing
        # key and the client are still checked on every use.
        self._verified: collections.OrderedDict[str, _Remembered] = collections.OrderedDict()

    # -- minting ------------------------------------------------------------------------

    def mint(
        self,
        user: str,
        client_id: str,
        scopes: frozenset[str],
        ttl: float,
        cidrs: tuple[str, ...] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign an access token. `cidrs` is embedded only for tokens without a registered client."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user,
            "client_id": client_id,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl),
            "jti": secrets.token_hex(16),
        }
        if cidrs is not None:
            claims["cidrs"] = list(cidrs)
        key = self.keys.current
        token = jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return token, claims

    # -- verifying access tokens --------------------------------------------------------

    async def _client(self, client_id: str) -> Client | None:
        now = time.monotonic()
        cached = self._client_cache.get(client_id)
        if cached is not None and now - cached[0] < _REGISTRY_CACHE_SECONDS:
            return cached[1]
        client = await asyncio.to_thread(self.registry.get, client_id)
        if len(self._client_cache) > 10_000:
            self._client_cache.clear()
        self._client_cache[client_id] = (now, client)
        return client

    async def verify(self, token: str) -> VerifiedToken:
        remembered = self._verified.get(token)
        if remembered is not None:
            if self._still_valid(remembered):
                return await self._check_client(remembered)
            del self._verified[token]  # expired or its key retired: verify it afresh
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise unauthenticated("malformed token") from None
        issuer = unverified.get("iss")
        if issuer == self.settings.issuer:
            return await self._verify_own(token, header)
        if isinstance(issuer, str) and issuer in self._external:
            return await self._verify_external(token, header, self._external[issuer])
        raise unauthenticated("token issuer not trusted")

    def _still_valid(self, remembered: _Remembered) -> bool:
        return (
            time.time() <= remembered.expires + self.settings.leeway
            and self.keys.verification_key(remembered.kid) is not None
        )

    async def _verify_own(self, token: str, header: dict[str, Any]) -> VerifiedToken:
        kid = str(header.get("kid", ""))
        key = self.keys.verification_key(kid)
        if key is None:
            raise unauthenticated("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": [*REQUIRED_CLAIMS, "client_id", "jti"]},
            )
        except jwt.InvalidTokenError as e:
            raise _decode_error(e) from None
        client_id = str(claims["client_id"])
        cidrs = tuple(str(c) for c in claims.get("cidrs", []))
        caller = self._caller(claims, client_id, str(claims.get("scope", "")))
        remembered = _Remembered(kid, int(claims["exp"]), VerifiedToken(caller, cidrs))
        verified = await self._check_client(remembered)
        self._verified[token] = remembered
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    async def _check_client(self, remembered: _Remembered) -> VerifiedToken:
        """A token of a registered client is only as good as the client: checked on every
        use (through the registry's short cache); admin tokens carry their networks."""
        verified = remembered.verified
        if verified.caller.client_id == ADMIN_CLIENT_ID:
            return verified
        client = await self._client(verified.caller.client_id)
        if client is None or not client.usable(time.time()) or client.user != verified.caller.user:
            raise unauthenticated("client revoked or expired")
        return VerifiedToken(verified.caller, client.cidrs)

    async def _verify_external(
        self, token: str, header: dict[str, Any], external: _ExternalKeys
    ) -> VerifiedToken:
        settings = external.issuer
        if header.get("alg") not in settings.algorithms:
            raise unauthenticated("token algorithm not allowed")
        key = await external.key(str(header.get("kid", "")))
        if key is None:
            raise unauthenticated("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(settings.algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=self.settings.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as e:
            raise _decode_error(e) from None
        user = claims.get(settings.username_claim)
        if not isinstance(user, str) or not user:
            raise unauthenticated(f"token lacks the {settings.username_claim} claim")
        scopes = claims.get(settings.scopes_claim, "")
        if isinstance(scopes, list):
            scopes = " ".join(str(s) for s in scopes)
        claims["sub"] = user
        client_id = f"{settings.issuer}#{claims.get('azp') or claims.get('client_id') or ''}"
        return VerifiedToken(self._caller(claims, client_id, str(scopes)), settings.allowed_cidrs)

    @staticmethod
    def _caller(claims: dict[str, Any], client_id: str, scope: str) -> Caller:
        aud = claims["aud"]
        return Caller(
            user=str(claims["sub"]),
            client_id=client_id,
            scopes=frozenset(scope.split()) & ALL_SCOPES,
            issuer=str(claims["iss"]),
            audience=aud if isinstance(aud, str) else " ".join(aud),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims.get("jti", "")),
        )

    # -- exchanging client assertions ---------------------------------------------------

    async def exchange(
        self,
        assertion: str,
        peer_address: str | None,
        requested_scopes: frozenset[str],
        requested_lifetime: float | None,
    ) -> tuple[str, dict[str, Any], Client]:
        """RFC 7523 client credentials: a client-signed assertion becomes an access token."""
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise unauthenticated("malformed client assertion") from None
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise unauthenticated("client assertion must have iss = sub = client id")
        client = await asyncio.to_thread(self.registry.get, client_id)
        if client is None:
            raise unauthenticated("unknown client")
        if not client.usable(time.time()):
            raise unauthenticated("client revoked or expired")
        try:
            claims = jwt.decode(
                assertion,
                client.public_key(),
                algorithms=client.algorithms(),
                audience=self.settings.audience,
                issuer=client_id,
                leeway=self.settings.leeway,
                options={"require": [*REQUIRED_CLAIMS, "jti"]},
            )
        except jwt.InvalidTokenError as e:
            raise _decode_error(e) from None
        if (
            claims["exp"] - time.time()
            > self.settings.max_assertion_lifetime + self.settings.leeway
        ):
            limit = self.settings.max_assertion_lifetime
            raise unauthenticated(f"client assertion lives too long (at most {limit:g} s)")
        if not client.allows_address(peer_address):
            raise unauthenticated("client not allowed from this address")
        fresh = await asyncio.to_thread(
            self.registry.record_assertion, client_id, str(claims["jti"]), float(claims["exp"])
        )
        if not fresh:
            raise unauthenticated("client assertion replayed")
        scopes = client.scopes
        if requested_scopes:
            if not requested_scopes <= client.scopes:
                missing = sorted(requested_scopes - client.scopes)
                raise DomainError(
                    Code.PERMISSION_DENIED,
                    f"client {client_id} may not have scope(s) {', '.join(missing)}",
                )
            scopes = requested_scopes
        ttl = self.settings.access_token_ttl
        if requested_lifetime:
            ttl = min(ttl, requested_lifetime)
        ttl = min(ttl, client.expires_at - time.time())
        token, token_claims = self.mint(client.user, client_id, scopes, ttl)
        log.info(
            "token issued",
            extra={
                "fields": {"client_id": client_id, "user": client.user, "scopes": sorted(scopes)}
            },
        )
        return token, token_claims, client


def jwks(keys: ServerKeys) -> str:
    """The server's public keys as a JWKS document (for peers that verify our tokens)."""
    entries = []
    for key in keys.all():
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key))
        jwk.update({"kid": key.kid, "alg": ALGORITHM, "use": "sig"})
        entries.append(jwk)
    return json.dumps({"keys": entries}, indent=2)
