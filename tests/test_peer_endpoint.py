"""PeerEndpoint against a real second gateway: gateway A reaches gateway B's files as B's
user bob (a client registered at B), through B's UtilitiesService on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import stat
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from files_helpers import make_owned, user_dir
from peer_helpers import peer_pair, register_service_client
from test_tls import issue, write

from conftest import GatewayFactory, fast_config, require
from hpcgate.server import config
from hpcgate.server.app import Gateway
from hpcgate.server.config import PeerConfig, TlsConfig
from hpcgate.server.errors import Code
from hpcgate.server.tasks.model import TaskFailed
from hpcgate.server.transfers.endpoint import Endpoint, Item
from hpcgate.server.transfers.peer import CHUNK, DATA_LOSS, PeerDownload, PeerEndpoint

BOB = pwd.getpwnam("bob").pw_uid


@pytest.fixture
async def pair(gateway_factory: GatewayFactory, tmp_path: Path) -> tuple[Gateway, Gateway, str]:
    require(os.geteuid() == 0, "privilege separation needs root")
    return await peer_pair(gateway_factory, tmp_path)


@pytest.fixture
async def peer(pair: tuple[Gateway, Gateway, str]) -> AsyncIterator[PeerEndpoint]:
    a, _, peer_id = pair
    peer_config = a.config.peer(peer_id)
    assert peer_config is not None
    endpoint = PeerEndpoint(peer_config)
    yield endpoint
    await endpoint.close()


@pytest.fixture
def bob_dir() -> Iterator[Path]:
    with user_dir("bob") as path:
        yield path


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([data async for data in stream])


async def fails(call: object, code: int) -> TaskFailed:
    with pytest.raises(TaskFailed) as info:
        await call  # type: ignore[misc]
    assert info.value.error.code == code, info.value.error
    return info.value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- configuration ---------------------------------------------------------------------------


def test_peers_are_configured_by_id_or_address_and_deny_by_default() -> None:
    text = """
[[peers]]
id = "site-b"
address = "hpcgate.site-b.example.org:443"
client_id = "c1"
private_key_file = "/etc/hpcgate/peers/site-b.key"
tls = true
allowed_users = ["alice"]

