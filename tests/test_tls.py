"""TLS and mutual TLS with certificates the test generates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import GatewayFactory, fast_config
from hpcgate.server.config import TlsConfig
from hpcgate.v1 import status_pb2, status_pb2_grpc


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = issue("hpcgate test CA", None)
    server = issue("localhost", ca, server=True)
    client = issue("peer facility", ca)
    ca_crt, _ = write(tmp_path / "ca", *ca)
    server_crt, server_key = write(tmp_path / "server", *server)
    client_crt, client_key = write(tmp_path / "client", *client)
    return {
        "ca": ca_crt,
        "server_crt": server_crt,
        "server_key": server_key,
        "client_crt": client_crt,
        "client_key": client_key,
    }


async def list_systems(channel: grpc.aio.Channel) -> status_pb2.ListSystemsResponse:
    stub = status_pb2_grpc.StatusServiceStub(channel)
    return await stub.ListSystems(status_pb2.ListSystemsRequest(), timeout=5)


async def test_tls_server_accepts_tls_clients_only(
    gateway_factory: GatewayFactory, tmp_path: Path, pki: dict[str, Path]
) -> None:
    base = fast_config(tmp_path)
    tls = TlsConfig(cert_file=pki["server_crt"], key_file=pki["server_key"])
    gateway = await gateway_factory(replace(base, server=replace(base.server, tls=tls)))
    address = f"localhost:{gateway.port}"
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    async with grpc.aio.secure_channel(address, creds) as ch:
        assert (await list_systems(ch)).systems[0].name == "systems/local"
    async with grpc.aio.insecure_channel(address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await list_systems(ch)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(
    gateway_factory: GatewayFactory, tmp_path: Path, pki: dict[str, Path]
) -> None:
    base = fast_config(tmp_path)
    tls = TlsConfig(
        cert_file=pki["server_crt"],
        key_file=pki["server_key"],
        client_ca_file=pki["ca"],
        require_client_cert=True,
    )
    gateway = await gateway_factory(replace(base, server=replace(base.server, tls=tls)))
    address = f"localhost:{gateway.port}"
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["client_key"].read_bytes(),
        certificate_chain=pki["client_crt"].read_bytes(),
    )
    async with grpc.aio.secure_channel(address, with_cert) as ch:
        assert (await list_systems(ch)).systems
    without = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    async with grpc.aio.secure_channel(address, without) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await list_systems(ch)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
