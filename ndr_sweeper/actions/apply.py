"""Carry out plans through a Mailbox, journalling every step before it happens.

Journal states: planned -> (copied ->) done | failed; done -> undone.
- With MOVE (RFC 6851): one UID MOVE per batch; atomic on the server.
- Without MOVE, with UIDPLUS: UID COPY, journal "copied" (with COPYUID), STORE \\Deleted on exactly
  those UIDs, UID EXPUNGE of exactly those UIDs.
- Without UIDPLUS: a plain EXPUNGE would also remove messages the user flagged \\Deleted and did
  not expunge. By default (expunge_fallback = "protect") we journal those messages, take their
  \\Deleted flag off, expunge ours, and put their flag back (recovery restores it after a crash).
  With expunge_fallback = "keyword" we never send EXPUNGE: the copy stays in the folder too,
  flagged $NdrBackscatter, and the output says the server cannot expunge selectively.
An interrupted run leaves entries in planned/copied; `recover_pending` finishes them first on the
next sweep, so a message copied but not yet expunged is never copied a second time.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ndr_sweeper.actions.plan import FLAG_KEYWORDS, JUNK_KEYWORD, Action, Plan
from ndr_sweeper.errors import MailboxError

if TYPE_CHECKING:
    from ndr_sweeper.mailbox.base import HeaderItem, Mailbox
    from ndr_sweeper.state import JournalRow, StateDB
    from ndr_sweeper.sweep import Reporter

log = logging.getLogger(__name__)

DELETED = "\\Deleted"
PROTECT = "protect"  # journal action: a user's \\Deleted flag lifted around an EXPUNGE
BATCH = 5000  # UIDs per MOVE/COPY command; the mailbox also caps the command length
MAX_CANDIDATES = 200  # messages checked when finding a copy without a Message-ID
NO_SELECTIVE_EXPUNGE = (
    "the server has neither MOVE nor UIDPLUS, so it cannot expunge selectively: copies were put "
    f"in the destination and the originals were left in place, flagged {JUNK_KEYWORD}"
)


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)
    failed_uids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _chunks(items: Sequence[int], n: int = BATCH) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


# ---------------------------------------------------------------- removing from a folder


class CopiedNotRemovedError(MailboxError):
    """The COPY went through, removing the original did not: the entries stay "copied" and the
    next sweep's recovery removes the original (never copying it a second time)."""


@dataclass
class ProtectJournal:
    """Journals the user's \\Deleted flags that the no-UIDPLUS path lifts for an EXPUNGE, so
    that `recover_pending` puts them back when the connection dies before we could."""

    state: StateDB
    run_id: str
    account: str
    folder: str
    uidvalidity: int

    def lifted(self, uids: Sequence[int]) -> list[int]:
        from ndr_sweeper.state import JournalEntry

        return self.state.journal_add(
            self.run_id,
            [
                JournalEntry(
                    account=self.account,
                    folder=self.folder,
                    uidvalidity=self.uidvalidity,
                    uid=u,
                    bounce_message_id=None,
                    original_message_id=None,
                    kind="user",
                    decision="protect",
                    reason="the user's \\Deleted flag, lifted for the moment of an EXPUNGE",
                    action=PROTECT,
                    dest_folder=None,
                )
                for u in uids
            ],
        )

    def restored(self, entry_ids: Sequence[int]) -> None:
        self.state.journal_update(entry_ids, "done")


def remove_from_selected(
    mb: Mailbox,
    uids: Sequence[int],
    fallback: str = "protect",
    guard: ProtectJournal | None = None,
) -> bool:
    """Expunge exactly `uids` from the selected folder. False when the server cannot do that."""
    if not uids:
        return True
    if mb.has("UIDPLUS"):
        mb.add_flags(uids, [DELETED])
        mb.expunge_uids(uids)
        return True
    if fallback != "protect":
        mb.add_flags(uids, [JUNK_KEYWORD])
        return False
    ours = set(uids)
    theirs = [u for u in mb.search_flag(DELETED) if u not in ours]
    lifted: list[int] = []
    if theirs:
        log.info("protecting %d message(s) the user flagged \\Deleted during EXPUNGE", len(theirs))
        # Journal first: if the connection dies before the flags are back, recovery restores them.
        lifted = guard.lifted(theirs) if guard is not None else []
        mb.remove_flags(theirs, [DELETED])
    try:
        mb.add_flags(uids, [DELETED])
        mb.expunge_flagged_deleted()
    finally:
        if theirs:
            mb.add_flags(theirs, [DELETED])
            if guard is not None:
                guard.restored(lifted)
    return True