[[peers]]
id = "lab"
address = "127.0.0.1:50052"
client_id = "c2"
private_key_file = "/k"
"""
    c = config.parse(tomllib.loads(text))
    site_b = c.peer("site-b")
    assert site_b is not None and c.peer("hpcgate.site-b.example.org:443") is site_b
    assert (site_b.audience, site_b.system, site_b.timeout) == ("hpcgate", "local", 30.0)
    assert site_b.allows("alice") and not site_b.allows("bob")
    lab = c.peer("lab")
    assert lab is not None and not lab.allows("alice") and not lab.plaintext_off_loopback
    assert replace(lab, allowed_users=("*",)).allows("anyone")
    assert replace(lab, address="192.0.2.1:1").plaintext_off_loopback
    assert c.peer("elsewhere:443") is None and config.parse({}).peers == ()


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ({"id": "B", "address": "h:1"}, "peers[0].id"),
        ({"id": "b", "address": "h"}, "peers[0].address"),
        ({"id": "b", "address": "h:99999"}, "peers[0].address"),
        ({"id": "b", "address": "h:1"}, "client_id and private_key_file are required"),
        ({"id": "b", "address": "h:1", "cid": "x"}, "unknown key(s): peers[0].cid"),
        ({"id": "b", "address": "h:1", "allowed_users": "alice"}, "peers[0].allowed_users"),
        ({"id": "b", "address": "h:1", "ca_file": "/ca"}, "only used with tls = true"),
    ],
)
def test_peer_errors_name_the_key(peer: dict[str, object], message: str) -> None:
    table = {"client_id": "c", "private_key_file": "/k", **peer}
    if "client_id and" in message:
        del table["client_id"]
    with pytest.raises(config.ConfigError) as e:
        config.parse({"peers": [table]})
    assert message in str(e.value)
    with pytest.raises(config.ConfigError, match="ids must be unique"):
        good = {"id": "b", "address": "h:1", "client_id": "c", "private_key_file": "/k"}
        config.parse({"peers": [good, {**good, "address": "h:2"}]})


# -- reading ---------------------------------------------------------------------------------


async def test_describe_and_walk_the_peers_tree(peer: PeerEndpoint, bob_dir: Path) -> None:
    endpoint: Endpoint = peer  # the engine's view: it satisfies the protocol
    tree = make_owned(bob_dir / "tree", "bob", 0o750)
    make_owned(tree / "b.txt", "bob", 0o640, b"hello")
    make_owned(tree / ".hidden", "bob", 0o600, b"")
    sub = make_owned(tree / "a-dir", "bob", 0o700)
    make_owned(sub / "inner", "bob", 0o644, b"x" * 10)
    os.symlink("b.txt", tree / "c-link")
    os.symlink("/nowhere", tree / "d-dangling")
    os.mkfifo(tree / "e-fifo")  # skipped, like the local walk
    odd = os.fsencode(str(tree)) + b"/f-\xff"
    with open(odd, "wb") as f:
        f.write(b"odd")
    for name in (b"c-link", b"d-dangling", b"e-fifo", b"f-\xff"):
        os.lchown(os.fsencode(str(tree)) + b"/" + name, BOB, BOB)

    root = await endpoint.describe(str(tree))
    assert root is not None and (root.rel, root.kind, root.mode) == ("", "dir", 0o750)
    file_item = await endpoint.describe(str(tree / "c-link"))  # followed
    assert file_item is not None and (file_item.kind, file_item.size) == ("file", 5)
    assert file_item.mtime_ns == (tree / "b.txt").stat().st_mtime_ns
    assert await endpoint.describe(str(tree / "missing")) is None
    assert await endpoint.describe(str(tree / "d-dangling")) is None

    items = [item async for item in endpoint.walk(str(tree))]
    odd_name = os.fsdecode(b"f-\xff")
    assert [(i.rel, i.kind) for i in items] == [
        (".hidden", "file"),
        ("a-dir", "dir"),
        ("a-dir/inner", "file"),
        ("b.txt", "file"),
        ("c-link", "link"),
        ("d-dangling", "link"),
        (odd_name, "file"),
    ]
    by_rel = {i.rel: i for i in items}
    assert by_rel["c-link"].link == "b.txt" and by_rel["d-dangling"].link == "/nowhere"
    assert (by_rel["a-dir"].mode, by_rel["a-dir/inner"].size) == (0o700, 10)
    # A name that is not UTF-8 is still readable (addressed by its bytes at the peer).
    assert await read_all(endpoint.read_file(f"{tree}/{odd_name}")) == b"odd"
    assert await endpoint.remove(f"{tree}/{odd_name}", directory=False)
    assert not os.path.lexists(odd)


async def test_walk_pages_through_large_directories(peer: PeerEndpoint, bob_dir: Path) -> None:
    big = make_owned(bob_dir / "big", "bob", 0o700)
    for i in range(1203):  # more than one ListDirectory page (1000)
        (big / f"f{i:05d}").touch()
    nested = make_owned(big / "f00500.d", "bob", 0o700)
    (nested / "x").touch()
    rels = [item.rel async for item in peer.walk(str(big))]
    assert len(rels) == 1205
    assert rels[500:503] == ["f00500", "f00500.d", "f00500.d/x"]
    assert rels == sorted(rels, key=os.fsencode)


async def test_read_file_whole_and_resumed_with_the_peers_hash(
    peer: PeerEndpoint, bob_dir: Path
) -> None:
    data = os.urandom(2 * CHUNK + 12345)
    path = make_owned(bob_dir / "data.bin", "bob", 0o640, data)

    whole = peer.read_file(str(path))
    assert isinstance(whole, PeerDownload)
    assert await read_all(whole) == data
    assert whole.sha256 == sha(data) and (whole.size, whole.mode) == (len(data), 0o640)
    assert whole.mtime_ns == path.stat().st_mtime_ns

    resumed = peer.read_file(str(path), CHUNK + 7)
    assert await read_all(resumed) == data[CHUNK + 7 :]
    assert resumed.sha256 == sha(data)  # of the whole file, for the engine to compare
    at_end = peer.read_file(str(path), len(data))
    assert await read_all(at_end) == b"" and at_end.sha256 == sha(data)

    # Stopping early cancels the stream; nothing is left hanging.
    early = peer.read_file(str(path))
    assert len(await early.__anext__()) == CHUNK
    await early.aclose()
    assert early.sha256 is None


# -- writing ---------------------------------------------------------------------------------


def leftovers(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


async def test_write_file_lands_as_the_peers_user_verified(
    peer: PeerEndpoint, bob_dir: Path
) -> None:
    data = os.urandom(3 * CHUNK + 99)
    target = bob_dir / "copy.bin"
    mtime = 1_600_000_000_123_456_789
    written = await peer.write_file(
        str(target),
        chunks_of(data[:10], data[10 : 2 * CHUNK + 10], data[2 * CHUNK + 10 :]),  # > CHUNK too
        size=len(data),
        mode=0o640,
        mtime_ns=mtime,
        verify=True,
    )
    assert written.size == len(data) and written.sha256 == sha(data)
    st = target.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (BOB, 0o640, mtime)
    assert target.read_bytes() == data
    # Overwriting replaces the content; without verify the peer's measurement is returned.
    again = await peer.write_file(
        str(target), chunks_of(b"new"), size=3, mode=None, mtime_ns=None, verify=False
    )
    assert again == type(written)(3, sha(b"new")) and target.read_bytes() == b"new"
    # The source's hash, known once the chunks are through, is compared after the upload.
    mismatch = await fails(
        peer.write_file(
            str(target),
            chunks_of(b"abc"),
            size=3,
            mode=None,
            mtime_ns=None,
            verify=True,
            expected=lambda: sha(b"abd"),
        ),
        DATA_LOSS,
    )
    assert sha(b"abc") in mismatch.error.message
    assert leftovers(bob_dir) == ["copy.bin"]


async def test_a_failed_write_leaves_nothing_under_the_name(
    peer: PeerEndpoint, bob_dir: Path
) -> None:
    class SourceBroke(Exception):
        pass

    async def breaking() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK)
        await asyncio.sleep(0.05)  # let the first chunk reach the peer's temporary file
        raise SourceBroke

    target = bob_dir / "half.bin"
    with pytest.raises(SourceBroke):
        await peer.write_file(
            str(target), breaking(), size=3 * CHUNK, mode=None, mtime_ns=None, verify=True
        )
    assert not target.exists()
    for _ in range(100):  # the peer removes its temporary file when the stream is cancelled
        if not leftovers(bob_dir):
            break
        await asyncio.sleep(0.05)
    assert leftovers(bob_dir) == []

    # Fewer bytes than announced: refused by the peer, nothing written either.
    short = await fails(
        peer.write_file(
            str(target), chunks_of(b"abc"), size=4, mode=None, mtime_ns=None, verify=False
        ),
        Code.INVALID_ARGUMENT,
    )
    assert "peer site-b" in short.error.message
    assert not target.exists()
    # The parent must exist.
    await fails(
        peer.write_file(
            str(bob_dir / "no" / "f"), chunks_of(b""), size=0, mode=None, mtime_ns=None, verify=True
        ),
        Code.NOT_FOUND,
    )


async def test_directories_symlinks_modes_and_removal(peer: PeerEndpoint, bob_dir: Path) -> None:
    d = bob_dir / "d"
    assert await peer.make_directory(str(d), 0o750) is True
    assert await peer.make_directory(str(d), 0o750) is False
    st = d.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (BOB, 0o750)
    assert await peer.make_directory(str(bob_dir / "default"), None)
    assert stat.S_IMODE((bob_dir / "default").stat().st_mode) == 0o700
    make_owned(bob_dir / "file", "bob", 0o600, b"x")
    await fails(peer.make_directory(str(bob_dir / "file"), None), Code.ALREADY_EXISTS)
    await fails(peer.make_directory(str(bob_dir / "a" / "b"), None), Code.NOT_FOUND)

    link = d / "link"
    await peer.make_symlink("../file", str(link))
    assert os.readlink(link) == "../file" and os.lstat(link).st_uid == BOB
    await peer.make_symlink("elsewhere", str(link))  # replaced
    assert os.readlink(link) == "elsewhere"

    await peer.set_attributes(str(bob_dir / "file"), 0o604, 1)  # the mtime is ignored
    assert stat.S_IMODE((bob_dir / "file").stat().st_mode) == 0o604
    await peer.set_attributes(str(d), None, None)

    assert await peer.remove(str(d), directory=True) is False  # not empty
    assert await peer.remove(str(link), directory=False) is True
    assert await peer.remove(str(link), directory=False) is True  # already gone: fine
    assert await peer.remove(str(d), directory=True) is True
    assert not d.exists()
    await peer.flush()


# -- errors ----------------------------------------------------------------------------------


async def test_errors_keep_their_code_and_name_peer_and_path(
    peer: PeerEndpoint, bob_dir: Path
) -> None:
    missing = str(bob_dir / "missing")
    error = await fails(read_all(peer.read_file(missing)), Code.NOT_FOUND)
    assert error.error.path == missing and "peer site-b (127.0.0.1:" in error.error.message
    assert missing in error.error.message
    await fails(read_all(peer.walk(missing)), Code.NOT_FOUND)
    # bob may not read alice's 0700 home, nor root's.
    with user_dir("alice") as alice_dir:
        secret = make_owned(alice_dir / "secret", "alice", 0o600, b"s")
        denied = await fails(peer.describe(str(secret)), Code.PERMISSION_DENIED)
        assert denied.error.path == str(secret)
        await fails(read_all(peer.read_file(str(secret))), Code.PERMISSION_DENIED)
        await fails(
            peer.write_file(
                str(alice_dir / "x"), chunks_of(b"x"), size=1, mode=None, mtime_ns=None, verify=True
            ),
            Code.PERMISSION_DENIED,
        )
    await fails(read_all(peer.walk("/root")), Code.PERMISSION_DENIED)
    await fails(peer.make_directory("/root/x", None), Code.PERMISSION_DENIED)
    # A name the peer's writing RPCs cannot carry fails clearly.
    odd = os.fsdecode(os.fsencode(str(bob_dir)) + b"/\xff")
    await fails(peer.make_directory(odd, None), Code.INVALID_ARGUMENT)


async def test_peer_down_or_credential_refused(
    pair: tuple[Gateway, Gateway, str], bob_dir: Path, tmp_path: Path
) -> None:
    a, b, peer_id = pair
    good = a.config.peer(peer_id)
    assert good is not None
    stranger = PeerEndpoint(replace(good, client_id="not-registered"))
    try:
        error = await fails(stranger.describe(str(bob_dir)), Code.PERMISSION_DENIED)
        assert "refused this server's credential" in error.error.message
    finally:
        await stranger.close()

    keyless = PeerEndpoint(replace(good, private_key_file=tmp_path / "nope.pem"))
    try:
        error = await fails(keyless.describe(str(bob_dir)), Code.FAILED_PRECONDITION)
        assert "cannot read its private_key_file" in error.error.message
    finally:
        await keyless.close()

    endpoint = PeerEndpoint(good)
    try:
        item = await endpoint.describe(str(bob_dir))
        assert item == Item("", "dir", item.size, 0o700, item.mtime_ns)
        await b.stop()
        down = await fails(endpoint.describe(str(bob_dir)), Code.UNAVAILABLE)
        assert "peer site-b" in down.error.message
    finally:
        await endpoint.close()
    assert isinstance(good, PeerConfig)


async def test_a_peer_over_tls(
    gateway_factory: GatewayFactory, tmp_path: Path, bob_dir: Path
) -> None:
    require(os.geteuid() == 0, "privilege separation needs root")
    ca = issue("peers test CA", None)
    ca_file, _ = write(tmp_path / "ca", *ca)
    cert_file, key_file = write(tmp_path / "server", *issue("127.0.0.1", ca, server=True))
    base = fast_config(tmp_path / "tls-b")
    b = await gateway_factory(
        replace(base, server=replace(base.server, tls=TlsConfig(cert_file, key_file))),
        wait_ready=False,
    )
    client_id = register_service_client(b, "bob", tmp_path / "client.pem")
    peer_config = PeerConfig(
        "site-b",
        f"127.0.0.1:{b.port}",
        client_id,
        tmp_path / "client.pem",
        tls=True,
        ca_file=ca_file,
        timeout=5.0,
    )
    endpoint = PeerEndpoint(peer_config)
    stranger_ca, _ = write(tmp_path / "other-ca", *issue("another CA", None))
    untrusted = PeerEndpoint(replace(peer_config, ca_file=stranger_ca))
    try:
        written = await endpoint.write_file(
            str(bob_dir / "tls.bin"),
            chunks_of(b"sealed"),
            size=6,
            mode=None,
            mtime_ns=None,
            verify=True,
        )
        assert written.sha256 == sha(b"sealed") and (bob_dir / "tls.bin").stat().st_uid == BOB
        await fails(untrusted.describe(str(bob_dir)), Code.UNAVAILABLE)  # certificate not trusted
    finally:
        await endpoint.close()
        await untrusted.close()
