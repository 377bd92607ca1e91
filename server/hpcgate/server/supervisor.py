"""`hpcgate-server serve` started by root: the gateway unprivileged, beside the spawner.

The root process keeps two jobs and nothing network-facing:

- the privsep spawner (privsep/spawner.py) on `[privsep] socket`, which starts per-user
  workers for the service account and nobody else;
- the gateway's parent: it starts `serve --spawner` as `[privsep] service_user` (its own
  process group), relays SIGTERM, SIGINT and SIGHUP to it, and exits with its status.

Before that it gives the state directory to the service account (state, keys: nothing in
it may stay root's) and checks that the configuration and TLS files are readable by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from hpcgate.server.config import Config, ConfigError
from hpcgate.server.events.hook_listener import prepare_directory
from hpcgate.server.privsep import Policy, Spawner
from hpcgate.server.privsep.launcher import WorkerLauncher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def service_account(name: str) -> ServiceAccount:
    """The account the gateway runs as; ConfigError (saying how to fix it) if unusable."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"privsep.service_user: the account {name!r} does not exist; create it "
            f"(useradd --system --user-group --home-dir /var/lib/hpcgate --shell "
            f'/usr/sbin/nologin {name}, as scripts/cluster.sh does) or set service_user = "" '
            "to serve as root in one process (not recommended)"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError(f"privsep.service_user: {name!r} is root or in group 0")
    groups = tuple(sorted(set(os.getgrouplist(name, entry.pw_gid))))
    if 0 in groups:
        raise ConfigError(f"privsep.service_user: {name!r} is a member of group 0")
    return ServiceAccount(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")


def give_state_dir(state_dir: Path, account: ServiceAccount) -> int:
    """Creates the state directory if needed and gives it, and everything in it, to the
    account (without following symlinks); returns how many entries changed owner."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = 0
    for root, dirs, files in os.walk(state_dir):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            st = os.lstat(name)
            if (st.st_uid, st.st_gid) != (account.uid, account.gid):
                os.lchown(name, account.uid, account.gid)
                changed += 1
    return changed


def _readable_by(path: Path, account: ServiceAccount) -> bool:
    """Whether the account may read `path` by its mode bits (ACLs aside)."""
    st = path.stat()
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in account.groups:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def check_readable(config: Config, account: ServiceAccount) -> None:
    """The configuration and TLS files must be readable by the service account."""
    files: list[Path | None] = [config.source]
    if config.server.tls is not None:
        tls = config.server.tls
        files += [tls.cert_file, tls.key_file, tls.client_ca_file]
    for path in files:
        if path is not None and path.exists() and not _readable_by(path, account):
            raise ConfigError(
                f"{path} is not readable by the service account {account.name!r}: "
                f"chown {account.name} {path} (or make it group-readable for it)"
            )


def drop_to_service_account(config: Config) -> None:
    """For admin commands run by root (`token`, `clients`, `keys`...): act as the service
    account when it owns the state directory, so every file they create stays its own."""
    name = config.privsep.service_user
    if os.geteuid() != 0 or not name:
        return
    try:
        account = service_account(name)
        owner = config.server.state_dir.stat().st_uid
    except (ConfigError, OSError):
        return
    if owner != account.uid:
        return
    os.setgroups(list(account.groups))
    os.setgid(account.gid)
    os.setuid(account.uid)


async def supervise(config: Config, argv: list[str]) -> int:
    """Runs the spawner here and `serve --spawner` (argv + that flag) as the account."""
    account = service_account(config.privsep.service_user)
    changed = give_state_dir(config.server.state_dir, account)
    if changed:
        log.info(
            "gave the state directory to the service account",
            extra={"fields": {"entries": changed, "account": account.name}},
        )
    check_readable(config, account)
    if config.watch.hook_socket is not None:
        # /run is root's: the directory Slurm's hooks send to is made here, for the gateway.
        try:
            prepare_directory(config.watch.hook_socket.parent, account.uid, config.watch.hook_group)
        except OSError as e:
            log.warning("no directory for Slurm's hooks (polling only): %s", e)
    spawner = Spawner(
        config.privsep.socket,
        client_uid=account.uid,
        client_gid=account.gid,
        policy=Policy(config.privsep.min_uid, frozenset(config.privsep.deny_users)),
        launcher=WorkerLauncher(),
    )
    await spawner.start()
    try:
        return await _run_gateway(config, argv, account)
    finally:
        await spawner.close()


async def _run_gateway(config: Config, argv: list[str], account: ServiceAccount) -> int:
    env = dict(
        os.environ,
        HOME=account.home,
        USER=account.name,
        LOGNAME=account.name,
        HPCGATE_STATE_DIR=str(config.server.state_dir),
    )
    if config.source is not None:
        env["HPCGATE_CONFIG"] = str(config.source)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hpcgate.server", *argv, "--spawner",
        user=account.uid, group=account.gid, extra_groups=list(account.groups),
        env=env, cwd="/", process_group=0,
    )  # fmt: skip
    log.info(
        "gateway started as the service account",
        extra={"fields": {"pid": proc.pid, "account": account.name}},
    )
    loop = asyncio.get_running_loop()
    relayed = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for signum in relayed:
        loop.add_signal_handler(signum, _relay, proc, signum)
    try:
        code = await proc.wait()
    finally:
        for signum in relayed:
            loop.remove_signal_handler(signum)
    return 128 - code if code < 0 else code


def _relay(proc: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
