"""logsafe: untrusted text goes into a log line escaped, never raw (providers/logsafe.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.base import Target
from providers.logsafe import logsafe

LINE_BREAKERS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@given(st.text())
def test_whatever_the_text_the_result_is_printable(text: str) -> None:
    escaped = logsafe(text)
    assert escaped.isprintable()
    assert not any(char in escaped for char in LINE_BREAKERS)
    # Each line break str.splitlines knows: none survives.
    assert len(escaped.splitlines()) <= 1


@given(st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"])))
def test_plain_printable_text_without_backslashes_is_kept_as_is(text: str) -> None:
    text = text.replace("\\", "/")
    assert logsafe(text) == text


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("openai/m\nERROR forged", "openai/m\\nERROR forged"),
        ("a\x00b\x1b[2J\x7f", "a\\x00b\\x1b[2J\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("looks\\nescaped", "looks\\\\nescaped"),
        ("caf\u00e9 \u4e2d\u6587", "caf\u00e9 \u4e2d\u6587"),
    ],
    ids=["newline", "c0-and-del", "c1", "separators", "bidi-override", "backslash", "unicode"],
)
def test_control_characters_are_escaped_as_repr_writes_them(raw: str, logged: str) -> None:
    assert logsafe(raw) == logged


def test_a_non_string_is_logged_as_its_text() -> None:
    assert logsafe(Target("openai", "m\r\n")) == "openai/m\\r\\n"
    assert logsafe(None) == "None"
