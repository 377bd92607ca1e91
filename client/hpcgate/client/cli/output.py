"""How the CLI prints: plain aligned text for pipes, rich tables in a terminal, JSON on
request (one document, or one line per message for streams)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table
from rich.text import Text

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

STATE_STYLES = {
    "PENDING": "yellow", "RUNNING": "cyan", "COMPLETING": "cyan", "COMPLETED": "green",
    "SUCCEEDED": "green", "ACTIVE": "green", "UP": "green", "IDLE": "green",
    "FAILED": "red", "TIMEOUT": "red", "OUT_OF_MEMORY": "red", "NODE_FAIL": "red",
    "CANCELLED": "magenta", "DEGRADED": "yellow", "UNAVAILABLE": "red", "DOWN": "red",
    "MAINTENANCE": "yellow", "MIXED": "cyan", "ALLOCATED": "cyan",
}  # fmt: skip


def to_data(value: Any) -> Any:
    """A JSON-ready form of a protobuf message (MessageToDict, proto field names, zero
    values included), or of lists and dicts of them."""
    if isinstance(value, Message):
        return json_format.MessageToDict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(to_data(value), indent=2) + "\n")
    sys.stdout.flush()


def emit_line(value: Any) -> None:
    """One NDJSON line on stdout (streams), flushed so a reader sees it at once."""
    sys.stdout.write(json.dumps(to_data(value), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def line(text: str, *, style: str = "") -> None:
    """A line of plain text on stdout (styled only in a terminal)."""
    stdout.print(Text(text, style=style if stdout.is_terminal else ""))


def note(text: str, *, style: str = "dim") -> None:
    """A message for the person at the terminal, on stderr."""
    stderr.print(Text(text, style=style if stderr.is_terminal else ""))


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, state: int = -1,
    right: Sequence[int] = (),
) -> None:  # fmt: skip
    """Rows under headers (none when `headers` is empty): a rich table in a terminal
    (column `state` coloured), plain space-aligned columns otherwise (stable for scripts).
    Columns in `right` are right-aligned (numbers)."""
    rows = [list(r) for r in rows]
    if stdout.is_terminal:
        stdout.print(rich_table(headers, rows, state=state, right=right))
        return
    lines = ([list(headers)] if headers else []) + rows
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]) if lines else 0)]
    for row in lines:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def rich_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, state: int = -1,
    right: Sequence[int] = (),
) -> Table:  # fmt: skip
    rows = [list(r) for r in rows]
    grid = Table(box=None, header_style="bold", pad_edge=False, show_header=bool(headers))
    for i, header in enumerate(headers or [""] * (len(rows[0]) if rows else 0)):
        grid.add_column(header, overflow="fold", justify="right" if i in right else "left")
    for row in rows:
        grid.add_row(*(Text(c, style=STATE_STYLES.get(c, "") if i == state else "")
                       for i, c in enumerate(row)))  # fmt: skip
    return grid


def when(stamp: timestamp_pb2.Timestamp, *, empty: str = "-") -> str:
    """A timestamp as local `YYYY-MM-DD HH:MM:SS`, or `empty` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return empty
    moment = datetime.fromtimestamp(stamp.seconds, UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(value: duration_pb2.Duration | float, *, empty: str = "-", full: bool = False) -> str:
    """Seconds (or a Duration) as squeue writes them (`M:SS`, `H:MM:SS`, `D-HH:MM:SS`),
    or with `full` as sacct does (`HH:MM:SS` at least); `empty` for an unset Duration."""
    seconds = int(value.seconds if isinstance(value, duration_pb2.Duration) else value)
    if seconds <= 0 and isinstance(value, duration_pb2.Duration):
        return empty
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days or full:
        return (f"{days}-" if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(n: int, *, human: bool = True) -> str:
    """A byte count, `1.5K`/`2.0M` style when `human`."""
    if not human or n < 1024:
        return str(n)
    value = float(n)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            break
    return f"{value:.1f}{unit}"
