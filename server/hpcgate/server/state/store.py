"""Durable state: the schema of either backend (state/database.py), and outages and
notes; other modules (auth/registry.py, tasks/store.py, ...) keep their tables here too.

SQLite (`state_dir`/hpcgate.sqlite3) is the embedded default; PostgreSQL (`[state]
backend = "postgresql"`) lets several replicas share state. Methods are synchronous and
short; the server calls them through `asyncio.to_thread` so the event loop never waits
on the disk. WAL mode lets the `hpcgate-server outages` command write while the server
reads.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hpcgate.server.config import Config
from hpcgate.server.state import postgres_schema
from hpcgate.server.state.database import (
    POSTGRESQL,
    Connection,
    Database,
    PostgresDatabase,
    SqliteDatabase,
)

DB_NAME = "hpcgate.sqlite3"

# Each entry migrates the schema from version i to i+1; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outages (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        start_time REAL NOT NULL,
        end_time REAL,
        description TEXT NOT NULL,
        create_time REAL NOT NULL
    );
    CREATE INDEX outages_system ON outages(system, start_time);
    CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        text TEXT NOT NULL,
        author TEXT NOT NULL,
        create_time REAL NOT NULL
    );
    CREATE INDEX notes_system ON notes(system, create_time);
    """,
    """
    CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        public_key TEXT NOT NULL,
        scopes TEXT NOT NULL,
        cidrs TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX clients_user ON clients(user);
    CREATE TABLE used_assertions (
        jti TEXT NOT NULL,
        client_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    """,
    """
    CREATE TABLE job_requests (
        user TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        job_id TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (user, system, request_id)
    );
    """,
    """
    CREATE TABLE upload_requests (
        user TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user, system, request_id)
    );
    """,
    # Durable tasks (tasks/store.py). request, result, labels and checkpoint are JSON;
    # the checkpoint is the runner's opaque resumable state. request_id '' = none. Times
    # are integer microseconds since the epoch, so time filters round-trip exactly.
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        system TEXT NOT NULL,
        description TEXT NOT NULL,
        labels TEXT NOT NULL,
        request TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER,
        files_done INTEGER NOT NULL DEFAULT 0,
        files_total INTEGER,
        message TEXT NOT NULL DEFAULT '',
        bytes_per_second REAL NOT NULL DEFAULT 0,
        result TEXT,
        error_code INTEGER,
        error_message TEXT,
        error_path TEXT,
        checkpoint TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        revision INTEGER NOT NULL DEFAULT 1,
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL,
        start_time INTEGER,
        end_time INTEGER
    );
    CREATE INDEX tasks_user ON tasks(user, create_time);
    CREATE UNIQUE INDEX tasks_request_id ON tasks(user, request_id) WHERE request_id != '';
    CREATE INDEX tasks_unfinished ON tasks(state) WHERE state IN ('PENDING', 'RUNNING');
    CREATE INDEX tasks_ended ON tasks(end_time) WHERE end_time IS NOT NULL;
    """,
    # Final records of ended jobs (events/finished.py), so that a restarted server still
    # answers reads of them from memory. `stored` orders them for loading and pruning.
    """
    CREATE TABLE finished_jobs (
        system TEXT NOT NULL,
        job_id TEXT NOT NULL,
        stored INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (system, job_id)
    );
    CREATE INDEX finished_jobs_stored ON finished_jobs(system, stored);
    """,
    # Advance reservation requests (compute/reservations.py): a durable record with a state.
    """
    CREATE TABLE reservation_requests (
        id TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        owner TEXT NOT NULL,
        project TEXT NOT NULL,
        node_count INTEGER NOT NULL,
        partition TEXT NOT NULL,
        start REAL,
        duration REAL NOT NULL,
        users TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        slurm_name TEXT NOT NULL,
        nodes TEXT NOT NULL,
        granted_start REAL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX reservation_requests_owner ON reservation_requests(owner, created);
    """,
    # Task leases (tasks/store.py): which runner holds a RUNNING task, until when, and
    # the token that fences its writes once another runner has taken the task over.
    """
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
    """,
    # Resumable uploads held after an interrupted stream (files/uploads.py): the hidden
    # temporary file `temp` beside `path`, removed as `user` once `expires_at` passes.
    # size -1: not measured (the stream is running, or the server stopped mid-stream).
    """
    CREATE TABLE upload_partials (
        user TEXT NOT NULL,
        system TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        path TEXT NOT NULL,
        temp TEXT NOT NULL,
        mode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (user, system, request_id)
    );
    CREATE INDEX upload_partials_expiry ON upload_partials(expires_at);
    """,
)
# Serialises migrations of replicas starting at once (pg_advisory_xact_lock key).
_MIGRATION_LOCK = 0x68706367  # "hpcg"


@dataclass(frozen=True)
class Outage:
    id: str
    system: str
    start_time: datetime
    end_time: datetime | None
    description: str
    create_time: datetime

    def status(self, now: datetime) -> str:
        """`planned`, `active` or `completed` at `now`."""
        if now < self.start_time:
            return "planned"
        if self.end_time is None or now < self.end_time:
            return "active"
        return "completed"


@dataclass(frozen=True)
class Note:
    id: str
    system: str
    text: str
    author: str
    create_time: datetime


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class StateStore:
    """The server's database: SQLite in `state_dir`, or PostgreSQL at `dsn`."""

    def __init__(self, state_dir: Path, dsn: str = "", pool_size: int = 10) -> None:
        self.path = state_dir / DB_NAME  # SQLite only
        self.database: Database
        if dsn:
            self.database = PostgresDatabase(dsn, pool_size)
            self._migrate_postgres()
        else:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.database = SqliteDatabase(self.path)
            self._migrate_sqlite()

    @classmethod
    def open(cls, config: Config) -> StateStore:
        """The store `config` names ([server] state_dir, [state])."""
        state = config.state
        dsn = state.dsn if state.clustered else ""
        return cls(config.server.state_dir, dsn, state.pool_size)

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @property
    def shared(self) -> bool:
        """Whether other servers may use this state at the same time (PostgreSQL)."""
        return self.database.dialect == POSTGRESQL

    def close(self) -> None:
        self.database.close()

    def _migrate_sqlite(self) -> None:
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, len(MIGRATIONS)):
                db.executescript(MIGRATIONS[index])
                db.execute(f"PRAGMA user_version={index + 1}")

    def _migrate_postgres(self) -> None:
        with self.database.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            for migration in postgres_schema.MIGRATIONS[version:]:
                db.execute(migration)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (len(postgres_schema.MIGRATIONS),))

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection in autocommit mode."""
        return self.database.connect()

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection inside one write transaction (see Database.transaction)."""
        return self.database.transaction()

    # -- outages ------------------------------------------------------------------------

    def add_outage(
        self, system: str, start: datetime, end: datetime | None, description: str
    ) -> Outage:
        if end is not None and end <= start:
            raise ValueError("the outage must end after it starts")
        outage = Outage(_new_id(), system, start, end, description, datetime.now(UTC))
        with self.connect() as db:
            db.execute(
                "INSERT INTO outages VALUES (?, ?, ?, ?, ?, ?)",
                (
                    outage.id,
                    system,
                    start.timestamp(),
                    end.timestamp() if end else None,
                    description,
                    outage.create_time.timestamp(),
                ),
            )
        return outage

    def list_outages(self, system: str | None = None) -> list[Outage]:
        """Outages, newest start first, optionally of one system."""
        query = "SELECT * FROM outages"
        args: tuple[str, ...] = ()
        if system:
            query += " WHERE system = ?"
            args = (system,)
        with self.connect() as db:
            rows = db.execute(query + " ORDER BY start_time DESC, id", args).fetchall()
        return [
            Outage(r[0], r[1], _ts(r[2]), _ts(r[3]), r[4], _ts(r[5]))  # type: ignore[arg-type]
            for r in rows
        ]

    def remove_outage(self, outage_id: str) -> bool:
        with self.connect() as db:
            return db.execute("DELETE FROM outages WHERE id = ?", (outage_id,)).rowcount > 0

    # -- notes --------------------------------------------------------------------------

    def add_note(self, system: str, text: str, author: str) -> Note:
        note = Note(_new_id(), system, text, author, datetime.now(UTC))
        with self.connect() as db:
            db.execute(
                "INSERT INTO notes VALUES (?, ?, ?, ?, ?)",
                (note.id, system, text, author, note.create_time.timestamp()),
            )
        return note

    def list_notes(self, system: str | None = None) -> list[Note]:
        query = "SELECT * FROM notes"
        args: tuple[str, ...] = ()
        if system:
            query += " WHERE system = ?"
            args = (system,)
        with self.connect() as db:
            rows = db.execute(query + " ORDER BY create_time DESC, id", args).fetchall()
        return [Note(r[0], r[1], r[2], r[3], _ts(r[4])) for r in rows]  # type: ignore[arg-type]

    def remove_note(self, note_id: str) -> bool:
        with self.connect() as db:
            return db.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount > 0
