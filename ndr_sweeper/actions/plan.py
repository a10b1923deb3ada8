"""Pure decisions: verdict + what the user sent -> what to do with one message.

No I/O here: the sweep feeds in the verdict, the Sent lookup result and the message age.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: a sweep with nothing new must not load the classifier.
    from ndr_sweeper.classify.verdict import Verdict


JUNK_KEYWORD = "$NdrBackscatter"
FLAG_KEYWORDS = (JUNK_KEYWORD, "Junk")


class Decision(StrEnum):
    OWN = "own"  # an NDR of mail the user sent: keep
    BACKSCATTER = "backscatter"  # an NDR of mail the user never sent: act
    UNDETERMINED = "undetermined"  # an NDR without a usable original ID: keep
    NOT_NDR = "not_ndr"  # anything else: never touched
    TOO_YOUNG = "too_young"  # an NDR younger than min_age: look again later


class Action(StrEnum):
    KEEP = "keep"
    MOVE = "move"  # to a folder (Junk, or a rule's folder)
    DELETE = "delete"  # to Trash
    FLAG = "flag"  # set keywords, leave in place
    NONE = "none"  # action = "none": report only


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one message, and why."""

    folder: str
    uid: int
    decision: Decision
    action: Action
    reason: str
    kind: str
    bounce_message_id: str | None = None
    original_message_id: str | None = None
    dest: str | None = None  # destination folder (MOVE/DELETE) or keyword (FLAG)
    rule: str | None = None  # the rule that changed the built-in decision, if any
    # What a user recognises the message by in a preview (the bounce's own From and Subject,
    # and when it arrived, ISO 8601); shown, never decided on.
    sender: str | None = None
    subject: str | None = None
    arrived: str | None = None
    # An NDR of mail sent before the oldest message of the Sent folders: they cannot know it.
    too_old: bool = False
    bounce_domain: str | None = None  # the domain of the bounce's own From (report)
    recipient_domain: str | None = None  # the domain the bounced mail was sent to (report)

    @property
    def acts(self) -> bool:
        return self.action in (Action.MOVE, Action.DELETE, Action.FLAG)


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at besides the verdict and the built-in plan."""

    # seconds since the message arrived (INTERNALDATE); None when the server's date is garbage
    age: float | None
    # For messages with In-Reply-To/References (auto-replies, challenge/response): whether one
    # of those IDs is in Sent. None when the message names no such ID or nobody looked.
    reply_in_sent: bool | None = None


# A rule hook: given the verdict, the built-in plan and the context, return a replacement plan
# or None. The rules module supplies it; the default is no rules.
RuleHook = Callable[["Verdict", Plan, Context], "Plan | None"]


@dataclass(frozen=True, slots=True)
class Policy:
    """The account settings that decisions depend on."""

    action: str = "move"  # move | delete | flag | none
    junk_folder: str | None = None
    trash_folder: str | None = None
    min_age: float = 900.0
    flag_keyword: str = JUNK_KEYWORD
    # The user's addresses ("me@example.org") and domains ("@example.org"). When set, an NDR of
    # a message sent from another address is not called backscatter: the Sent check cannot
    # know about mail that someone else sent, so it is kept as undetermined.
    my_addresses: tuple[str, ...] = ()


def is_mine(header: str, mine: tuple[str, ...]) -> bool | None:
    """Whether an address header names one of `mine`; None when it holds no address."""
    from email.utils import getaddresses

    addresses = [a.lower() for _name, a in getaddresses([header]) if "@" in a]
    if not addresses:
        return None
    wanted = {m.lower() for m in mine}
    return any(a in wanted or "@" + a.rsplit("@", 1)[1] in wanted for a in addresses)


_DOMAIN_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)


# The usual shapes, "local@host" and "Name <local@host>" with plain words: what getaddresses
# makes of them is that address (tests/test_report.py compares the two on every address the
# corpus holds and on generated ones); getaddresses costs ~60 us a call, this ~1 us.
_ADDR = r"[A-Za-z0-9_%+=-]+(?:\.[A-Za-z0-9_%+=-]+)*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
_PLAIN_ADDRESS = re.compile(
    rf"[ \t]*(?:(?:[A-Za-z0-9_-]+(?:[ \t]+[A-Za-z0-9_-]+)*[ \t]*)?<{_ADDR}>|{_ADDR})[ \t]*"
)


def address_domain(header: str | None) -> str | None:
    """The domain of the first address in an address header (or a bare address), lower-case,
    when it is a host name; None otherwise. What a message says is hostile: bounded, checked."""
    if not header:
        return None
    plain = _PLAIN_ADDRESS.fullmatch(header) if len(header) <= 2000 else None
    if plain is not None:
        domain = (plain.group(1) or plain.group(2)).lower()
        return domain if _DOMAIN_RE.fullmatch(domain) else None
    return _address_domain(header)


def _address_domain(header: str) -> str | None:
    """address_domain for any header: the standard library's parser."""
    from email.utils import getaddresses

    for _name, addr in getaddresses([header[:2000]]):
        if "@" in addr:
            domain = addr.rsplit("@", 1)[1].strip().rstrip(".").lower()
            return domain if _DOMAIN_RE.fullmatch(domain) else None
    return None


