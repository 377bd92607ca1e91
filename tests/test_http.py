"""The API over HTTP (web/): curl speaks Connect (JSON, HTTP/1.1 and HTTP/2) to a real
gateway and gets what a gRPC client gets: the same answers, codes, messages and error
details for every unary RPC, the same token checks, scopes, rate limits and address
rules; CORS only when configured; the status page's files with a strict policy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import pwd
import shutil
import struct
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server import config as config_module
from hpcgate.server.app import Gateway, http_services
from hpcgate.server.auth.check import FORWARDED_KEY, FORWARDED_PEER
from hpcgate.server.auth.tokens import ADMIN_CLIENT_ID
from hpcgate.v1 import auth_pb2, status_pb2_grpc
from hpcgate.v1 import status_pb2 as hpc_status_pb2
from hpcgate.v1 import utilities_pb2 as U

pytestmark = pytest.mark.slurm
ALL = ("read", "write", "execute")
JSON = "content-type: application/json"


async def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """Runs curl; returns the final HTTP status, the response headers and the body."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-i", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def url(gateway: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gateway.http_port}{path}"


async def post(
    gateway: Gateway, path: str, body: dict[str, Any], token: str | None = None, *extra: str
) -> tuple[int, dict[str, str], Any]:
    auth = ["-H", f"authorization: {token}"] if token else []
    status, headers, raw = await curl(
        "-H", JSON, *auth, *extra, "--data-binary", json.dumps(body), url(gateway, path)
    )
    return status, headers, json.loads(raw) if raw else None


def token_of(gateway: Gateway, user: str = "alice", scopes: tuple[str, ...] = ALL) -> str:
    return bearer(gateway, user, scopes)[0][1]


async def test_curl_lists_systems_without_a_token_over_http1_and_http2(gateway: Gateway) -> None:
    for version in ("--http1.1", "--http2-prior-knowledge"):
        status, headers, body = await post(
            gateway, "/hpcgate.v1.StatusService/ListSystems", {}, None, version
        )
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert [s["name"] for s in body["systems"]] == ["systems/local"]
        assert body["systems"][0]["state"] == "SYSTEM_STATE_ACTIVE"


async def test_a_token_is_needed_where_grpc_needs_one(gateway: Gateway) -> None:
    path = "/hpcgate.v1.AuthService/GetTokenInfo"
    status, _, body = await post(gateway, path, {})
    assert status == 401
    assert body["code"] == "unauthenticated"
    assert "Bearer" in body["message"]
    status, _, body = await post(gateway, path, {}, token_of(gateway, scopes=("read",)))
    assert status == 200, body
    assert body["user"] == "alice"
    assert body["scopes"] == ["read"]
    # A scope the token lacks: refused as over gRPC.
    status, _, body = await post(
        gateway, "/hpcgate.v1.UtilitiesService/MakeDirectory",
        {"path": "systems/local/paths/tmp/x"}, token_of(gateway, scopes=("read",)),
    )  # fmt: skip
    assert status == 403
    assert body["code"] == "permission_denied"
    assert "'write' scope" in body["message"]
    status, _, body = await post(gateway, path, {}, "Bearer not-a-jwt")
    assert status == 401


async def test_a_bad_request_carries_the_same_bad_request_details(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    token = token_of(gateway)
    status, _, body = await post(gateway, "/hpcgate.v1.ComputeService/SubmitJob", {}, token)
    assert status == 400
    assert body["code"] == "invalid_argument"
    [detail] = body["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"] + "=="))
    fields = {v.field for v in bad.field_violations}
    assert "parent" in fields
    # The same as gRPC's, byte for byte.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/hpcgate.v1.ComputeService/SubmitJob")(
            b"", metadata=[("authorization", token)]
        )
    assert body["message"] == caught.value.details()
    [details] = [v for k, v in caught.value.trailing_metadata() if k == "grpc-status-details-bin"]
    assert status_pb2.Status.FromString(details).details[0].value == bad.SerializeToString()


def _unary_paths() -> list[str]:
    return [
        f"/{service.full_name}/{method.name}"
        for service in http_services()
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    ]


