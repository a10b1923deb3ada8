"""Rules: loading, validation messages, matching, actions, wording, and the sample files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ndr_sweeper.actions.plan import Action, Context, Decision, Plan, Policy, decide
from ndr_sweeper.classify.verdict import Kind, Original, Recipient, Verdict
from ndr_sweeper.errors import ConfigError
from ndr_sweeper.rules import Rule, RuleSet, explain_rules, load_rule_file, load_rules

SAMPLES = Path(__file__).resolve().parent.parent / "sample_rules"
POLICY = Policy(action="move", junk_folder="Junk", trash_folder="Trash", min_age=900.0)
HOUR = 3600.0


# ---------------------------------------------------------------- helpers


def ndr(
    *,
    kind: Kind = Kind.FAILED,
    original_id: str | None = "forged-1@example.net",
    original_from: str | None = "Me <me@example.com>",
    original_to: str | None = "victim@example.org",
    subject: str | None = "Undelivered Mail Returned to Sender",
    from_: str | None = "Mail Delivery System <MAILER-DAEMON@mx.example.org>",
    recipients: tuple[Recipient, ...] = (Recipient("victim@example.org", "5.1.1", "failed"),),
) -> Verdict:
    return Verdict(
        kind=kind,
        detector="test",
        original=Original(message_id=original_id, from_=original_from, to=original_to),
        recipients=recipients,
        subject=subject,
        from_=from_,
        message_id="report-1@mx.example.org",
    )


def autoreply(kind: Kind = Kind.AUTOREPLY) -> Verdict:
    return Verdict(
        kind=kind,
        detector="test",
        subject="Out of office: your message",
        from_="Someone <someone@example.org>",
        reply_to_ids=("forged-2@example.net",),
    )


def run(
    ruleset: RuleSet,
    verdict: Verdict,
    *,
    in_sent: bool = False,
    age: float = 2 * HOUR,
    reply_in_sent: bool | None = None,
) -> Plan:
    """The plan decide() makes with these rules: the built-in one, or the rule's."""
    sent = verdict.original.message_id if in_sent and verdict.original.message_id else None
    return decide(
        "INBOX", 7, verdict, sent, age, POLICY, ruleset.hook(), reply_in_sent=reply_in_sent
    )


def rules_from(tmp_path: Path, text: str, name: str = "rules.toml") -> RuleSet:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return load_rule_file(p)


