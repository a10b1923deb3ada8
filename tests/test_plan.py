"""The pure decision step."""

from __future__ import annotations

from ndr_sweeper.actions.plan import Action, Decision, Policy, decide, is_mine
from ndr_sweeper.classify import Kind, Original, Verdict


def ndr(original_from: str | None = "Me <me@example.org>", oid: str | None = "o@x") -> Verdict:
    return Verdict(
        kind=Kind.FAILED,
        detector="test",
        original=Original(message_id=oid, from_=original_from),
        message_id="b@mx",
    )


POLICY = Policy(action="move", junk_folder="Junk", min_age=0)


def test_the_built_in_decisions() -> None:
    assert decide("INBOX", 1, ndr(), "o@x", 60, POLICY).decision is Decision.OWN
    bs = decide("INBOX", 1, ndr(), None, 60, POLICY)
    assert (bs.decision, bs.action, bs.dest) == (Decision.BACKSCATTER, Action.MOVE, "Junk")
    assert decide("INBOX", 1, ndr(oid=None), None, 60, POLICY).decision is Decision.UNDETERMINED
    young = decide("INBOX", 1, ndr(), None, 60, Policy(junk_folder="Junk", min_age=900))
    assert young.decision is Decision.TOO_YOUNG and young.action is Action.KEEP
    other = Verdict(kind=Kind.AUTOREPLY, detector="test")
    assert decide("INBOX", 1, other, None, 60, POLICY).action is Action.KEEP


def test_my_addresses_keep_bounces_of_mail_someone_else_sent() -> None:
    mine = Policy(action="move", junk_folder="Junk", min_age=0, my_addresses=("@example.org",))
    assert decide("INBOX", 1, ndr(), None, 60, mine).decision is Decision.BACKSCATTER
    theirs = decide("INBOX", 1, ndr("Kim <kim@elsewhere.net>"), None, 60, mine)
    assert theirs.decision is Decision.UNDETERMINED and theirs.action is Action.KEEP
    assert "my_addresses" in theirs.reason
    # No From in the bounce: nothing to compare, the Sent check decides alone.
    assert decide("INBOX", 1, ndr(None), None, 60, mine).decision is Decision.BACKSCATTER


def test_is_mine_matches_addresses_and_domains_case_insensitively() -> None:
    assert is_mine("Me <ME@Example.ORG>", ("me@example.org",)) is True
    assert is_mine("a@sub.example.org", ("@example.org",)) is False
    assert is_mine("a@example.org, b@x.net", ("@example.org",)) is True
    assert is_mine("undisclosed-recipients:;", ("@example.org",)) is None