def _transfer(
    mb: Mailbox,
    state: StateDB | None,
    uids: list[int],
    ids: dict[int, int],
    dest: str,
    dest_validity: int | None,
    fallback: str,
    outcome: Outcome,
    guard: ProtectJournal | None = None,
) -> None:
    """Move `uids` (of the selected folder) to `dest`, journalling each step when `state` is given."""
    entry_ids = [ids[u] for u in uids]

    def journal(step: str, mapping: dict[int, int] | None = None) -> None:
        if state is None:
            return
        state.journal_update(
            entry_ids,
            step,
            dest_uidvalidity=dest_validity if mapping is not None else None,
            dest_uids={ids[s]: d for s, d in mapping.items() if s in ids} if mapping else None,
        )

    if mb.has("MOVE"):
        journal("done", mb.move(uids, dest))
        outcome.done += len(uids)
        return
    journal("copied", mb.copy(uids, dest))
    try:
        removed = remove_from_selected(mb, uids, fallback, guard)
    except MailboxError as exc:
        raise CopiedNotRemovedError(
            f"{len(uids)} message(s) were copied to {dest!r} but not removed from the folder "
            f"({exc}); the next sweep removes them"
        ) from None
    if not removed:
        outcome.note(NO_SELECTIVE_EXPUNGE)
    journal("done")
    outcome.done += len(uids)


# ---------------------------------------------------------------- applying plans


def _select_for_writing(mb: Mailbox, folder: str, known_validity: int | None) -> int:
    """SELECT `folder` read-write unless it already is, and return its UIDVALIDITY.

    A folder stays selected read-write from the scan on (saving a SELECT, which costs 0.1-0.3 s
    on a 100k-message Maildir); UIDVALIDITY cannot change while a folder is selected.
    """
    selected = getattr(mb, "selected", None) == folder and not getattr(mb, "readonly", True)
    if selected and known_validity is not None:
        return known_validity
    return mb.select(folder).uidvalidity


def apply_plans(
    mb: Mailbox,
    state: StateDB,
    run_id: str,
    account: str,
    plans: Sequence[Plan],
    reporter: Reporter,
    fallback: str = "protect",
    scanned_validity: Mapping[str, int] | None = None,
) -> Outcome:
    """Journal, then carry out, every plan that acts. One bad batch does not stop the others.

    `scanned_validity` is each folder's UIDVALIDITY when its UIDs were read: if it has changed
    since, those UIDs name other messages, and nothing in that folder is touched.
    """
    from ndr_sweeper.state import JournalEntry

    outcome = Outcome()
    groups: dict[tuple[str, Action, str | None], list[Plan]] = defaultdict(list)
    for p in plans:
        if p.acts:
            groups[(p.folder, p.action, p.dest)].append(p)
    for (folder, action, dest), group in groups.items():
        if action in (Action.MOVE, Action.DELETE) and (not dest or dest == folder):
            outcome.note(f"{len(group)} message(s) in {folder!r} are already where they would go")
            continue
        try:
            # A rule's folder (e.g. "NDR Review") is made on first use; Junk and Trash
            # were found on the server before anything was planned.
            rule_dest = dest and action is not Action.FLAG and any(p.rule for p in group)
            if rule_dest and dest and not mb.folder_exists(dest):
                try:
                    mb.create_folder(dest)
                except MailboxError as exc:
                    # The IMAP layer may word a refused CREATE as "does not exist": say what
                    # actually went wrong, with the server's words.
                    raise MailboxError(
                        f"the server refused to create folder {dest!r} that a rule moves "
                        f"messages to ({exc}); choose another folder name in the rule"
                    ) from None
            validity = _select_for_writing(mb, folder, (scanned_validity or {}).get(folder))
            if scanned_validity and validity != scanned_validity.get(folder):
                outcome.failed += len(group)
                outcome.failed_uids[folder].extend(p.uid for p in group)
                outcome.note(
                    f"UIDVALIDITY of {folder!r} changed during the sweep: nothing there was "
                    "touched; the next sweep reads it again"
                )
                continue
            dest_validity = (
                mb.status(dest).uidvalidity if action is not Action.FLAG and dest else None
            )
            entries = [
                JournalEntry(
                    account=account,
                    folder=folder,
                    uidvalidity=validity,
                    uid=p.uid,
                    bounce_message_id=p.bounce_message_id,
                    original_message_id=p.original_message_id,
                    kind=p.kind,
                    decision=str(p.decision),
                    reason=p.reason,
                    action=str(action),
                    dest_folder=dest,
                    state="planned",
                )
                for p in group
            ]
            entry_ids = state.journal_add(run_id, entries)
        except MailboxError as exc:
            outcome.failed += len(group)
            outcome.failed_uids[folder].extend(p.uid for p in group)
            outcome.note(str(exc))
            continue
        ids = {p.uid: eid for p, eid in zip(group, entry_ids, strict=True)}
        for batch in _chunks(sorted(ids)):
            try:
                if action is Action.FLAG:
                    mb.add_flags(batch, [dest or JUNK_KEYWORD, *FLAG_KEYWORDS[1:]])
                    state.journal_update([ids[u] for u in batch], "done")
                    outcome.done += len(batch)
                else:
                    assert dest is not None
                    guard = ProtectJournal(state, run_id, account, folder, validity)
                    _transfer(mb, state, batch, ids, dest, dest_validity, fallback, outcome, guard)
            except CopiedNotRemovedError as exc:
                # Left "copied": recovery finishes them; journalling them failed would copy
                # them a second time on the next sweep.
                log.warning("%s: %s", account, exc)
                outcome.failed += len(batch)
                outcome.failed_uids[folder].extend(batch)
                outcome.note(str(exc))
            except MailboxError as exc:
                log.warning("%s: %s", account, exc)
                state.journal_update([ids[u] for u in batch], "failed", error=str(exc))
                outcome.failed += len(batch)
                outcome.failed_uids[folder].extend(batch)
                outcome.note(str(exc))
            reporter.advance(len(batch))
    return outcome