def one_rule(tmp_path: Path, body: str, action: str = "keep = true") -> RuleSet:
    return rules_from(tmp_path, f'[[rule]]\nname = "r"\n{body}\n{action}\n')


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        rules_from(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def matches(ruleset: RuleSet, verdict: Verdict, **kw: object) -> bool:
    plan = decide("INBOX", 7, verdict, None, kw.pop("age", 2 * HOUR), POLICY)  # type: ignore[arg-type]
    ctx = Context(age=kw.pop("ctx_age", 2 * HOUR), reply_in_sent=kw.pop("reply_in_sent", None))  # type: ignore[arg-type]
    return ruleset.first_match(verdict, plan, ctx) is not None


# ---------------------------------------------------------------- order and hook


def test_first_match_wins(tmp_path: Path) -> None:
    rs = rules_from(
        tmp_path,
        """
[[rule]]
name = "first"
kind = "failed"
keep = true

[[rule]]
name = "second"
kind = "failed"
move = "Elsewhere"
""",
    )
    plan = run(rs, ndr())
    assert plan.rule == "first"
    assert plan.action is Action.KEEP
    built_in = decide("INBOX", 7, ndr(), None, 2 * HOUR, POLICY)
    assert rs.first_match(ndr(), built_in, Context(2 * HOUR)) is rs.rules[0]


def test_no_match_leaves_builtin_plan(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'kind = "delayed"')
    v = ndr()
    built_in = decide("INBOX", 7, v, None, 2 * HOUR, POLICY)
    assert rs.first_match(v, built_in, Context(2 * HOUR)) is None
    assert rs(v, built_in, Context(2 * HOUR)) is None
    assert run(rs, v) == built_in
    assert built_in.action is Action.MOVE and built_in.dest == "Junk"


def test_empty_ruleset_has_no_hook(tmp_path: Path) -> None:
    assert rules_from(tmp_path, "# nothing yet\n").hook() is None
    assert RuleSet().first_match(ndr(), run(RuleSet(), ndr()), Context(0)) is None


def test_too_young_never_reaches_rules(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'kind = "failed"', 'move = "X"')
    plan = run(rs, ndr(), age=60)
    assert plan.decision is Decision.TOO_YOUNG
    assert plan.rule is None and plan.action is Action.KEEP


def test_plan_keeps_folder_uid_ids_and_decision(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'decision = "backscatter"\ndescription = "why not"', 'move = "NDR"')
    built_in = decide("INBOX", 7, ndr(), None, 2 * HOUR, POLICY)
    plan = run(rs, ndr())
    assert plan == dataclasses.replace(
        built_in, action=Action.MOVE, dest="NDR", reason="rule r: why not", rule="r"
    )


def test_reason_without_description_is_the_rule_in_words(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'decision = "own"')
    plan = run(rs, ndr(), in_sent=True)
    assert (
        plan.reason
        == "rule r: If the message is an NDR judged your own bounce (original in Sent), keep it."
    )
    assert plan.decision is Decision.OWN


def test_default_name_is_file_and_number(tmp_path: Path) -> None:
    rs = rules_from(
        tmp_path,
        '[[rule]]\nkind = "delayed"\nkeep = true\n[[rule]]\nkind = "failed"\nkeep = true\n',
        name="mine.toml",
    )
    assert [r.name for r in rs.rules] == ["mine.toml#1", "mine.toml#2"]
    assert run(rs, ndr()).rule == "mine.toml#2"


def test_load_rules_concatenates_files_in_order(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[[rule]]\nname = "a"\nkind = "delayed"\nkeep = true\n')
    b.write_text('[[rule]]\nname = "b"\nkind = "failed"\nkeep = true\n')
    rs = load_rules([a, b])
    assert [r.name for r in rs.rules] == ["a", "b"]
    assert [r.name for r in load_rules([b, a]).rules] == ["b", "a"]
    assert load_rules([]).rules == ()


def test_same_name_in_two_files_is_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[[rule]]\nname = "x"\nkind = "delayed"\nkeep = true\n')
    b.write_text('[[rule]]\nname = "x"\nkind = "failed"\nkeep = true\n')
    with pytest.raises(ConfigError) as info:
        load_rules([a, b])
    msg = str(info.value)
    assert msg.startswith(f"{b}: rule 1 (x): name:")
    assert str(a) in msg


# ---------------------------------------------------------------- match keys


@pytest.mark.parametrize(
    ("body", "verdict", "expected"),
    [
        ('kind = "failed"', ndr(), True),
        ('kind = "delayed"', ndr(), False),
        ('kind = ["delayed", "failed"]', ndr(), True),
        ('kind = "autoreply"', autoreply(), True),
        ('kind = "not_ndr"', autoreply(), False),
        ('bounce_from = "mailer-daemon@*"', ndr(), True),
        ('bounce_from = "*@MX.EXAMPLE.ORG"', ndr(), True),
        ('bounce_from = ["*@amazonses.com", "postmaster@*"]', ndr(), False),
        ('bounce_from = "*@amazonses.com"', ndr(from_=None), False),
        ('subject = "returned to sender"', ndr(), True),
        ('subject = "^Undelivered"', ndr(), True),
        ('subject = "^Mail"', ndr(), False),
        ('subject = "x"', ndr(subject=None), False),
        ('original_from = "*@example.com"', ndr(), True),
        ('original_from = "*@news.example.com"', ndr(), False),
        ('original_from = "ME@example.com"', ndr(), True),
        ('original_to = "*@example.org"', ndr(), True),
        ('original_to = "b@x.org"', ndr(original_to="a@x.org, B <b@x.org>"), True),
        ('original_to = "c@x.org"', ndr(original_to="a@x.org, B <b@x.org>"), False),
        ('original_to = "*@x.org"', ndr(original_to=None), False),
        ('recipient_domain = "example.org"', ndr(), True),
        ('recipient_domain = "ORG"', ndr(), True),
        ('recipient_domain = "@example.org"', ndr(), True),
        ('recipient_domain = "ample.org"', ndr(), False),
        ('recipient_domain = "mail.example.org"', ndr(), False),
        (
            'recipient_domain = "example.org"',
            ndr(recipients=(Recipient("v@example.org", action="delivered"),)),
            False,
        ),
        ('recipient_domain = "example.org"', ndr(recipients=(Recipient("v@example.org"),)), True),
        ('recipient_domain = "example.org"', ndr(recipients=()), False),
    ],
)
def test_match_keys(tmp_path: Path, body: str, verdict: Verdict, expected: bool) -> None:
    assert matches(one_rule(tmp_path, body), verdict) is expected


def test_recipient_domain_subdomain(tmp_path: Path) -> None:
    v = ndr(recipients=(Recipient("a@mail.example.org", action="failed"),))
    assert matches(one_rule(tmp_path, 'recipient_domain = "example.org"'), v)
    assert matches(one_rule(tmp_path, 'recipient_domain = "mail.example.org"'), v)


@pytest.mark.parametrize(
    ("body", "in_sent", "original_id", "expected"),
    [
        ('decision = "backscatter"', False, "x@y", True),
        ('decision = "backscatter"', True, "x@y", False),
        ('decision = "own"', True, "x@y", True),
        ('decision = "undetermined"', False, None, True),
        ('decision = ["own", "undetermined"]', False, "x@y", False),
        ('decision = ["own", "undetermined"]', False, None, True),
    ],
)
def test_decision(
    tmp_path: Path, body: str, in_sent: bool, original_id: str | None, expected: bool
) -> None:
    rs = one_rule(tmp_path, body, 'flag = "$Hit"')
    plan = run(rs, ndr(original_id=original_id), in_sent=in_sent)
    assert (plan.rule == "r") is expected


def test_decision_not_ndr(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'decision = "not_ndr"', 'flag = "$Hit"')
    assert run(rs, autoreply()).rule == "r"
    assert run(rs, ndr()).rule is None


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (">1d", False),
        (">1h", True),
        (">=2h", True),
        (">2h", False),
        ("<2h", False),
        ("<=2h", True),
        ("< 3h", True),
        (">7200", False),
        (">1h30m", True),
        ('[">1h", "<3h"]', True),
        ('[">1h", "<90m"]', False),
    ],
)
def test_age(tmp_path: Path, age: str, expected: bool) -> None:
    value = age if age.startswith("[") else f'"{age}"'
    assert matches(one_rule(tmp_path, f"age = {value}"), ndr(), ctx_age=2 * HOUR) is expected


