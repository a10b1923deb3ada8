"""Free-text bounces from MTAs without a module of their own (tried last).

Needs both: structural evidence of a mail system with no sign of a person or
list (:func:`._text.report_headers`) and wording that says a message could not be
delivered, or an SMTP error reply for a named address under a clearly bounce-like
subject.  Without a report structure it must also name what failed (a status code,
the original, or an address that is not its own): phishing dressed as a bounce and a
postmaster's announcement name none.

One narrow exception for mail gateways that send their notice from an ordinary
address (a corporate gateway's "RE: <subject> : non remis (delivery failed)"): a
short single-part plain-text body that states "your message could not be delivered
to <address>", under a strongly bounce-like subject, with no link, no list headers
and no In-Reply-To/References.  A person's mail that mentions bounce words, a
newsletter or spam (which carries a link) does not fit.
"""

from __future__ import annotations

import re

from ..message import ParsedMessage
from ..verdict import Verdict
from ._base import (
    STRONG_SUBJECT,
    addr_of,
    ndr,
    null_return_path,
    person_signals,
    report_text,
    sender_is_daemon,
    shorten,
    subject_is_bounce,
)
from ._text import ADDRESS, names_what_failed, report_headers, rx

NAME = "generic"

PHRASES = rx(
    r"(?:could|can)(?: ?not|n't) (?:be )?deliver(?:ed)?",
    r"was not (?:be )?delivered",
    r"(?:un|non-?)deliverable",
    r"delivery (?:to the following recipients? )?(?:has )?failed",
    r"failed to deliver",
    r"unable to deliver",
    r"(?:permanent|fatal|delivery) error",
    r"message (?:was )?(?:rejected|refused|blocked|bounced)",
    r"returned to (?:the )?sender",
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox (?:unavailable|full|not found)",
    r"recipient (?:address )?rejected|invalid recipient|address rejected",
    r"over quota|quota exceeded|disk quota",
    r"host not found|domain not found|no mx",
    r"delivery (?:status )?notification",
    r"mail delivery (?:failed|system|subsystem)",
    r"not (?:be )?delivered|could not send|can't send|cannot send",
    r"failed recipient|following (?:recipients?|addresses?) (?:failed|had|could)",
    r"konnte nicht zugestellt|nicht zugestellt werden|unzustellbar|non remis",
    r"no se (?:ha )?pudo entregar|non e' stato (?:possibile )?recapitat",
    r"rejected by|delivery problems?|postponed|has been rejected|was rejected",
    r"awaits moderator approval|message has been rejected|posting (?:was )?rejected",
    r"mailbox (?:is )?(?:full|disabled|inactive)|account (?:is )?(?:disabled|inactive|suspended)",
    r"\b5\.\d\.\d{1,3}\b|\b55\d[ -]",
    # gateways, virus scanners and older servers that return mail in their own words
    r"error during delivery|failed recipients?:|contents of the undelivered|"
    r"recipient (?:address )?(?:not found|does not exist|unknown)|address (?:not found|unknown)|"
    r"(?:mailbox|account|address|user) does not exist|not a valid (?:recipient|mailbox|address)|"
    r"(?:was|were|has been|have been) (?:rejected|returned|refused)|message bounced|"
    r"failed to deliver to|failed addresses follow|(?:message|mail) returned",
    # webmail and servers in other languages, in ASCII: Dutch, Swedish, Danish/Norwegian,
    # Polish, Turkish, French
    r"kon niet (?:worden )?(?:bezorgd|afgeleverd)|kunde inte levereras|"
    r"kunne ikke (?:leveres|afleveres)|nie dostarczono|teslim edilemedi|iletilemedi|"
    r"impossible de (?:remettre|distribuer)",
)
# ... and with letters beyond ASCII (searched only in text that has some): French, Italian,
# Russian, Japanese, Chinese, Korean, Portuguese, Polish, Czech, Hungarian
PHRASES_INTL = rx(
    r"n'a pas pu (?:être )?(?:remis|distribu)|non è stato (?:possibile )?recapitat|"
    r"non è stato possibile consegnare",
    r"не (?:может быть |был[оа]? )?доставлен|недоставленн",
    r"配信(?:でき|に失敗)|送信(?:でき|に失敗)|届きませんでした|宛先不明|エラー",
    r"系统退信|退信原因|被退回|无法送达|无法投递|无法发送|投递失败|发送失败|未能送达|未能投递|"
    r"반송되었|반송된|전달되지 않|전달할 수 없|전송 실패|전송에 실패|전송실패|"
    r"não (?:foi possível|pôde ser) entreg|não (?:foi )?entregue|falha na entrega|"
    r"nie (?:może zostać|mogła zostać|została) dostarczona|"
    r"nelze doručit|nebyla doručena|nem kézbesíthető",
)


