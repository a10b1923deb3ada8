"""A bounce (or anything) that a *person* forwarded or replied to is not an NDR.

"Fwd: Returned mail: ..." from a human mail client quotes an MTA's words, but
the MTA did not send it.  Recognised by a Fwd:/Re: subject together with a
sender that is not a mailer daemon, no null Return-Path and no report structure.
"""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Kind, Verdict
from ._base import looks_forwarded_by_person, shorten

NAME = "forwarded"


def detect(msg: ParsedMessage) -> Verdict | None:
    if not looks_forwarded_by_person(msg):
        return None
    return Verdict(
        Kind.NOT_NDR,
        NAME,
        evidence=(
            f"Subject: {shorten(msg.subject, 60)}",
            "sent by a person (Fwd:/Re:), not by a mail system",
        ),
    )
