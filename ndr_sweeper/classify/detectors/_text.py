"""The machinery behind the free-text MTA detectors: a format is a set of phrases.

Each MTA family module declares a :class:`TextFormat` (the MTA's own wording,
optionally a sender pattern and its delay wording) and calls :func:`detect_format`.
A format only matches a message with structural evidence of a mail system
(mailer-daemon-like From address, null Return-Path, multipart/report or
X-Failed-Recipients) and no sign of a person or list (list headers, Re:/Fwd:,
In-Reply-To from an ordinary address), so ordinary mail quoting the words is not taken.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._rx import Phrases, fast
from ..message import ParsedMessage
from ..verdict import Verdict
from ._base import (
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
    if m is None:
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
