"""StorageService.ListFilesystems as alice on the real machine, and the quota parsers."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.server.config import FilesystemConfig
from hpcgate.server.storage.quota import KIB, parse_quota_table
from hpcgate.v1 import storage_pb2 as S
from hpcgate.v1 import storage_pb2_grpc


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[storage_pb2_grpc.StorageServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield storage_pb2_grpc.StorageServiceStub(ch)


@pytest.fixture
def alice_tmp() -> Iterator[str]:
    """/tmp/alice, owned by alice, so the scratch tier has a directory of hers."""
    path = Path("/tmp/alice")
    created = not path.exists()
    path.mkdir(mode=0o700, exist_ok=True)
    user = pwd.getpwnam("alice")
    os.chown(path, user.pw_uid, user.pw_gid)
    yield str(path)
    if created:
        shutil.rmtree(path)


@pytest.mark.slurm
async def test_list_filesystems_as_alice(stub, gateway: Gateway, alice_tmp: str) -> None:
    reply = await stub.ListFilesystems(
        S.ListFilesystemsRequest(parent="systems/local"), metadata=bearer(gateway, "alice")
    )
    home, tmp = reply.filesystems
    assert not reply.next_page_token
    assert (home.name, home.filesystem, home.system) == ("systems/local/filesystems/home",
                                                         "home", "local")  # fmt: skip
    assert (home.kind, tmp.kind) == (S.FILESYSTEM_KIND_HOME, S.FILESYSTEM_KIND_SCRATCH)
    assert (home.mount_path, tmp.mount_path) == ("/home", "/tmp")
    assert home.display_name == "Home" and tmp.description.startswith("Local temporary")
    assert home.user_path == pwd.getpwnam("alice").pw_dir and tmp.user_path == alice_tmp
    for fs in reply.filesystems:
        figures = os.statvfs(fs.mount_path)
        assert fs.state == S.FILESYSTEM_STATE_ONLINE and not fs.reason
        assert fs.total_bytes == figures.f_blocks * figures.f_frsize
        assert 0 < fs.free_bytes <= fs.total_bytes and fs.used_bytes <= fs.total_bytes
        assert fs.total_inodes == figures.f_files and fs.fs_type  # e.g. ext4, overlay
        assert fs.HasField("updated_at")
        # No quotas on this machine: unknown, with the reason (tool missing or disabled).
        assert not fs.caller_quota.known and fs.caller_quota.source
        assert fs.caller_quota.used_bytes == 0


@pytest.mark.slurm
async def test_pages_and_errors(stub, gateway: Gateway) -> None:
    meta = bearer(gateway, "alice")
    first = await stub.ListFilesystems(
        S.ListFilesystemsRequest(parent="systems/local", page_size=1), metadata=meta
    )
    assert [f.filesystem for f in first.filesystems] == ["home"] and first.next_page_token
    second = await stub.ListFilesystems(
        S.ListFilesystemsRequest(parent="systems/local", page_token=first.next_page_token),
        metadata=meta,
    )
    assert [f.filesystem for f in second.filesystems] == ["tmp"]
    cases = [("systems/nowhere", grpc.StatusCode.NOT_FOUND),
             ("local", grpc.StatusCode.INVALID_ARGUMENT)]  # fmt: skip
    for parent, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ListFilesystems(S.ListFilesystemsRequest(parent=parent), metadata=meta)
        assert e.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.ListFilesystems(S.ListFilesystemsRequest(parent="systems/local"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.slurm
async def test_missing_filesystem_is_offline_not_an_error(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    base = fast_config(tmp_path)
    system = base.systems[0]
    gone = FilesystemConfig("project", tmp_path / "not-mounted", "project")
    gateway = await gateway_factory(
        replace(base, systems=(replace(system, filesystems=(*system.filesystems, gone)),))
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        reply = await storage_pb2_grpc.StorageServiceStub(ch).ListFilesystems(
            S.ListFilesystemsRequest(parent="systems/local"), metadata=bearer(gateway, "alice")
        )
    project = reply.filesystems[-1]
    assert project.kind == S.FILESYSTEM_KIND_PROJECT and project.display_name == "project"
    assert project.state == S.FILESYSTEM_STATE_OFFLINE and "not-mounted" in project.reason
    assert not project.caller_quota.known and "offline" in project.caller_quota.source
    assert project.total_bytes == 0 and not project.user_path


# -- parsers (the tools' documented table layouts; no quota-enabled mount on this machine) --

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
QUOTA_OUTPUT = """Disk quotas for user alice (uid 1001):
     Filesystem   space   quota   limit   grace   files   quota   limit   grace
          /home  5242880*  4194304 6291456 1793707200   1200     0       0       0
"""
LFS_OUTPUT = """Disk quotas for usr alice (uid 1001):
     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace
/lustre/scratch/with/a/long/path
                   1024       0       0       -      12   10000   20000       -
"""


def test_quota_tool_table() -> None:
    quota = parse_quota_table(QUOTA_OUTPUT, "/home", "quota", NOW)
    assert quota is not None and quota.known and quota.source == "quota"
    assert quota.used_bytes == 5242880 * KIB and quota.soft_limit_bytes == 4194304 * KIB
    assert quota.hard_limit_bytes == 6291456 * KIB and quota.used_inodes == 1200
    assert quota.grace_expires == datetime.fromtimestamp(1793707200, UTC)
    assert parse_quota_table(QUOTA_OUTPUT, "/scratch", "quota", NOW) is None
    assert parse_quota_table("quota: no quota enabled\n", "/home", "quota", NOW) is None


def test_lfs_quota_table() -> None:
    quota = parse_quota_table(LFS_OUTPUT, "/lustre/scratch/with/a/long/path", "lfs quota", NOW)
    assert quota is not None and quota.used_bytes == 1024 * KIB and quota.grace_expires is None
    assert (quota.used_inodes, quota.soft_limit_inodes, quota.hard_limit_inodes) == (
        12, 10000, 20000)  # fmt: skip
    over = LFS_OUTPUT.replace("1024       0       0       -", "2048*   1024    4096   6d23h")
    late = parse_quota_table(over, "/lustre/scratch/with/a/long/path", "lfs quota", NOW)
    assert late is not None and late.grace_expires == NOW + timedelta(days=6, hours=23)