# ---------------------------------------------------------------- finding moved messages


# Characters an IMAP atom may carry that imapclient sends as they are. Anything else in a
# Message-ID (CR, LF, NUL, a literal marker like {5}, quotes, parentheses, 8-bit) must never reach
# a command line: it could end the command early, start a literal, or inject another command.
_SAFE_TOKEN_RE = re.compile(r"[A-Za-z0-9._@+=$#!&'/?^`|~:;,<>\[-]+")
_FINGERPRINT_FIELDS = ("Date", "Subject", "From", "To", "Received")


def search_token(value: str) -> str | None:
    """The longest run of `value` that is safe on an IMAP command line, None when none is.

    SEARCH HEADER matches substrings, and every hit is checked exactly afterwards, so searching
    for a part of the value finds the same messages and never sends the rest to the server.
    """
    runs = _SAFE_TOKEN_RE.findall(value)
    best = max(runs, key=len, default="")
    return best or None


def _header_value(header: bytes, name: str) -> str | None:
    m = re.search(
        rb"^" + re.escape(name.encode()) + rb"[ \t]*:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)",
        header,
        re.IGNORECASE | re.MULTILINE,
    )
    if not m:
        return None
    return re.sub(r"\s+", " ", m.group(1).decode("ascii", "replace")).strip() or None


def _same_message(a: HeaderItem, b: HeaderItem) -> bool:
    """A COPY keeps the bytes and the INTERNALDATE: equal headers, size and date are the copy."""
    return a.header == b.header and a.size == b.size and a.internaldate == b.internaldate


