"""Sent does not reach back as far as the inbox (issue 12): a bounce of mail sent before the
oldest message of the Sent folders cannot be checked against them and is kept as undetermined,
counted and reported; archive folders (archive_folders) extend the reach, counting only mail
sent from the user's addresses; when old Sent mail is deleted, the reach is read again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ndr_sweeper.config import Account
from ndr_sweeper.mailbox.memory import DEFAULT_FOLDERS, MemoryMailbox
from ndr_sweeper.state import open_state
from ndr_sweeper.sweep import sweep_account

import bounces

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def dated(raw: bytes, when: datetime) -> bytes:
    """`raw` (from bounces) with every Date header set to `when` (the original's too)."""
    from email.utils import format_datetime

    old = b"Date: " + format_datetime(datetime(2026, 11, 20, 9, 30, tzinfo=UTC)).encode()
    return raw.replace(old, b"Date: " + format_datetime(when).encode())


def sent_copy(mid: str, when: datetime, sender: str = "me@example.org") -> bytes:
    return dated(bounces.original(mid, sender=sender), when)


def bounce_of(mid: str, sent: datetime) -> bytes:
    """A DSN whose attached original was sent at `sent` (it arrives an hour later)."""
    return dated(bounces.dsn(mid, bounce_id=bounces.new_id("b")), sent)


def account(**kw: object) -> Account:
    base: dict[str, object] = dict(
        name="t", host="127.0.0.1", username="me@example.org", security="plain", min_age=0.0
    )
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


@pytest.fixture
def state(tmp_path: Path):
    with open_state(tmp_path / "state") as db:
        yield db


def sweep(mb: MemoryMailbox, state, **kw):  # type: ignore[no-untyped-def]
    def factory(_a: Account) -> MemoryMailbox:
        mb.logged_out = False
        return mb

    acc = account(**kw)
    return sweep_account(acc, state, factory, now=lambda: NOW)


def where(mb: MemoryMailbox, folder: str) -> list[str]:
    import re

    out = []
    for m in mb.contents(folder).values():
        found = re.search(rb"^Message-ID: <([^>]+)>", m.data, re.M)
        out.append(found.group(1).decode() if found else "?")
    return out


class Box(MemoryMailbox):
    """Bounces arrive an hour after their original was sent; other mail arrives when dated."""

    def deliver(self, folder: str, raw: bytes, when: datetime) -> int:
        return self.add_message(folder, raw, internaldate=when + timedelta(hours=1))

    def bounce(self, mid: str, sent: datetime) -> int:
        """Into INBOX: the bounce of `mid`, sent at `sent`."""
        return self.deliver("INBOX", bounce_of(mid, sent), sent)


def mailbox(**folders: str | None) -> Box:
    return Box(folders={**DEFAULT_FOLDERS, **folders})


def test_a_bounce_older_than_sent_is_kept_and_counted(state) -> None:
    mb = mailbox()
    y2024 = datetime(2024, 3, 1, tzinfo=UTC)
    mb.add_message("Sent", sent_copy(bounces.new_id("recent"), y2024))
    old = bounce_of(bounces.new_id("archived-away"), datetime(2021, 6, 1, tzinfo=UTC))
    new = bounce_of(bounces.new_id("forged"), datetime(2025, 6, 1, tzinfo=UTC))
    mb.deliver("INBOX", old, datetime(2021, 6, 1, tzinfo=UTC))
    mb.deliver("INBOX", new, datetime(2025, 6, 1, tzinfo=UTC))
    r = sweep(mb, state)
    assert r.error is None, r.error
    assert (r.backscatter, r.acted, r.undetermined, r.too_old) == (1, 1, 1, 1)
    assert len(mb.contents("INBOX")) == 1 and len(mb.contents("Junk")) == 1
    (note,) = [n for n in r.notes if "cannot be checked" in n]
    assert "2024-03-01" in note and "archive_folders" in note
    (kept,) = [d for d in r.decisions if d.too_old]
    assert kept.decision == "undetermined" and "sent before 2024-03-01" in kept.reason


@pytest.mark.parametrize("archived", [True, False])
def test_archive_folders_reach_further_back(state, archived: bool) -> None:
    """The old original sits in the \\Archive folder (sent from me): the bounce is the user's
    own. Not there: the archive reaches back, so it is backscatter. Received mail in the
    archive does not count."""
    mb = mailbox(Archive="\\Archive")
    mb.add_message("Sent", sent_copy(bounces.new_id("recent"), datetime(2024, 3, 1, tzinfo=UTC)))
    mb.add_message("Archive", sent_copy(bounces.new_id("oldest"), datetime(2019, 1, 1, tzinfo=UTC)))
    orig = bounces.new_id("in-archive")
    if archived:
        mb.add_message("Archive", sent_copy(orig, datetime(2021, 6, 1, tzinfo=UTC)))
    # received mail in the archive, older still: it says nothing of what was sent
    mb.add_message(
        "Archive", sent_copy(bounces.new_id("x"), datetime(2010, 1, 1, tzinfo=UTC), "a@b.example")
    )
    mb.deliver(
        "INBOX", bounce_of(orig, datetime(2021, 6, 1, tzinfo=UTC)), datetime(2021, 6, 1, tzinfo=UTC)
    )
    mb.deliver(
        "INBOX",
        bounce_of(bounces.new_id("f"), datetime(2015, 1, 1, tzinfo=UTC)),
        datetime(2015, 1, 1, tzinfo=UTC),
    )
    r = sweep(mb, state, archive_folders=("\\Archive",))
    assert r.error is None, r.error
    if archived:
        assert (r.own, r.backscatter, r.too_old) == (1, 0, 1)
    else:
        assert (r.own, r.backscatter, r.too_old) == (0, 1, 1)
    assert "Archive" in r.sent_folders


def test_deleting_old_sent_mail_moves_the_reach_forward(state) -> None:
    mb = mailbox()
    first = mb.add_message("Sent", sent_copy(bounces.new_id("a"), datetime(2020, 1, 1, tzinfo=UTC)))
    mb.add_message("Sent", sent_copy(bounces.new_id("b"), datetime(2024, 1, 1, tzinfo=UTC)))
    mb.deliver(
        "INBOX",
        bounce_of(bounces.new_id("f1"), datetime(2025, 1, 1, tzinfo=UTC)),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert sweep(mb, state).acted == 1
    del mb.folders["Sent"].messages[first]  # the user (or retention) purged old Sent mail
    mb.deliver(
        "INBOX",
        bounce_of(bounces.new_id("f2"), datetime(2022, 1, 1, tzinfo=UTC)),
        datetime(2022, 1, 1, tzinfo=UTC),
    )
    r = sweep(mb, state)
    assert (r.acted, r.too_old) == (0, 1), r.decisions


def test_empty_sent_folders_judge_as_before_and_say_so(state) -> None:
    mb = mailbox()
    mb.deliver(
        "INBOX",
        bounce_of(bounces.new_id("f"), datetime(2025, 1, 1, tzinfo=UTC)),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    r = sweep(mb, state)
    assert r.acted == 1
    assert any("Sent folders hold no message" in n for n in r.notes)


def test_folded_from_and_date_of_sent_mail_are_read() -> None:
    """A From or Date folded with a tab (or written "From :") is read as the classifier reads
    it: an archived message of the user's is theirs, and its Date is its date."""
    from ndr_sweeper.mailbox.base import HeaderItem
    from ndr_sweeper.sweep import _sent_by, _sent_date

    header = b"From:\r\n\tMe <me@x.org>\r\nDate: Tue, 1 Dec 2026\r\n\t10:00:00 +0000\r\n\r\n"
    assert _sent_by(header, ("me@x.org",))
    assert _sent_by(b"From : me@x.org\r\n\r\n", ("me@x.org",))
    item = HeaderItem(1, header, None, (), len(header))
    assert _sent_date(item) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