def _wording(text: str) -> re.Match[str] | None:
    """Failure wording in lower-cased ``text``."""
    return PHRASES.search(text) or (None if text.isascii() else PHRASES_INTL.search(text))


_SMTP_REPLY = re.compile(r"\b[45]\d\d[ -](?:\d\.\d{1,3}\.\d{1,3}\s)?[^\n]{3,}", re.M)


_GATEWAY = re.compile(
    r"^[ \t]*(?:your|the) (?:message|e-?mail|mail) (?:could not|cannot|can't|was not|wasn't) "
    r"(?:be )?delivered to:?\s*<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?[ \t.]*$",
    re.M,
)
_LINK = re.compile(r"https?:|www\.|<a\s", re.I)


def _gateway_notice(msg: ParsedMessage) -> re.Match[str] | None:
    h = msg.headers
    if msg.ctype not in ("text/plain", "") or not STRONG_SUBJECT.search(msg.subject.lower()):
        return None
    if "in-reply-to" in h or "references" in h or any(n.startswith("list-") for n in h.names()):
        return None
    body = msg.body
    if len(body) > 1500 or _LINK.search(body):
        return None
    return _GATEWAY.search(body.lower())


def _dsn_report(msg: ParsedMessage) -> bool:
    """multipart/report; report-type=delivery-status whose status part is broken or empty
    (the text still says what failed)."""
    return msg.ctype.startswith("multipart/report") and "delivery-status" in msg.report_type


def returns_own_message(msg: ParsedMessage) -> bool:
    """Does the message return the recipient's own mail: an attached or quoted original
    whose From is the address this message is sent to?  What a gateway does that bounces
    mail from an ordinary-looking address; a person forwarding mail sends someone else's."""
    from ..extract import extract_original  # (extract imports the detectors' helpers)

    to = {addr_of(v).lower() for v in msg.headers.get_all("to")[:5]}
    to.discard("")
    if not to:
        return False
    original = extract_original(msg)
    sender = addr_of(original.from_ or "").lower()
    return bool(sender) and sender in to and sender != addr_of(msg.from_).lower()


def detect(msg: ParsedMessage) -> Verdict | None:
    if not report_headers(msg) and (
        # a gateway that sends from an ordinary address with no null Return-Path still
        # gives itself away by returning the recipient's own message
        person_signals(msg) or not subject_is_bounce(msg) or not returns_own_message(msg)
    ):
        g = _gateway_notice(msg)
        if g is None:
            return None
        return ndr(
            msg,
            NAME,
            [
                "gateway notice: " + shorten(g.group(0), 60),
                f"Subject: '{shorten(msg.subject, 60)}'",
            ],
        )
    text = msg.lower_text(65536)
    if not names_what_failed(msg):
        return None
    rtext = report_text(msg)
    m = _wording(msg.lowered(rtext)) or _wording(msg.subject.lower())
    daemon = sender_is_daemon(msg)
    strong_subject = STRONG_SUBJECT.search(msg.subject.lower())
    if m and (
        daemon
        or strong_subject
        or "x-failed-recipients" in msg.headers
        or _dsn_report(msg)
        or (null_return_path(msg) and subject_is_bounce(msg))
        or returns_own_message(msg)
    ):
        return ndr(msg, NAME, [f"bounce wording: '{shorten(m.group(0), 60)}'"], text=rtext)
    if (daemon or strong_subject) and _SMTP_REPLY.search(text) and ADDRESS.search(text):
        return ndr(msg, NAME, ["SMTP error reply in a report"], text=rtext)
    if daemon and strong_subject:
        return ndr(msg, NAME, [f"Subject: '{shorten(msg.subject, 60)}'"], text=rtext)
    return None
