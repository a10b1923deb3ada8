"""Pure: knowing a message by what it is, not by where a server says it is.

After a COPY or MOVE, and when undo looks for a message it moved, the client must prove that a
message in the destination *is* the one it acted on. A UID from COPYUID is only a claim; a
Message-ID alone is shared by duplicates (and missing from some bounces). A message's identity
here is a hash of its header fields that every copy keeps byte for byte (``FIELDS``, fetched with
``BODY.PEEK[HEADER.FIELDS (...)]`` from the same server) together with its RFC822.SIZE. Received
lines tell two deliveries of the same bounce apart.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FIELDS: tuple[str, ...] = ("Message-ID", "Date", "From", "To", "Subject", "Received")


@dataclass(frozen=True, slots=True)
class Identity:
    fingerprint: str  # hex SHA-256 of the header fields, line ends made uniform
    size: int


def identity(header_fields: bytes, size: int) -> Identity:
    """The identity of a message from its ``FIELDS`` header lines and its size."""
    uniform = header_fields.replace(b"\r\n", b"\n").rstrip(b"\n")
    return Identity(hashlib.sha256(uniform).hexdigest(), int(size))


def match(
    wanted: Mapping[int, Identity],
    found: Iterable[tuple[int, Identity]],
    hints: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """Pair each wanted key (a journal entry) with a found UID of the same identity.

    Each found UID is used at most once. ``hints`` (key -> UID, e.g. from COPYUID) are taken
    first when the UID there has the right identity; other keys get the lowest free UID with
    their identity (identical messages are interchangeable).
    """
    by_uid = dict(found)
    taken: set[int] = set()
    out: dict[int, int] = {}
    for key, uid in (hints or {}).items():
        if key in wanted and uid not in taken and by_uid.get(uid) == wanted[key]:
            out[key] = uid
            taken.add(uid)
    free: dict[Identity, list[int]] = defaultdict(list)
    for uid in sorted(by_uid):
        if uid not in taken:
            free[by_uid[uid]].append(uid)
    for key in sorted(wanted):
        if key in out:
            continue
        candidates = free.get(wanted[key])
        if candidates:
            out[key] = candidates.pop(0)
    return out
