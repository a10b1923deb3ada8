"""One contract for every Mailbox: the in-memory one, IMAP on a real Dovecot, and a local
Maildir tree (Dovecot's Maildir++ layout and mbsync's verbatim one).

The ``mailbox*`` fixtures (tests/conftest.py) run each test against every backend; what the
sweep relies on is pinned here, so neither the memory mailbox nor the Maildir one can drift
from the real server. Where a Maildir differs by design (no SPECIAL-USE, no keywords, no plain
EXPUNGE) the test says what it does instead.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from ndr_sweeper.errors import CapabilityError, MailboxError
from ndr_sweeper.mailbox import discovery
from ndr_sweeper.mailbox.base import FolderStatus, HeaderItem, Mailbox
from ndr_sweeper.mailbox.maildir import MaildirMailbox

from lab import make_message

WHEN = datetime(2023, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=1)))


def fill(box: Mailbox, folder: str, n: int, start: int = 0, **kw) -> list[int | None]:
    return [box.append(folder, make_message(f"c{i}@x", **kw), (), WHEN) for i in range(start, n)]


class TestMailboxContract:
    def test_is_a_mailbox(self, mailbox):
        assert isinstance(mailbox, Mailbox)
        assert "IMAP4REV1" in mailbox.capabilities
        assert mailbox.has("move") and mailbox.has("UIDPLUS")

    def test_folders_and_discovery(self, mailbox):
        folders = mailbox.list_folders()
        names = {f.name for f in folders}
        assert {"INBOX", "Sent", "Junk", "Trash", "Drafts"} <= names
        if mailbox.has("SPECIAL-USE"):
            assert "\\Sent" in next(f for f in folders if f.name == "Sent").flags
        else:  # a Maildir: found by their names
            assert not any(f.flags & {"\\Sent", "\\Junk", "\\Trash"} for f in folders)
        prefix = mailbox.personal_prefix()
        assert discovery.find_folder("sent", folders, prefix=prefix) == "Sent"
        assert discovery.find_folder("junk", folders, prefix=prefix) == "Junk"
        assert discovery.find_folder("trash", folders, prefix=prefix) == "Trash"

    def test_status_select_and_uidnext(self, mailbox):
        before = mailbox.status("INBOX")
        assert isinstance(before, FolderStatus)
        assert before.messages == 0 and before.uidvalidity > 0
        uids = fill(mailbox, "INBOX", 3)
        assert uids == [before.uidnext, before.uidnext + 1, before.uidnext + 2]
        after = mailbox.status("INBOX")
        assert after.uidvalidity == before.uidvalidity
        assert (after.messages, after.uidnext) == (3, before.uidnext + 3)
        selected = mailbox.select("INBOX")
        assert dataclasses.replace(selected, permanent_flags=None) == after
        # Read-write: the flags that stay; Dovecot and the memory twin allow any keyword, a
        # Maildir none (test_search_flag_and_plain_expunge checks that this is the truth).
        assert selected.permanent_flags and "\\Deleted" in selected.permanent_flags
        assert selected.keeps_keyword("$NdrKept") is not isinstance(mailbox, MaildirMailbox)
        examined = mailbox.select("inbox", readonly=True)
        assert examined.messages == 3 and examined.permanent_flags is None
        if mailbox.has("CONDSTORE"):
            assert after.highestmodseq is not None

    def test_search_uid_set_answers_only_what_still_exists(self, mailbox):
        uids = fill(mailbox, "INBOX", 4)
        mailbox.select("INBOX")
        mailbox.add_flags(uids[1:3], ["\\Deleted"])
        mailbox.expunge_uids(uids[1:2])
        gone_long_ago = uids[-1] + 1000
        assert mailbox.search_uid_set([*uids, gone_long_ago]) == [uids[0], *uids[2:]]
        assert mailbox.search_uid_set([]) == []

    def test_missing_folder(self, mailbox):
        assert not mailbox.folder_exists("Nope")
        for op in (mailbox.select, mailbox.status):
            with pytest.raises(MailboxError, match=r"'Nope' does not exist.*junk_folder"):
                op("Nope")
        mailbox.select("INBOX")
        uid = mailbox.append("INBOX", make_message("m@x"))
        with pytest.raises(MailboxError, match="'Nope' does not exist"):
            mailbox.copy([uid], "Nope")
        with pytest.raises(MailboxError, match="'Nope' does not exist"):
            mailbox.append("Nope", make_message("n@x"))

    def test_create_folder(self, mailbox):
        mailbox.create_folder("Bounces")
        assert mailbox.folder_exists("Bounces")
        assert mailbox.folder_exists("INBOX") and mailbox.folder_exists("Junk")
        assert "Bounces" in {f.name for f in mailbox.list_folders()}
        with pytest.raises(MailboxError):
            mailbox.create_folder("Bounces")
        assert mailbox.status("Bounces").messages == 0

    def test_search_uids_min_uid_and_star_quirk(self, mailbox):
        fill(mailbox, "INBOX", 5)
        mailbox.select("INBOX")
        assert mailbox.search_uids() == [1, 2, 3, 4, 5]
        assert mailbox.search_uids(4) == [4, 5]
        # "UID 6:*" matches the last message on a real server; the result must not
        assert mailbox.search_uids(6) == []
        assert mailbox.search_uids(1000) == []

    def test_search_header(self, mailbox):
        fill(mailbox, "Sent", 4)
        mailbox.select("Sent", readonly=True)
        assert mailbox.search_header("Message-ID", "<c2@x>") == [3]
        assert mailbox.search_header("message-id", "C2@X") == [3]  # case-insensitive
        assert mailbox.search_header("Message-ID", "nothing@here") == []

    def test_fetch_headers(self, mailbox):
        mailbox.append(
            "INBOX", make_message("h1@x", headers=[("X-Spam", "yes")]), ["\\Flagged"], WHEN
        )
        fill(mailbox, "INBOX", 4, start=1)
        mailbox.select("INBOX")
        items = list(mailbox.fetch_headers([1, 2, 3, 4, 99], ["Message-ID", "X-Spam"], batch=2))
        assert [i.uid for i in items] == [1, 2, 3, 4]
        first = items[0]
        assert isinstance(first, HeaderItem)
        assert first.header == b"Message-ID: <h1@x>\r\nX-Spam: yes\r\n\r\n"
        assert items[1].header == b"Message-ID: <c1@x>\r\n\r\n"
        assert first.internaldate == WHEN and first.internaldate.tzinfo is not None
        assert first.flags == frozenset({"\\Flagged"})
        assert first.size == len(make_message("h1@x", headers=[("X-Spam", "yes")]))
        full = next(mailbox.fetch_headers([2]))
        assert full.header.startswith(b"From: ") and full.header.endswith(b"\r\n\r\n")
        assert b"Message-ID: <c1@x>" in full.header and b"hello" not in full.header

    def test_fetch_never_sets_seen(self, mailbox):
        fill(mailbox, "INBOX", 2)
        mailbox.select("INBOX")
        list(mailbox.fetch_headers([1, 2]))
        list(mailbox.fetch_messages([1, 2]))
        assert all("\\Seen" not in i.flags for i in mailbox.fetch_headers([1, 2]))

    def test_fetch_messages(self, mailbox):
        fill(mailbox, "INBOX", 3)
        mailbox.select("INBOX", readonly=True)
        got = dict(mailbox.fetch_messages([3, 1, 7], batch=1))
        assert set(got) == {1, 3}
        assert got[1] == make_message("c0@x")
        assert dict(mailbox.fetch_messages([2], max_bytes=10)) == {2: make_message("c1@x")[:10]}

    def test_move_with_uid_map(self, mailbox):
        fill(mailbox, "INBOX", 6)
        mailbox.select("INBOX")
        mapping = mailbox.move([2, 3, 5], "Junk")
        assert mapping == {2: 1, 3: 2, 5: 3}
        assert mailbox.search_uids() == [1, 4, 6]
        mailbox.select("Junk", readonly=True)
        heads = [i.header for i in mailbox.fetch_headers([1, 2, 3], ["Message-ID"])]
        assert heads == [f"Message-ID: <c{i}@x>\r\n\r\n".encode() for i in (1, 2, 4)]

    def test_copy_flags_and_uid_expunge(self, mailbox):
        fill(mailbox, "INBOX", 5)
        mailbox.select("INBOX")
        mapping = mailbox.copy([1, 2], "Trash")
        assert mapping == {1: 1, 2: 2}
        mailbox.add_flags([1, 2, 3], ["\\Deleted", "\\Seen"])
        mailbox.remove_flags([3], ["\\Seen"])
        # UID EXPUNGE removes only the listed UIDs, not every \Deleted message
        mailbox.expunge_uids([1, 2])
        assert mailbox.search_uids() == [3, 4, 5]
        flags = {i.uid: i.flags for i in mailbox.fetch_headers([3, 4])}
        assert flags == {3: frozenset({"\\Deleted"}), 4: frozenset()}
        assert mailbox.status("Trash").messages == 2

    def test_search_flag_and_plain_expunge(self, mailbox):
        fill(mailbox, "INBOX", 4)
        st = mailbox.select("INBOX")
        mailbox.add_flags([2, 4], ["\\Deleted"])
        mailbox.add_flags([3], ["$Junk"])
        assert mailbox.search_flag("\\Deleted") == [2, 4]
        # a keyword is there afterwards exactly when PERMANENTFLAGS said it would be
        assert mailbox.search_flag("$Junk") == ([3] if st.keeps_keyword("$Junk") else [])
        if isinstance(mailbox, MaildirMailbox):
            # never every \Deleted file of a folder: only those named by UID
            with pytest.raises(CapabilityError, match="by UID"):
                mailbox.expunge_flagged_deleted()
            assert mailbox.search_uids() == [1, 2, 3, 4]
            return
        mailbox.expunge_flagged_deleted()
        assert mailbox.search_uids() == [1, 3]

    def test_readonly_refuses_changes(self, mailbox):
        fill(mailbox, "INBOX", 1)
        mailbox.select("INBOX", readonly=True)
        with pytest.raises(MailboxError):
            mailbox.add_flags([1], ["\\Seen"])

    def test_batches_cover_scattered_uids(self, mailbox):
        fill(mailbox, "INBOX", 40)
        mailbox.select("INBOX")
        odd = list(range(1, 41, 2))
        assert [i.uid for i in mailbox.fetch_headers(odd, ["Message-ID"], batch=3)] == odd
        assert [u for u, _ in mailbox.fetch_messages(odd, batch=4)] == odd
        assert sorted(mailbox.move(odd, "Junk")) == odd
        assert mailbox.search_uids() == list(range(2, 41, 2))

    def test_logout_is_idempotent_and_final(self, mailbox):
        from ndr_sweeper.errors import NdrSweeperError

        mailbox.logout()
        mailbox.logout()  # a second logout (a dead connection's) never raises
        with pytest.raises(NdrSweeperError):
            mailbox.status("INBOX")  # and nothing works after it


class TestWithoutMove:
    def test_move_needs_move(self, mailbox_nomove):
        box = mailbox_nomove
        assert not box.has("MOVE") and not box.has("UIDPLUS")
        fill(box, "INBOX", 2)
        box.select("INBOX")
        with pytest.raises(CapabilityError, match="MOVE"):
            box.move([1], "Junk")
        with pytest.raises(CapabilityError, match="UIDPLUS"):
            box.expunge_uids([1])
        assert box.search_uids() == [1, 2]

    def test_copy_delete_fallback(self, mailbox_nomove_uidplus):
        box = mailbox_nomove_uidplus
        assert not box.has("MOVE") and box.has("UIDPLUS")
        fill(box, "INBOX", 3)
        box.select("INBOX")
        assert box.copy([1, 3], "Junk") == {1: 1, 3: 2}
        box.add_flags([1, 3], ["\\Deleted"])
        box.expunge_uids([1, 3])
        assert box.search_uids() == [2]
        assert box.status("Junk").messages == 2
