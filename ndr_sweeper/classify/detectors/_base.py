"""Shared helpers for detectors: header signals, DSN fields, text recipients.

The phrase patterns here are lower-case and compiled without IGNORECASE (much
faster on long alternations); callers pass lower-cased text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .._rx import fast
from ..message import MAX_TEXT, ParsedMessage
from ..signals import BOUNCE_SUBJECT as BOUNCE_SUBJECT
from ..signals import DAEMON_FROM as DAEMON_FROM
from ..signals import addr_of as addr_of
from ..verdict import Kind, Recipient, Verdict

# ---- header signals ----------------------------------------------------------------------

# DAEMON_FROM, BOUNCE_SUBJECT and addr_of live in ..signals (the prefilter needs them
# without loading every detector).

# Strongly bounce-like subjects (used to accept free-text reports)
STRONG_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|returning message|"
    r"delivery status notification|delivery (?:failure|failed|problem)|failure notice|"
    r"mail delivery (?:failed|failure|problem|error|report|warning)|non[- ]?deliver|"
    r"could not (?:be )?(?:sent|delivered)|delivery has failed|mail system error|"
    r"failed mail|mail failure|message not delivered|not delivered|unzustellbar|"
    r"nicht zustellbar|non remis|warning: could not send|delayed mail|delivery delayed|"
    r"message delayed|failed delivery|failure delivery|error during delivery|"
    r"mail failed, returning|returned mail: |系统退信|被退回|未送达|无法送达|投递失败|반송된|"
    r"메일 반송|반송 알림|"
    r"não (?:foi )?entregue|falha na entrega|niedostarcz|nedoručiteln|onbestelbaar|"
    r"olevererbar|kunne ikke leveres|kézbesíthetetlen|teslim edilemedi|mancata consegna|"
    r"non distribué",
)

FWD_OR_REPLY = re.compile(r"^\s*(?:fwd?|fw|wg|tr|aw|re|sv|vs|antw|rif|r)\s*(?:\[\d+\])?\s*:", re.I)


def sender_is_daemon(msg: ParsedMessage) -> bool:
    cached = msg.cache.get("sender_is_daemon")
    if cached is None:
        cached = msg.cache["sender_is_daemon"] = "1" if _sender_is_daemon(msg) else ""
    return bool(cached)


def _sender_is_daemon(msg: ParsedMessage) -> bool:
    h = msg.headers
    for name in ("from", "sender"):
        v = h.get(name)
        if v and DAEMON_FROM.search(h.text(name).lower()):
            return True
    frm = h.get("from")
    return bool(frm is not None and addr_of(frm) == "")


# Daemon-pattern matches that ordinary senders use too (a shop's mail@, notification@).
_WEAK_DAEMON = re.compile(r"(?:mail|notification|nobody|no-?reply|noreply)@")
_LIST_HEADERS = (
    "list-id",
    "list-unsubscribe",
    "list-post",
    "list-archive",
    "list-help",
    "mailing-list",
    "x-mailing-list",
    "list-subscribe",
)


def from_address_kind(msg: ParsedMessage) -> str:
    """The From *address* (not its display name): "strong" (mailer-daemon, postmaster,
    an empty address ...), "weak" (mail@, notification@ ...) or "" (anyone else).

    Display names are not trusted: spam calls itself "Mail Delivery System" freely.
    """
    cached = msg.cache.get("from_kind")
    if cached is None:
        frm = msg.headers.get("from")
        cached = ""
        if frm is not None:
            addr = addr_of(msg.headers.text("from")).lower()
            if addr in ("", "<>") or ("@" not in addr and DAEMON_FROM.search(addr)):
                cached = "strong"
            else:
                m = DAEMON_FROM.search(addr)
                if m is not None:
                    weak = _WEAK_DAEMON.fullmatch(m.group(0)) or _APP_DAEMON.match(addr)
                    cached = "weak" if weak else "strong"
        msg.cache["from_kind"] = cached
    return cached


# "bugzilla-daemon@", "cron_daemon@": an application's daemon, not the mail system's
_APP_DAEMON = re.compile(r"(?!mailer|mail[-_]|smtp|mta|mx)[\w.+-]*[-_.]daemon@")

# Headers and senders of notification systems (bug trackers, CI, monitoring, cron): their
# mail quotes SMTP replies and error codes freely and is never a delivery report.
_NOTIFIER_HEADERS = (
    *("x-bugzilla", "x-redmine", "x-github", "x-gitlab", "x-gitea", "x-jenkins", "x-mantis"),
    *("x-trac-", "x-jira", "x-launchpad", "x-debbugs", "x-zabbix", "x-nagios", "x-icinga"),
    *("x-cron-env", "x-pagerduty", "x-sentry", "x-discourse", "x-phabricator", "x-gerrit"),
    *("x-monit", "x-otrs", "x-rt-", "rt-ticket", "x-grafana", "x-alertmanager", "x-prometheus"),
)
_NOTIFIER_RE = re.compile("|".join(re.escape(p) for p in _NOTIFIER_HEADERS))
_NOTIFIER_MAILER = re.compile(
    r"bugzilla|redmine|jenkins|jira|mantis|trac\b|nagios|zabbix|icinga|gitlab|gitea|otrs|"
    r"request tracker|phabricator|gerrit|grafana|alertmanager|monit\b|munin"
)


def notification_system(msg: ParsedMessage) -> str:
    """The sign that a notification system (bug tracker, CI, monitoring, cron) sent the
    message, from its own header block, or ""."""
    cached = msg.cache.get("notifier")
    if cached is None:
        cached = ""
        h = msg.headers
        for name in h.names():
            if (name[:2] == "x-" or name[:3] == "rt-") and _NOTIFIER_RE.match(name):
                cached = f"{name} header"
                break
        if not cached and "x-mailer" in h:
            mailer = (h.get("x-mailer") or "").lower()
            if _NOTIFIER_MAILER.search(mailer):
                cached = f"X-Mailer: {shorten(mailer, 40)}"
        if not cached and "daemon@" in msg.from_.lower():
            sender = addr_of(msg.from_)
            if _APP_DAEMON.match(sender.lower()):
                cached = f"From: {shorten(sender, 60)}"
        msg.cache["notifier"] = cached
    return cached


# Text that says the message will still be delivered: an advisory, not a report of failure
# or delay ("it will be delivered without any further action on your part").
WILL_BE_DELIVERED = fast(
    r"will (?:still |now |then |eventually )?be (?:delivered|released|forwarded) "
    r"(?:without|automatically|normally|as usual|shortly|in due course)|"
    r"without (?:any )?further action (?:on your part|from you|by you|is required)|"
    r"(?:has|have) been (?:released|delivered) (?:to (?:the|your) (?:recipient|inbox)|normally)"
)


def dsn_says_failed_or_delayed(msg: ParsedMessage) -> bool:
    """Does a delivery-status part say failed or delayed for some recipient?"""
    for rec in dsn_records(msg):
        action = rec.get("action").lower().lstrip()
        if action.startswith(("fail", "delay")):
            return True
        if not action and rec.get("status").strip()[:1] in ("4", "5"):
            return True
    return False


def mta_origin(msg: ParsedMessage) -> bool:
    """Structural evidence that a mail system (not a person) wrote the message:
    a mailer-daemon-like From address, a null Return-Path, a multipart/report or
    X-Failed-Recipients.  A bounce-like subject or display name is not enough."""
    return bool(
        from_address_kind(msg)
        or null_return_path(msg)
        or msg.ctype.startswith("multipart/report")
        or "x-failed-recipients" in msg.headers
    )


def person_signals(msg: ParsedMessage) -> str:
    """Counter-evidence: signs that a person (or a list/newsletter) sent the message.

    Only when the From address is not a mailer daemon's and there is no report
    structure: list headers (List-Id, List-Unsubscribe, ...), Precedence list/bulk/junk,
    a Re:/Fwd: subject, In-Reply-To/References.  Returns the first sign found, or "".
    """
    cached = msg.cache.get("person_signals")
    if cached is not None:
        return cached
    out = ""
    h = msg.headers
    if (
        from_address_kind(msg) != "strong"
        and not msg.ctype.startswith("multipart/report")
        and "x-failed-recipients" not in h
    ):
        for name in _LIST_HEADERS:
            if name in h:
                out = f"{name} header"
                break
        if not out:
            prec = (h.get("precedence") or "").strip().lower()
            if prec in ("list", "bulk", "junk"):
                out = f"Precedence: {prec}"
            elif FWD_OR_REPLY.match(msg.subject):
                out = "a Re:/Fwd: subject"
            elif "in-reply-to" in h or "references" in h:
                out = "In-Reply-To/References"
    msg.cache["person_signals"] = out
    return out


def null_return_path(msg: ParsedMessage) -> bool:
    rp = msg.headers.get("return-path")
    if rp is None:
        return False
    rp = rp.strip()
    return rp in ("<>", "") or rp.lower() in ("<mailer-daemon>", "mailer-daemon")


def subject_is_bounce(msg: ParsedMessage) -> bool:
    return bool(BOUNCE_SUBJECT.search(msg.subject.lower()))


_FORWARD_MARK = re.compile(
    r"^[ \t]*(?:-{2,}|_{2,})?[ \t]*(?:begin )?forwarded message|"
    r"^[ \t]*-{2,}[ \t]*(?:original message|mensaje original|urspr[üu]ngliche nachricht|"
    r"message d'origine|messaggio originale)|"
    r"^[ \t]*>[ \t]*\S|^[ \t]*(?:from|de|von|da|van)[ \t]*:[^\n]*\n[ \t]*(?:sent|date|enviado|gesendet|envoy[ée]|inviato)",
    re.IGNORECASE | re.MULTILINE,
)


def looks_forwarded_by_person(msg: ParsedMessage) -> bool:
    """A person's Fwd:/Re: of something (not an MTA report).

    Needs a Fwd:/Re: subject, a sender that is not a mail system, no null
    Return-Path, no report structure, and the forward/quote marks a mail client
    writes ("Begin forwarded message", "-----Original Message-----", "> " lines).
    """
    subj = msg.subject
    if not FWD_OR_REPLY.match(subj):
        return False
    if sender_is_daemon(msg) or null_return_path(msg):
        return False
    if msg.ctype.startswith("multipart/report"):
        return False
    return bool(_FORWARD_MARK.search(msg.body_text()[:20000]))


# ---- DSN fields --------------------------------------------------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)$")


@dataclass(slots=True)
class DsnRecord:
    fields: dict[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name.lower(), "")


def parse_dsn_text(text: str) -> tuple[dict[str, str], list[DsnRecord]]:
    """Per-message fields and per-recipient records of a delivery-status body.

    RFC 3464 section 2.1: the per-message fields, a blank line, then one block of
    per-recipient fields per recipient, blocks separated by blank lines.  Within a
    block Original-Recipient and Final-Recipient come in either order (RFC order is
    Original- first; Postfix writes Final- first), so a block is one record however
    its fields are ordered.  Tolerant of missing blank lines: a block is also split
    where a recipient field repeats, or where Original-Recipient follows a complete
    Final-Recipient + Action pair (the next recipient's block began).
    """
    groups: list[dict[str, str]] = []  # the finished blocks
    g: dict[str, str] = {}  # the block being read
    last: str | None = None
    match = _FIELD.match
    for line in text[:200000].split("\n"):
        if not line or line.isspace():
            if g:
                groups.append(g)
                g = {}
            last = None
            continue
        if last is not None and line[0] in " \t":
            g[last] += " " + line.strip()
            continue
        m = match(line)
        if m is None:
            last = None
            continue
        name = m.group(1).lower()
        if (name == "final-recipient" or name == "original-recipient") and (
            name in g or (name == "original-recipient" and "action" in g and "final-recipient" in g)
        ):
            groups.append(g)
            g = {}
        if name not in g:
            g[name] = m.group(2).strip()
        last = name
        if len(groups) >= 500:
            break
    if g:
        groups.append(g)
    per_msg: dict[str, str] = {}
    recs: list[DsnRecord] = []
    for g in groups:
        if "final-recipient" in g or "original-recipient" in g or "action" in g:
            recs.append(DsnRecord(g))
        else:
            for k, v in g.items():
                per_msg.setdefault(k, v)
    return per_msg, recs


def dsn_records(msg: ParsedMessage) -> list[DsnRecord]:
    """Records from message/delivery-status (or global-delivery-status) parts."""
    cached = msg.memo.get("dsn_records")
    if isinstance(cached, list):
        return cached
    out: list[DsnRecord] = []
    msg.memo["dsn_records"] = out
    for p in msg.parts:
        if p.embedded:
            continue
        if p.ctype in (
            "message/delivery-status",
            "message/global-delivery-status",
            "text/delivery-status",
        ):
            _, recs = parse_dsn_text(p.text(msg.defects))
            out.extend(recs)
    return out


def record_recipient(rec: DsnRecord) -> Recipient:
    addr = rec.get("final-recipient") or rec.get("original-recipient")
    if ";" in addr:
        addr = addr.split(";", 1)[1]
    addr = addr.strip().strip("<>").strip()
    status = rec.get("status").split()[0] if rec.get("status").split() else None
    diag = rec.get("diagnostic-code")
    if ";" in diag[:20]:
        diag = diag.split(";", 1)[1]
    return Recipient(
        address=addr,
        status=status,
        action=(rec.get("action").split() or [""])[0].lower() or None,
        diagnostic=shorten(diag) or None,
    )


def shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- report text ---------------------------------------------------------------------------

# Where a report's own text ends and the returned message begins.
ORIGINAL_SEPARATOR = re.compile(
    r"^[ \t]*\|?(?:-{2,}|={2,}|\*{2,}|_{2,})?[ \t]*(?:"
    r"this is a copy of the message|original message|returned message|"
    r"the original message|below this line is a copy|headers? of the original|"
    r"original message headers|message headers follow|a copy of the original|"
    r"unsent message below|undelivered message|rfc822 headers|original mail|"
    r"the header of the original|included is a copy|copy of (?:your|the) message|"
    r"end of transcript|message text follows|returned mail follows|message header follows|"
    r"contents of the undelivered|enclosed are the original"
    r")",
    re.MULTILINE,
)


def report_text(msg: ParsedMessage) -> str:
    """The report's own words: body text up to where the returned message starts."""
    cached = msg.cache.get("report_text")
    if cached is not None:
        return cached
    text = msg.body_text()[:131072]
    m = ORIGINAL_SEPARATOR.search(msg.lower_text(131072))
    out = text[: m.start()] if m and m.start() > 40 else text[:65536]
    msg.cache["report_text"] = out
    return out


_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,128}@[A-Za-z0-9][A-Za-z0-9.-]{0,250}\.[A-Za-z]{2,24}"
)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP = re.compile(r"\b([45]\d\d)[ -]")


