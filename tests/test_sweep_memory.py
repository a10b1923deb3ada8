"""The sweep's logic on the in-memory mailbox: decisions, min_age, rules, fallbacks, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ndr_sweeper.actions.apply import undo_runs
from ndr_sweeper.config import Account
from ndr_sweeper.errors import MailboxError
from ndr_sweeper.mailbox.memory import DEFAULT_CAPABILITIES, MemoryMailbox
from ndr_sweeper.rules import load_rule_file
from ndr_sweeper.state import open_state
from ndr_sweeper.sweep import sweep_account

import bounces

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=2)


def account(**kw) -> Account:
    base = dict(name="t", host="127.0.0.1", username="u", security="plain", min_age=900.0)
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


def ids(mb: MemoryMailbox, folder: str) -> list[str | None]:
    import re

    out = []
    for m in mb.contents(folder).values():
        found = re.search(rb"^Message-ID: <([^>]+)>", m.data, re.M)
        out.append(found.group(1).decode() if found else None)
    return out


@pytest.fixture
def state(tmp_path: Path):
    with open_state(tmp_path / "state") as db:
        yield db


def reopen(mb: MemoryMailbox):
    """A factory that logs the same in-memory mailbox in again, as a new connection would."""

    def factory(_account: Account) -> MemoryMailbox:
        mb.logged_out = False
        return mb

    return factory


def sweep(mb, state, acc=None, **kw):
    kw.setdefault("now", lambda: NOW)
    return sweep_account(acc or account(), state, reopen(mb), **kw)


def undo(mb, state, run_id, fallback="deleted"):
    mb.logged_out = False
    undo_id = state.start_run("t", dry_run=False, command="undo")
    return undo_runs(mb, state, "t", [run_id], undo_id, fallback)


def test_own_bounce_kept_backscatter_moved_young_waits(state) -> None:
    mb = MemoryMailbox()
    sent_id = bounces.new_id()
    mb.add_message("Sent", bounces.original(sent_id), internaldate=OLD)
    own = bounces.dsn(sent_id, bounce_id="own@x")
    bs = bounces.dsn(bounces.new_id("forged"), bounce_id="bs@x")
    young = bounces.dsn(bounces.new_id("forged"), bounce_id="young@x")
    mb.add_message("INBOX", own, internaldate=OLD)
    mb.add_message("INBOX", bs, internaldate=OLD)
    mb.add_message("INBOX", young, internaldate=NOW - timedelta(minutes=5))
    mb.add_message("INBOX", bounces.ordinary(), internaldate=OLD)

    r = sweep(mb, state)
    assert r.error is None
    assert (r.own, r.backscatter, r.acted, r.too_young) == (1, 1, 1, 1)
    assert ids(mb, "Junk") == ["bs@x"]
    assert "young@x" in ids(mb, "INBOX")

    # Twenty minutes later the young bounce is old enough; nothing else is looked at again.
    later = sweep(mb, state, now=lambda: NOW + timedelta(minutes=20))
    assert later.scanned == 2  # the waiting bounce and the ordinary message after it
    assert sorted(ids(mb, "Junk")) == ["bs@x", "young@x"]


def test_keyword_fallback_without_uidplus_leaves_originals_flagged(state) -> None:
    caps = DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"}
    mb = MemoryMailbox(capabilities=caps)
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state, account(expunge_fallback="keyword"))
    assert r.acted == 1
    assert ids(mb, "Junk") == ["bs@x"]
    (msg,) = mb.contents("INBOX").values()
    assert "$NdrBackscatter" in msg.flags and "\\Deleted" not in msg.flags
    assert any("cannot remove only our messages" in n for n in r.notes)
    assert not any(c[0] == "expunge_flagged_deleted" for c in mb.calls)


def test_deleted_fallback_flags_originals_and_never_expunges(state) -> None:
    """The default without MOVE and UIDPLUS: the copy is proven, the original flagged
    \\Deleted and $NdrBackscatter, and no EXPUNGE is ever sent (the user's client expunges)."""
    mb = MemoryMailbox(capabilities=DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"})
    theirs = mb.add_message("INBOX", bounces.ordinary(), flags=["\\Deleted"], internaldate=OLD)
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state)
    assert r.acted == 1 and r.error is None
    assert ids(mb, "Junk") == ["bs@x"]
    inbox = mb.contents("INBOX")
    assert len(inbox) == 2 and "\\Deleted" in inbox[theirs].flags
    (original,) = (m for u, m in inbox.items() if u != theirs)
    assert {"\\Deleted", "$NdrBackscatter"} <= original.flags
    assert any("your mail client removes them" in n for n in r.notes)
    assert not any(c[0].startswith("expunge") for c in mb.calls)


def test_protect_fallback_keeps_the_users_deleted_flag(state) -> None:
    mb = MemoryMailbox(capabilities=DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"})
    mine = mb.add_message("INBOX", bounces.ordinary(), flags=["\\Deleted"], internaldate=OLD)
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state, account(expunge_fallback="protect"))
    assert r.acted == 1 and r.error is None
    assert ids(mb, "Junk") == ["bs@x"]
    assert list(mb.contents("INBOX")) == [mine]
    assert "\\Deleted" in mb.contents("INBOX")[mine].flags


def test_rules_can_move_undetermined_to_a_review_folder(state, tmp_path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nname = "review"\ndecision = "undetermined"\nmove = "NDR Review"\n')
    mb = MemoryMailbox()
    mb.add_message("INBOX", bounces.freetext_ndr_without_original(), internaldate=OLD)
    r = sweep(mb, state, rule_hook=load_rule_file(rules).hook())
    assert r.undetermined == 1 and r.acted == 1
    mb.logged_out = False
    assert mb.folder_exists("NDR Review") and len(mb.contents("NDR Review")) == 1


def test_failed_move_keeps_the_cursor_so_the_next_sweep_retries(state) -> None:
    mb = MemoryMailbox()
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    mb.fail_next("move", MailboxError("MOVE refused: over quota"))
    r = sweep(mb, state)
    assert r.errors == 1 and r.acted == 0
    assert ids(mb, "Junk") == []
    again = sweep(mb, state)
    assert again.acted == 1 and ids(mb, "Junk") == ["bs@x"]


def test_undo_puts_moved_messages_back_and_they_stay(state) -> None:
    mb = MemoryMailbox()
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state)
    result = undo(mb, state, r.run_id)
    assert result.restored == 1 and ids(mb, "Junk") == [] and ids(mb, "INBOX") == ["bs@x"]
    again = sweep(mb, state)
    assert again.acted == 0 and ids(mb, "Junk") == []


def test_dry_run_sends_no_write_command(state) -> None:
    mb = MemoryMailbox()
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state, dry_run=True)
    assert r.backscatter == 1 and r.acted == 0
    writes = {"move", "copy", "add_flags", "remove_flags", "expunge_uids", "create_folder"}
    assert not [c for c in mb.calls if c[0] in writes]
    assert ids(mb, "INBOX") == ["bs@x"]


