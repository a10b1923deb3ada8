"""Text from a server or a message, made safe to show on a terminal, in a log or in the state
database.

A terminal interprets what it is sent: ESC starts a sequence that can set the window title,
write the clipboard (OSC 52) or clear the screen; CR and BS overwrite what was printed; C1
controls (U+0080-U+009F) are 8-bit escapes on some terminals; bidi overrides reorder what
follows. :func:`printable` shows each of them as an escape (``\\x1b``, ``\\u202e``) instead, so
a one-line field stays one line and means what it says. Text without them comes back unchanged.

Pure: standard library only.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["UNSAFE", "SafeFormatter", "json_safe", "printable", "printable_lines"]

# C0 (tab and newline too: a one-line field shows them), DEL, C1; the bidi embeddings,
# overrides and isolates and the three bidi marks; the Unicode line and paragraph separators
# (str.splitlines and some viewers break lines there); lone surrogates (undecodable bytes kept
# by surrogateescape; writing them to a UTF-8 stream would raise).
_BEYOND_C0: Final = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
UNSAFE: Final = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
ELLIPSIS: Final = "..."
_HALF_ESCAPE: Final = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3})?$")


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, max_len: int | None = None) -> str:
    """``text`` (``str()`` of it) with every control character shown as an escape.

    With ``max_len``, the result is at most that many characters: it is cut (never inside an
    escape) and ends with ``...``.
    """
    s = text if isinstance(text, str) else str(text)
    if UNSAFE.search(s) is not None:
        s = UNSAFE.sub(lambda m: _escape(m.group()), s)
    if max_len is not None and len(s) > max_len:
        if max_len <= len(ELLIPSIS):
            return ELLIPSIS[: max(max_len, 0)]
        cut = s[: max_len - len(ELLIPSIS)]
        # Never end on half an escape: a lone backslash, \x1, \u20 ...
        tail = _HALF_ESCAPE.search(cut)
        if tail is not None:
            cut = cut[: tail.start()]
        s = cut + ELLIPSIS
    return s


def printable_lines(text: str) -> str:
    """Each line made printable, the line breaks kept (a traceback, a multi-line listing)."""
    return "\n".join(printable(line) for line in text.split("\n"))


_JSON_UNSAFE: Final = re.compile(f"[{_BEYOND_C0}]")  # json.dumps escapes C0 itself


def json_safe(document: str) -> str:
    """A ``json.dumps(..., ensure_ascii=False)`` document with the characters json leaves raw
    (DEL, C1, bidi controls, line separators, lone surrogates) written as ``\\uXXXX``.

    Outside strings JSON is ASCII, so these can only be inside strings, where the escape
    means the same character: a parser reads back exactly the same data.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


class SafeFormatter(logging.Formatter):
    """A Formatter that makes the message (arguments included) and any traceback printable.

    Log lines carry server answers, folder names and message headers; a handler with this
    formatter never writes a control character they held.
    """

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg = printable(record.getMessage())
        safe.args = None
        if record.exc_info and not record.exc_text:
            safe.exc_text = self.formatException(record.exc_info)
        if safe.exc_text:
            safe.exc_text = printable_lines(safe.exc_text)
        safe.exc_info = None  # exc_text holds it, made printable
        if record.stack_info:
            safe.stack_info = printable_lines(record.stack_info)
        return super().format(safe)
