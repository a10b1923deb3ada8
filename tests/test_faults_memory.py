"""Faults against the in-memory server: the connection is cut before or after every command
that changes something, on every server shape (MOVE; COPY + UIDPLUS; COPY without UIDPLUS),
and the next sweep must finish the job: each backscatter message in Junk exactly once,
nothing else moved, the user's \\Deleted flags kept, the journal with nothing half done.
Plus NO answers (quota, read-only, CREATE refused), the user changing the mailbox during a
sweep, UIDVALIDITY changes, and a journal that cannot be written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import FaultyMailbox, Mail, assert_invariant, make_mail, tag_of, tagged

from ndr_sweeper.config import Account
from ndr_sweeper.errors import MailboxError, StateError
from ndr_sweeper.mailbox.memory import DEFAULT_CAPABILITIES, MemoryMailbox
from ndr_sweeper.state import StateDB, open_state
from ndr_sweeper.sweep import sweep_account

import bounces

SHAPES = {
    "move": DEFAULT_CAPABILITIES,
    "copy-uidplus": DEFAULT_CAPABILITIES - {"MOVE"},
    "copy-plain": DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"},  # default: originals flagged
    "copy-protect": DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"},  # expunge_fallback = "protect"
}


def account(shape: str = "move", **kw: Any) -> Account:
    if shape == "copy-protect":
        kw.setdefault("expunge_fallback", "protect")
    return Account(name="acc", host="imap.example.org", username="me", min_age=0.0, **kw)


def server(shape: str, mail: Mail) -> MemoryMailbox:
    mb = MemoryMailbox(SHAPES[shape])
    for raw in mail.sent:
        mb.add_message("Sent", raw)
    for raw, flags in mail.inbox:
        mb.add_message("INBOX", raw, flags)
    return mb


def session(mb: MemoryMailbox) -> Callable[[Account], Any]:
    """A factory that logs in again to the same server (MemoryMailbox stays logged out)."""

    def factory(_acc: Account) -> MemoryMailbox:
        mb.logged_out = False
        mb.selected = None
        return mb

    return factory


def check(mb: MemoryMailbox, mail: Mail, state: StateDB) -> None:
    junk = [m.data for m in mb.contents("Junk").values()]
    inbox = [(m.data, m.flags) for m in mb.contents("INBOX").values()]
    rows = [r for run in state.runs("acc") for r in state.run_entries(run.id)]
    assert_invariant(junk, inbox, mail, rows)
    done = [r for r in rows if r.state == "done" and r.action == "move"]
    assert len(done) == len(mail.backscatter), "one done journal entry per message moved"
    # where COPYUID/MOVE told us, the journal points at the very message in Junk
    junk_now = mb.contents("Junk")
    for r in done:
        if r.dest_uid is not None:
            assert r.dest_uid in junk_now
            assert tag_of(junk_now[r.dest_uid].data) in mail.backscatter


@pytest.fixture
def state(tmp_path: Path):
    with open_state(tmp_path / "state") as db:
        yield db


FAULTS = [
    ("move", ["move"]),
    ("copy-uidplus", ["copy", "add_flags", "expunge_uids"]),
    ("copy-plain", ["copy", "add_flags"]),
    ("copy-protect", ["copy", "add_flags", "remove_flags", "expunge_flagged_deleted"]),
]


@pytest.mark.parametrize(
    ("shape", "op", "when"),
    [(s, op, w) for s, ops in FAULTS for op in ops for w in ("before", "after")],
)
def test_cut_at_every_write_then_next_sweep_finishes(state, shape, op, when) -> None:
    mail = make_mail()
    mb = server(shape, mail)
    faulty = FaultyMailbox(mb, op, when)
    first = sweep_account(account(shape), state, lambda _a: faulty)
    assert faulty.fired, f"{op} was never called on {shape}"
    assert first.error and "connection lost" in first.error
    second = sweep_account(account(shape), state, session(mb))
    assert second.error is None and second.errors == 0, second
    check(mb, mail, state)
    third = sweep_account(account(shape), state, session(mb))
    assert third.acted == 0 and third.scanned == 0
    check(mb, mail, state)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op", ["fetch_headers", "fetch_messages"])
def test_cut_while_fetching_acts_on_nothing_then_finishes(state, shape, op) -> None:
    mail = make_mail()
    mb = server(shape, mail)
    faulty = FaultyMailbox(mb, op, nth=3)
    first = sweep_account(account(shape), state, lambda _a: faulty)
    assert first.error and faulty.fired
    assert mb.contents("Junk") == {}, "nothing may be moved after a failed scan"
    assert state.get_cursor("acc", "INBOX") is None, "the cursor stays where it was"
    assert sweep_account(account(shape), state, session(mb)).error is None
    check(mb, mail, state)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_second_batch_cut_after_first_went_through(state, shape, monkeypatch) -> None:
    """Several batches: the first is done, the cut comes in the second."""
    from ndr_sweeper.actions import apply

    monkeypatch.setattr(apply, "BATCH", 3)
    mail = make_mail(n_backscatter=10)
    mb = server(shape, mail)
    op = "move" if shape == "move" else "copy"
    faulty = FaultyMailbox(mb, op, "after", nth=2)
    assert sweep_account(account(shape), state, lambda _a: faulty).error
    assert sweep_account(account(shape), state, session(mb)).error is None
    check(mb, mail, state)


# ---------------------------------------------------------------- NO answers


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "op", ["move", "copy", "add_flags", "expunge_uids", "expunge_flagged_deleted"]
)
def test_server_says_no_then_next_sweep_retries(state, shape, op) -> None:
    """Over quota on COPY/MOVE, a read-only folder on STORE/EXPUNGE: the batch is journalled
    failed, the cursor stays before it, and the next sweep acts on it exactly once."""
    mail = make_mail()
    mb = server(shape, mail)
    mb.fail_next(op, MailboxError(f"{op} refused by the server: NO [OVERQUOTA] Quota exceeded"))
    first = sweep_account(account(shape), state, session(mb))
    assert first.error is None
    refused = first.errors > 0
    if refused:
        assert any("OVERQUOTA" in n for n in first.notes)
        rows = [r for r in state.run_entries(first.run_id) if r.action != "protect"]
        # refused before anything changed: failed (planned again); after the COPY: left
        # "copied" for recovery, so that nothing is copied twice
        want = "failed" if op in ("move", "copy") else "copied"
        assert rows and all(r.state == want for r in rows), [r.state for r in rows]
    assert sweep_account(account(shape), state, session(mb)).error is None
    check(mb, mail, state)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_read_only_folder_is_reported_and_nothing_is_lost(state, shape) -> None:
    """A folder the user may read but not change (ACL): every sweep says so, moves nothing,
    copies nothing twice; once it is writable again, the sweep finishes."""
    mail = make_mail()
    mb = server(shape, mail)
    # no right to expunge (IMAP ACL without "e"): COPY works, removing the original does not;
    # without UIDPLUS by default we only flag it (no right to flag: STORE refused)
    op = {"move": "move", "copy-uidplus": "expunge_uids", "copy-plain": "add_flags"}.get(
        shape, "expunge_flagged_deleted"
    )
    for _ in range(2):
        for _ in range(5):
            mb.fail_next(op, MailboxError(f"{op} refused by the server: NO [READ-ONLY] no"))
        result = sweep_account(account(shape), state, session(mb))
        assert result.errors and any("READ-ONLY" in n for n in result.notes), result
        assert len(mb.contents("INBOX")) == len(mail.inbox)
        assert len(mb.contents("Junk")) in (0, len(mail.backscatter))
        mb._failures.clear()
    assert sweep_account(account(shape), state, session(mb)).error is None
    check(mb, mail, state)


def test_rule_folder_that_cannot_be_created(state, tmp_path) -> None:
    """A rule sends backscatter to a folder the server refuses to create: the batch fails
    (journalled, reported), nothing moves, and the next sweep tries again."""
    from ndr_sweeper.rules import load_rule_file

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "review"\ndecision = "backscatter"\nmove = "NDR Review"\n')
    hook = load_rule_file(rules).hook()
    mail = make_mail()
    mb = server("move", mail)
    mb.fail_next("create_folder", MailboxError("CREATE refused by the server: NO [CANNOT]"))
    first = sweep_account(account(), state, session(mb), rule_hook=hook)
    assert first.errors == len(mail.backscatter)
    assert any("refused to create folder 'NDR Review'" in n and "CANNOT" in n for n in first.notes)
    assert "NDR Review" not in mb.folders
    second = sweep_account(account(), state, session(mb), rule_hook=hook)
    assert second.error is None and second.acted == len(mail.backscatter)
    assert {tag_of(m.data) for m in mb.contents("NDR Review").values()} == mail.backscatter


# ---------------------------------------------------------------- the user at work meanwhile


class Meddler(FaultyMailbox):
    """Runs `meddle(mb)` (another client's changes) right before the first call of `op`."""

    def __init__(self, inner: MemoryMailbox, op: str, meddle: Callable[[MemoryMailbox], None]):
        super().__init__(inner, op)
        self._meddle = meddle

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._op or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.fired:
                self.fired = True
                self._meddle(self._inner)
            return target(*args, **kwargs)

        return call


def _uid_of(mb: MemoryMailbox, folder: str, tag: str) -> int:
    return next(u for u, m in mb.contents(folder).items() if tag_of(m.data) == tag)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("what", ["delete", "move", "flag"])
def test_user_changes_messages_during_the_sweep(state, shape, what) -> None:
    """Between our scan and our action the user expunges a backscatter message, moves one to
    another folder, or flags messages \\Deleted: we move only what is still there, never
    expunge the user's \\Deleted messages, and the journal says what happened."""
    mail = make_mail()
    mb = server(shape, mail)
    mb.folders.setdefault("Archive", type(mb.folders["INBOX"])("Archive"))
    gone = "bs1"

    def meddle(inner: MemoryMailbox) -> None:
        inbox = inner.folders["INBOX"]
        uid = _uid_of(inner, "INBOX", gone)
        if what == "delete":
            del inbox.messages[uid]
        elif what == "move":
            inner.add_message("Archive", inbox.messages.pop(uid).data)
        else:  # the user flags a kept message and a backscatter one \Deleted
            inbox.messages[_uid_of(inner, "INBOX", "keep0")].flags.add("\\Deleted")
            inbox.messages[uid].flags.add("\\Deleted")

    op = "move" if shape == "move" else "copy"
    result = sweep_account(account(shape), state, lambda _a: Meddler(mb, op, meddle))
    assert result.error is None
    if what != "flag":
        mail.backscatter.discard(gone)
    else:
        mail.user_deleted.add("keep0")
    check_after = sweep_account(account(shape), state, session(mb))
    assert check_after.error is None
    junk = [m.data for m in mb.contents("Junk").values()]
    inbox = [(m.data, m.flags) for m in mb.contents("INBOX").values()]
    assert_invariant(junk, inbox, mail)
    if what == "move":
        assert [tag_of(m.data) for m in mb.contents("Archive").values()] == [gone]


def test_folder_renamed_or_deleted_between_sweeps(state) -> None:
    mail = make_mail()
    mb = server("move", mail)
    mb.folders["Bounces"] = type(mb.folders["INBOX"])("Bounces")
    acc = account(folders=("INBOX", "Bounces"))
    assert sweep_account(acc, state, session(mb)).error is None
    del mb.folders["Bounces"]
    late = tagged(bounces.dsn(bounces.new_id("forged")), "late")
    mb.add_message("INBOX", late)
    result = sweep_account(acc, state, session(mb))
    assert result.error and "'Bounces'" in result.error and "folders" in result.error
    assert "late" in {tag_of(m.data) for m in mb.contents("INBOX").values()}, "acts on nothing"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_uidvalidity_change_after_an_interrupted_run(state, shape) -> None:
    """The journal holds half-done entries for UIDs that, after a UIDVALIDITY change, name
    other messages: they must not be acted on; the rescan decides afresh."""
    mail = make_mail()
    mb = server(shape, mail)
    op = "move" if shape == "move" else "copy"
    faulty = FaultyMailbox(mb, op, "before")
    assert sweep_account(account(shape), state, lambda _a: faulty).error
    # The server renumbers INBOX and puts the messages in a different order.
    inbox = mb.folders["INBOX"]
    inbox.messages = dict(reversed(list(inbox.messages.items())))
    mb.reset_uidvalidity("INBOX")
    result = sweep_account(account(shape), state, session(mb))
    assert result.error is None
    check(mb, mail, state)
    stale = [
        r
        for run in state.runs("acc")
        for r in state.run_entries(run.id)
        if r.error and "UIDVALIDITY" in r.error
    ]
    assert stale, "the stale entries are marked failed with the reason"


def test_uidvalidity_of_junk_changes_between_copy_and_recovery(state) -> None:
    """COPY went through (answer lost), then Junk was rebuilt: recovery finds the copy by
    Message-ID, not by a UID that now names another message."""
    mail = make_mail(no_id_bounce=False)
    mb = server("copy-uidplus", mail)
    faulty = FaultyMailbox(mb, "add_flags", "before")
    assert sweep_account(account(), state, lambda _a: faulty).error
    mb.reset_uidvalidity("Junk")
    assert sweep_account(account(), state, session(mb)).error is None
    check(mb, mail, state)


# ---------------------------------------------------------------- the journal


def test_no_journal_no_action(state, monkeypatch) -> None:
    """When the journal cannot be written (disk full), nothing is moved."""
    mail = make_mail()
    mb = server("move", mail)

    def full(*_a: Any, **_k: Any) -> Any:
        raise StateError("cannot write to state database: the disk is full; nothing was acted on")

    monkeypatch.setattr(state, "journal_add", full)
    result = sweep_account(account(), state, session(mb))
    assert result.error and "disk is full" in result.error
    assert mb.contents("Junk") == {}
    assert len(mb.contents("INBOX")) == len(mail.inbox)


def test_journal_update_fails_after_move_then_recovery_completes(state, monkeypatch) -> None:
    """The MOVE went through but writing 'done' failed: the entry stays planned, and the next
    sweep sees the message gone from INBOX, finds it in Junk, and marks it done."""
    mail = make_mail()
    mb = server("move", mail)
    real = state.journal_update
    calls = {"done": 0}

    def flaky(ids, st, **kw):  # type: ignore[no-untyped-def]
        if st == "done":
            calls["done"] += 1
            if calls["done"] == 1:
                raise StateError("cannot write to state database: the disk is full")
        return real(ids, st, **kw)

    monkeypatch.setattr(state, "journal_update", flaky)
    result = sweep_account(account(), state, session(mb))
    assert result.error and "disk is full" in result.error
    monkeypatch.setattr(state, "journal_update", real)
    assert sweep_account(account(), state, session(mb)).error is None
    check(mb, mail, state)
