"""classify(): run the detectors in order and put the verdict together."""

from __future__ import annotations

import logging
import re

from ..msgid import normalise_message_id as normalise_id
from .detectors import ORDER
from .detectors._base import (
    WILL_BE_DELIVERED,
    dsn_says_failed_or_delayed,
    notification_system,
    report_text,
    shorten,
)
from .extract import extract_original, why_no_original
from .message import ParsedMessage, parse
from .prefilter import headers_may_be_report
from .verdict import Kind, Verdict

log = logging.getLogger(__name__)

_IDS = re.compile(r"<([^<>\s]{1,900})>")


def classify(raw: bytes) -> Verdict:
    """Classify one message. Pure, never raises: bad input becomes defects."""
    try:
        return _classify(raw)
    except Exception as exc:  # pragma: no cover - last-resort guard
        log.debug("classifier error", exc_info=True)
        return Verdict(
            kind=Kind.NOT_NDR,
            detector="error",
            defects=(f"internal error while classifying: {type(exc).__name__}",),
        )


def _classify(raw: bytes) -> Verdict:
    msg = parse(raw)
    verdict: Verdict | None = None
    if headers_may_be_report(msg.headers):
        for _name, detect in ORDER:
            verdict = detect(msg)
            if verdict is not None:
                break
    if verdict is None:
        verdict = Verdict(kind=Kind.NOT_NDR, detector="none", evidence=("no report signs",))
    elif verdict.is_ndr:
        verdict = _lookalike(msg, verdict)
    return _complete(msg, verdict)


def _lookalike(msg: ParsedMessage, v: Verdict) -> Verdict:
    """The look-alike rule: mail from a known notification system, or text that says the
    message will still be delivered, is not an NDR unless a delivery-status part says
    failed or delayed."""
    if v.detector in ("mdn", "rfc3464"):
        return v  # a disposition or delivery-status part said so
    if dsn_says_failed_or_delayed(msg):
        return v
    sign = notification_system(msg)
    if sign:
        why = f"sent by a notification system ({sign}), no delivery-status part says failed"
    else:
        m = WILL_BE_DELIVERED.search(msg.lowered(report_text(msg)))
        if m is None:
            return v
        why = f"says the message will still be delivered: '{shorten(m.group(0), 60)}'"
    return Verdict(
        kind=Kind.NOT_NDR,
        detector="lookalike",
        evidence=(why, *(f"{v.detector} alone: {e}" for e in v.evidence[:1])),
    )


def _complete(msg: ParsedMessage, v: Verdict) -> Verdict:
    original = v.original
    if (
        v.kind is not Kind.NOT_NDR
        and original.message_id is None
        and not original.other_message_ids
    ):
        original = extract_original(msg)
    evidence = v.evidence
    if v.kind.is_ndr and original.message_id is None and not original.other_message_ids:
        evidence = (*evidence, f"no usable original: {why_no_original(msg)}")
    own_id = normalise_id(msg.headers.get("message-id"))
    defects = [*v.defects, *msg.defects]
    if v.kind.is_ndr and own_id is not None and original.message_id == own_id:
        # Domino stamps the returned copy with the report's own ID: kept (it is what the
        # report names), but said, since a Sent folder is unlikely to hold it
        defects.append("the returned copy carries the report's own Message-ID")
    reply_ids: list[str] = []
    for name in ("in-reply-to", "references"):
        for value in msg.headers.get_all(name):
            for ident in _IDS.findall(value[:20000]):
                i = normalise_id(ident)
                if i and i not in reply_ids:
                    reply_ids.append(i)
    # every field of Verdict, built directly (dataclasses.replace cost ~10 us)
    return Verdict(
        kind=v.kind,
        detector=v.detector,
        original=original,
        recipients=v.recipients,
        evidence=evidence,
        defects=tuple(dict.fromkeys(defects)),
        message_id=own_id,
        subject=msg.subject or None,
        from_=" ".join(msg.from_.split()) or None,
        reply_to_ids=tuple(reply_ids[:50]),
    )


VERDICT_FIELDS = (
    "kind",
    "detector",
    "original",
    "recipients",
    "evidence",
    "defects",
    "message_id",
    "subject",
    "from_",
    "reply_to_ids",
)  # what _complete() sets; a test keeps it equal to Verdict's fields