def locate(
    mb: Mailbox,
    rows: Sequence[JournalRow],
    folder_validity: int,
    originals: Mapping[int, HeaderItem] | None = None,
) -> dict[int, int]:
    """Journal entry id -> UID in the selected destination folder, for rows still there.

    A UID is never reused while UIDVALIDITY stays the same, so the UID that COPYUID gave is
    the message when it still exists. Without it (no UIDPLUS, or UIDVALIDITY changed), the
    bounce's Message-ID is searched for and checked exactly. A bounce without a Message-ID is
    found by its whole header, size and INTERNALDATE, when `originals` (journal id -> the
    source message's full header item) gives them.
    """
    from ndr_sweeper.sentids import ids_from_header

    found: dict[int, int] = {}
    by_uid = {r.dest_uid: r for r in rows if r.dest_uid and r.dest_uidvalidity == folder_validity}
    if by_uid:
        for item in mb.fetch_headers(sorted(by_uid), ["Message-ID"]):
            found[by_uid[item.uid].id] = item.uid
    taken = set(found.values())
    for r in rows:
        if r.id in found:
            continue
        if r.bounce_message_id:
            token = search_token(r.bounce_message_id)
            if token is None:
                log.warning("cannot search for Message-ID %r: no usable part", r.bounce_message_id)
                continue
            for uid in mb.search_header("Message-ID", token):
                if uid in taken:
                    continue
                headers = list(mb.fetch_headers([uid], ["Message-ID"]))
                if headers and r.bounce_message_id in ids_from_header(headers[0].header):
                    found[r.id] = uid
                    taken.add(uid)
                    break
            continue
        original = (originals or {}).get(r.id)
        if original is None:
            continue
        for name in _FINGERPRINT_FIELDS:
            value = _header_value(original.header, name)
            token = search_token(value) if value else None
            if token is None:
                continue
            hits = [u for u in mb.search_header(name, token) if u not in taken][:MAX_CANDIDATES]
            for item in mb.fetch_headers(hits) if hits else ():
                if _same_message(item, original):
                    found[r.id] = item.uid
                    taken.add(item.uid)
                    break
            break
    return found


# ---------------------------------------------------------------- recovery


def recover_pending(
    mb: Mailbox,
    state: StateDB,
    account: str,
    fallback: str = "protect",
    run_id: str | None = None,
) -> list[str]:
    """Finish what an interrupted run left half done. Returns notes for the output.

    Entries still "copied" afterwards (the server refused to remove the original) stay pending:
    the caller must not plan those messages again. `run_id` journals the user's \\Deleted flags
    that the no-UIDPLUS path lifts here.
    """
    pending = state.pending_entries(account)
    if not pending:
        return []
    protect = [r for r in pending if r.action == PROTECT]
    pending = [r for r in pending if r.action != PROTECT]
    notes = []
    if pending:
        notes.append(f"finishing {len(pending)} action(s) left over from an interrupted run")
    by_folder: dict[str, list[JournalRow]] = defaultdict(list)
    for row in pending:
        by_folder[row.folder].append(row)
    for folder, rows in by_folder.items():
        try:
            st = mb.select(folder)
        except MailboxError as exc:
            state.journal_update([r.id for r in rows], "failed", error=f"recovery: {exc}")
            continue
        stale = [r for r in rows if r.uidvalidity != st.uidvalidity]
        if stale:
            state.journal_update(
                [r.id for r in stale], "failed", error="recovery: UIDVALIDITY changed; rescanned"
            )
        rows = [r for r in rows if r.uidvalidity == st.uidvalidity]
        if not rows:
            continue
        present = {h.uid for h in mb.fetch_headers(sorted(r.uid for r in rows), ["Message-ID"])}
        # A bounce without a Message-ID is recognised in the destination by its whole header.
        no_id = {r.uid: r.id for r in rows if not r.bounce_message_id and r.uid in present}
        originals = {no_id[h.uid]: h for h in mb.fetch_headers(sorted(no_id))} if no_id else {}
        flag_rows = [r for r in rows if r.action == "flag"]
        move_rows = [r for r in rows if r.action != "flag"]
        if flag_rows:
            # Keywords are idempotent: the rescan sets them again if needed.
            state.journal_update([r.id for r in flag_rows], "failed", error="recovery: interrupted")
        by_dest: dict[str, list[JournalRow]] = defaultdict(list)
        for r in move_rows:
            by_dest[r.dest_folder or ""].append(r)
        for dest, drows in by_dest.items():
            dest_validity = mb.status(dest).uidvalidity
            mb.select(dest, readonly=True)
            in_dest = locate(mb, drows, dest_validity, originals)
            mb.select(folder)
            finished = [r for r in drows if r.uid not in present]
            copied = [r for r in drows if r.uid in present and r.id in in_dest]
            untouched = [r for r in drows if r.uid in present and r.id not in in_dest]
            if finished:
                state.journal_update(
                    [r.id for r in finished],
                    "done",
                    dest_uidvalidity=dest_validity,
                    dest_uids={r.id: in_dest[r.id] for r in finished if r.id in in_dest},
                )
            if copied:
                state.journal_update(
                    [r.id for r in copied],
                    "copied",
                    dest_uidvalidity=dest_validity,
                    dest_uids={r.id: in_dest[r.id] for r in copied},
                )
                guard = (
                    ProtectJournal(state, run_id, account, folder, st.uidvalidity)
                    if run_id
                    else None
                )
                try:
                    removed = remove_from_selected(mb, [r.uid for r in copied], fallback, guard)
                except MailboxError as exc:
                    # Still "copied": tried again next time, never copied a second time.
                    notes.append(
                        f"{len(copied)} message(s) in {folder!r} are in {dest!r} already but "
                        f"could not be removed ({exc}); the next sweep tries again"
                    )
                else:
                    if not removed and NO_SELECTIVE_EXPUNGE not in notes:
                        notes.append(NO_SELECTIVE_EXPUNGE)
                    state.journal_update([r.id for r in copied], "done")
            if untouched:
                # Never reached the server: the rescan of this run plans them again.
                state.journal_update(
                    [r.id for r in untouched],
                    "failed",
                    error="recovery: not carried out; re-planned",
                )
    if protect:
        notes.extend(_restore_protected(mb, state, protect))
    return notes


