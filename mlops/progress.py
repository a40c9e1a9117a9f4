"""Progress for the CLI's long commands: a rich spinner, what it is doing and the elapsed time, on stderr.

Shown only when stderr is an interactive terminal (rich's test, so `TTY_INTERACTIVE=1` forces it)
and the command does not print `--json`: stdout carries the result alone, and a pipe or a log file
gets no spinner frames. Log lines written while it spins are printed above it, not through it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

Say = Callable[[str], None]

# Warnings a user of the command cannot act on: deprecations inside Evidently (numpy.core),
# Litestar, Great Expectations (sre_constants) and pandas. The test run (which calls `main` with
# arguments, or runs the libraries directly) keeps them, where they are actionable.
LIBRARY_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# The same for the stack's worker, its flow runs and the serving app (Python's -W syntax).
LIBRARY_WARNINGS_ENV = ",".join(f"ignore::{w.__name__}" for w in LIBRARY_WARNINGS)


def quiet_library_warnings() -> None:
    """Hide the libraries' deprecation warnings from the user's terminal (PYTHONWARNINGS still wins)."""
    if os.environ.get("PYTHONWARNINGS"):
        return
    for category in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", category=category)


def _silent(_: str) -> None:
    """What a command reports when no progress is shown: nothing."""


@contextlib.contextmanager
def progress(label: str, as_json: bool) -> Iterator[Say]:
    """A transient spinner labelled `label` for the duration; yields a function that says what is happening now."""
    if as_json:
        yield _silent
        return
    from rich.console import Console  # rich is imported only when a spinner may be shown

    console = Console(stderr=True)
    if not console.is_interactive:
        yield _silent
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # stdout is not redirected: whatever the command prints there stays its result.
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, redirect_stdout=False, redirect_stderr=True) as bar:
        task = bar.add_task(label)
        with _log_lines_above(console):
            yield lambda text: bar.update(task, description=f"{label}: {text}")


class _AboveSpinner(io.TextIOBase):
    """A text stream whose whole lines the spinner's console prints above the spinner.

    rich's own FileProxy is not enough: another rich Console (Prefect's console handler has one)
    unwraps it and writes to the terminal underneath, through the spinner.
    """

    def __init__(self, console: Console, terminal: Any) -> None:
        self._console = console
        self._terminal = terminal
        self._partial = ""

    def write(self, text: str) -> int:
        from rich.text import Text

        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(Text.from_ansi(line), soft_wrap=True)
        return len(text)

    def isatty(self) -> bool:
        return self._terminal.isatty()  # keeps the colours of a handler that asks


def stderr_handlers() -> Iterator[logging.StreamHandler]:
    """Every logging handler that writes to a stream, on every logger (each handler once)."""
    seen: set[int] = set()
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.StreamHandler) and id(handler) not in seen:
                seen.add(id(handler))
                yield handler


@contextlib.contextmanager
def _log_lines_above(console: Console) -> Iterator[None]:
    """Point the handlers that write to the terminal's stderr at the spinner's console, then back."""
    terminal = console.file  # the stderr underneath the spinner's own redirection
    above = _AboveSpinner(console, terminal)
    moved: list[tuple[logging.StreamHandler, Any, Any]] = []
    for handler in stderr_handlers():
        if handler.stream is not terminal:
            continue
        # A rich-based handler (Prefect's console handler) prints through its own Console.
        inner = getattr(handler, "console", None)
        old_file = getattr(inner, "file", None)
        moved.append((handler, handler.setStream(above), old_file))
        if old_file is not None:
            inner.file = above
    try:
        yield
    finally:
        for handler, old_stream, old_file in moved:
            handler.setStream(old_stream)
            if old_file is not None:
                handler.console.file = old_file
