"""Challenge/response requests ("click to be added to my allowed list").

Services such as Boxbe, Bluebottle, SpamArrest, Mailblocks or TMDA answer mail
from unknown senders with a request to verify.  Some (Boxbe) dress this up as a
multipart/report DSN, so this detector runs before the RFC 3464 parser.

Besides the known vendors, the *format* is recognised: a request to prove that you
are a human / the real sender (a confirmation link, or "reply to confirm") together
with the statement that your message is held until you do, in an automatic message
(Auto-Submitted, a challenge header, or a "confirm/verify" subject).  Mailing-list
moderation notices hold the message too but ask nothing of the sender; they are not
taken.
"""

from __future__ import annotations

from .._rx import Caseless, fast
from ..message import ParsedMessage
from ..verdict import Kind, Verdict
from ._base import sender_is_daemon

NAME = "challenge"

_VENDOR = fast(
    r"boxbe|bluebottle|spamarrest|spam arrest|mailblocks|\btmda\b|choicemail|"
    r"sendio|spamcease|qurb|ipermitmail|earthlink spamblocker|knowspam|mailsafe",
)
_ASK = Caseless(
    r"(?:click|visit|follow)[^.\n]{0,80}(?:link|here|below|url)[^.\n]{0,120}"
    r"(?:verify|verif|confirm|approv|allowed|added|deliver|guest list)|"
    r"guest list|waitlist|wait list|pre-?approved|prove (?:that )?you are (?:a )?human|"
    r"verify (?:that )?you are (?:a )?(?:real )?(?:person|human|sender)|"
    r"(?:added|add you) to (?:my|the|his|her)? ?(?:allowed|approved|accepted|white) ?(?:senders? )?list|"
    r"reply to this (?:message|email) to (?:confirm|verify)|challenge",
)


_VERIFY = fast(
    r"(?:verify|confirm|prove) (?:that )?you(?:'re| are) (?:a )?(?:real )?"
    r"(?:human|person|sender|not a (?:robot|spammer|machine))|"
    r"(?:verify|confirm) (?:that )?you (?:really )?sent|"
    r"(?:verify|confirm) (?:that )?you are the sender|"
    r"only accepts? (?:mail|messages|e-?mails?) from (?:senders? )?(?:he|she|they|i)? ?"
    r"(?:knows?|approved|known|verified|trusted)|"
    r"reply to this (?:message|e-?mail)[^.\n]{0,40}(?:to|and) (?:confirm|verify)|"
    r"(?:click|visit|follow|open)[^.]{0,80}(?:link|url|here|below)[^.]{0,80}"
    r"(?:to )?(?:verify|confirm) (?:that )?(?:you|your (?:message|e-?mail|address))",
)
_HELD = fast(
    r"(?:message|e-?mail|mail)s? (?:is|are|has been|have been|was|were|will be) "
    r"(?:being )?(?:held|kept|queued|pending|on hold|waiting)|"
    r"will (?:only )?be delivered (?:once|after|when|as soon as|if) you|"
    r"(?:until|unless|once) you(?:'ve| have)? (?:confirm|verif|repl|click|respond)|"
    r"pending (?:your )?(?:confirmation|verification)|"
    r"(?:before|so that) (?:it|your (?:message|e-?mail)) (?:can be|is|will be) delivered",
)
_ASK_SUBJECT = Caseless(r"confirm|verif|approv|authori[sz]|challenge|validat")


def _challenge_header(msg: ParsedMessage) -> bool:
    return any("challenge" in f[0].lower() for f in msg.headers.fields[:200])


def _format(msg: ParsedMessage) -> tuple[str, str] | None:
    """The challenge/response format without a known vendor name."""
    automatic = (
        not (msg.headers.get("auto-submitted") or "no").strip().lower().startswith("no")
        or _challenge_header(msg)
        or _ASK_SUBJECT.search(msg.subject) is not None
    )
    if not automatic:
        return None
    text = msg.lower_text(20000)
    if not any(w in text for w in ("verif", "confirm", "prove", "only accept")):
        return None
    verify = _VERIFY.search(text)
    if verify is None:
        return None
    held = _HELD.search(text)
    if held is None:
        return None
    return verify.group(0), held.group(0)


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
    if msg.ctype.startswith("multipart/report"):
        return None  # a DSN: its Action fields decide (vendors in DSN dress are above)
    fmt = _format(msg)
    if fmt is not None:
        return Verdict(
            Kind.CHALLENGE_RESPONSE,
            NAME,
            evidence=(
                "asks the sender to prove they are human/the sender",
                shorten_q(fmt[0]),
                f"message held: {shorten_q(fmt[1])}",
            ),
        )
    return None


def shorten_q(s: str) -> str:
    s = " ".join(s.split())
    return f"'{s[:60]}'"