@pytest.mark.parametrize(
    ("value", "reply_in_sent", "expected"),
    [
        ("false", False, True),
        ("false", True, False),
        ("false", None, False),
        ("true", True, True),
        ("true", False, False),
        ("true", None, False),
    ],
)
def test_reply_to_sent(
    tmp_path: Path, value: str, reply_in_sent: bool | None, expected: bool
) -> None:
    rs = one_rule(tmp_path, f"reply_to_sent = {value}", 'move = "Junk"')
    plan = run(rs, autoreply(), reply_in_sent=reply_in_sent)
    assert (plan.rule == "r") is expected


def test_all_given_keys_must_match(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'kind = "failed"\noriginal_from = "*@example.com"\nage = ">1d"')
    assert not matches(rs, ndr(), ctx_age=2 * HOUR)
    assert matches(rs, ndr(), ctx_age=3 * 86400)
    assert not matches(rs, ndr(original_from="x@other.net"), ctx_age=3 * 86400)


# ---------------------------------------------------------------- actions


@pytest.mark.parametrize(
    ("action", "expected_action", "expected_dest"),
    [
        ("keep = true", Action.KEEP, None),
        ('move = "NDR Review"', Action.MOVE, "NDR Review"),
        ('move = "INBOX/Bounces/Ünïcode"', Action.MOVE, "INBOX/Bounces/Ünïcode"),
        ("delete = true", Action.DELETE, None),
        ('flag = "$NdrReview"', Action.FLAG, "$NdrReview"),
    ],
)
def test_actions(
    tmp_path: Path, action: str, expected_action: Action, expected_dest: str | None
) -> None:
    rs = one_rule(tmp_path, 'kind = "failed"', action)
    plan = run(rs, ndr())
    assert plan.action is expected_action
    assert plan.dest == expected_dest  # DELETE: dest None; the sweep fills in Trash
    assert plan.rule == "r"
    assert plan.decision is Decision.BACKSCATTER
    assert plan.acts is (expected_action is not Action.KEEP)


