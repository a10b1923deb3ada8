"""Detectors: one module per report format, all ``detect(msg) -> Verdict | None``.

:data:`ORDER` is the order they are tried in (see the package docstring of
:mod:`ndr_sweeper.classify` for why).
"""

from __future__ import annotations

from collections.abc import Callable

from ..message import ParsedMessage
from ..verdict import Verdict
from . import (
    amazonses,
    autoreply,
    challenge,
    courier,
    domino,
    exchange,
    exim,
    forwarded,
    generic,
    gmail,
    groupwise,
    mdn,
    messagingserver,
    opensmtpd,
    postfix,
    qmail,
    reports,
    rfc3464,
    sendmail,
    virus,
    yahoo,
)

Detector = Callable[[ParsedMessage], Verdict | None]

ORDER: tuple[tuple[str, Detector], ...] = (
    ("reports", reports.detect),
    ("mdn", mdn.detect),
    ("challenge", challenge.detect),
    ("amazonses", amazonses.detect),
    ("rfc3464", rfc3464.detect),
    ("forwarded", forwarded.detect),
    ("virus", virus.detect),
    ("postfix", postfix.detect),
    ("exim", exim.detect),
    ("sendmail", sendmail.detect),
    ("qmail", qmail.detect),
    ("exchange", exchange.detect),
    ("gmail", gmail.detect),
    ("yahoo", yahoo.detect),
    ("courier", courier.detect),
    ("domino", domino.detect),
    ("groupwise", groupwise.detect),
    ("opensmtpd", opensmtpd.detect),
    ("messagingserver", messagingserver.detect),
    ("amazonses-text", amazonses.detect_text),
    ("virus-notice", virus.detect_notice),
    ("autoreply", autoreply.detect),
    ("generic", generic.detect),
)
