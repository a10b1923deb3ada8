"""Yahoo! Mail and AOL (Verizon Media) bounces."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="yahoo",
    markers=rx(
        r"sorry, we were unable to deliver your message to the following address",
        r"message from yahoo\.com\.",
        r"unable to deliver message to the following address",
        r"your mail to the following recipients could not be delivered",
        r"the mail you sent could not be delivered",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
