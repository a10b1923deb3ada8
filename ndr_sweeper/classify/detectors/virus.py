"""Antivirus notices: their own kind (``virus_notice``), not delivery reports.

Two detectors:

* :func:`detect` (early): notices to the *recipient* that an infected message
  "addressed to you" was blocked.
* :func:`detect_notice` (after the MTA formats, before ``generic``): a content
  filter's notice about a virus ("VIRUS ALERT", "a virus was found in a message sent
  from your address", "the infected attachment was removed/quarantined").  Such
  notices usually say the message was not delivered, but they are not NDRs: the
  sender address of infected mail is nearly always forged.  A real DSN
  (multipart/report with ``Action: failed``) is taken by ``rfc3464`` before this
  runs, and an MTA bounce whose diagnostic merely names a virus is taken by its
  family detector, so both stay ``failed``.
"""

from __future__ import annotations

import re

from ..message import ParsedMessage
from ..verdict import Kind, Verdict

NAME = "virus"

_NOTICE = re.compile(
    r"(?:found|detected|blocked|quarantined)[^\n]{0,60}infected (?:message|e-?mail|attachment)"
    r"[^\n]{0,40}(?:addressed|sent|intended) (?:to|for) you|"
    r"infected message addressed to you|a (?:message|e-?mail) (?:addressed|sent) to you "
    r"(?:contained|contains|was infected)",
    re.I,
)


_VIRUS_SUBJECT = re.compile(r"virus|infected|infizier|malware|quarantin", re.I)
_VIRUS_TEXT = re.compile(
    r"virus alert|(?:a |the )?virus (?:was |has been )?(?:found|detected)|"
    r"(?:found|detected) (?:a )?virus|(?:contains|contained|carried) (?:a )?virus|"
    r"infected (?:attachment|file|message|e-?mail)s? (?:was|were|has been|have been) "
    r"(?:removed|quarantined|deleted|blocked|stripped|cleaned|dropped)"
)
_VIRUS_STRONG = re.compile(
    r"virus alert|virus (?:was |has been )?(?:found|detected) in (?:a|the|an) (?:message|e-?mail)|"
    r"(?:found|detected) (?:a )?virus in (?:a|the|an) (?:message|e-?mail)|"
    r"infected (?:attachment|file)s? (?:was|were|has been|have been) "
    r"(?:removed|quarantined|deleted|stripped)"
)


def detect_notice(msg: ParsedMessage) -> Verdict | None:
    low = msg.lower_text(10000)
    if "virus" not in low and "infected" not in low:
        return None
    m = _VIRUS_TEXT.search(low)
    if m is None:
        return None
    subj = _VIRUS_SUBJECT.search(msg.subject)
    if subj is None and _VIRUS_STRONG.search(low) is None:
        return None  # a bounce whose diagnostic names a virus: left to generic
    return Verdict(
        Kind.VIRUS_NOTICE,
        NAME,
        evidence=("antivirus notice, not a delivery report", f"'{m.group(0)[:60]}'"),
    )


def detect(msg: ParsedMessage) -> Verdict | None:
    low = msg.lower_text(10000)
    m = _NOTICE.search(low) if "infected" in low else None
    if m is None:
        return None
    return Verdict(
        Kind.VIRUS_NOTICE,
        NAME,
        evidence=("antivirus notice to the recipient", f"'{m.group(0)[:60]}'"),
    )
