"""Novell GroupWise and its gateways."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="groupwise",
    markers=rx(
        r"the message that you sent was undeliverable to the following",
        r"groupwise internet agent",
        r"the message (?:could not|cannot) be delivered (?:to|because)",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
