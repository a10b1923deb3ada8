"""Amazon SES: SNS JSON notifications (Bounce / Complaint / Delivery) and the
bounces SES sends itself; Amazon WorkMail uses RFC 3464 and is handled there."""

from __future__ import annotations

import json
import re

from ..message import ParsedMessage
from ..verdict import Kind, Recipient, Verdict
from ._base import mta_origin, person_signals
from ._text import TextFormat, detect_format, rx

NAME = "amazonses"
_TYPE = re.compile(r'\\?"notificationType\\?"\s*:\s*\\?"(Bounce|Complaint|Delivery)\\?"')

FORMAT = TextFormat(
    name=NAME,
    markers=rx(
        r"the following message to <?[^\s>]+>? was undeliverable",
        r"an error occurred while trying to deliver the mail to the following recipients",
    ),
)


def _from_ses(msg: ParsedMessage) -> bool:
    """Sent by Amazon SNS/SES (or at least by a mail system), not a person pasting JSON."""
    if person_signals(msg):
        return False
    h = msg.headers
    blob = " ".join(h.get(n) or "" for n in ("from", "sender", "return-path")).lower()
    return "amazon" in blob or mta_origin(msg)


def detect(msg: ParsedMessage) -> Verdict | None:
    """SNS JSON notifications (tried early: they are not mail-system reports)."""
    text = msg.body_text()[:262144]
    m = _TYPE.search(text) if "notificationType" in text else None
    if m and _from_ses(msg):
        kind = {"Bounce": Kind.FAILED, "Complaint": Kind.FEEDBACK_REPORT}.get(
            m.group(1), Kind.DELIVERY_SUCCESS
        )
        recipients: list[Recipient] = []
        try:
            start = text.find("{")
            data = json.loads(text[start : text.rfind("}") + 1])
            if isinstance(data, dict) and isinstance(data.get("Message"), str):
                data = json.loads(data["Message"])
            if isinstance(data, dict):
                b = data.get("bounce") or {}
                for r in b.get("bouncedRecipients", [])[:50] if isinstance(b, dict) else []:
                    if isinstance(r, dict) and r.get("emailAddress"):
                        recipients.append(
                            Recipient(
                                str(r["emailAddress"]),
                                status=r.get("status"),
                                action=r.get("action") or "failed",
                                diagnostic=str(r.get("diagnosticCode") or "")[:200] or None,
                            )
                        )
        except (ValueError, TypeError, AttributeError):
            msg.defects.append("unreadable SES JSON notification")
        ev = (f"Amazon SES notification (notificationType={m.group(1)})",)
        return Verdict(kind, NAME, recipients=tuple(recipients), evidence=ev)
    return None


def detect_text(msg: ParsedMessage) -> Verdict | None:
    """The bounces SES writes itself (tried with the other MTA formats)."""
    return detect_format(msg, FORMAT)