def test_rule_can_act_on_non_ndr_and_decision_stays(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'kind = "challenge_response"', "delete = true")
    plan = run(rs, autoreply(Kind.CHALLENGE_RESPONSE))
    assert plan.decision is Decision.NOT_NDR
    assert plan.action is Action.DELETE and plan.dest is None


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('kind = "bounce"', "kind", "not a kind"),
        ("kind = 3", "kind", "expected a string or a list"),
        ("kind = []", "kind", "empty"),
        ('kind = ["failed", 2]', "kind", "item 2"),
        ('decision = "maybe"', "decision", "not a decision"),
        ('decision = "too_young"', "decision", "never given to rules"),
        ("bounce_from = true", "bounce_from", "expected a string"),
        ('bounce_from = "a b@x"', "bounce_from", "space"),
        ('subject = "(unclosed"', "subject", "not a valid regular expression"),
        ("subject = 5", "subject", "regular expression"),
        ('original_from = ""', "original_from", "non-empty"),
        ("original_to = {a = 1}", "original_to", "got a table"),
        ('recipient_domain = "*.example.org"', "recipient_domain", "not a domain"),
        ('recipient_domain = "a@b.org"', "recipient_domain", "not a domain"),
        ('age = "1d"', "age", "no comparison"),
        ('age = ">soon"', "age", "not a duration"),
        ('age = "=1d"', "age", "no comparison"),
        ('reply_to_sent = "no"', "reply_to_sent", "true or false"),
        ('colour = "red"', "colour", "unknown key"),
        ('orginal_from = "*@x"', "orginal_from", "did you mean 'original_from'"),
        ('description = 3\nkind = "failed"', "description", "expected a string"),
    ],
)
def test_validation_errors_name_file_rule_and_key(
    tmp_path: Path, body: str, key: str, words: str
) -> None:
    text = (
        '[[rule]]\nkind = "delayed"\nkeep = true\n\n'
        '[[rule]]\nkind = "failed"\nkeep = true\n\n'
        f'[[rule]]\nname = "third"\n{body}\nkeep = true\n'
    )
    msg = error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'rules.toml'}: rule 3 (third): {key}: "), msg
    assert words in msg


