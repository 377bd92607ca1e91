"""Authentication and authorization attacks and happy paths, against a real server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import ROOT, GatewayFactory, bearer, fast_config
from hpcgate.client.auth import ClientCredentials, make_assertion
from hpcgate.client.channel import connect
from hpcgate.server.app import Gateway, service_names
from hpcgate.server.auth.registry import Client
from hpcgate.server.auth.scopes import METHOD_SCOPES, PUBLIC_METHODS
from hpcgate.server.auth.tokens import ADMIN_CLIENT_ID
from hpcgate.server.config import ExternalIssuer
from hpcgate.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def bad_request_fields(error: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return {v.field for v in detail.field_violations}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(private: Any) -> bytes:
    return private.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


@pytest.fixture
async def server(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(wait_ready=False)


@pytest.fixture
async def channel(server: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


async def token_info(channel: grpc.aio.Channel, token: str | None) -> auth_pb2.GetTokenInfoResponse:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    return await stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest(), metadata=metadata)


async def refused(channel: grpc.aio.Channel, token: str | None) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await token_info(channel, token)
    return e.value.code(), e.value.details() or ""


def own_claims(server: Gateway, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": server.config.auth.issuer,
        "aud": server.config.auth.audience,
        "sub": "alice",
        "client_id": ADMIN_CLIENT_ID,
        "scope": "read",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "t1",
        "cidrs": ["127.0.0.0/8"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign_own(server: Gateway, claims: dict[str, Any], kid: str | None = None) -> str:
    key = server.tokens.keys.current
    return jwt.encode(claims, key.private_key, "ES256", headers={"kid": kid or key.kid})


def test_every_rpc_has_exactly_one_auth_rule() -> None:
    from hpcgate.v1 import (
        account_pb2,
        auth_pb2,
        compute_pb2,
        status_pb2,
        storage_pb2,
        tasks_pb2,
        utilities_pb2,
    )

    modules = [
        account_pb2,
        auth_pb2,
        compute_pb2,
        status_pb2,
        storage_pb2,
        tasks_pb2,
        utilities_pb2,
    ]
    methods = {
        f"/{service.full_name}/{m.name}"
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    }
    assert len({s for s in service_names()}) == 7
    assert methods == (set(METHOD_SCOPES) | PUBLIC_METHODS) - {
        m for m in PUBLIC_METHODS if not m.startswith("/hpcgate.")
    }
    assert not set(METHOD_SCOPES) & PUBLIC_METHODS


async def test_status_is_public_and_token_info_is_not(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    await status_pb2_grpc.StatusServiceStub(channel).ListSystems(status_pb2.ListSystemsRequest())
    code, message = await refused(channel, None)
    assert code == UNAUTHENTICATED and "Bearer" in message
    info = await token_info(channel, sign_own(server, own_claims(server)))
    assert (info.user == "alice" and info.uid == 1001) or info.user == "alice"
    assert list(info.scopes) == ["read"] and info.client_id == ADMIN_CLIENT_ID


async def test_each_bad_token_is_unauthenticated(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    now = int(time.time())
    good = sign_own(server, own_claims(server))
    header, payload, signature = good.split(".")
    public = server.tokens.keys.current.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = b64(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": server.tokens.keys.current.kid}).encode()
    )
    hs_input = f"{hs_header}.{payload}".encode()
    hs256_with_public_key = f"{hs_header}.{payload}." + b64(
        hmac.new(public, hs_input, hashlib.sha256).digest()
    )
    none_header = b64(json.dumps({"alg": "none", "kid": server.tokens.keys.current.kid}).encode())
    tampered_payload = b64(json.dumps(own_claims(server, sub="bob")).encode())
    other_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "malformed": "not.a.jwt",
        "garbage": "abc",
        "alg none": f"{none_header}.{payload}.",
        "HS256 signed with the public key": hs256_with_public_key,
        "expired": sign_own(
            server, own_claims(server, iat=now - 900, nbf=now - 900, exp=now - 600)
        ),
        "not yet valid": sign_own(server, own_claims(server, nbf=now + 600, exp=now + 900)),
        "wrong audience": sign_own(server, own_claims(server, aud="someone-else")),
        "wrong issuer": sign_own(server, own_claims(server, iss="evil")),
        "unknown kid": sign_own(server, own_claims(server), kid="0000000000000000"),
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "signed by another key": jwt.encode(
            own_claims(server),
            other_key,
            "ES256",
            headers={"kid": server.tokens.keys.current.kid},
        ),
        "no exp": sign_own(server, own_claims(server, exp=None)),
        "no sub": sign_own(server, own_claims(server, sub=None)),
    }
    for name, token in cases.items():
        code, message = await refused(channel, token)
        assert code == UNAUTHENTICATED, (name, code, message)
        assert "Traceback" not in message and len(message) < 80, (name, message)
    assert (await token_info(channel, good)).user == "alice"


async def test_token_from_outside_its_networks_is_refused(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    token = sign_own(server, own_claims(server, cidrs=["192.0.2.0/24"]))
    code, message = await refused(channel, token)
    assert code == PERMISSION_DENIED and "address" in message


async def test_missing_scope_is_permission_denied_naming_the_scope(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    stub = compute_pb2_grpc.ComputeServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.SubmitJob(compute_pb2.SubmitJobRequest(), metadata=bearer(server, "alice"))
    assert e.value.code() == PERMISSION_DENIED and "'execute'" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as ok:
        await stub.SubmitJob(
            compute_pb2.SubmitJobRequest(), metadata=bearer(server, "alice", ("execute",))
        )
    assert ok.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # past auth, into the service


def documented_scopes() -> dict[str, str | None]:
    """RPC path -> the scope its proto comment names ("Scope: `read`"), None for "any
    valid token", "public" for none."""
    import re

    found: dict[str, str | None] = {}
    for proto in sorted((ROOT / "proto" / "hpcgate" / "v1").glob("*.proto")):
        service, comment = "", []
        for line in proto.read_text().splitlines():
            text = line.strip()
            if match := re.match(r"service (\w+)", text):
                service, comment = match.group(1), []
            elif text.startswith("//"):
                comment.append(text[2:].strip())
            elif match := re.match(r"rpc (\w+)\(", text):
                said = re.search(
                    r"Scope: (`(\w+)`|any valid token|none \(public)", " ".join(comment)
                )
                path = f"/hpcgate.v1.{service}/{match.group(1)}"
                if said is None:  # StatusService says it once for the service: public
                    found[path] = "public" if service == "StatusService" else "undocumented"
                else:
                    found[path] = said.group(2) or (None if "any" in said.group(1) else "public")
                comment = []
            else:
                comment = []
    return found