def _restore_protected(mb: Mailbox, state: StateDB, rows: Sequence[JournalRow]) -> list[str]:
    """Put back the \\Deleted flags an interrupted run lifted from the user's messages."""
    by_folder: dict[str, list[JournalRow]] = defaultdict(list)
    for r in rows:
        by_folder[r.folder].append(r)
    restored = 0
    for folder, frows in by_folder.items():
        try:
            st = mb.select(folder)
        except MailboxError as exc:
            state.journal_update([r.id for r in frows], "failed", error=f"recovery: {exc}")
            continue
        live = [r for r in frows if r.uidvalidity == st.uidvalidity]
        stale = [r for r in frows if r.uidvalidity != st.uidvalidity]
        if stale:
            state.journal_update(
                [r.id for r in stale], "failed", error="recovery: UIDVALIDITY changed"
            )
        if live:
            try:
                mb.add_flags(sorted({r.uid for r in live}), [DELETED])
            except MailboxError as exc:  # left pending: tried again by the next sweep
                log.warning("cannot put back \\Deleted in %s: %s", folder, exc)
                continue
            state.journal_update([r.id for r in live], "done")
            restored += len(live)
    if not restored:
        return []
    return [f"put back the \\Deleted flag of {restored} message(s) an interrupted run had lifted"]


# ---------------------------------------------------------------- undo


@dataclass
class UndoResult:
    restored: int = 0
    missing: int = 0
    notes: list[str] = field(default_factory=list)


def undo_entries(
    mb: Mailbox, state: StateDB, rows: Sequence[JournalRow], fallback: str = "protect"
) -> UndoResult:
    """Put every message of these journal rows back where it was."""
    result = UndoResult()
    done = [r for r in rows if r.state == "done"]
    flags: dict[str, list[JournalRow]] = defaultdict(list)
    moves: dict[tuple[str, str], list[JournalRow]] = defaultdict(list)
    for r in done:
        if r.action == "flag":
            flags[r.folder].append(r)
        elif r.action in ("move", "delete") and r.dest_folder:
            moves[(r.dest_folder, r.folder)].append(r)
    for folder, frows in flags.items():
        st = mb.select(folder)
        live = [r for r in frows if r.uidvalidity == st.uidvalidity]
        if live:
            mb.remove_flags([r.uid for r in live], list(FLAG_KEYWORDS))
            state.journal_update([r.id for r in live], "undone")
            result.restored += len(live)
        result.missing += len(frows) - len(live)
    for (dest, origin), mrows in moves.items():
        dest_validity = mb.status(dest).uidvalidity
        origin_validity = mb.status(origin).uidvalidity
        mb.select(dest)
        where = locate(mb, mrows, dest_validity)
        result.missing += len(mrows) - len(where)
        if not where:
            continue
        back = {uid: eid for eid, uid in where.items()}
        outcome = Outcome()
        # The user's \\Deleted flags in `dest` that a no-UIDPLUS EXPUNGE lifts are journalled
        # under the run being undone, so the next sweep's recovery puts them back after a crash.
        guard = ProtectJournal(state, mrows[0].run_id, mrows[0].account, dest, dest_validity)
        for batch in _chunks(sorted(back)):
            _transfer(mb, None, batch, back, origin, origin_validity, fallback, outcome, guard)
        state.journal_update(sorted(where), "undone")
        result.restored += outcome.done
        result.notes.extend(n for n in outcome.notes if n not in result.notes)
    return result
