"""Real PostgreSQL for the tests: the project's own dev cluster (scripts/postgres.sh, port
55432), and a fresh database per test or per state directory, dropped afterwards."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT, require
from hpcgate.server.config import Config, StateConfig
from hpcgate.server.state.store import StateStore
from hpcgate.server.tasks.store import SqlTaskStore

SCRIPT = ROOT / "scripts" / "postgres.sh"
ADMIN_DSN = "postgresql://hpcgate@127.0.0.1:55432/hpcgate"
_created: set[str] = set()


def dsn_of(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def create_database(name: str) -> str:
    """A new empty database `name` (dropped first if a previous run left it); its DSN."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    _created.add(name)
    return dsn_of(name)


def drop_database(name: str) -> None:
    """Drop `name`; a database still in use (a session PostgreSQL will not end for us)
    is left for the next run's create_database, which drops it first."""
    for _ in range(5):
        try:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            break
        except psycopg.Error:
            time.sleep(1)
    _created.discard(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The admin DSN of the running dev PostgreSQL (started here if it is not)."""
    require(os.geteuid() == 0, "the dev PostgreSQL is set up as root (scripts/postgres.sh)")
    done = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    require(done.returncode == 0, f"scripts/postgres.sh up failed: {done.stderr[-2000:]}")
    yield ADMIN_DSN
    for name in list(_created):
        drop_database(name)


@pytest.fixture
def pg_dsn(postgres: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this test."""
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    yield create_database(name)
    drop_database(name)


class StateBackend:
    """Opens StateStores of one backend; the same path reopens the same state."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._databases: dict[Path, str] = {}

    def open(self, state_dir: Path) -> StateStore:
        if self.name == "sqlite":
            return StateStore(state_dir)
        key = Path(state_dir).resolve()
        if key not in self._databases:
            name = "s_" + hashlib.sha256(str(key).encode()).hexdigest()[:16]
            self._databases[key] = create_database(name)
        return StateStore(state_dir, self._databases[key], pool_size=4)


class States:
    """Opens the state of one backend (the same directory: the same database) and
    closes every store opened (PostgreSQL: a connection pool) after the test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.backend = StateBackend(name)
        self._opened: list[StateStore] = []

    @property
    def shared(self) -> bool:
        return self.name == "postgresql"

    def open(self, state_dir: Path) -> StateStore:
        store = self.backend.open(state_dir)
        self._opened.append(store)
        return store

    def tasks(self, state_dir: Path) -> SqlTaskStore:
        return SqlTaskStore(self.open(state_dir))

    def dsn(self, state_dir: Path) -> str:
        """PostgreSQL: the DSN of `state_dir`'s database, for a server or a child
        process; SQLite: ''."""
        if not self.shared:
            return ""
        return str(self.open(state_dir).database.dsn)  # type: ignore[attr-defined]

    def config(self, base: Config) -> Config:
        """`base` with its state in this backend."""
        dsn = self.dsn(base.server.state_dir)
        return replace(base, state=StateConfig(backend=self.name, dsn=dsn) if dsn else base.state)

    def close(self) -> None:
        for store in self._opened:
            store.close()


def open_backend(request: pytest.FixtureRequest) -> Iterator[States]:
    """The body of the `backend` fixtures (here, test_store, test_task_leases): States of
    the parameter's backend; PostgreSQL needs the `postgres` fixture (a failure in CI)."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres")
    states = States(request.param)
    yield states
    states.close()
