"""qmail and its descendants (netqmail, qmail-ldap, vpopmail): "Hi. This is the
qmail-send program at ..."."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="qmail",
    markers=rx(
        r"this is the qmail-send program at",
        r"this is the (?:ldap )?qmail program at",
        r"i'm afraid i wasn't able to deliver your message to the following addresses",
        r"-+ below this line is a copy of the message",
        r"i'm not going to try again; this message has been in the queue too long",
        r"sorry, i couldn't find any host (?:named|by that name)",
        r"sorry, no mailbox here by that name",
    ),
    delay=rx(r"i'm still trying|i will keep trying|still trying to deliver"),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
