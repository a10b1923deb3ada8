"""Pure: the one Message-ID normaliser, used by the classifier, the Sent index and the journal.

A bounce names the original by the ID the user's Sent copy carries, so both sides must reduce a
header value to the same string: ``<abc@x>`` -> ``abc@x``, case kept. Every module that stores or
compares Message-IDs goes through :func:`normalise_message_id`; two normalisers that disagree
make a bounce of the user's own mail look like backscatter.
"""

from __future__ import annotations

import re

MAX_ID = 900  # longer is not an ID anyone sent (RFC 5322 lines are at most 998 octets)

# "<id>" with nothing odd inside: the usual case, and the one preferred when there are several.
_ANGLE_ID = re.compile(r"<\s*([^<>\s]{1,900}?)\s*>")
# "<id (comment)>" or an ID folded over two lines: whatever sits between the brackets.
_ANGLE_SPAN = re.compile(r"<([^<>]{1,1000})>")
_COMMENT = re.compile(r"\([^()]*\)")
# An address-like ID without brackets ("abc@x").
BARE_ID = re.compile(r"([^<>\s\"',;()\[\]]{1,900}@[^<>\s\"',;()\[\]]{1,300})")
_UNUSABLE = re.compile("[\x00-\x1f\x7f\ufffd]")
_NOT_IDS = frozenset({"none", "unknown"})


def usable(ident: str) -> bool:
    """An ID made of bytes that could not be decoded, or of control characters, names nothing."""
    return _UNUSABLE.search(ident) is None


def normalise_message_id(value: str | None) -> str | None:
    """A Message-ID header value (or anything quoting one) -> the ID, None when there is none.

    ``<abc@x>`` -> ``abc@x``; ``<abc@x (comment)>`` -> ``abc@x``; ``<abc\\r\\n @x>`` (folded)
    -> ``abc@x``; ``abc@x`` -> ``abc@x``; ``<>``, ``none`` -> None. Case is kept. Idempotent.
    """
    if not value:
        return None
    value = value.strip()
    if value[:1] == "<" and value[-1:] == ">":
        ident = value[1:-1]
        # the usual "<id>": the same answer as the searches below, without them
        if (
            0 < len(ident) <= MAX_ID
            and "<" not in ident
            and ">" not in ident
            and len(ident.split()) == 1
            and ident.split()[0] == ident
            and ident.lower() not in _NOT_IDS
            and usable(ident)
        ):
            return ident
    m = _ANGLE_ID.search(value)
    if m:
        ident = m.group(1)
    elif (span := _ANGLE_SPAN.search(value)) is not None:
        ident = "".join(_COMMENT.sub(" ", span.group(1)).split())
    elif (bare := BARE_ID.search(value)) is not None:
        ident = bare.group(1)
    else:
        words = value.split()
        ident = words[0] if words else ""
        if not ident or len(ident) > MAX_ID or ident.lower() in _NOT_IDS:
            return None
    ident = "".join(ident.split()).strip("<>")
    if (
        not ident
        or len(ident) > MAX_ID
        or ident.lower() in _NOT_IDS
        or "<" in ident
        or ">" in ident
    ):
        return None
    return ident if usable(ident) else None
