"""Free text from people, fit for a terminal, a log line or a table row.

Reasons, reviewer names, tag values and names typed on a command line are stored as given; what
prints them escapes what a terminal would act on: an ANSI escape can clear the screen or recolour
what follows, a CR or LF can forge a row of `mlops history`, a bidi override can show a reason in
another order than it was written.
"""

from __future__ import annotations

from typing import Any


def printable(text: Any) -> str:
    """`text` on one line with every character Python deems unprintable escaped as repr does.

    That is C0 and C1 controls (ESC, CR, LF, TAB), DEL, line and paragraph separators, format
    characters (bidi overrides and isolates, zero-width ones), surrogates and unassigned code
    points: `"a\\nb\\x1b[2J"` prints as `a\\nb\\x1b[2J`. Spaces and visible characters are kept.
    """
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def error_line(err: BaseException, *, typed: bool = False, limit: int | None = None) -> str:
    """What went wrong, on one line: the one rule for every error quoted in a reason or a log line.

    The message's first non-blank line with its runs of whitespace collapsed (a traceback or a
    pydantic report below it is detail, not the reason), or the exception's type name when the
    message is empty. `typed` puts `Type: ` before it, for errors raised by a library, where the
    type is half the reason (`KeyError: 'x'`); our own errors' messages already say what failed.
    `limit` cuts a line quoted into a bounded field (a tag, a status) with `...`.
    """
    name = type(err).__name__
    lines = [" ".join(line.split()) for line in str(err).splitlines()]
    text = next((line for line in lines if line), "")
    if not text:
        text = name
    elif typed and not text.startswith(name):
        text = f"{name}: {text}"
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