@pytest.mark.parametrize(
    ("action", "key", "words"),
    [
        ("", "action", "missing; add one of keep = true"),
        ('keep = true\nmove = "X"', "move", "keep and move are both set"),
        ('delete = true\nflag = "$X"', "flag", "delete and flag are both set"),
        ("keep = false", "keep", "keep = false is not an action"),
        ('delete = "yes"', "delete", "not an action"),
        ('move = ""', "move", "empty"),
        ("move = 1", "move", "expected a folder name"),
        ('move = "Bad\\nName"', "move", "control character"),
        ('move = "Bad\\rName"', "move", "control character"),
        ('move = "Bad\\u0000Name"', "move", "control character"),
        ('move = " Junk"', "move", "space"),
        ('flag = "\\\\Deleted"', "flag", "system flag"),
        ('flag = "\\\\Seen"', "flag", "system flag"),
        ('flag = "two words"', "flag", "not an IMAP keyword"),
        ('flag = "a(b"', "flag", "not an IMAP keyword"),
        ('flag = "a*"', "flag", "not an IMAP keyword"),
        ('flag = "a]"', "flag", "not an IMAP keyword"),
        ('flag = "a\\"b"', "flag", "not an IMAP keyword"),
        ('flag = "Ünï"', "flag", "not an IMAP keyword"),
        ('flag = ""', "flag", "not an IMAP keyword"),
    ],
)
def test_action_errors(tmp_path: Path, action: str, key: str, words: str) -> None:
    msg = error(tmp_path, f'[[rule]]\nname = "r"\nkind = "failed"\n{action}\n')
    assert msg.startswith(f"{tmp_path / 'rules.toml'}: rule 1 (r): {key}: "), msg
    assert words in msg


def test_rule_without_match_key(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[rule]]\nname = "all"\ndescription = "everything"\nmove = "X"\n')
    assert msg.startswith(f"{tmp_path / 'rules.toml'}: rule 1 (all): match: no match key")


def test_unnamed_rule_error_has_number_only(tmp_path: Path) -> None:
    msg = error(
        tmp_path, '[[rule]]\nkind = "failed"\nkeep = true\n[[rule]]\nkind = "x"\nkeep = true\n'
    )
    assert msg.startswith(f"{tmp_path / 'rules.toml'}: rule 2: kind: ")


def test_bad_name(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[rule]]\nname = 3\nkind = "failed"\nkeep = true\n')
    assert ": rule 1: name: expected a non-empty string" in msg
    msg = error(
        tmp_path,
        '[[rule]]\nname = "d"\nkind = "failed"\nkeep = true\n'
        '[[rule]]\nname = "d"\nkind = "delayed"\nkeep = true\n',
    )
    assert ": rule 2 (d): name: 'd' is used by rule 1 too" in msg


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('kind = "autoreply"\ndecision = "backscatter"', "decision"),
        ('kind = "failed"\ndecision = "not_ndr"', "decision"),
        ('kind = "failed"\nreply_to_sent = false', "reply_to_sent"),
        ('decision = "backscatter"\nreply_to_sent = false', "reply_to_sent"),
    ],
)
def test_contradictions_never_match_and_are_refused(tmp_path: Path, body: str, key: str) -> None:
    msg = error(tmp_path, f'[[rule]]\nname = "r"\n{body}\nkeep = true\n')
    assert f": rule 1 (r): {key}: " in msg


def test_bad_toml_gives_line(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[rule]]\nname = "r"\nkind = failed\nkeep = true\n')
    assert msg.startswith(f"{tmp_path / 'rules.toml'}: line 3, column")
    assert "invalid TOML" in msg


def test_file_level_errors(tmp_path: Path) -> None:
    assert "[[rule]] (two brackets)" in error(tmp_path, '[rule]\nkind = "failed"\nkeep = true\n')
    assert ": rules: unknown key" in error(tmp_path, '[[rules]]\nkind = "failed"\nkeep = true\n')
    assert "rule: must be [[rule]] tables" in error(tmp_path, "rule = 3\n")
    with pytest.raises(ConfigError, match="no such rules file"):
        load_rule_file(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b'# caf\xe9\n[[rule]]\nkind = "failed"\nkeep = true\n')
    with pytest.raises(ConfigError, match=r"latin1.toml: line 1: not UTF-8"):
        load_rule_file(tmp_path / "latin1.toml")


# ---------------------------------------------------------------- wording


