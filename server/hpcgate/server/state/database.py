"""The two homes of durable state behind one small interface: SQLite (one server, the
embedded default) and PostgreSQL (any number of replicas: cluster mode).

Stores write their SQL once, in the dialect both share: `?` placeholders, `ON CONFLICT`,
and the column name `"user"` quoted (a reserved word in PostgreSQL). The PostgreSQL
connection turns `?` into psycopg's `%s`. Where the dialects really differ (row locks,
`FOR UPDATE SKIP LOCKED`), a store asks `dialect`.

Methods are synchronous and short; async code calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

SQLITE, POSTGRESQL = "sqlite", "postgresql"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...


class Database(Protocol):
    dialect: str

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection in autocommit mode: each statement is its own transaction."""
        ...

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection inside one write transaction, committed at the end of the block
        and rolled back if it raises. (SQLite: BEGIN IMMEDIATE, one writer at a time.)"""
        ...

    def close(self) -> None: ...


class SqliteDatabase:
    """One SQLite file in WAL mode; a connection per use (cheap, and thread-safe)."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal `%` doubled)."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


class _PostgresConnection:
    """A pooled psycopg connection that speaks the shared dialect."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        cursor: Cursor = self.conn.execute(to_psycopg(sql), params)
        return cursor

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(to_psycopg(sql), list(params))


class PostgresDatabase:
    """A psycopg 3 connection pool. psycopg rather than asyncpg: the stores are
    synchronous (run in threads, like SQLite's), psycopg has both a sync and an async API
    (the cluster's LISTEN loop uses the async one) and its pool checks connections."""

    dialect = POSTGRESQL

    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="hpcgate-state",
        )
        self.pool.open(wait=True, timeout=30)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.pool.connection() as conn:
            yield _PostgresConnection(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.pool.connection() as conn, conn.transaction():
            yield _PostgresConnection(conn)

    def hold(self, name: str, timeout: float) -> Any:
        """Take the session advisory lock `name` on a connection of its own, waiting at most
        `timeout` seconds (then psycopg.errors.LockNotAvailable). Returns the connection,
        for `release`. A replica that dies lets go: its session ends."""
        conn = self.pool.getconn()
        try:
            wait = f"{int(timeout * 1000)}ms"
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (wait,))
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
        except BaseException:
            self.pool.putconn(conn)
            raise
        return conn

    def release(self, held: Any, name: str) -> None:
        try:
            held.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
        finally:
            self.pool.putconn(held)

    def close(self) -> None:
        self.pool.close()
