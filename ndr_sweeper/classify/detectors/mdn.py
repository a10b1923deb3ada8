"""Message disposition notifications (RFC 8098), and Sieve ``reject`` sent as an MDN.

A read receipt is not an NDR.  A Sieve ``reject`` (RFC 5429) that is sent as an MDN
with a disposition of ``deleted`` (or says the message was rejected) is a delivery
failure and is reported as ``failed``.
"""

from __future__ import annotations

import re

from ..message import ParsedMessage
from ..verdict import Kind, Recipient, Verdict
from ._base import parse_dsn_text, shorten

NAME = "mdn"

_READ_SUBJECT = re.compile(
    r"^\s*(?:read|not read|gelesen|nicht gelesen|lu|lu\s*:|letto|le[ií]do|gelezen)\s*:", re.I
)
_READ_TEXT = re.compile(r"was read on|has been (?:read|displayed)|was displayed", re.I)
_REJECT = re.compile(r"\brejected\b|\brefused\b", re.I)


def detect(msg: ParsedMessage) -> Verdict | None:
    parts = msg.parts if msg.ctype.startswith("multipart/") else []
    mdn_parts = [
        p
        for p in parts
        if not p.embedded
        and p.ctype
        in ("message/disposition-notification", "message/global-disposition-notification")
    ]
    if msg.report_type != "disposition-notification" and not mdn_parts:
        if _READ_SUBJECT.match(msg.subject) and (
            msg.ctype == "application/ms-tnef"
            or any(p.ctype == "application/ms-tnef" for p in parts)
            or _READ_TEXT.search(msg.body_text()[:5000])
        ):
            return Verdict(Kind.MDN, NAME, evidence=("read receipt ('Read:' subject)",))
        return None
    fields: dict[str, str] = {}
    for p in mdn_parts:
        per_msg, recs = parse_dsn_text(p.text(msg.defects))
        fields.update(per_msg)
        for r in recs:
            fields.update(r.fields)
    disposition = fields.get("disposition", "").lower()
    auto = (msg.headers.get("auto-submitted") or "").lower()
    text = msg.body_text()[:5000]
    if (
        "deleted" in disposition
        or "rejected" in disposition
        or "rejected" in auto
        or ("automatic-action" in disposition and _REJECT.search(msg.subject + " " + text))
    ):
        rcpt = fields.get("final-recipient", "")
        rcpt = rcpt.split(";", 1)[-1].strip().strip("<>")
        recipients = (
            (Recipient(rcpt, action="failed", diagnostic=shorten(text, 120) or None),)
            if rcpt
            else ()
        )
        return Verdict(
            Kind.FAILED,
            "sieve",
            recipients=recipients,
            evidence=(
                "multipart/report; report-type=disposition-notification",
                f"Disposition: {shorten(disposition, 80)}",
                "Sieve reject (RFC 5429): the message was refused",
            ),
        )
    return Verdict(
        Kind.MDN,
        NAME,
        evidence=(
            "disposition notification (read receipt)",
            f"Disposition: {shorten(disposition, 80)}",
        ),
    )