async def test_every_unary_rpc_answers_curl_as_it_answers_grpc(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    """An empty request to each unary RPC, with a token of every scope: the HTTP answer has
    the gRPC answer's code and message (or its result, for the ones that accept it)."""
    token = token_of(gateway)
    names = {c.value[0]: c.name.lower() for c in grpc.StatusCode}
    names[grpc.StatusCode.CANCELLED.value[0]] = "canceled"
    checked = 0
    for path in _unary_paths():
        try:
            await channel.unary_unary(path)(b"", metadata=[("authorization", token)], timeout=30)
            expected: tuple[str, str] = ("ok", "")
        except grpc.aio.AioRpcError as e:
            expected = (names[e.code().value[0]], e.details() or "")
        status, _, body = await post(gateway, path, {}, token)
        got = ("ok", "") if status == 200 else (body["code"], body["message"])
        assert got == expected, path
        assert got[0] not in ("internal", "unknown"), path
        checked += 1
    assert checked >= 40


async def test_server_streams_over_connect_and_grpc_web(gateway: Gateway) -> None:
    """WatchSystems as a Connect stream (JSON envelopes) and as gRPC-Web (binary): the
    first message is the snapshot holding system local."""
    for content_type, body, version in [
        ("application/connect+json", b"{}", "--http1.1"),
        ("application/connect+json", b"{}", "--http2-prior-knowledge"),
        ("application/grpc-web+proto", b"", "--http1.1"),
    ]:
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-N", version, "-H", f"content-type: {content_type}",
            "--data-binary", "@-", url(gateway, "/hpcgate.v1.StatusService/WatchSystems"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(struct.pack(">BI", 0, len(body)) + body)
        process.stdin.close()
        flags, length = struct.unpack(">BI", await process.stdout.readexactly(5))
        message = await process.stdout.readexactly(length)
        process.kill()
        await process.wait()
        assert flags == 0
        if content_type.endswith("json"):
            event = json.loads(message)
            assert event["snapshot"]["systems"][0]["name"] == "systems/local", event
        else:
            event_pb = hpc_status_pb2.WatchSystemsResponse.FromString(message)
            assert event_pb.snapshot.systems[0].name == "systems/local"


async def test_the_forwarded_address_cannot_be_spoofed(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    """A token limited to 10.0.0.0/8: refused over HTTP from 127.0.0.1, and refused over
    gRPC even when the caller claims (in the HTTP front's metadata, without its secret)
    to be forwarding for 10.1.2.3."""
    token, _ = gateway.tokens.mint("alice", ADMIN_CLIENT_ID, frozenset(ALL), 300, ("10.0.0.0/8",))
    status, _, body = await post(
        gateway, "/hpcgate.v1.AuthService/GetTokenInfo", {}, f"Bearer {token}",
        "-H", f"{FORWARDED_PEER}: ipv4:10.1.2.3:4000", "-H", f"{FORWARDED_KEY}: guess",
    )  # fmt: skip
    assert status == 403, body
    assert "not allowed to connect from your address" in body["message"]
    stub = status_pb2_grpc.StatusServiceStub(channel)
    await stub.ListSystems(hpc_status_pb2.ListSystemsRequest())  # the channel works
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(
            "/hpcgate.v1.AuthService/GetTokenInfo",
            request_serializer=auth_pb2.GetTokenInfoRequest.SerializeToString,
        )(
            auth_pb2.GetTokenInfoRequest(),
            metadata=[
                ("authorization", f"Bearer {token}"),
                (FORWARDED_PEER, "ipv4:10.1.2.3:4000"),
                (FORWARDED_KEY, "guess"),
            ],
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_http_callers_meet_the_rate_limits_with_retry_info(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    base = fast_config(tmp_path)
    rates = replace(base.rate_limits.per_address, reads_per_second=0.5, reads_burst=2)
    gateway = await gateway_factory(
        replace(base, rate_limits=replace(base.rate_limits, per_address=rates))
    )
    answers = [await post(gateway, "/hpcgate.v1.StatusService/ListSystems", {}) for _ in range(3)]
    assert [a[0] for a in answers[:2]] == [200, 200]
    status, _, body = answers[2]
    assert status == 429
    assert body["code"] == "resource_exhausted"
    retry = [d for d in body["details"] if d["type"] == "google.rpc.RetryInfo"]
    info = error_details_pb2.RetryInfo.FromString(base64.b64decode(retry[0]["value"] + "=="))
    assert info.retry_delay.ToTimedelta().total_seconds() > 0


async def test_oversized_headers_meet_the_metadata_limit(gateway: Gateway) -> None:
    """Headers become metadata, so limits.max_metadata_bytes holds over HTTP too; far
    larger ones are refused by the HTTP server itself (431), never INTERNAL."""
    limit, path = gateway.config.limits.max_metadata_bytes, "/hpcgate.v1.StatusService/ListSystems"
    answers = {
        size: await curl("-H", JSON, "-H", f"x-a: {'a' * size}", "-d", "{}", url(gateway, path))
        for size in (limit - 1024, limit + 1024, 100_000)
    }
    assert answers[limit - 1024][0] == 200
    status, _, body = answers[limit + 1024]
    assert status == 429 and json.loads(body)["code"] == "resource_exhausted"
    assert "metadata size exceeds hard limit" in json.loads(body)["message"]
    assert answers[100_000][0] == 431


async def test_cors_is_off_by_default_and_follows_the_allowed_origins(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    plain = await gateway_factory(fast_config(tmp_path / "a"))
    preflight = ["-X", "OPTIONS", "-H", "access-control-request-method: POST",
                 "-H", "access-control-request-headers: content-type,authorization"]  # fmt: skip
    path = "/hpcgate.v1.StatusService/ListSystems"
    _, headers, _ = await curl(*preflight, "-H", "origin: https://portal.example.org",
                               url(plain, path))  # fmt: skip
    assert "access-control-allow-origin" not in headers
    base = fast_config(tmp_path / "b")
    http = replace(base.http, cors_allowed_origins=("https://portal.example.org",))
    cors = await gateway_factory(replace(base, http=http))
    status, headers, _ = await curl(
        *preflight, "-H", "origin: https://portal.example.org", url(cors, path)
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://portal.example.org"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    status, headers, _ = await curl(
        *preflight, "-H", "origin: https://evil.example", url(cors, path)
    )
    assert "access-control-allow-origin" not in headers
    status, headers, _body = await curl(
        "-H", JSON, "-H", "origin: https://portal.example.org", "-d", "{}", url(cors, path)
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://portal.example.org"
    assert "grpc-status-details-bin" in headers["access-control-expose-headers"].lower()


async def test_the_status_page_is_served_with_a_strict_policy(gateway: Gateway) -> None:
    status, headers, body = await curl(url(gateway, "/"))
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert b"/static/status.js" in body
    for asset in ("/static/status.js", "/static/status.css"):
        status, _, _ = await curl(url(gateway, asset))
        assert status == 200, asset
    # Only the page's own files: no path from the request reaches the disk.
    for path in ("/static/../app.py", "/static/%2e%2e/config.py", "/etc/passwd", "/static/"):
        status, _, _ = await curl("--path-as-is", url(gateway, path))
        assert status == 404, path
    status, _, _ = await curl("-X", "POST", url(gateway, "/"))
    assert status == 405


async def test_a_taken_http_address_stops_the_start_with_advice(
    gateway: Gateway, tmp_path: Path
) -> None:
    base = fast_config(tmp_path / "other")
    taken = replace(base, http=replace(base.http, listen=f"127.0.0.1:{gateway.http_port}"))
    second = Gateway(taken)
    with pytest.raises(OSError, match=r"\[http\] listen"):
        await second.start()
    await second.stop()


def test_http_settings_are_checked() -> None:
    assert config_module.parse({}).http.listen == "127.0.0.1:8080"
    assert config_module.parse({"http": {"listen": ""}}).http.listen == ""
    for bad, message in [
        ({"listen": "8080"}, "http.listen"),
        ({"cors_allowed_origins": ["https://a.example/path"]}, "must be an origin"),
        ({"cors_allowed_origins": "https://a.example"}, "a list of origins"),
        ({"cors": []}, "unknown key"),
    ]:
        with pytest.raises(config_module.ConfigError, match=message):
            config_module.parse({"http": bad})


async def test_a_client_stream_upload_over_connect_writes_the_file_as_alice(
    gateway: Gateway, tmp_path: Path
) -> None:
    """Upload is client-streaming: the Connect protocol carries it over HTTP/1.1 and
    HTTP/2 (a whole request body of enveloped messages; gRPC-Web and browsers cannot)."""
    alice = pwd.getpwnam("alice")
    home = Path(alice.pw_dir) / f"hpcgate-http-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    os.chown(home, alice.pw_uid, alice.pw_gid)
    try:
        for version in ("--http1.1", "--http2-prior-knowledge"):
            content = uuid.uuid4().bytes * 50_000  # 800 kB in two chunks
            target = home / f"data{version[-3:]}.bin"
            messages = [
                U.UploadRequest(header=U.UploadHeader(system="local", path=str(target))),
                U.UploadRequest(chunk=U.UploadChunk(data=content[:500_000])),
                U.UploadRequest(chunk=U.UploadChunk(data=content[500_000:])),
            ]
            body = tmp_path / "upload.bin"
            body.write_bytes(
                b"".join(struct.pack(">BI", 0, m.ByteSize()) + m.SerializeToString()
                         for m in messages)
            )  # fmt: skip
            status, _, raw = await curl(
                version, "-H", "content-type: application/connect+proto",
                "-H", f"authorization: {token_of(gateway)}", "--data-binary", f"@{body}",
                url(gateway, "/hpcgate.v1.UtilitiesService/Upload"),
            )  # fmt: skip
            assert status == 200
            flags, length = struct.unpack(">BI", raw[:5])
            assert flags == 0, raw
            reply = U.UploadResponse.FromString(raw[5 : 5 + length])
            assert reply.sha256 == hashlib.sha256(content).hexdigest()
            assert target.read_bytes() == content
            assert target.stat().st_uid == alice.pw_uid
    finally:
        shutil.rmtree(home, ignore_errors=True)
