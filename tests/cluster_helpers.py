"""Replicas of `hpcgate-server` in cluster mode, as separate processes on one PostgreSQL:
start, kill -9, freeze (SIGSTOP of the server and its workers), thaw."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import psycopg
from test_server_process import free_port, wait_serving

FAST_WATCH = "poll_floor = 0.2\npoll_ceiling = 1.0\n"


def replica_config(
    tmp_path: Path, name: str, port: int, dsn: str, watch: str = FAST_WATCH, http_port: int = 0
) -> Path:
    """A replica's configuration; all replicas share one state_dir (the signing key).
    `watch`: the body of its [watch] table."""
    config = tmp_path / f"{name}.toml"
    config.write_text(
        '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'shutdown_grace = 1.0\nreplica_id = "{name}"\n'
        f'[state]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
        "[status]\nprobe_interval = 1.0\n"
        f"[watch]\n{watch}"
        "[tasks]\nlease_seconds = 3.0\n"
    )
    return config


class Replica:
    """One server process (its own session, so that it can be frozen with its workers)."""

    def __init__(
        self, tmp_path: Path, venv_bin: Path, name: str, dsn: str, watch: str = FAST_WATCH
    ) -> None:
        self.name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Its HTTP listener (Connect, gRPC-Web), on a port known in advance for HAProxy.
        self.http_address = f"127.0.0.1:{free_port()}"
        self.venv_bin = venv_bin
        self.log = tmp_path / f"{name}.log"
        self.env = dict(
            os.environ,
            HPCGATE_CONFIG=str(
                replica_config(
                    tmp_path, name, self.port, dsn, watch, int(self.http_address.split(":")[1])
                )
            ),
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Replica:
        self.proc = await asyncio.create_subprocess_exec(
            str(self.venv_bin / "hpcgate-server"),
            "serve",
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        await wait_serving(self.address)
        return self

    def token(self, user: str, *scopes: str) -> list[tuple[str, str]]:
        argv = [str(self.venv_bin / "hpcgate-server"), "token", "--user", user, "--ttl", "900"]
        for scope in scopes or ("read",):
            argv += ["--scope", scope]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True)
        return [("authorization", f"Bearer {done.stdout.strip()}")]

    def _tree(self) -> list[int]:
        """The server's pid and its descendants' (its per-user workers)."""
        assert self.proc is not None
        pids, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            children = Path(f"/proc/{parent}/task/{parent}/children")
            if children.exists():
                found = [int(p) for p in children.read_text().split()]
                pids += found
                frontier += found
        return pids

    def freeze(self) -> list[int]:
        pids = self._tree()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def logged(self, text: str) -> int:
        return self.log.read_text().count(text) if self.log.exists() else 0


def poller_of(dsn: str, system: str = "local") -> list[str]:
    """The replicas holding the poller lock of `system` (the session's application_name)."""
    with psycopg.connect(dsn, autocommit=True) as db:
        rows = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
            " AND l.objid = "
            "(hashtextextended(%s, 0) & 4294967295)::oid",
            (f"hpcgate-poller/{system}",),
        ).fetchall()
    return [name.removeprefix("hpcgate-poller ") for (name,) in rows]
