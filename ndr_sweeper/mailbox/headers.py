"""The header block and header fields of a raw message, as an IMAP server serves them
(BODY[HEADER], BODY[HEADER.FIELDS (...)], SEARCH HEADER): shared by the mailboxes that are
not a server (the in-memory twin and the Maildir)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def header_of(data: bytes) -> bytes:
    """The header block of a message, up to and including the blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        pos = data.find(sep)
        if pos >= 0:
            return data[: pos + len(sep)]
    return data


def header_fields(data: bytes, fields: Sequence[str]) -> bytes:
    """Like BODY[HEADER.FIELDS (...)]: the matching header lines (with continuations) + CRLF."""
    wanted = {f.lower().encode() for f in fields}
    out: list[bytes] = []
    keep = False
    for line in header_of(data).splitlines(keepends=True):
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = name in wanted
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


def header_values(data: bytes, field_name: str) -> list[str]:
    """Every value of one field, unfolded (for SEARCH HEADER)."""
    block = header_fields(data, [field_name]).decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", block)
    return [ln.split(":", 1)[1].strip() for ln in unfolded.splitlines() if ":" in ln]
