"""IBM/Lotus Domino and Notes: "Your message ... was not delivered to: ..."."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="domino",
    markers=rx(
        r"your (?:message|document)[^\n]{0,200}\n(?:[^\n]*\n){0,6}?\s*was not delivered to",
        r"was not delivered to:",
        r"-+ failure reasons -+",
        r"lotus domino",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
