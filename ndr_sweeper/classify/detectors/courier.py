"""Courier MTA delivery reports."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="courier",
    markers=rx(
        r"this is a delivery status notification from",
        r"your message to the following recipients cannot be delivered",
        r"courier mail server at",
    ),
    delay=rx(r"delivery to the following recipients has been delayed"),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