@pytest.mark.parametrize(
    ("body", "action", "words"),
    [
        (
            'kind = ["failed", "delayed"]\ndecision = "backscatter"\n'
            'original_from = "*@news.example.com"',
            "keep = true",
            "If the message is an NDR (failed or delayed) judged backscatter and the original "
            "was sent from *@news.example.com, keep it.",
        ),
        (
            'decision = "undetermined"',
            'move = "NDR Review"',
            "If the message is an NDR judged undetermined (no usable original Message-ID), "
            'move it to "NDR Review".',
        ),
        (
            'kind = ["autoreply", "challenge_response"]\nreply_to_sent = false',
            'move = "Junk"',
            "If the message is an auto-reply or a challenge-response message and it replies to "
            'mail that is not in your Sent folder (forged mail), move it to "Junk".',
        ),
        (
            'bounce_from = ["*@amazonses.com", "*@sendgrid.net"]\nage = [">1d", "<=7d"]',
            "delete = true",
            "If the report comes from *@amazonses.com or *@sendgrid.net and it is older than 1d "
            "and at most 7d old, delete it (move it to Trash).",
        ),
        (
            'kind = "delayed"\nrecipient_domain = "example.org"\nsubject = "^Delay"',
            'flag = "$Late"',
            "If the message is an NDR (delayed), the subject matches /^Delay/ and a failed "
            "recipient is at example.org (or a subdomain), flag it $Late and leave it in place.",
        ),
        (
            'original_to = "boss@example.com"\nreply_to_sent = true\nage = "<30m"',
            "keep = true",
            "If the original was sent to boss@example.com, it replies to mail in your Sent "
            "folder and it is younger than 30m, keep it.",
        ),
        (
            'decision = "not_ndr"\nkind = "mdn"',
            "keep = true",
            "If the message is a read receipt (MDN), keep it.",
        ),
    ],
)
def test_describe(tmp_path: Path, body: str, action: str, words: str) -> None:
    assert one_rule(tmp_path, body, action).rules[0].describe() == words


def test_explain_rules(tmp_path: Path) -> None:
    rs = rules_from(
        tmp_path,
        '[[rule]]\nname = "safe"\ndescription = "Keep these."\ndecision = "own"\n'
        'kind = "failed"\nkeep = true\n\n'
        '[[rule]]\nsubject = "Undeliverable"\nmove = "Junk"\n',
    )
    lines = explain_rules(rs)
    assert lines[0].startswith("2 rules, tried in this order")
    assert lines[1] == "1. safe (rules.toml, rule 1):"
    assert lines[2] == "   Keep these."
    assert lines[3].startswith("   If the message is an NDR (failed) judged your own bounce")
    assert lines[4] == "2. rules.toml#2 (rules.toml, rule 2):"
    assert lines[5] == '   If the subject matches /Undeliverable/, move it to "Junk".'
    assert lines[6].startswith("   warning: this rule can act on bounces of mail you really sent")
    assert lines[-1].startswith("Otherwise the built-in decision stands")
    assert explain_rules(RuleSet()) == ["No rules: the built-in decision applies to every message."]


@pytest.mark.parametrize(
    ("body", "action", "warns"),
    [
        ('subject = "x"', 'move = "Junk"', True),
        ('subject = "x"', "keep = true", False),
        ('subject = "x"\ndecision = "backscatter"', 'move = "Junk"', False),
        ('kind = "failed"', "delete = true", True),
        ('kind = "autoreply"', "delete = true", False),
        ('kind = "autoreply"\nreply_to_sent = false', 'move = "Junk"', False),
        ('decision = ["own", "backscatter"]', 'flag = "$X"', True),
    ],
)
def test_own_bounce_warning(tmp_path: Path, body: str, action: str, warns: bool) -> None:
    rule: Rule = one_rule(tmp_path, body, action).rules[0]
    assert rule.can_touch_own_bounces() is warns


# ---------------------------------------------------------------- sample files


