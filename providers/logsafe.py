"""Untrusted text, made safe to put in a log line."""

from __future__ import annotations


def logsafe(value: object) -> str:
    """``str(value)`` with every character that could forge or garble a log line escaped.

    Control characters (C0, DEL, C1), line and paragraph separators and the other characters
    ``str.isprintable`` refuses come out as ``repr`` writes them (``\\n``, ``\\x1b``, ``\\u2028``);
    a backslash is doubled, so an escape in the output always stands for that one character.
    """
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return repr(text)[1:-1]
