"""OpenSMTPD: "This is the MAILER-DAEMON, please DO NOT REPLY to this e-mail"."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="opensmtpd",
    markers=rx(
        r"this is the mailer-daemon, please do not reply to this e-?mail",
        r"an error has occurred while attempting to deliver a message for",
        r"delivery to the following recipients? (?:has been|was) (?:delayed|postponed)",
    ),
    delay=rx(
        r"delivery to the following recipients? (?:has been|was) (?:delayed|postponed)",
        r"your message was not (?:yet )?delivered",
        r"is being retried|will be retried",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
