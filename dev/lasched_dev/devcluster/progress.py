"""Progress for long operations a person waits on (Go builds, node creation).

On a terminal it is a live bar; elsewhere (CI logs) a line at every tenth of
the way, so a log shows the build advancing without thousands of lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter:
    """``reporter(label, done, total)`` updates the display."""

    def __init__(self, progress: Progress | None, console: Console) -> None:
        self._progress = progress
        self._console = console
        self._tasks: dict[str, TaskID] = {}
        self._last_tenth: dict[str, int] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._progress is not None:
            if label not in self._tasks:
                self._tasks[label] = self._progress.add_task(label, total=total)
            self._progress.update(self._tasks[label], completed=done, total=total)
            return
        tenth = done * 10 // max(total, 1)
        if tenth != self._last_tenth.get(label) or done == total:
            if self._last_tenth.get(label) == 10:
                return
            self._last_tenth[label] = tenth
            self._console.print(f"{label}: {done}/{total} ({tenth * 10}%)")


@contextmanager
def reporter(console: Console | None = None) -> Iterator[Reporter]:
    console = console or Console(stderr=True)
    if console.is_terminal:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            yield Reporter(progress, console)
    else:
        yield Reporter(None, console)
