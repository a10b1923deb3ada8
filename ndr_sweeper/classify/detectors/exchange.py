"""Microsoft Exchange 2003-2019, Office 365 and Outlook.com non-delivery reports."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="exchange",
    markers=rx(
        r"delivery has failed to these recipients or (?:groups|distribution lists)",
        r"your message did not reach some or all of the intended recipients",
        r"the following recipient\(s\) (?:cannot|could not) be reached",
        r"your message (?:to [^\n]{1,200} )?couldn't be delivered",
        r"diagnostic information for administrators",
        r"remote server returned '",
        r"did not reach the following recipient\(s\)",
        r"delivery is delayed to these recipients or (?:groups|distribution lists)",
        r"delivery to the following recipients? (?:failed|was delayed|has been delayed)",
        r"this message was rejected by the recipient email system",
        r"original message details",
        r"la remise (?:a échoué|à ces destinataires)",
        r"die zustellung an folgende empf",
        r"msexch:",
    ),
    delay=rx(
        r"delivery is delayed to these recipients",
        r"delivery to the following recipients? (?:was|has been) delayed",
        r"will continue (?:to try|trying)",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
