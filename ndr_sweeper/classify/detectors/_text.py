"""The machinery behind the free-text MTA detectors: a format is a set of phrases.

Each MTA family module declares a :class:`TextFormat` (the MTA's own wording,
optionally a sender pattern and its delay wording) and calls :func:`detect_format`.
A format only matches a message with structural evidence of a mail system
(mailer-daemon-like From address, null Return-Path, multipart/report or
X-Failed-Recipients) and no sign of a person or list (list headers, Re:/Fwd:,
In-Reply-To from an ordinary address), so ordinary mail quoting the words is not taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._rx import Phrases, fast
from ..message import ParsedMessage
from ..verdict import Verdict
from ._base import (
    from_address_kind,
    is_delay,
    mta_origin,
    ndr,
    person_signals,
    report_text,
    shorten,
)

SCAN = 32768  # characters of body text searched for a format's wording


@dataclass(frozen=True, slots=True)
class TextFormat:
    name: str
    markers: Phrases
    senders: Phrases | None = None  # on From/Return-Path/Received/X-Mailer
    delay: Phrases | None = None  # this MTA's own delay-warning wording
    need_report_headers: bool = True


def report_headers(msg: ParsedMessage) -> bool:
    """May a free-text detector take this message as a report at all?

    Needs structural evidence that a mail system sent it (:func:`._base.mta_origin`)
    and no sign that a person or a list did (:func:`._base.person_signals`): ordinary
    mail that only *mentions* bounce words, quotes a bounce or imitates one from an
    ordinary address is never an NDR.
    """
    cached = msg.cache.get("report_headers")
    if cached is None:
        ok = mta_origin(msg) and not person_signals(msg)
        cached = msg.cache["report_headers"] = "1" if ok else ""
    return bool(cached)


_LISTED = re.compile(
    r"recipients?\b[^\n:]{0,200}:[ \t]*\n?[ \t]*<?([\w.+-]+(?:@[\w.-]+)?)>?[ \t]*$", re.M
)
# The look-behind keeps this linear: a match can only start where a run of address
# characters starts (without it, 64 KB of one letter costs seconds).
ADDRESS = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_STATUS_CODE = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b|\b[45]\d\d[ -]")
_QUOTED_HEADER = re.compile(r"^[ \t>]*(?:message-id|subject|received|from|to|date)[ \t]*:", re.M)
_OWN_FIELDS = ("to", "cc", "delivered-to", "x-original-to", "from", "sender", "return-path")


def names_what_failed(msg: ParsedMessage) -> bool:
    """Does the message name what failed: a report structure (multipart/report,
    X-Failed-Recipients), an SMTP status, an embedded or quoted original, or an address
    other than its own sender's and recipients'?

    A real bounce names the failed recipient, the server's reply or the returned message. A
    notice that names none of them ("4 messages could not be delivered, release them here",
    "delivery will be postponed on Saturday") is phishing or an announcement.
    """
    if msg.ctype.startswith("multipart/report") or "x-failed-recipients" in msg.headers:
        return True
    cached = msg.memo.get("names_what_failed")
    if cached is None:
        cached = msg.memo["names_what_failed"] = _names_what_failed(msg, msg.lower_text(65536))
    return bool(cached)


def _names_what_failed(msg: ParsedMessage, text: str) -> bool:
    if _QUOTED_HEADER.search(text):
        return True
    # A bare status code counts only from a mail system's own address: spam dressed as a
    # bounce quotes "550 5.2.2" under a borrowed "Mail Delivery" display name.
    if from_address_kind(msg) == "strong" and _STATUS_CODE.search(text):
        return True
    if any(p.embedded or p.ctype in ("message/rfc822", "text/rfc822-headers") for p in msg.parts):
        return True
    own = {
        a.lower() for f in _OWN_FIELDS for v in msg.headers.get_all(f) for a in ADDRESS.findall(v)
    }
    if any(a.lower() not in own for a in ADDRESS.findall(text)):
        return True
    # a recipient named without a domain, on the line after "...recipients:" (AOL)
    return any(m.group(1).lower() not in own for m in _LISTED.finditer(text))


def sender_blob(msg: ParsedMessage) -> str:
    h = msg.headers
    parts = [
        h.get("from") or "",
        h.get("return-path") or "",
        h.get("x-mailer") or "",
        h.get("message-id") or "",
        h.get("sender") or "",
        " ".join(h.get_all_raw("received", 3)),  # (only searched for names)
    ]
    return " ".join(parts)


def detect_format(msg: ParsedMessage, fmt: TextFormat) -> Verdict | None:
    if fmt.need_report_headers and not report_headers(msg):
        return None
    if fmt.senders is not None and not fmt.senders.search(sender_blob(msg)):
        return None
    text = msg.lower_text(SCAN)
    m = fmt.markers.search(text)
    if m is None or not names_what_failed(msg):
        return None
    rtext = report_text(msg)
    delayed = True if fmt.delay is not None and fmt.delay.search(text) else is_delay(msg, rtext)
    return ndr(
        msg,
        fmt.name,
        [f"{fmt.name} wording: '{shorten(m.group(0), 60)}'"],
        delayed=delayed,
        text=rtext,
    )


def rx(*phrases: str) -> Phrases:
    """One pattern from several lower-case (regex) phrases, for lower-cased text."""
    return fast("|".join(f"(?:{p})" for p in phrases))
