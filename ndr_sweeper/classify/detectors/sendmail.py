"""Sendmail (and V5 sendmail, MXLogic, McAfee, Biglobe which use its wording)."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="sendmail",
    markers=rx(
        r"the original message was received at",
        r"-+ ?the following addresses? ha(?:d|ve) (?:permanent fatal errors|delivery (?:errors|problems)|transient non-fatal errors) ?-+",
        r"-+ ?transcript of session follows ?-+",
        r"-+ ?unsent message follows ?-+",
        r"-+ ?(?:original|returned) message follows ?-+",
        r"\*+\s+\*\*\s+this is a warning message only\s+\*\*",
        r"message could not be delivered for (?:more than )?[\d.]+ (?:hours|days)",
    ),
    delay=rx(
        r"this is a warning message only",
        r"will keep trying|will continue trying|will be retried",
        r"warning: message still undelivered after",
        r"-+ ?the following addresses had transient non-fatal errors ?-+",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