def test_uidvalidity_change_between_scan_and_act_touches_nothing(state) -> None:
    class Renumbering(MemoryMailbox):
        """The folder is rebuilt (new UIDVALIDITY) right after the sweep read the bounces."""

        def fetch_messages(self, uids, max_bytes=None, batch=200):
            yield from super().fetch_messages(uids, max_bytes, batch)
            self.reset_uidvalidity("INBOX")
            self.add_message("INBOX", bounces.ordinary("arrived first after the rebuild"))
            self.selected = None  # the server closes the folder on such a change

    mb = Renumbering()
    mb.add_message("INBOX", bounces.ordinary(), internaldate=OLD)
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state)
    assert r.acted == 0 and r.errors == 1
    assert any("UIDVALIDITY" in n for n in r.notes)
    assert ids(mb, "Junk") == []
    assert len(mb.contents("INBOX")) == 3


def test_bounce_quoting_a_sent_id_anywhere_is_kept(state) -> None:
    """The safety net under the classifier: if the original it picked is not in Sent but the
    bounce quotes another ID that is, the message may be the user's own bounce: it stays."""
    mb = MemoryMailbox()
    sent_id = bounces.new_id()
    mb.add_message("Sent", bounces.original(sent_id), internaldate=OLD)
    raw = bounces.dsn(bounces.new_id("other"), bounce_id="maybe-own@x")
    raw = raw.replace(
        b"be delivered to one or more recipients.",
        b"be delivered (your ref <" + sent_id.encode() + b">).",
    )
    mb.add_message("INBOX", raw, internaldate=OLD)
    r = sweep(mb, state)
    assert (r.own, r.backscatter, r.acted) == (1, 0, 0)
    assert "quoted in the bounce" in r.decisions[0].reason
    assert ids(mb, "Junk") == []


def test_undo_without_uidplus_keeps_the_users_deleted_flag_in_junk(state) -> None:
    mb = MemoryMailbox(capabilities=DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"})
    theirs = mb.add_message("Junk", bounces.ordinary(), flags=["\\Deleted"], internaldate=OLD)
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    r = sweep(mb, state, account(expunge_fallback="protect"))
    assert r.acted == 1
    result = undo(mb, state, r.run_id, "protect")
    assert result.restored == 1
    assert ids(mb, "INBOX") == ["bs@x"]
    assert list(mb.contents("Junk")) == [theirs]
    assert "\\Deleted" in mb.contents("Junk")[theirs].flags
    assert state.pending_entries("t") == []  # the lifted flag was journalled and put back


def test_an_unexpected_error_is_one_line_and_recorded(state) -> None:
    mb = MemoryMailbox()
    mb.add_message("INBOX", bounces.dsn(bounces.new_id("f"), bounce_id="bs@x"), internaldate=OLD)
    mb.fail_next("fetch_messages", RuntimeError("boom"))
    r = sweep(mb, state)
    assert r.error is not None and r.error.startswith("unexpected RuntimeError: boom")
    assert state.run(r.run_id).status == "failed"
    assert ids(mb, "Junk") == []
    assert sweep(mb, state).acted == 1  # the cursor did not move: the next sweep does the work