def test_every_rpc_documents_the_scope_it_is_checked_for() -> None:
    documented = documented_scopes()
    actual: dict[str, str | None] = dict(METHOD_SCOPES)
    actual.update({m: "public" for m in PUBLIC_METHODS if m.startswith("/hpcgate.")})
    assert documented == actual


async def test_each_scoped_rpc_refuses_a_token_without_its_scope(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    """Every RPC, called with a token holding every scope but the one it needs, is
    PERMISSION_DENIED naming that scope, before its request is looked at."""
    from google.protobuf import descriptor_pool

    from hpcgate.server.auth.scopes import ALL_SCOPES

    pool = descriptor_pool.Default()
    raw: dict[str, Any] = {"request_serializer": bytes, "response_deserializer": bytes}
    for method, scope in sorted(METHOD_SCOPES.items()):
        if scope is None:
            continue
        md = bearer(server, "alice", tuple(sorted(ALL_SCOPES - {scope})))
        service, name = method.strip("/").split("/")
        rpc = pool.FindServiceByName(service).methods_by_name[name]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            if rpc.client_streaming:
                await channel.stream_unary(method, **raw)(iter([b""]), metadata=md)
            elif rpc.server_streaming:
                async for _ in channel.unary_stream(method, **raw)(b"", metadata=md):
                    pass
            else:
                await channel.unary_unary(method, **raw)(b"", metadata=md)
        assert e.value.code() == PERMISSION_DENIED, (method, e.value.details())
        assert f"'{scope}'" in (e.value.details() or ""), (method, e.value.details())
    # GetTokenInfo needs no particular scope.
    info = await token_info(channel, sign_own(server, own_claims(server, scope="write")))
    assert list(info.scopes) == ["write"]


def register(
    server: Gateway,
    scopes: tuple[str, ...] = ("read",),
    cidrs: tuple[str, ...] = (),
    key: Any = None,
    user: str = "alice",
) -> tuple[Client, bytes]:
    private = key or ec.generate_private_key(ec.SECP256R1())
    client, _ = server.tokens.registry.add(
        user, frozenset(scopes), cidrs, 3600, public_pem(private)
    )
    return client, pem(private)


async def exchange(channel: grpc.aio.Channel, assertion: str, **kwargs: Any) -> Any:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    return await stub.ExchangeToken(
        auth_pb2.ExchangeTokenRequest(client_assertion=assertion, **kwargs)
    )


async def exchange_refused(channel: grpc.aio.Channel, assertion: str, **kwargs: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await exchange(channel, assertion, **kwargs)
    assert e.value.code() == UNAUTHENTICATED, e.value.details()
    return e.value.details() or ""


async def test_exchange_token_happy_path_and_scopes(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    client, key = register(server, ("read", "execute"), ("127.0.0.1/32",))
    audience = server.config.auth.audience
    reply = await exchange(channel, make_assertion(client.id, key, audience))
    assert reply.token_type == "Bearer" and reply.user == "alice"
    assert sorted(reply.scopes) == ["execute", "read"]
    assert 590 <= reply.expires_in.seconds <= 600
    info = await token_info(channel, reply.access_token)
    assert info.client_id == client.id and info.user == "alice"
    narrowed = await exchange(channel, make_assertion(client.id, key, audience), scopes=["read"])
    assert list(narrowed.scopes) == ["read"]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await exchange(channel, make_assertion(client.id, key, audience), scopes=["write"])
    assert e.value.code() == PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await exchange(channel, "", grant_type="password")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await exchange(
            channel,
            "",
            grant_type="password",
            client_assertion_type="urn:x",
            scopes=["read", "admin"],
            requested_lifetime=duration_pb2.Duration(seconds=-5),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(bad.value) == {
        "client_assertion",
        "grant_type",
        "client_assertion_type",
        "scopes[1]",
        "requested_lifetime",
    }


async def test_rsa_client_with_its_own_key(server: Gateway, channel: grpc.aio.Channel) -> None:
    client, key = register(server, key=rsa.generate_private_key(65537, 2048))
    reply = await exchange(channel, make_assertion(client.id, key, server.config.auth.audience))
    assert (await token_info(channel, reply.access_token)).client_id == client.id


async def test_bad_assertions_are_unauthenticated(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    client, key = register(server)
    audience = server.config.auth.audience
    assertion = make_assertion(client.id, key, audience)
    await exchange(channel, assertion)
    assert "replayed" in await exchange_refused(channel, assertion)
    assert "audience" in await exchange_refused(
        channel, make_assertion(client.id, key, "another-server")
    )
    stranger = pem(ec.generate_private_key(ec.SECP256R1()))
    assert "signature" in await exchange_refused(
        channel, make_assertion(client.id, stranger, audience)
    )
    assert "unknown client" in await exchange_refused(
        channel, make_assertion("nosuchclient", key, audience)
    )
    assert "too long" in await exchange_refused(
        channel, make_assertion(client.id, key, audience, lifetime=3600)
    )
    assert "expired" in await exchange_refused(
        channel, make_assertion(client.id, key, audience, lifetime=-60)
    )
    now = int(time.time())
    alg_none = jwt.encode(
        {
            "iss": client.id,
            "sub": client.id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": "x",
        },
        None,
        algorithm="none",
    )
    await exchange_refused(channel, alg_none)


async def test_revoked_client_loses_its_tokens(server: Gateway, channel: grpc.aio.Channel) -> None:
    client, key = register(server)
    reply = await exchange(channel, make_assertion(client.id, key, server.config.auth.audience))
    await token_info(channel, reply.access_token)
    server.tokens.registry.revoke(client.id)
    server.tokens._client_cache.clear()  # the 2 s cache; a real deployment waits it out
    code, message = await refused(channel, reply.access_token)
    assert code == UNAUTHENTICATED and "revoked" in message
    assert "revoked" in await exchange_refused(
        channel, make_assertion(client.id, key, server.config.auth.audience)
    )


async def test_client_outside_its_networks_cannot_exchange_or_call(
    server: Gateway, channel: grpc.aio.Channel
) -> None:
    client, key = register(server, cidrs=("192.0.2.0/24",))
    assert "address" in await exchange_refused(
        channel, make_assertion(client.id, key, server.config.auth.audience)
    )
    token, _ = server.tokens.mint("alice", client.id, frozenset({"read"}), 60)
    code, _ = await refused(channel, token)
    assert code == PERMISSION_DENIED


async def test_a_remembered_token_still_expires(server: Gateway, channel: grpc.aio.Channel) -> None:
    """Verified tokens are remembered (no signature check per RPC), never past their expiry."""
    leeway = server.config.auth.leeway
    now = int(time.time())
    # Expired, but within the leeway for 5 s more (room for a slow first call).
    exp = now - leeway + 5
    token = sign_own(server, own_claims(server, iat=now - 60, nbf=now - 60, exp=exp))
    assert (await token_info(channel, token)).user == "alice"  # within the leeway: accepted
    assert token in server.tokens._verified
    await asyncio.sleep(max(0.0, exp + leeway - time.time()) + 1.1)
    code, message = await refused(channel, token)
    assert code == UNAUTHENTICATED and "expired" in message
    assert token not in server.tokens._verified


async def test_old_key_verifies_after_rotation(server: Gateway, channel: grpc.aio.Channel) -> None:
    before = sign_own(server, own_claims(server))
    old_kid = server.tokens.keys.current.kid
    server.tokens.keys.rotate()
    assert server.tokens.keys.current.kid != old_kid
    assert (await token_info(channel, before)).user == "alice"
    after = sign_own(server, own_claims(server))
    assert jwt.get_unverified_header(after)["kid"] != old_kid
    assert (await token_info(channel, after)).user == "alice"


async def test_external_issuer_tokens(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    idp_key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(idp_key.public_key()))
    jwk.update(kid="idp-1", alg="RS256", use="sig")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    base = fast_config(tmp_path)
    issuer = ExternalIssuer(
        issuer="https://idp.example.org",
        audience="hpcgate-ext",
        jwks_file=jwks_file,
        algorithms=("RS256",),
    )
    server = await gateway_factory(
        replace(base, auth=replace(base.auth, issuers=(issuer,))), wait_ready=False
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.example.org",
        "aud": "hpcgate-ext",
        "sub": "uuid-1",
        "preferred_username": "bob",
        "scope": "read openid",
        "iat": now,
        "exp": now + 300,
        "azp": "beamline-7",
    }
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        good = jwt.encode(claims, idp_key, "RS256", headers={"kid": "idp-1"})
        info = await token_info(ch, good)
        assert info.user == "bob" and list(info.scopes) == ["read"]
        assert info.client_id == "https://idp.example.org#beamline-7"
        wrong_aud = jwt.encode(
            dict(claims, aud="hpcgate"), idp_key, "RS256", headers={"kid": "idp-1"}
        )
        assert (await refused(ch, wrong_aud))[0] == UNAUTHENTICATED
        public = idp_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        hs_header = b64(json.dumps({"alg": "HS256", "kid": "idp-1"}).encode())
        body = b64(json.dumps(claims).encode())
        forged = f"{hs_header}.{body}." + b64(
            hmac.new(public, f"{hs_header}.{body}".encode(), hashlib.sha256).digest()
        )
        assert (await refused(ch, forged))[0] == UNAUTHENTICATED
        no_user = jwt.encode(
            {k: v for k, v in claims.items() if k != "preferred_username"},
            idp_key,
            "RS256",
            headers={"kid": "idp-1"},
        )
        assert (await refused(ch, no_user))[0] == UNAUTHENTICATED


async def test_audit_log_names_user_and_client(
    server: Gateway, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hpcgate.rpc")
    await token_info(channel, sign_own(server, own_claims(server)))
    with pytest.raises(grpc.aio.AioRpcError):
        await token_info(channel, "garbage")

    def records() -> list[dict[str, Any]]:
        return [getattr(r, "fields", {}) for r in caplog.records if r.name == "hpcgate.rpc"]

    # The record is written once the handler returns, which can be just after the
    # client has the status: give the server a moment.
    deadline = time.monotonic() + 5
    while not any(f.get("code") == "UNAUTHENTICATED" for f in records()):
        assert time.monotonic() < deadline, f"no UNAUTHENTICATED record in {records()}"
        await asyncio.sleep(0.01)
    ok = [f for f in records() if f.get("code") == "OK" and "GetTokenInfo" in str(f["method"])]
    assert ok and ok[-1]["user"] == "alice" and ok[-1]["client_id"] == ADMIN_CLIENT_ID


async def test_client_library_exchanges_and_renews(
    server: Gateway,
) -> None:
    client, key = register(server, ("read",))
    credentials = ClientCredentials(client.id, key, server.config.auth.audience)
    async with connect(f"127.0.0.1:{server.port}", client=credentials) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        first = await stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest())
        second = await stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest())
        assert first.token_id == second.token_id  # reused while fresh
        credentials._expires = 0  # force a renewal
        third = await stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest())
        assert third.token_id != first.token_id and third.client_id == client.id


def _current_kid(state_dir: str, start: Any, kids: Any) -> None:
    from hpcgate.server.auth.keys import ServerKeys

    start.wait()  # all at once
    kids.put(ServerKeys(Path(state_dir), 3600).current.kid)


def test_replicas_starting_together_on_one_state_dir_share_one_signing_key(
    tmp_path: Path,
) -> None:
    """Cluster mode: replicas share state_dir; the first start of several at once makes
    exactly one key set, which every one of them then signs with."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, kids = context.Barrier(6), context.Queue()
    workers = [
        context.Process(target=_current_kid, args=(str(tmp_path), start, kids)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * 6
    assert len({kids.get(timeout=5) for _ in workers}) == 1
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 1
