"""The state store, on SQLite and on a real PostgreSQL: outages and notes survive
reopening; outage status follows time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import States, open_backend

from hpcgate.server.state.store import StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[States]:
    yield from open_backend(request)


def test_outages_persist_and_derive_status(backend: States, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    store: StateStore = backend.open(tmp_path)
    planned = store.add_outage("local", now + timedelta(hours=1), now + timedelta(hours=2), "p")
    active = store.add_outage("local", now - timedelta(hours=1), None, "a")
    done = store.add_outage("other", now - timedelta(days=2), now - timedelta(days=1), "d")
    reopened = backend.open(tmp_path)
    by_id = {o.id: o.status(now) for o in reopened.list_outages()}
    assert by_id == {planned.id: "planned", active.id: "active", done.id: "completed"}
    assert [o.id for o in reopened.list_outages("other")] == [done.id]
    assert reopened.remove_outage(active.id) and not reopened.remove_outage(active.id)
    with pytest.raises(ValueError, match="end after it starts"):
        store.add_outage("local", now, now - timedelta(seconds=1), "backwards")


def test_notes_newest_first(backend: States, tmp_path: Path) -> None:
    store = backend.open(tmp_path)
    first = store.add_note("local", "one", "ops")
    second = store.add_note("local", "two", "ops")
    assert [n.id for n in store.list_notes("local")] == [second.id, first.id]
    assert store.remove_note(first.id)
    assert [n.text for n in backend.open(tmp_path).list_notes()] == ["two"]
