"""Postfix bounces: "This is the mail system at host ..." (and the older wording)."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="postfix",
    markers=rx(
        r"this is the (?:mail system|postfix program) at host",
        r"i'm sorry to have to inform you that your message could not\s+be delivered",
        r"postfix smtp server: errors from",
        r"^\s*the mail system\s*$",
    ),
    delay=rx(r"#+ this is a warning only\.?\s+you do not need to resend your message\.? #+"),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
