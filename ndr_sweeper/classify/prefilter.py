"""Header-only prefilter for the IMAP sweep.

The sweep fetches :data:`HEADER_FIELDS` of every message and the full message only
when :func:`may_be_report` says it could be an NDR or a look-alike.

Most header blocks are ordinary mail, and most of those are ruled out from their bytes
(:func:`_ordinary`, a few microseconds) before anything is decoded or parsed: that test
only says "no" where the full decision (:func:`headers_may_be_report`) says "no" too, and
anything it is not sure about goes to the full decision.  ``tests/test_prefilter_quick.py``
runs both over every fixture, every corpus message and generated header blocks.
"""

from __future__ import annotations

import re

from ._rx import fast, trie_pattern
from .message import Headers, normalise, parse_header_block
from .signals import BOUNCE_SUBJECT, DAEMON_FROM, addr_of

# Exactly the fields headers_may_be_report reads: each one more is read and parsed for every
# message of a sweep (Message-ID and In-Reply-To were, unread: 18% of the bytes on real mail).
HEADER_FIELDS: tuple[str, ...] = (
    "From",
    "Sender",
    "Return-Path",
    "Subject",
    "Content-Type",
    "Auto-Submitted",
    "X-Failed-Recipients",
    "Precedence",
    "X-Autoreply",
    "X-Autorespond",
)

_LOOKALIKE_SUBJECT = re.compile(
    r"out of (?:the )?office|auto(?:matic)?[- ]?(?:reply|response|antwort|r[eé]ponse)|autoreply|"
    r"vacation|abwesen|absence|report[ _-]?domain|dmarc|tls report|complaint|abuse|"
    r"^\s*(?:read|not read|gelesen)\s*:|verif|confirm|guest list|feedback|"
    r"infected|quarantin|spam|automat|thank you for (?:your )?(?:e-?mail|message)",
)

_CR_VENDOR = re.compile(r"boxbe|bluebottle|spamarrest|mailblocks|choicemail|sendio")

# The same patterns with literal anchors in front (see _rx): every message of a sweep goes
# through here, most of them ordinary, and an anchor test rejects those ~3x faster.
_DAEMON_FROM_FAST = fast(DAEMON_FROM.pattern)
_BOUNCE_SUBJECT_FAST = fast(BOUNCE_SUBJECT.pattern)
_LOOKALIKE_SUBJECT_FAST = fast(_LOOKALIKE_SUBJECT.pattern)
_CR_VENDOR_FAST = fast(_CR_VENDOR.pattern)


def headers_may_be_report(h: Headers) -> bool:
    """The decision itself, on already parsed header fields."""
    for name in ("from", "sender"):
        v = h.get(name)
        if v is not None and (_DAEMON_FROM_FAST.search(h.text(name).lower()) or addr_of(v) == ""):
            return True
    rp = (h.get("return-path") or "x").strip().lower()
    if rp in ("<>", "", "<mailer-daemon>", "mailer-daemon"):
        return True
    subject = h.text("subject").lower()
    if _BOUNCE_SUBJECT_FAST.search(subject) or _LOOKALIKE_SUBJECT_FAST.search(subject):
        return True
    if _CR_VENDOR_FAST.search(((h.get("from") or "") + " " + (h.get("return-path") or "")).lower()):
        return True
    ct = (h.get("content-type") or "").lower()
    if "report" in ct or "message/" in ct or "ms-tnef" in ct:
        return True
    auto = (h.get("auto-submitted") or "no").strip().lower()
    if not auto.startswith("no"):
        return True
    if "x-failed-recipients" in h or "x-autoreply" in h or "x-autorespond" in h:
        return True
    prec = (h.get("precedence") or "").lower()
    return "auto" in prec


# ---------------------------------------------------------------- the quick "no"
#
# headers_may_be_report says True only when (a) one of the patterns above matches the
# From/Sender, Subject or From + Return-Path text, and every match contains one of the
# pattern's literal anchors (_rx.anchors); or (b) one of the tests of a field's value or
# presence holds (an empty address or "<>", "report" in Content-Type, "auto" in Precedence,
# an Auto-Submitted or X-Failed-Recipients field, ...).  On a block of printable ASCII
# without encoded words, the text it reads is the field's value unfolded, and unfolding only
# turns runs of blanks into one space: collapsing every run the same way keeps each
# occurrence of an anchor or a marker (they hold single spaces only), and reading every
# value of those fields, anywhere in the block, only reads more.  So when none of that is in
# the collapsed values, the answer is no without parsing anything.  The one test that reading
# more could fool, an empty From or Sender, reads exactly the value the parser reads: its
# continuation lines end at a blank one (the end of the header for the parser).

