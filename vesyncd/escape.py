"""
Text from the network made safe for a terminal or a log: every control, format and separator
character written as a visible escape.  The CLI, the doctor and the daemon's log all use it.
"""

from __future__ import annotations

import unicodedata
from typing import Any

#: Unicode categories shown escaped: controls (C0, DEL, C1), format characters (bidirectional
#: overrides and isolates, zero-width joiners), surrogates, private use, unassigned, and the line
#: and paragraph separators that would start a new line.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: Any) -> str:
    """C{text} (any value, as its C{str}) with every control, format and separator character written
    as a visible escape such as C{\\x1b} or C{\\u202e}; other text, accents and emoji unchanged."""
    text = "" if text is None else str(text)
    if text.isascii() and text.isprintable():
        return text  # the common case, checked at C speed
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)


def printableLines(text: str) -> str:
    """Whole output made safe for a terminal: every line through L{printable}, line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))
