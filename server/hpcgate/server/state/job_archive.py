"""The finished-job cache on disk: what a restarted server loads instead of asking sacct.

Rows are opaque text (events/finished.py encodes them); this module only stores, loads
and prunes them. Methods are synchronous; callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

from hpcgate.server.state.store import StateStore


class JobArchive:
    """The `finished_jobs` table of one system, kept to at most `capacity` rows."""

    def __init__(self, store: StateStore, system: str, capacity: int) -> None:
        self.store = store
        self.system = system
        self.capacity = capacity
        self._counter = itertools.count(time.time_ns())  # `stored`: strictly increasing

    def save(self, rows: Iterable[tuple[str, str]]) -> None:
        """Insert or replace (job_id, text) rows, then drop the oldest beyond capacity."""
        batch = [(self.system, job_id, next(self._counter), text) for job_id, text in rows]
        if not batch:
            return
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO finished_jobs (system, job_id, stored, record) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (system, job_id) DO UPDATE SET stored = excluded.stored,"
                " record = excluded.record",
                batch,
            )
            db.execute(
                "DELETE FROM finished_jobs WHERE system = ? AND stored <= (SELECT stored FROM"
                " finished_jobs WHERE system = ? ORDER BY stored DESC LIMIT 1 OFFSET ?)",
                (self.system, self.system, self.capacity),
            )

    def delete(self, job_ids: Iterable[str]) -> None:
        with self.store.connect() as db:
            db.executemany(
                "DELETE FROM finished_jobs WHERE system = ? AND job_id = ?",
                [(self.system, job_id) for job_id in job_ids],
            )

    def load(self) -> list[str]:
        """The stored rows' text, oldest first (the newest `capacity` of them)."""
        with self.store.connect() as db:
            rows = db.execute(
                "SELECT record FROM (SELECT record, stored FROM finished_jobs WHERE system = ?"
                " ORDER BY stored DESC LIMIT ?) AS newest ORDER BY stored",
                (self.system, self.capacity),
            ).fetchall()
        return [text for (text,) in rows]
