"""RFC 3464 delivery status notifications (``multipart/report; report-type=delivery-status``).

The machine-readable ``message/delivery-status`` part says per recipient what
happened (``Action: failed / delayed / delivered / relayed / expanded``).  This is
the most reliable signal there is, so it is tried before the MTA-specific text
detectors; a report without usable Action/Status fields falls through to them.
"""

from __future__ import annotations

import re

from ..message import ParsedMessage
from ..verdict import Kind, Recipient, Verdict
from ._base import (
    STRONG_SUBJECT,
    DsnRecord,
    dsn_records,
    mta_origin,
    parse_dsn_text,
    person_signals,
    record_recipient,
    report_text,
)

NAME = "rfc3464"

_SUCCESS = ("delivered", "relayed", "expanded", "deliverable", "delivered-to")


def _action(rec: DsnRecord) -> str:
    words = rec.get("action").lower().split()
    a = words[0] if words else ""
    if not a:
        st = rec.get("status").strip()
        if st[:1] == "5":
            return "failed"
        if st[:1] == "2":
            return "delivered"
    return a


def _unique(recs: list[DsnRecord]) -> tuple[list[DsnRecord], list[Recipient]]:
    """One record per recipient (some MTAs repeat a recipient's block), with its
    Recipient (worked out once)."""
    seen: set[tuple[str, str]] = set()
    out: list[DsnRecord] = []
    rcpts: list[Recipient] = []
    for r in recs:
        rcpt = record_recipient(r)
        key = (rcpt.address.lower(), _action(r))
        if key[0] and key in seen:
            continue
        seen.add(key)
        out.append(r)
        rcpts.append(rcpt)
    return out, rcpts


_INLINE = re.compile(
    r"^[ \t]*(?:final-recipient[ \t]*:.*\n(?:.*\n){0,12}?[ \t]*action|"
    r"action[ \t]*:.*\n(?:.*\n){0,12}?[ \t]*final-recipient)[ \t]*:",
    re.M,
)


def _inline_records(msg: ParsedMessage) -> list[DsnRecord]:
    """Delivery-status fields written into the report's own text (Amazon WorkMail, some
    gateways): a Final-Recipient and an Action within a few lines of each other."""
    if "final-recipient" not in msg.lower_text():
        return []
    text = report_text(msg)
    if _INLINE.search(msg.lowered(text)) is None:
        return []
    _, recs = parse_dsn_text("\n".join(line.strip() for line in text.split("\n")))
    return recs


def detect(msg: ParsedMessage) -> Verdict | None:
    if not msg.ctype.startswith(("multipart/report", "message/")) and person_signals(msg):
        return None  # a person's/list's multipart/mixed carrying a DSN part is no report
    inline = False
    if msg.ctype in ("message/delivery-status", "message/global-delivery-status"):
        _, recs = parse_dsn_text(msg.body)
    elif not msg.ctype.startswith("multipart/report") and not mta_origin(msg):
        # no sign of a mail system in the header: only a bounce-like subject over
        # delivery-status fields in the text will do
        if not STRONG_SUBJECT.search(msg.subject.lower()):
            return None
        recs = _inline_records(msg)
        inline = True
    elif msg.ctype.startswith("multipart/"):
        recs = dsn_records(msg) or _inline_records(msg)
        inline = not dsn_records(msg)
    else:
        recs = _inline_records(msg)
        inline = True
    if not recs:
        return None
    recs, rcpts = _unique(recs)
    actions = [_action(r) for r in recs]
    failed = [r for r, a in zip(recs, actions, strict=True) if a.startswith("fail")]
    delayed = [r for r, a in zip(recs, actions, strict=True) if a.startswith("delay")]
    success = [r for r, a in zip(recs, actions, strict=True) if a.startswith(_SUCCESS)]
    ev = [
        "delivery-status fields in the report's text"
        if inline
        else f"{msg.ctype or 'message'}; report-type={msg.report_type or 'none'}"
    ]
    if failed:
        kind = Kind.FAILED
        ev.append(f"Action: failed for {len(failed)} recipient{'s' if len(failed) > 1 else ''}")
    elif delayed:
        kind = Kind.DELAYED
        ev.append(f"Action: delayed for {len(delayed)} recipient{'s' if len(delayed) > 1 else ''}")
    elif success and len(success) == len(recs):
        kind = Kind.DELIVERY_SUCCESS
        ev.append("every recipient delivered/relayed/expanded")
    else:
        return None
    return Verdict(
        kind=kind,
        detector=f"{NAME}-text" if inline else NAME,
        recipients=tuple(rcpts[:50]),
        evidence=tuple(ev),
    )