def text_recipients(msg: ParsedMessage, text: str, action: str, limit: int = 20) -> list[Recipient]:
    """Addresses named in a free-text report, with status/diagnostic when on the same line."""
    own = {addr_of(msg.headers.get(n) or "").lower() for n in ("from", "to", "sender")}
    seen: dict[str, Recipient] = {}
    lines = text[:MAX_TEXT].split("\n")
    for i, line in enumerate(lines[:1000]):
        if "@" not in line or "message-id" in line.lower():
            continue
        for m in _EMAIL.finditer(line):
            a = m.group(0).strip(".'\"").lower()
            if a in own or a in seen or a.startswith(("mailer-daemon@", "postmaster@")):
                continue
            ctx = " ".join(lines[i : i + 3])
            st = _STATUS.search(ctx)
            diag = line.strip() if (_SMTP.search(ctx) or st) else ""
            seen[a] = Recipient(
                address=m.group(0).strip(".'\""),
                status=st.group(1) if st else None,
                action=action,
                diagnostic=shorten(ctx) if diag else None,
            )
            if len(seen) >= limit:
                return list(seen.values())
    return list(seen.values())


# ---- delay -------------------------------------------------------------------------------

DELAY_TEXT = re.compile(
    r"this is a warning message only|warning only|you do not need to resend|"
    r"has not yet been delivered|not (?:yet )?been delivered yet|"
    r"will (?:continue to |keep )?(?:try|retry|attempt)|will be retried|"
    r"still (?:be )?(?:trying|retrying|being retried|attempting|in the queue|queued)|"
    r"delivery (?:attempts )?(?:will continue|is delayed|has been delayed|delayed)|"
    r"has been delayed|have been delayed|message (?:is )?delayed|temporarily deferred|"
    r"delivery to the following recipients? (?:has been|was) delayed|"
    r"no action is required on your part|will retry for|delay(?:ed)? warning|"
    r"could not be delivered for \d+ (?:hours|minutes)|"
    r"warning: message .{0,80} delayed|message will be retried",
)
DELAY_SUBJECT = re.compile(
    r"\(delay\)|delayed|warning: could not send|warning: message|delivery delay|"
    r"still being retried|deferred|transient failure|warning:",
)
FINAL_TEXT = re.compile(
    r"permanent(?:ly)? (?:fatal )?(?:error|failure|failed)|gave up|giving up|"
    r"will not be (?:re)?tried|no further attempts|could not be delivered and|"
    r"has been (?:returned|rejected)|retry time(?:out)? (?:not reached|exceeded)|"
    r"too long in the queue|expired|message was undeliverable|delivery has failed|"
    r"failed permanently|have been returned|is being returned|returning message",
)


