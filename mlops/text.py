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
