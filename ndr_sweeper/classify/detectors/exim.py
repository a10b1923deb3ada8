"""Exim bounces and delay warnings ("This message was created automatically by mail
delivery software"), also the variants used by providers running Exim (mail.ru, GMX,
1&1, Facebook)."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="exim",
    markers=rx(
        r"this message was created automatically by (?:the )?mail delivery software",
        r"a message that you sent could not be delivered to (?:one or more of|all of) its\s+recipients",
        r"a message that you sent has not yet been delivered to one or more of its\s+recipients",
        r"a message that you sent contained one or more recipient addresses that were\s+incorrectly",
        r"this is a copy of the message, including all the headers",
        r"the following address\(es\) failed:",
        r"this message was created automatically by facebook",
    ),
    delay=rx(
        r"has not yet been delivered to one or more of its\s+recipients",
        r"no action is required on your part\.? delivery attempts will continue",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
