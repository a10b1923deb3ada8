"""The classifier: raw message bytes -> :class:`Verdict`. Pure, standard library only.

Public API: :func:`classify`, :func:`may_be_report`, :data:`HEADER_FIELDS`, and the
result types :class:`Verdict`, :class:`Kind`, :class:`Recipient`, :class:`Original`.

How a message is read (:mod:`.message`): line endings normalised (CRLF, LF, bare CR),
leading blank lines and an mbox ``From`` line dropped, input capped at 2 MiB, the
MIME tree walked iteratively (at most 300 parts, nesting 12 deep), broken boundaries
guessed from the body or the raw text used instead.  Malformed input becomes a
defect string, never an exception.

Only messages whose *headers* could belong to a report (the same test as
:func:`may_be_report`) have their body read; the rest are ``not_ndr`` at once.

Detector order (:data:`.detectors.ORDER`), first answer wins:

1. ``reports``  - ARF feedback, DMARC aggregate/forensic, SMTP TLS reports (look-alikes)
2. ``mdn``      - disposition notifications; a Sieve ``reject`` MDN is ``failed``
3. ``challenge``- challenge/response requests (some are dressed as DSNs)
4. ``amazonses``- Amazon SES JSON notifications (bounce/complaint/delivery)
5. ``rfc3464``  - multipart/report DSNs with Action fields: reliable, so early
6. ``forwarded``- a person's Fwd:/Re: of a bounce is not an NDR
7. ``virus``    - antivirus notices to the recipient
8. MTA families by their wording: ``postfix``, ``exim``, ``sendmail``, ``qmail``,
   ``exchange``, ``gmail``, ``yahoo``, ``courier``, ``domino``, ``groupwise``,
   ``opensmtpd``, ``messagingserver``, Amazon SES's own bounce text
9. ``virus-notice`` - content-filter notices about a virus (not NDRs)
10. ``autoreply``- vacation/out-of-office (after the bounces: MTAs mark bounces
   ``Auto-Submitted`` too)
11. ``generic`` - free-text bounce wording under report-like headers (last)

No free-text detector (8, 11) takes a message without structural evidence of a mail
system (a mailer-daemon-like From *address*, null Return-Path, multipart/report or
X-Failed-Recipients), nor one that shows a person or list sent it (list headers,
Precedence list/bulk, Re:/Fwd:, In-Reply-To/References from an ordinary address):
mail that discusses, quotes or imitates a bounce is never an NDR.

The original message's IDs and headers are then pulled out by :mod:`.extract`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .prefilter import HEADER_FIELDS, may_be_report
from .verdict import Kind, Original, Recipient, Verdict

if TYPE_CHECKING:
    from .engine import classify


def __getattr__(name: str) -> object:
    """``classify`` loads the detectors on first use: a sweep whose possible reports a
    helper process classifies (``ndr_sweeper.offload``) only needs the prefilter here."""
    if name == "classify":
        from .engine import classify

        return classify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HEADER_FIELDS",
    "Kind",
    "Original",
    "Recipient",
    "Verdict",
    "classify",
    "may_be_report",
]
