"""Pure: the Message-IDs a Sent message is known under.

Providers rewrite the Message-ID on submission (Outlook.com / Microsoft 365, Gmail) and keep the
client's ID in a header of their own; a bounce may quote either, so a Sent message counts under
all of them.
"""

from __future__ import annotations

import re

from ndr_sweeper.msgid import normalise_message_id

SENT_FIELDS: tuple[str, ...] = (
    "Message-ID",
    "X-Microsoft-Original-Message-ID",
    "X-Google-Original-Message-ID",
)

_FIELD_RE = re.compile(
    rb"^(message-id|x-microsoft-original-message-id|x-google-original-message-id)[ \t]*:"
    rb"((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_SPAN_RE = re.compile(r"<[^<>]*>")
_FOLD = re.compile(r"\r?\n[ \t]")


def ids_from_header(header: bytes) -> list[str]:
    """Every Message-ID a header block names in SENT_FIELDS, in order, without duplicates."""
    out: list[str] = []
    for m in _FIELD_RE.finditer(header):
        value = m.group(2).decode("ascii", "replace")
        if "\n" in value:
            value = _FOLD.sub(" ", value)
        for candidate in _SPAN_RE.findall(value) or [value]:
            norm = normalise_message_id(candidate)
            if norm and norm not in out:
                out.append(norm)
    return out


_ANY_ID_RE = re.compile(rb"<([!-;=?-~]{1,250}@[!-;=?-~]{1,250})>")


def ids_in_message(raw: bytes, limit: int = 500) -> list[str]:
    """Every `<local@domain>` token in a message, in order, at most `limit` distinct ones.

    The sweep's safety net: an NDR is kept when *any* ID it quotes is in Sent, even if the
    classifier picked another one as the original.
    """
    out: dict[str, None] = {}
    for m in _ANY_ID_RE.finditer(raw):
        out.setdefault(m.group(1).decode("ascii", "replace"), None)
        if len(out) >= limit:
            break
    return list(out)
