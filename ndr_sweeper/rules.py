"""User rules: adjust the built-in decision without code. Pure: standard library only.

A rules file is TOML, an ordered list of ``[[rule]]`` tables. Each rule has match keys (all
given must match, at least one is required) and exactly one action::

    [[rule]]
    name = "newsletter"
    description = "bounces of our newsletter never land in Sent: keep them"
    decision = "backscatter"
    original_from = "*@news.example.com"
    keep = true

Match keys: ``kind``, ``decision``, ``bounce_from``, ``subject``, ``original_from``,
``original_to``, ``recipient_domain``, ``age``, ``reply_to_sent``. Actions: ``keep = true``,
``move = "FOLDER"``, ``delete = true`` (to Trash), ``flag = "KEYWORD"``.

The first rule that matches a message decides; when none does, the built-in decision stands.
Rules never see messages younger than ``min_age`` (``decide()`` does not call the hook for them).

Every problem is a :class:`ConfigError` with one line:
``FILE: rule N (NAME): KEY: PROBLEM; FIX`` (N counts from 1 in its file; the name is shown
when the rule has one), or ``FILE: line L, column C: invalid TOML: ...``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import Final, cast

from ndr_sweeper.actions.plan import Action, Context, Decision, Plan, RuleHook
from ndr_sweeper.classify.verdict import Kind, Verdict
from ndr_sweeper.config import toml_message, type_name, unknown_key
from ndr_sweeper.errors import ConfigError

__all__ = [
    "MATCH_KEYS",
    "RULE_ACTIONS",
    "AgeTest",
    "Rule",
    "RuleSet",
    "explain_rules",
    "load_rule_file",
    "load_rules",
]

MATCH_KEYS: Final = (
    "kind",
    "decision",
    "bounce_from",
    "subject",
    "original_from",
    "original_to",
    "recipient_domain",
    "age",
    "reply_to_sent",
)
RULE_ACTIONS: Final = ("keep", "move", "delete", "flag")
_OTHER_KEYS: Final = ("name", "description")
_ALL_KEYS: Final = (*_OTHER_KEYS, *MATCH_KEYS, *RULE_ACTIONS)

# The built-in decisions a rule may match: too_young never reaches the rules.
RULE_DECISIONS: Final = (
    Decision.OWN,
    Decision.BACKSCATTER,
    Decision.UNDETERMINED,
    Decision.NOT_NDR,
)
_NDR_KINDS: Final = frozenset(k for k in Kind if k.is_ndr)
_NDR_DECISIONS: Final = frozenset(
    (Decision.OWN, Decision.BACKSCATTER, Decision.UNDETERMINED, Decision.TOO_YOUNG)
)
# DSN actions that say the recipient got the mail: not a failed recipient.
_DELIVERED_ACTIONS: Final = frozenset(("delivered", "relayed", "expanded"))

# IMAP atom-char (RFC 3501): printable ASCII except atom-specials ( ) { SP % * " \ ]
_ATOM_RE: Final = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")

_DURATION_RE: Final = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
_UNIT_SECONDS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_AGE_RE: Final = re.compile(r"\s*(>=|<=|>|<)\s*(\S.*?)\s*")
_AGE_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_AGE_WORDS: Final = {
    ">": "older than {}",
    ">=": "at least {} old",
    "<": "younger than {}",
    "<=": "at most {} old",
}
_AGE_HINT: Final = 'write e.g. ">1d" (older than a day), "<2h", ">=30m"'

_KIND_WORDS: Final = {
    Kind.FAILED: "a failed-delivery NDR",
    Kind.DELAYED: "a delay NDR",
    Kind.AUTOREPLY: "an auto-reply",
    Kind.CHALLENGE_RESPONSE: "a challenge-response message",
    Kind.MDN: "a read receipt (MDN)",
    Kind.FEEDBACK_REPORT: "an abuse feedback report",
    Kind.DMARC_REPORT: "a DMARC report",
    Kind.TLSRPT_REPORT: "a TLS-RPT report",
    Kind.DELIVERY_SUCCESS: "a delivery-success notice",
    Kind.VIRUS_NOTICE: "a virus notice",
    Kind.NOT_NDR: "ordinary mail (no report of any kind)",
}
_DECISION_WORDS: Final = {
    Decision.OWN: "your own bounce (original in Sent)",
    Decision.BACKSCATTER: "backscatter",
    Decision.UNDETERMINED: "undetermined (no usable original Message-ID)",
    Decision.NOT_NDR: "not an NDR",
}


def _or(words: Iterable[str]) -> str:
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _and(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _addresses(header: str | None) -> list[str]:
    """Every address in a From/To header value, lower-cased (bare words kept as they are)."""
    if not header:
        return []
    found = [addr.strip().lower() for _, addr in getaddresses([header]) if addr.strip()]
    if not found:  # a header getaddresses cannot read: take whatever looks like an address
        found = [a.lower() for a in re.findall(r"[^\s<>,;\"()]+@[^\s<>,;\"()]+", header)]
    return found


def _glob_any(globs: Sequence[str], header: str | None) -> bool:
    return any(fnmatch.fnmatchcase(a, g) for a in _addresses(header) for g in globs)


def _parse_duration(text: str) -> float | None:
    t = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    m = _DURATION_RE.fullmatch(t)
    if not t or m is None:
        return None
    return sum(float(v) * _UNIT_SECONDS[u] for u, v in m.groupdict().items() if v is not None)


@dataclass(frozen=True, slots=True)
class AgeTest:
    """One ``age`` comparison, e.g. ``>1d``: true when Context.age (seconds) compares so."""

    op: str  # one of > >= < <=
    seconds: float
    text: str  # the duration as written, for describe()

    def __call__(self, age: float) -> bool:
        return _AGE_OPS[self.op](age, self.seconds)

    def describe(self) -> str:
        return _AGE_WORDS[self.op].format(self.text)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rule]]``: match keys (None: not given) and one action."""

    name: str
    action: Action  # KEEP, MOVE, DELETE or FLAG
    target: str | None = None  # the folder (MOVE) or keyword (FLAG)
    description: str | None = None
    kind: frozenset[Kind] | None = None
    decision: frozenset[Decision] | None = None
    bounce_from: tuple[str, ...] | None = None
    subject: re.Pattern[str] | None = None
    original_from: tuple[str, ...] | None = None
    original_to: tuple[str, ...] | None = None
    recipient_domain: tuple[str, ...] | None = None
    age: tuple[AgeTest, ...] | None = None
    reply_to_sent: bool | None = None
    source: str = ""  # the file it came from
    number: int = 0  # its place in that file, from 1

    def matches(self, verdict: Verdict, plan: Plan, ctx: Context) -> bool:
        """True when every match key given holds for this message."""
        if self.kind is not None and verdict.kind not in self.kind:
            return False
        if self.decision is not None and plan.decision not in self.decision:
            return False
        if self.reply_to_sent is not None and ctx.reply_in_sent is not self.reply_to_sent:
            return False
        if self.age is not None:
            age = ctx.age  # None: the arrival time is unknown, so no age test holds
            if age is None or not all(test(age) for test in self.age):
                return False
        if self.bounce_from is not None and not _glob_any(self.bounce_from, verdict.from_):
            return False
        if self.subject is not None and (
            verdict.subject is None or self.subject.search(verdict.subject) is None
        ):
            return False
        if self.original_from is not None and not _glob_any(
            self.original_from, verdict.original.from_
        ):
            return False
        if self.original_to is not None and not _glob_any(self.original_to, verdict.original.to):
            return False
        if self.recipient_domain is not None:
            domains = {
                r.address.rpartition("@")[2].strip().rstrip(".").lower()
                for r in verdict.recipients
                if "@" in r.address and (r.action or "").lower() not in _DELIVERED_ACTIONS
            }
            if not any(
                d == want or d.endswith("." + want)
                for d in domains
                for want in self.recipient_domain
            ):
                return False
        return True

    def apply(self, plan: Plan) -> Plan:
        """The built-in plan with this rule's action; the decision stays as it was."""
        dest = self.target if self.action in (Action.MOVE, Action.FLAG) else None
        return dataclasses.replace(
            plan,
            action=self.action,
            dest=dest,
            reason=f"rule {self.name}: {self.description or self.describe()}",
            rule=self.name,
        )

    @property
    def acts(self) -> bool:
        return self.action is not Action.KEEP

    def describe(self) -> str:
        """The rule in words: "If the message is ..., keep it." """
        conds: list[str] = []
        what = self._what()
        if what:
            conds.append(f"the message is {what}")
        if self.bounce_from is not None:
            conds.append(f"the report comes from {_or(self.bounce_from)}")
        if self.subject is not None:
            conds.append(f"the subject matches /{self.subject.pattern}/")
        if self.original_from is not None:
            conds.append(f"the original was sent from {_or(self.original_from)}")
        if self.original_to is not None:
            conds.append(f"the original was sent to {_or(self.original_to)}")
        if self.recipient_domain is not None:
            conds.append(f"a failed recipient is at {_or(self.recipient_domain)} (or a subdomain)")
        if self.reply_to_sent is True:
            conds.append("it replies to mail in your Sent folder")
        elif self.reply_to_sent is False:
            conds.append("it replies to mail that is not in your Sent folder (forged mail)")
        if self.age is not None:
            conds.append("it is " + " and ".join(t.describe() for t in self.age))
        return f"If {_and(conds)}, {self._do()}."

    def _what(self) -> str:
        kinds = self.kind
        decisions = self.decision
        if kinds is not None:
            if kinds == _NDR_KINDS:
                kind_text = "an NDR (failed or delayed)"
            elif kinds <= _NDR_KINDS:
                kind_text = f"an NDR ({_or(str(k) for k in Kind if k in kinds)})"
            else:
                kind_text = _or(_KIND_WORDS[k] for k in Kind if k in kinds)
        else:
            kind_text = ""
        if decisions is None:
            return kind_text
        if decisions == {Decision.NOT_NDR}:
            return kind_text or "not an NDR"
        judged = "judged " + _or(_DECISION_WORDS[d] for d in RULE_DECISIONS if d in decisions)
        if not kind_text:
            kind_text = "any message" if Decision.NOT_NDR in decisions else "an NDR"
        return f"{kind_text} {judged}"

    def _do(self) -> str:
        if self.action is Action.KEEP:
            return "keep it"
        if self.action is Action.MOVE:
            return f'move it to "{self.target}"'
        if self.action is Action.DELETE:
            return "delete it (move it to Trash)"
        return f"flag it {self.target} and leave it in place"

    def can_touch_own_bounces(self) -> bool:
        """True when the rule acts and nothing in it spares bounces of mail you really sent."""
        if not self.acts:
            return False
        if self.decision is not None and Decision.OWN not in self.decision:
            return False
        if self.kind is not None and not (self.kind & _NDR_KINDS):
            return False
        return self.reply_to_sent is None  # reply_to_sent only ever holds for non-NDRs


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in order; the first that matches decides. Usable as the RuleHook itself."""

    rules: tuple[Rule, ...] = ()

    def first_match(self, verdict: Verdict, plan: Plan, ctx: Context) -> Rule | None:
        for rule in self.rules:
            if rule.matches(verdict, plan, ctx):
                return rule
        return None

    def __call__(self, verdict: Verdict, plan: Plan, ctx: Context) -> Plan | None:
        rule = self.first_match(verdict, plan, ctx)
        return None if rule is None else rule.apply(plan)

    def hook(self) -> RuleHook | None:
        """The hook to give ``decide()``/``sweep_account()``; None when there are no rules."""
        return self if self.rules else None

    def __len__(self) -> int:
        return len(self.rules)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules)


# --------------------------------------------------------------------------- loading


class _Problem(Exception):
    """A bad value; the loader adds the file, the rule and the key."""


def _strings(v: object, what: str) -> tuple[str, ...]:
    """A string or a non-empty list of non-empty strings."""
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise _Problem(
            f"expected a string or a list of strings, got {type_name(v)}; write e.g. {what}"
        )
    if not items:
        raise _Problem(f"the list is empty; give at least one value, e.g. {what}")
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            where = "" if isinstance(v, str) else f"item {i + 1} "
            raise _Problem(f"{where}must be a non-empty string, got {item!r}; write e.g. {what}")
        out.append(item.strip())
    return tuple(dict.fromkeys(out))


def _kinds(v: object) -> frozenset[Kind]:
    values = _strings(v, '"failed" or ["autoreply", "challenge_response"]')
    out = set()
    for s in values:
        try:
            out.add(Kind(s.lower()))
        except ValueError:
            raise _Problem(
                f"{s!r} is not a kind; use one of {', '.join(k.value for k in Kind)}"
            ) from None
    return frozenset(out)


def _decisions(v: object) -> frozenset[Decision]:
    values = _strings(v, '"backscatter" or ["own", "undetermined"]')
    out = set()
    for s in values:
        if s.lower() == Decision.TOO_YOUNG:
            raise _Problem(
                "too_young is never given to rules (messages younger than min_age wait for the "
                f'next sweep); use one of {", ".join(RULE_DECISIONS)}, or age = "<1h"'
            )
        try:
            d = Decision(s.lower())
        except ValueError:
            d = None
        if d is None or d not in RULE_DECISIONS:
            raise _Problem(f"{s!r} is not a decision; use one of {', '.join(RULE_DECISIONS)}")
        out.add(d)
    return frozenset(out)


def _globs(v: object) -> tuple[str, ...]:
    values = _strings(v, '"*@example.com"')
    for g in values:
        if any(c.isspace() for c in g):
            raise _Problem(f"{g!r} has a space and would never match an address; remove it")
    return tuple(g.lower() for g in values)


def _domains(v: object) -> tuple[str, ...]:
    values = _strings(v, '"example.com" (subdomains match too)')
    out = []
    for raw in values:
        d = raw.lower().removeprefix("@").rstrip(".")
        if not re.fullmatch(r"[^\s@*?\[\]/]+", d) or d.startswith(".") or ".." in d:
            raise _Problem(
                f'{raw!r} is not a domain; write a plain domain such as "example.com" '
                "(subdomains match too, no wildcards)"
            )
        out.append(d)
    return tuple(dict.fromkeys(out))


def _regex(v: object) -> re.Pattern[str]:
    if not isinstance(v, str) or not v:
        raise _Problem(
            f'expected a regular expression string, got {v!r}; write e.g. "^Undeliverable"'
        )
    try:
        return re.compile(v, re.IGNORECASE)
    except re.error as exc:
        raise _Problem(
            f"{v!r} is not a valid regular expression ({exc}); fix it, or escape special "
            "characters with \\\\ (in TOML, '...' strings need no doubled backslashes)"
        ) from None


def _ages(v: object) -> tuple[AgeTest, ...]:
    values = _strings(v, '">1d"')
    tests = []
    for s in values:
        m = _AGE_RE.fullmatch(s)
        if m is None:
            raise _Problem(f"{s!r} has no comparison; {_AGE_HINT}")
        op, text = m.group(1), m.group(2)
        seconds = _parse_duration(text)
        if seconds is None:
            raise _Problem(f"{text!r} in {s!r} is not a duration; {_AGE_HINT} (units d, h, m, s)")
        tests.append(AgeTest(op, seconds, text))
    return tuple(tests)


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise _Problem(f"expected true or false, got {type_name(v)}")
    return v


def _folder(v: object) -> str:
    if not isinstance(v, str):
        raise _Problem(
            f'expected a folder name, got {type_name(v)}; write e.g. move = "NDR Review"'
        )
    if not v.strip():
        raise _Problem('the folder name is empty; write e.g. move = "NDR Review"')
    if _CONTROL_RE.search(v):
        raise _Problem(
            f"{v!r} holds a control character (line break or NUL) that IMAP cannot carry; remove it"
        )
    if v != v.strip():
        raise _Problem(f"{v!r} starts or ends with a space; remove it")
    return v


def _keyword(v: object) -> str:
    if not isinstance(v, str):
        raise _Problem(f'expected a keyword, got {type_name(v)}; write e.g. flag = "$NdrReview"')
    if v.startswith("\\"):
        raise _Problem(
            f"{v!r} is an IMAP system flag, which rules may not set; use a keyword such as "
            '"$NdrReview"'
        )
    if not _ATOM_RE.fullmatch(v):
        raise _Problem(
            f"{v!r} is not an IMAP keyword (letters, digits and $_-.+ only; no spaces, "
            'quotes, brackets, %, * or \\); write e.g. "$NdrReview"'
        )
    return v


def _true(key: str) -> Callable[[object], bool]:
    def check(v: object) -> bool:
        if v is not True:
            got = "false" if v is False else type_name(v)
            raise _Problem(f"{key} = {got} is not an action; write {key} = true, or remove the key")
        return True

    return check


_CHECKS: Final[dict[str, Callable[[object], object]]] = {
    "kind": _kinds,
    "decision": _decisions,
    "bounce_from": _globs,
    "subject": _regex,
    "original_from": _globs,
    "original_to": _globs,
    "recipient_domain": _domains,
    "age": _ages,
    "reply_to_sent": _bool,
    "keep": _true("keep"),
    "move": _folder,
    "delete": _true("delete"),
    "flag": _keyword,
}
_ACTION_OF: Final = {
    "keep": Action.KEEP,
    "move": Action.MOVE,
    "delete": Action.DELETE,
    "flag": Action.FLAG,
}


class _FileLoader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, number: int, name: str | None, key: str, problem: str) -> ConfigError:
        label = f"rule {number}" + (f" ({name})" if name else "")
        return ConfigError(f"{self.path}: {label}: {key}: {problem}")

    def load(self) -> RuleSet:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path}: no such rules file; fix the path in the account's rules = [...]"
            ) from None
        except IsADirectoryError:
            raise ConfigError(
                f"{self.path}: is a directory, not a rules file; name the .toml file in rules"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the rules file: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{self.path}: line {line}: not UTF-8 text; save it as UTF-8"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.path}: {toml_message(exc)}") from None
        return self.rules(data)

    def rules(self, data: Mapping[str, object]) -> RuleSet:
        for key in data:
            if key != "rule":
                raise ConfigError(
                    f"{self.path}: {key}: unknown key; a rules file holds only [[rule]] tables"
                    + (f" (did you mean [[rule]] for [[{key}]]?)" if key == "rules" else "")
                )
        raw_rules = data.get("rule", [])
        if isinstance(raw_rules, dict):
            raise ConfigError(
                f"{self.path}: rule: written as [rule]; write [[rule]] (two brackets) for each rule"
            )
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise ConfigError(f"{self.path}: rule: must be [[rule]] tables; see sample_rules/")
        rules: list[Rule] = []
        names: dict[str, int] = {}
        for index, table in enumerate(raw_rules, start=1):
            rule = self.rule(index, table)
            if rule.name in names:
                raise self.fail(
                    index,
                    rule.name,
                    "name",
                    f"{rule.name!r} is used by rule {names[rule.name]} too; names must be unique",
                )
            names[rule.name] = index
            rules.append(rule)
        return RuleSet(tuple(rules))

    def rule(self, number: int, table: Mapping[str, object]) -> Rule:
        raw_name = table.get("name")
        name: str | None = None
        if raw_name is not None:
            if not isinstance(raw_name, str) or not raw_name.strip():
                raise self.fail(
                    number,
                    None,
                    "name",
                    f'expected a non-empty string, got {raw_name!r}; write e.g. name = "newsletter"',
                )
            if _CONTROL_RE.search(raw_name):
                raise self.fail(
                    number, None, "name", f"{raw_name!r} holds a control character; remove it"
                )
            name = raw_name.strip()
        for key in table:
            if key not in _ALL_KEYS:
                raise self.fail(number, name, key, unknown_key(key, _ALL_KEYS))
        description = table.get("description")
        if description is not None and not isinstance(description, str):
            raise self.fail(
                number, name, "description", f"expected a string, got {type_name(description)}"
            )
        values: dict[str, object] = {}
        for key in (*MATCH_KEYS, *RULE_ACTIONS):
            if key in table:
                try:
                    values[key] = _CHECKS[key](table[key])
                except _Problem as exc:
                    raise self.fail(number, name, key, str(exc)) from None

        actions = [k for k in RULE_ACTIONS if k in values]
        if not actions:
            raise self.fail(
                number,
                name,
                "action",
                'missing; add one of keep = true, move = "FOLDER", delete = true, flag = "KEYWORD"',
            )
        if len(actions) > 1:
            raise self.fail(
                number,
                name,
                actions[1],
                f"{' and '.join(actions)} are both set; keep only one action",
            )
        if not any(k in values for k in MATCH_KEYS):
            raise self.fail(
                number,
                name,
                "match",
                f"no match key, so it would match every message; add at least one of "
                f"{', '.join(MATCH_KEYS)}",
            )
        action_key = actions[0]
        target = values[action_key] if action_key in ("move", "flag") else None
        rule = Rule(
            name=name or f"{self.path.name}#{number}",
            action=_ACTION_OF[action_key],
            target=target if isinstance(target, str) else None,
            description=(description.strip() or None) if isinstance(description, str) else None,
            source=str(self.path),
            number=number,
            kind=cast("frozenset[Kind] | None", values.get("kind")),
            decision=cast("frozenset[Decision] | None", values.get("decision")),
            bounce_from=cast("tuple[str, ...] | None", values.get("bounce_from")),
            subject=cast("re.Pattern[str] | None", values.get("subject")),
            original_from=cast("tuple[str, ...] | None", values.get("original_from")),
            original_to=cast("tuple[str, ...] | None", values.get("original_to")),
            recipient_domain=cast("tuple[str, ...] | None", values.get("recipient_domain")),
            age=cast("tuple[AgeTest, ...] | None", values.get("age")),
            reply_to_sent=cast("bool | None", values.get("reply_to_sent")),
        )
        self.check_reachable(rule, name)
        return rule

    def check_reachable(self, rule: Rule, name: str | None) -> None:
        """Refuse rules whose match keys contradict each other: they could never fire."""
        n = rule.number
        if rule.kind is not None and rule.decision is not None:
            if not (rule.kind & _NDR_KINDS) and not (rule.decision & {Decision.NOT_NDR}):
                raise self.fail(
                    n,
                    name,
                    "decision",
                    f"kind {_or(sorted(rule.kind))} is never an NDR, so its decision is always "
                    'not_ndr; use decision = "not_ndr" or remove decision',
                )
            if rule.kind <= _NDR_KINDS and rule.decision == {Decision.NOT_NDR}:
                raise self.fail(
                    n,
                    name,
                    "decision",
                    "failed and delayed reports are NDRs, so never not_ndr; use own, "
                    "backscatter or undetermined, or remove decision",
                )
        if rule.reply_to_sent is not None:
            ndr_only = (rule.kind is not None and rule.kind <= _NDR_KINDS) or (
                rule.decision is not None and not (rule.decision & {Decision.NOT_NDR})
            )
            if ndr_only:
                raise self.fail(
                    n,
                    name,
                    "reply_to_sent",
                    "is only known for auto-replies and other non-NDRs (NDRs are checked by "
                    "their original's Message-ID); remove it, or match kind = "
                    '["autoreply", "challenge_response"]',
                )


def load_rule_file(path: Path) -> RuleSet:
    """Read and check one rules file. Raises ConfigError with a one-line message."""
    return _FileLoader(Path(path)).load()


def load_rules(paths: Sequence[Path]) -> RuleSet:
    """All rule files of an account, concatenated in order. Names must be unique across them."""
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for path in paths:
        for rule in load_rule_file(Path(path)).rules:
            first = seen.get(rule.name)
            if first is not None:
                raise _FileLoader(Path(path)).fail(
                    rule.number,
                    rule.name,
                    "name",
                    f"{rule.name!r} is already used by rule {first.number} of {first.source}; "
                    "rename one of them (the journal records which rule acted)",
                )
            seen[rule.name] = rule
            rules.append(rule)
    return RuleSet(tuple(rules))


def explain_rules(ruleset: RuleSet) -> list[str]:
    """Lines for ``ndr-sweeper rules check FILE``: each rule in words, in the order tried.

    Lines starting with "   warning:" flag rules that can act on bounces of mail you really
    sent. Nothing is printed here; the caller shows the lines.
    """
    if not ruleset.rules:
        return ["No rules: the built-in decision applies to every message."]
    count = len(ruleset.rules)
    lines = [
        f"{count} rule{'s' if count != 1 else ''}, tried in this order; the first that matches "
        "decides:"
    ]
    for i, rule in enumerate(ruleset.rules, start=1):
        lines.append(f"{i}. {rule.name} ({Path(rule.source).name}, rule {rule.number}):")
        if rule.description:
            lines.append(f"   {rule.description}")
        lines.append(f"   {rule.describe()}")
        if rule.can_touch_own_bounces():
            lines.append(
                "   warning: this rule can act on bounces of mail you really sent (it fires "
                'whatever the Sent check found); add decision = "backscatter" to spare them'
            )
    lines.append(
        "Otherwise the built-in decision stands: your own bounces, undetermined NDRs and "
        "non-NDRs are kept; backscatter gets the account's action."
    )
    return lines
