"""Challenge/response requests ("click to be added to my allowed list").

Services such as Boxbe, Bluebottle, SpamArrest, Mailblocks or TMDA answer mail
from unknown senders with a request to verify.  Some (Boxbe) dress this up as a
multipart/report DSN, so this detector runs before the RFC 3464 parser.
"""

from __future__ import annotations

import re

from ..message import ParsedMessage
from ..verdict import Kind, Verdict
from ._base import sender_is_daemon

NAME = "challenge"

_VENDOR = re.compile(
    r"boxbe|bluebottle|spamarrest|spam arrest|mailblocks|\btmda\b|choicemail|"
    r"sendio|spamcease|qurb|ipermitmail|earthlink spamblocker|knowspam|mailsafe",
)
_ASK = re.compile(
    r"(?:click|visit|follow)[^.\n]{0,80}(?:link|here|below|url)[^.\n]{0,120}"
    r"(?:verify|verif|confirm|approv|allowed|added|deliver|guest list)|"
    r"guest list|waitlist|wait list|pre-?approved|prove (?:that )?you are (?:a )?human|"
    r"verify (?:that )?you are (?:a )?(?:real )?(?:person|human|sender)|"
    r"(?:added|add you) to (?:my|the|his|her)? ?(?:allowed|approved|accepted|white) ?(?:senders? )?list|"
    r"reply to this (?:message|email) to (?:confirm|verify)|challenge",
    re.I,
)


def detect(msg: ParsedMessage) -> Verdict | None:
    hdr = " ".join(
        msg.headers.get(n) or "" for n in ("from", "return-path", "sender", "message-id")
    )
    vendor = _VENDOR.search(hdr.lower())
    if vendor is None and not sender_is_daemon(msg):
        vendor = _VENDOR.search(msg.lower_text(5000))
    ask = _ASK.search(msg.body_text()[:20000]) if vendor else None
    if vendor and ask:
        return Verdict(
            Kind.CHALLENGE_RESPONSE,
            NAME,
            evidence=(f"challenge/response service ({vendor.group(0)})", shorten_q(ask.group(0))),
        )
    if "x-challenge" in msg.headers or "x-tmda-fingerprint" in msg.headers:
        return Verdict(Kind.CHALLENGE_RESPONSE, NAME, evidence=("challenge/response headers",))
    return None


def shorten_q(s: str) -> str:
    s = " ".join(s.split())
    return f"'{s[:60]}'"
