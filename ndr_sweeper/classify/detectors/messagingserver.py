"""Sun/Oracle Messaging Server (iPlanet) and Zimbra-style reports."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="messagingserver",
    markers=rx(
        r"this report relates to a message you sent with the following header fields",
        r"your message cannot be delivered to the following recipients",
        r"recipient address:\s*\S+@",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