def test_every_sample_is_tested_and_loads_together() -> None:
    names = sorted(p.name for p in SAMPLES.glob("*.toml"))
    assert names == [
        "autoreplies-to-forged-mail.toml",
        "keep-newsletter-bounces.toml",
        "review-undetermined.toml",
        "subject-keywords-legacy.toml",
    ]
    rs = load_rules(sorted(SAMPLES.glob("*.toml")))
    assert len(rs.rules) == 4
    assert all(line.strip() for line in explain_rules(rs))
    assert (SAMPLES / "README.md").is_file()


def test_sample_keep_newsletter_bounces() -> None:
    rs = load_rule_file(SAMPLES / "keep-newsletter-bounces.toml")
    newsletter = ndr(original_from="News <letter@news.example.com>")
    # Backscatter by the built-in check (not in Sent), but it is our newsletter: kept.
    plan = run(rs, newsletter)
    assert plan.decision is Decision.BACKSCATTER
    assert plan.action is Action.KEEP and plan.rule == "newsletter-bounces"
    # Forged mail from another address is still moved as backscatter.
    forged = run(rs, ndr(original_from="me@example.com"))
    assert forged.action is Action.MOVE and forged.dest == "Junk" and forged.rule is None
    # Own bounces are kept by the built-in decision, not by this rule.
    assert run(rs, newsletter, in_sent=True).rule is None


def test_sample_review_undetermined() -> None:
    rs = load_rule_file(SAMPLES / "review-undetermined.toml")
    plan = run(rs, ndr(original_id=None))
    assert plan.decision is Decision.UNDETERMINED
    assert plan.action is Action.MOVE and plan.dest == "NDR Review"
    # Own bounces and backscatter: the built-in decision.
    assert run(rs, ndr(), in_sent=True).action is Action.KEEP
    backscatter = run(rs, ndr())
    assert backscatter.rule is None and backscatter.dest == "Junk"


@pytest.mark.parametrize("kind", [Kind.AUTOREPLY, Kind.CHALLENGE_RESPONSE])
def test_sample_autoreplies_to_forged_mail(kind: Kind) -> None:
    rs = load_rule_file(SAMPLES / "autoreplies-to-forged-mail.toml")
    # A reply whose In-Reply-To/References name nothing in Sent: forged, moved to Junk.
    plan = run(rs, autoreply(kind), reply_in_sent=False)
    assert plan.action is Action.MOVE and plan.dest == "Junk"
    assert plan.decision is Decision.NOT_NDR and plan.rule == "autoreplies-to-forged-mail"
    # Replies to your real mail, and replies that name no message, are untouched.
    for reply_in_sent in (True, None):
        kept = run(rs, autoreply(kind), reply_in_sent=reply_in_sent)
        assert kept.action is Action.KEEP and kept.rule is None
    # Other non-NDRs are not touched either.
    assert run(rs, autoreply(Kind.MDN), reply_in_sent=False).rule is None


@pytest.mark.parametrize(
    "subject",
    [
        "Undeliverable: Quarterly report",
        "Returned mail: see transcript for details",
        "Mail delivery failed: returning message to sender",
        "Delivery Status Notification (Failure)",
    ],
)
def test_sample_subject_keywords_legacy_throws_away_real_bounces(subject: str) -> None:
    rs = load_rule_file(SAMPLES / "subject-keywords-legacy.toml")
    # The warning in the file's comment: a bounce of mail you really sent (in Sent) is moved
    # to Junk too, because the rule fires whatever the Sent check found.
    own = run(rs, ndr(subject=subject), in_sent=True)
    assert own.decision is Decision.OWN
    assert own.action is Action.MOVE and own.dest == "Junk"
    assert rs.rules[0].can_touch_own_bounces()
    assert any("warning:" in line for line in explain_rules(rs))


def test_sample_subject_keywords_legacy_misses_other_subjects() -> None:
    rs = load_rule_file(SAMPLES / "subject-keywords-legacy.toml")
    assert run(rs, ndr(subject="Delivery Status Notification (Delay)")).rule is None
    assert run(rs, ndr(subject="Undelivered Mail Returned to Sender")).rule is None
