"""IMAP modified UTF-7 (RFC 3501 5.1.3), the wire form of folder names.  Pure: no I/O.

``decode`` is strict: bytes that are not valid modified UTF-7 raise ``ValueError`` rather than
being guessed at, because a guessed name sent back to the server names another folder, or
none.  ``encode`` gives the canonical form.  A server may list a name in another valid form
that decodes to the same text ("&AEo-unk" is "Junk"), so ``ImapMailbox`` sends every folder
name back in the form the server listed it, and uses ``encode`` only for names it did not list.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode", "encode"]

_BASE64 = re.compile(rb"[A-Za-z0-9+,]+")


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=").replace(b"/", b",")


def encode(name: str) -> bytes:
    """The canonical modified UTF-7 of *name*: printable ASCII as itself ("&" as "&-"), every
    run of other characters as one "&...-" shift of UTF-16 in base64 (with "," for "/")."""
    out = bytearray()
    run: list[str] = []

    def flush() -> None:
        if run:
            out.extend(b"&" + _b64("".join(run).encode("utf-16-be", "surrogatepass")) + b"-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            run.append(ch)
    flush()
    return bytes(out)


def decode(raw: bytes) -> str:
    """The text of a modified UTF-7 name; ``ValueError`` saying what is wrong when it is not one
    (a byte outside printable ASCII, a shift without its "-", base64 that does not make whole
    UTF-16 characters or leaves stray bits, a lone surrogate)."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x26:  # "&"
            end = raw.find(b"-", i + 1)
            if end < 0:
                raise ValueError(f"the shift at byte {i} never ends")
            chunk = raw[i + 1 : end]
            if chunk:
                out.append(_shifted(chunk, i))
            else:
                out.append("&")
            i = end + 1
        elif 0x20 <= c <= 0x7E:
            out.append(chr(c))
            i += 1
        else:
            raise ValueError(f"byte {c:#04x} at {i} is not printable ASCII")
    return "".join(out)


def _shifted(chunk: bytes, at: int) -> str:
    if not _BASE64.fullmatch(chunk):
        raise ValueError(f"the shift at byte {at} is not base64")
    try:
        data = base64.b64decode(chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4))
    except binascii.Error:
        raise ValueError(f"the shift at byte {at} is not whole base64") from None
    if len(data) % 2 or _b64(data) != chunk:
        raise ValueError(f"the shift at byte {at} does not hold whole UTF-16 characters")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError(f"the shift at byte {at} holds a lone surrogate") from None
