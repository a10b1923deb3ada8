"""Antivirus notices to the *recipient* that an infected message was blocked.

A notice that *your* message was blocked because it carried a virus is an NDR and
is left to the bounce detectors; this one only takes notices "addressed to you".
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
