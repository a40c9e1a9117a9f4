"""printable (mlops/text.py): free text from people, escaped for a terminal, a log line or a table row."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.text import printable

# What a terminal acts on or a reader is misled by: C0 and C1 controls, DEL, line and paragraph
# separators, format characters (bidi overrides and isolates among them), surrogates.
ACTED_ON = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@pytest.mark.parametrize(("text", "shown"), [
    ("lgtm", "lgtm"),
    ("ok é 日本 – fine", "ok é 日本 – fine"),
    ("a\nb", "a\\nb"),
    ("x\r\n2026-01-01 00:00:00  promoted", "x\\r\\n2026-01-01 00:00:00  promoted"),
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
    ("tab\there", "tab\\there"),
    ("del\x7f c1\x85 \x9b", "del\\x7f c1\\x85 \\x9b"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("\u202egnp.exe", "\\u202egnp.exe"),
    ("\u2066iso\u2069", "\\u2066iso\\u2069"),
    ("lone \ud800", "lone \\ud800"),
    (3, "3"),
])
def test_control_characters_are_escaped_as_repr_escapes_them(text, shown):
    assert printable(text) == shown


@given(st.text())
def test_the_output_is_one_line_with_nothing_a_terminal_acts_on(text):
    shown = printable(text)
    assert not any(unicodedata.category(c) in ACTED_ON for c in shown)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")  # raises on a lone surrogate
    # Each escaped character grows to its escape; visible text comes back as it was.
    escaped = [c for c in text if not c.isprintable()]
    assert len(shown) == len(text) + sum(len(repr(c)) - 3 for c in escaped)
    if not escaped:
        assert shown == text


def test_error_line_is_the_first_non_blank_line_collapsed() -> None:
    from mlops.text import error_line

    assert error_line(ValueError("\n  bad   value\nsecond line")) == "bad value"
    assert error_line(ValueError("")) == "ValueError"
    assert error_line(KeyError("x"), typed=True) == "KeyError: 'x'"
    assert error_line(ValueError("ValueError: already named"), typed=True) == "ValueError: already named"
    assert error_line(ValueError("a" * 50), limit=10) == "aaaaaaa..."
