"""IMAP UID sets (RFC 3501 sequence-set): compress, expand and split into capped batches.

Pure: no I/O, no imapclient.  Dovecot refuses command lines over ``imap_max_line_length``
(64 KB by default) and other servers are stricter, so every batched command keeps its set
string under a byte cap (default 8 KB) and a count cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 8192
MAX_UID = 2**32 - 1  # RFC 3501: nz-number is a 32-bit unsigned integer
_MIN_MAX_BYTES = 24  # room for one "a:b" token of two 10-digit UIDs


def _runs(uids: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Sorted unique UIDs as (first, last) runs of consecutive numbers."""
    it = iter(sorted(set(uids)))
    try:
        lo = hi = next(it)
    except StopIteration:
        return
    if lo < 1:
        raise ValueError(f"UIDs start at 1, got {lo}")
    for uid in it:
        if uid == hi + 1:
            hi = uid
        else:
            yield lo, hi
            lo = hi = uid
    yield lo, hi


def _token(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def to_set(uids: Iterable[int]) -> str:
    """``[1, 2, 3, 4, 5, 7, 9, 10, 11, 12]`` -> ``"1:5,7,9:12"`` (sorted, duplicates dropped)."""
    return ",".join(_token(lo, hi) for lo, hi in _runs(uids))


def parse_runs(text: str | bytes) -> list[tuple[int, int]]:
    """``"1:3,7"`` -> ``[(1, 3), (7, 7)]`` in the order written, each run ascending, without
    expanding it: a server may claim ``1:4000000000``.  ``*`` is not allowed: it has no value
    without a mailbox."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out: list[tuple[int, int]] = []
    for part in text.strip().split(","):
        lo_s, sep, hi_s = part.partition(":")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"not a UID set: {text[:80]!r}") from None
        if lo < 1 or hi < 1 or max(lo, hi) > MAX_UID:
            raise ValueError(f"not a UID set: {text[:80]!r}")
        out.append((min(lo, hi), max(lo, hi)))
    return out


def count(runs: Iterable[tuple[int, int]]) -> int:
    """How many UIDs the runs of ``parse_runs`` hold."""
    return sum(hi - lo + 1 for lo, hi in runs)


def expand(runs: Iterable[tuple[int, int]]) -> Iterator[int]:
    """The UIDs of the runs, lazily: check ``count`` before expanding a server's set."""
    for lo, hi in runs:
        yield from range(lo, hi + 1)


def parse_set(text: str | bytes) -> list[int]:
    """``"1:3,7"`` -> ``[1, 2, 3, 7]`` in the order written (ranges ascending).  Expands: only
    for sets of our own making; a server's goes through ``parse_runs`` and ``count`` first."""
    return list(expand(parse_runs(text)))


@dataclass(frozen=True)
class UidBatch:
    uids: tuple[int, ...]  # ascending
    set: str  # the same UIDs as an IMAP sequence-set, len(set) <= max_bytes


def batches(
    uids: Iterable[int], max_count: int = 5000, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[UidBatch]:
    """Split *uids* (sorted, deduplicated) into batches of at most *max_count* UIDs whose
    set string is at most *max_bytes* long.  Ranges keep consecutive UIDs cheap, so a batch
    of 100,000 consecutive UIDs is ``"1:100000"`` when *max_count* allows it."""
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    if max_bytes < _MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_MAX_BYTES}")
    tokens: list[str] = []
    runs: list[tuple[int, int]] = []
    count = 0
    size = 0

    def flush() -> UidBatch:
        batch_uids = tuple(u for lo, hi in runs for u in range(lo, hi + 1))
        return UidBatch(batch_uids, ",".join(tokens))

    for lo, hi in _runs(uids):
        while lo <= hi:
            room = max_count - count
            part_hi = min(hi, lo + room - 1)
            token = _token(lo, part_hi)
            extra = len(token) + (1 if tokens else 0)
            if size + extra > max_bytes:
                yield flush()
                tokens, runs, count, size = [], [], 0, 0
                continue
            tokens.append(token)
            runs.append((lo, part_hi))
            count += part_hi - lo + 1
            size += extra
            lo = part_hi + 1
            if count >= max_count:
                yield flush()
                tokens, runs, count, size = [], [], 0, 0
    if tokens:
        yield flush()