@dataclass(frozen=True, slots=True)
class SentExtent:
    """How far back the Sent folders (and archives) reach: their oldest message, and whether
    they hold any message at all."""

    oldest: datetime | None
    empty: bool


# A bounce arrives up to 5 days after its original was sent (delayed delivery gives up then):
# without the original's own Date, its arrival minus this is when the original was sent.
SENT_BEFORE_BOUNCE = timedelta(days=7)


def sent_when(verdict: Verdict, arrived: datetime | None) -> datetime | None:
    """When the original was sent, as far as can be told: its Date (when it is a date, and
    not later than the bounce), else the bounce's arrival minus SENT_BEFORE_BOUNCE."""
    from ndr_sweeper.maildate import mail_date

    date = mail_date(verdict.original.date)
    if date is not None and arrived is not None and date > arrived:
        date = None  # "sent" after its bounce arrived: not a date to trust
    if date is None and arrived is not None:
        date = arrived - SENT_BEFORE_BOUNCE
    return date


def decide(
    folder: str,
    uid: int,
    verdict: Verdict,
    sent_match: str | None,
    age: float | None,
    policy: Policy,
    rule_hook: RuleHook | None = None,
    reply_in_sent: bool | None = None,
    *,
    arrived: datetime | None = None,
    extent: SentExtent | None = None,
) -> Plan:
    """Decide one message. `sent_match` is the original ID found in Sent, if any; `age` is
    None when the message's arrival time is unknown: an NDR then waits, as a young one does.

    `extent` says how far back the Sent folders reach: an NDR of mail sent before their oldest
    message cannot be checked against them and is kept as undetermined, like one without an
    original: mail archived or purged from Sent, or a mailbox older than its Sent folder, must
    not make a real bounce look like backscatter.
    """

    def plan_(decision: Decision, action: Action, reason: str, dest: str | None = None) -> Plan:
        return Plan(
            folder=folder,
            uid=uid,
            decision=decision,
            action=action,
            reason=reason,
            kind=str(verdict.kind),
            bounce_message_id=verdict.message_id,
            original_message_id=verdict.original.message_id,
            dest=dest,
            sender=verdict.from_,
            subject=verdict.subject,
            bounce_domain=address_domain(verdict.from_) if verdict.is_ndr else None,
            recipient_domain=(
                address_domain(verdict.recipients[0].address if verdict.recipients else None)
                or address_domain(verdict.original.to)
                if verdict.is_ndr
                else None
            ),
            arrived=arrived.isoformat() if arrived is not None else None,
        )

    when = sent_when(verdict, arrived) if extent is not None and verdict.is_ndr else None

    ids = verdict.all_original_ids()
    if not verdict.is_ndr:
        plan = plan_(Decision.NOT_NDR, Action.KEEP, f"not an NDR ({verdict.kind})")
    elif age is None:
        plan = plan_(
            Decision.TOO_YOUNG,
            Action.KEEP,
            "arrival time unknown (the server sent a garbage INTERNALDATE): look again later",
        )
    elif age < policy.min_age:
        plan = plan_(
            Decision.TOO_YOUNG,
            Action.KEEP,
            f"younger than min_age ({int(age)}s < {int(policy.min_age)}s): look again later",
        )
    elif sent_match is not None:
        plan = plan_(Decision.OWN, Action.KEEP, f"original <{sent_match}> is in Sent")
    elif not ids:
        plan = plan_(Decision.UNDETERMINED, Action.KEEP, "NDR carries no original Message-ID: kept")
    elif (
        extent is not None and extent.oldest is not None and (when is None or when < extent.oldest)
    ):
        plan = dataclasses.replace(
            plan_(
                Decision.UNDETERMINED,
                Action.KEEP,
                f"sent before {extent.oldest:%Y-%m-%d}, the oldest message of your Sent "
                "folders: it cannot be checked (archived or deleted Sent mail?): kept",
            ),
            too_old=True,
        )
    elif (
        policy.my_addresses
        and verdict.original.from_
        and is_mine(verdict.original.from_, policy.my_addresses) is False
    ):
        plan = plan_(
            Decision.UNDETERMINED,
            Action.KEEP,
            f"original was sent from {verdict.original.from_!r}, not one of my_addresses: kept",
        )
    else:
        action, dest = _backscatter_action(policy)
        plan = plan_(Decision.BACKSCATTER, action, f"original <{ids[0]}> is not in Sent", dest)
    if rule_hook is not None and plan.decision is not Decision.TOO_YOUNG:
        replaced = rule_hook(verdict, plan, Context(age=age, reply_in_sent=reply_in_sent))
        if replaced is not None:
            return replaced
    return plan


def _backscatter_action(policy: Policy) -> tuple[Action, str | None]:
    if policy.action == "move":
        return Action.MOVE, policy.junk_folder
    if policy.action == "delete":
        return Action.DELETE, policy.trash_folder
    if policy.action == "flag":
        return Action.FLAG, policy.flag_keyword
    return Action.NONE, None
