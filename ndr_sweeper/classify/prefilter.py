"""Header-only prefilter for the IMAP sweep.

The sweep fetches :data:`HEADER_FIELDS` of every message and the full message only
when :func:`may_be_report` says it could be an NDR or a look-alike.
"""

from __future__ import annotations

import re

from ._rx import fast
from .detectors._base import BOUNCE_SUBJECT, DAEMON_FROM, addr_of
from .message import Headers, normalise, parse_header_block

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
    "Message-ID",
    "In-Reply-To",
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


def may_be_report(header_bytes: bytes) -> bool:
    """True when a message with these header fields could be an NDR or a look-alike.

    ``header_bytes`` is what ``BODY.PEEK[HEADER.FIELDS (...)]`` returns for
    :data:`HEADER_FIELDS` (a full header block works too).  Never raises; when in
    doubt it says True (the full message is then fetched and classified).
    """
    try:
        defects: list[str] = []
        text = normalise(bytes(header_bytes), defects)
        return headers_may_be_report(Headers(parse_header_block(text, defects)))
    except Exception:
        return True