def is_delay(msg: ParsedMessage, text: str) -> bool:
    """A warning about a message still being retried (not a final failure)."""
    text = msg.lowered(text)
    delay_text = bool(DELAY_TEXT.search(text))
    delay_subj = bool(DELAY_SUBJECT.search(msg.subject.lower()))
    if not (delay_text or delay_subj):
        return False
    if FINAL_TEXT.search(text) and not (delay_text and delay_subj):
        return False
    return delay_text


# ---- verdict building ----------------------------------------------------------------------


def ndr(
    msg: ParsedMessage,
    detector: str,
    evidence: Iterable[str],
    *,
    delayed: bool | None = None,
    recipients: list[Recipient] | None = None,
    text: str | None = None,
) -> Verdict:
    """A failed/delayed verdict from a free-text detector."""
    if text is None:
        text = report_text(msg)
    if delayed is None:
        delayed = is_delay(msg, text)
    kind = Kind.DELAYED if delayed else Kind.FAILED
    if recipients is None:
        recipients = text_recipients(msg, text, str(kind))
    ev = list(evidence)
    ev.extend(header_evidence(msg))
    if delayed:
        ev.append("the report says delivery is still being retried")
    return Verdict(
        kind=kind, detector=detector, recipients=tuple(recipients), evidence=tuple(ev[:4])
    )


def header_evidence(msg: ParsedMessage) -> list[str]:
    out: list[str] = []
    frm = msg.headers.get("from")
    if frm and DAEMON_FROM.search(frm.lower()):
        out.append(f"From: {shorten(addr_of(frm) or frm, 60)}")
    if msg.headers.get("x-failed-recipients"):
        out.append("X-Failed-Recipients header")
    return out


def first_match(patterns: Iterable[re.Pattern[str]], text: str) -> re.Match[str] | None:
    for p in patterns:
        m = p.search(text)
        if m:
            return m
    return None
