"""Auto-replies: vacation / out-of-office / auto-responders (RFC 3834 and common headers).

Runs after the NDR detectors: many MTAs mark their bounces ``Auto-Submitted:
auto-replied`` too, so the header alone never wins over a recognised bounce.
"""

from __future__ import annotations

from .._rx import Caseless
from ..message import ParsedMessage
from ..verdict import Kind, Verdict
from ._base import sender_is_daemon

NAME = "autoreply"

_SUBJECT = Caseless(
    r"out of (?:the )?office|\booo\b|auto(?:matic)?[- ]?(?:reply|response|answer|antwort|r[eé]ponse)|"
    r"autoreply|vacation|on holiday|on leave|away from (?:my|the) (?:desk|office)|"
    r"abwesen|urlaub|abwesenheit|absence|absent|fuera de la oficina|fuori ufficio|"
    r"ausser haus|au[sß]er haus|autosvar|automaattinen|odpowied[zź] automatyczna|"
    r"niedost[eę]pn|nieobecn|automatyczna odpowied|r[eé]ponse automatique|risposta automatica|thank you for (?:your )?(?:e-?mail|message)",
)
_TEXT = Caseless(
    r"out of (?:the )?office|on vacation|on holiday|on leave|away from (?:my|the)|"
    r"i am (?:currently )?(?:away|out|travel)|i will be (?:back|out|away)|limited access to (?:e-?mail|my)|"
    r"will (?:reply|respond|get back)|this is an auto(?:matic|mated)?[- ]?(?:reply|response|generated)|"
    r"returning on|return on|nieobecn|abwesend|urlaub|thank you for (?:your )?(?:e-?mail|message)",
)


def detect(msg: ParsedMessage) -> Verdict | None:
    h = msg.headers
    ev: list[str] = []
    auto = (h.get("auto-submitted") or "").strip().lower()
    if auto.startswith("auto-replied"):
        ev.append(f"Auto-Submitted: {auto[:40]}")
    for name in (
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "x-vacation",
        "x-mailautoreply",
    ):
        if name in h:
            ev.append(f"{name} header")
    prec = (h.get("precedence") or "").lower()
    if "auto_reply" in prec or "auto-reply" in prec:
        ev.append(f"Precedence: {prec[:20]}")
    if (h.get("x-auto-response-suppress") or "") and _SUBJECT.search(msg.subject):
        ev.append("X-Auto-Response-Suppress with an out-of-office subject")
    subj = _SUBJECT.search(msg.subject)
    if subj:
        ev.append(f"Subject: '{subj.group(0)}'")
    if not ev:
        return None
    strong = (
        len(ev) >= 2
        or auto.startswith("auto-replied")
        or any("header" in e for e in ev)
        or (subj is not None and subj.start() <= 2)  # "Auto reply: ...", "[Automatic reply] ..."
        or (subj is not None and (h.get("return-path") or "").strip() == "<>")
    )
    if not strong and not _TEXT.search(msg.body_text()[:5000]):
        return None  # only the subject: want autoreply wording in the text too
    if not subj and sender_is_daemon(msg) and not _TEXT.search(msg.body_text()[:5000]):
        return None
    return Verdict(Kind.AUTOREPLY, NAME, evidence=tuple(ev[:4]))
