"""Progress bars on stderr (bytes, rate, ETA) — shown only in a terminal, never with --json."""

from __future__ import annotations

from collections.abc import Callable

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hpcgate.client.cli import output


def bars(*, quiet: bool) -> Progress:
    """A rich Progress for byte counts; use as a context manager."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=output.stderr,
        disable=quiet or not output.stderr.is_terminal,
    )


def file_bar(
    progress: Progress, label: str, total: int | None
) -> Callable[[int, int | None], None]:
    """A new bar and the `progress(done, total)` callback that moves it."""
    task = progress.add_task(label, total=total)

    def update(done: int, total_now: int | None = None) -> None:
        progress.update(task, completed=done, total=total_now if total_now is not None else total)

    return update