_WANTED = re.compile(
    rb"^(from|sender|return-path|subject|content-type|precedence|auto-submitted|x-autoreply|"
    rb"x-autorespond|x-failed-recipients)[ \t]*:([^\n]*(?:\n[ \t]+[^ \t\r\n][^\n]*)*)",
    re.MULTILINE,
)
_PLAIN = bytes([9, 10, *range(0x20, 0x7F)])  # printable ASCII, tab, LF (CR is looked at)


def _anchor_search(*patterns: object) -> re.Pattern[bytes] | None:
    """One search for the ASCII anchors of *patterns*; None when one has none (or one that
    collapsing blanks could hide): then there is no quick test."""
    words: list[str] = []
    for p in patterns:
        found = getattr(p, "anchors", None)
        if found is None:
            return None
        for a in found:
            if not a.isascii():
                continue  # cannot occur in the ASCII blocks the quick test reads
            if a != a.lower() or "\t" in a or "\n" in a or "  " in a or not a.strip():
                return None
            words.append(a)
    return re.compile(trie_pattern(words).encode("ascii"))


_SENDER_ANCHORS = _anchor_search(_DAEMON_FROM_FAST, _CR_VENDOR_FAST)
_VENDOR_ANCHORS = _anchor_search(_CR_VENDOR_FAST)
_SUBJECT_ANCHORS = _anchor_search(_BOUNCE_SUBJECT_FAST, _LOOKALIKE_SUBJECT_FAST)


def _ordinary(block: bytes) -> bool:
    """True when the header block surely is not a report's (headers_may_be_report says no);
    False when unsure."""
    senders = _SENDER_ANCHORS
    subjects = _SUBJECT_ANCHORS
    vendors = _VENDOR_ANCHORS
    if senders is None or subjects is None or vendors is None or len(block) > 65536:
        return False
    low = block.lower()
    if b"=?" in low or low[:1] in (b"", b" ", b"\t", b"\r", b"\n"):
        return False  # encoded words; leading blanks (dropped before parsing)
    odd = low.translate(None, _PLAIN)
    if odd and (odd.strip(b"\r") or low.count(b"\r\n") != len(odd)):
        return False  # 8-bit or control bytes, or a bare CR (a line end when parsed)
    for m in _WANTED.finditer(low):
        name = m.group(1)
        value = b" ".join(m.group(2).split())
        if name == b"subject":
            if subjects.search(value) is not None:
                return False
        elif name == b"from" or name == b"sender":
            if not value or b"<>" in value or b"< >" in value or senders.search(value):
                return False
        elif name == b"return-path":
            if b"<>" in value or b"mailer-daemon" in value or vendors.search(value):
                return False
        elif name == b"content-type":
            if b"report" in value or b"message/" in value or b"ms-tnef" in value:
                return False
        elif name == b"precedence":
            if b"auto" in value:
                return False
        else:
            return False  # Auto-Submitted, X-Autoreply, X-Autorespond, X-Failed-Recipients
    return True


def may_be_report(header_bytes: bytes) -> bool:
    """True when a message with these header fields could be an NDR or a look-alike.

    ``header_bytes`` is what ``BODY.PEEK[HEADER.FIELDS (...)]`` returns for
    :data:`HEADER_FIELDS` (a full header block works too).  Never raises; when in
    doubt it says True (the full message is then fetched and classified).
    """
    try:
        raw = bytes(header_bytes)
        return False if _ordinary(raw) else _full_decision(raw)
    except Exception:
        return True


def _full_decision(raw: bytes) -> bool:
    """The decision on the parsed header fields (what the quick test may only shortcut)."""
    defects: list[str] = []
    text = normalise(raw, defects)
    return headers_may_be_report(Headers(parse_header_block(text, defects)))
