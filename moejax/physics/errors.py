"""The error every bad input raises: ``SpecError``, whose message is one line."""

from __future__ import annotations

# the characters str.splitlines breaks a line at, each written as its escape
LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text) -> str:
    """``text`` with every line break written as its escape (what a one-line ``error:`` prints)."""
    return str(text).translate(LINE_BREAKS)


class SpecError(ValueError):
    r"""A spec field holds a value outside what is allowed. The message is one line: a line break
    in it (a user's key may hold U+0085) is written as its escape.

    >>> str(SpecError("dtypes.a\x85b is not a known field"))
    'dtypes.a\\x85b is not a known field'
    """

    def __init__(self, message: str = ""):
        super().__init__(one_line(message))
