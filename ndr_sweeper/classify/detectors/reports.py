"""Machine reports that are not NDRs: ARF/FBL complaints, DMARC, SMTP TLS reports.

* ARF (RFC 5965): ``multipart/report; report-type=feedback-report`` or a
  ``message/feedback-report`` part; DMARC failure (forensic) reports, also as
  plain text; provider complaint formats (Hotmail/Outlook "complaint about message").
* DMARC aggregate reports (RFC 7489): "Report Domain: ... Submitter: ..." with a
  zip/gzip/xml attachment.
* SMTP TLS reports (RFC 8460): ``report-type=tlsrpt`` or an ``application/tlsrpt+*`` part.
"""

from __future__ import annotations

from .._rx import Caseless
from ..message import ParsedMessage
from ..verdict import Kind, Verdict

NAME = "reports"

_DMARC_SUBJECT = Caseless(r"report[ _-]?domain\s*:|dmarc aggregate|\baggregate report\b")
_FORENSIC = Caseless(
    r"dmarc (?:failure|forensic)|forensic report|failed the published dmarc policy|"
    r"feedback-type:\s*(?:auth-failure|abuse|fraud|virus|other|not-spam)",
)
_COMPLAINT_SUBJECT = Caseless(r"complaint about message|abuse report|spam report|fbl report")


def detect(msg: ParsedMessage) -> Verdict | None:
    rt = msg.report_type
    top = [p for p in msg.parts if not p.embedded] if _maybe(msg) else []
    ctypes = {p.ctype for p in top} | {msg.ctype}
    if (
        rt == "tlsrpt"
        or any(c.startswith("application/tlsrpt") for c in ctypes)
        or ("tls-report-domain" in msg.headers)
    ):
        return Verdict(Kind.TLSRPT_REPORT, NAME, evidence=("SMTP TLS report (RFC 8460)",))
    if rt == "feedback-report" or "message/feedback-report" in ctypes:
        return Verdict(
            Kind.FEEDBACK_REPORT,
            NAME,
            evidence=("ARF feedback report (report-type=feedback-report)",),
        )
    subj = msg.subject
    if _DMARC_SUBJECT.search(subj) and any(
        c in ctypes
        for c in (
            "application/zip",
            "application/gzip",
            "application/x-gzip",
            "application/x-zip-compressed",
            "application/x-zip",
            "text/xml",
            "application/xml",
            "application/octet-stream",
        )
    ):
        return Verdict(Kind.DMARC_REPORT, NAME, evidence=("DMARC aggregate report attachment",))
    if _FORENSIC.search(subj) or (
        "dmarc" in subj.lower() and _FORENSIC.search(msg.body_text()[:20000])
    ):
        return Verdict(Kind.FEEDBACK_REPORT, NAME, evidence=("DMARC failure (forensic) report",))
    if _COMPLAINT_SUBJECT.search(subj) and any(p.is_message_head for p in msg.parts):
        return Verdict(Kind.FEEDBACK_REPORT, NAME, evidence=("complaint report with the message",))
    return None


def _maybe(msg: ParsedMessage) -> bool:
    return msg.ctype.startswith("multipart/") or msg.ctype.startswith("message/")
