"""Carry out plans, and undo them, through a Mailbox: every write is a journalled step whose
outcome is read off the server before the next step is chosen.

A message's journal entry records what the message is (``actions.identity``: a hash of header
fields every copy keeps, and its size) and its flags, then goes::

    planned -> sent -> done               MOVE, or COPY and the original removed
                    -> copied -> done     COPY proven, original not yet removed (or left flagged)
                    -> failed             not carried out, or the message is gone
    done | copied -> undone               an undo run put it back

"sent" is written before the command goes out. Whatever the answer (OK, NO, BAD, a timeout, a
lost connection), the outcome is decided by looking: is the message still in its folder (UID
SEARCH), and does the destination hold a message with its identity at or above the UIDNEXT the
destination had before the command (a new copy cannot have a lower UID)? COPYUID is only a
hint, checked like any other claim. Nothing leaves its folder before its copy is proven. An
interrupted run leaves entries planned, sent or copied; the next run, sweep or undo, settles
them the same way before anything else (``recover_pending``).

Undo is a run of its own whose entries point at the entries they undo: "restore" (move the
message back, the same journalled transfer), "drop" (the original is still where it was: remove
our copy, lift the flags we added) and "unflag". A restored message carries the keyword
``$NdrKept`` where the folder keeps keywords, so no later sweep acts on it, even when the state
database is gone; locally its identity is in the journal.

Without MOVE and UIDPLUS no command removes only our messages (EXPUNGE removes every
\\Deleted one). ``expunge_fallback`` decides: "deleted" (default) flags the original \\Deleted
and $NdrBackscatter and leaves the expunge to the user's own client; "keyword" flags it
$NdrBackscatter only; "protect" expunges, lifting the user's \\Deleted flags around it (see
``_protected_expunge`` for the window that remains).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ndr_sweeper.actions.identity import FIELDS, Identity, identity, match
from ndr_sweeper.actions.plan import FLAG_KEYWORDS, JUNK_KEYWORD, Action, Plan
from ndr_sweeper.errors import MailboxError
from ndr_sweeper.mailbox import uidset

if TYPE_CHECKING:
    from ndr_sweeper.mailbox.base import FolderStatus, Mailbox
    from ndr_sweeper.progress import Reporter
    from ndr_sweeper.state import JournalEntry, JournalRow, StateDB

log = logging.getLogger(__name__)

DELETED = "\\Deleted"
KEPT_KEYWORD = "$NdrKept"  # on a message undo put back: no sweep acts on it again
PROTECT = "protect"  # journal action: a user's \\Deleted flag lifted around an EXPUNGE
ACTING = ("move", "delete", "flag")  # what a sweep does; undo acts on these
TRANSFERS = ("move", "delete", "restore")
BATCH = 5000  # UIDs per MOVE/COPY command (the set string is capped too)
FALLBACKS = ("deleted", "keyword", "protect")
LEFT_FLAGGED = {
    "deleted": (
        "the server has neither MOVE nor UIDPLUS, so it cannot remove only our messages: the "
        "copies are in the destination and the originals were flagged \\Deleted (your mail "
        "client removes them when it expunges)"
    ),
    "keyword": (
        "the server has neither MOVE nor UIDPLUS, so it cannot remove only our messages: the "
        f"copies are in the destination and the originals were left in place, flagged "
        f"{JUNK_KEYWORD}"
    ),
}


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    vanished: int = 0
    notes: list[str] = field(default_factory=list)
    retry: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _lower(flags: Iterable[str]) -> set[str]:
    return {f.lower() for f in flags}


def _has(flags: Iterable[str], flag: str) -> bool:
    return flag.lower() in _lower(flags)


class _Box:
    """The mailbox and what the last SELECT of it said, so that a folder already open for
    writing (the sweep's scan leaves it so) is not selected again."""

    def __init__(
        self,
        mb: Mailbox,
        known: Mapping[str, FolderStatus] | None = None,
        modseqs: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        self.mb = mb
        self.known = dict(known or {})
        # CONDSTORE: each message's MODSEQ when prepare() read it; our STOREs are conditional
        # on it (UNCHANGEDSINCE), so a message another client changed since is left alone.
        self.modseqs = dict(modseqs or {})

    def unchanged_since(self, folder: str, rows: Iterable[JournalRow]) -> int | None:
        """The UNCHANGEDSINCE for a STORE on `rows` (None: not known for all of them)."""
        seen = [self.modseqs.get((folder, r.uid)) for r in rows]
        return max(seen) if seen and all(m is not None for m in seen) else None  # type: ignore[type-var]

    def open(self, folder: str, *, write: bool = True) -> FolderStatus:
        mb = self.mb
        already = getattr(mb, "selected", None) == folder
        if already and (not write or not getattr(mb, "readonly", True)) and folder in self.known:
            return self.known[folder]
        st = mb.select(folder, readonly=not write)
        self.known[folder] = st
        return st


def _identities(mb: Mailbox, uids: Sequence[int]) -> dict[int, tuple[Identity, frozenset[str]]]:
    """Identity and flags of those of `uids` that exist in the selected folder."""
    if not uids:
        return {}
    return {h.uid: (identity(h.header, h.size), h.flags) for h in mb.fetch_headers(uids, FIELDS)}


def _flags_now(mb: Mailbox, uids: Sequence[int]) -> dict[int, frozenset[str]]:
    if not uids:
        return {}
    return {h.uid: h.flags for h in mb.fetch_headers(uids, ["Message-ID"])}


def _wanted(rows: Iterable[JournalRow]) -> dict[int, Identity]:
    return {
        r.id: Identity(r.fingerprint, r.size)
        for r in rows
        if r.fingerprint is not None and r.size is not None
    }


# ---------------------------------------------------------------- before acting


@dataclass
class Prepared:
    """Plans checked against the server and the journal just before acting (or previewing)."""

    plans: list[Plan]
    identities: dict[tuple[str, int], tuple[Identity, frozenset[str]]] = field(default_factory=dict)
    opened: dict[str, FolderStatus] = field(default_factory=dict)  # what SELECT said last
    modseqs: dict[tuple[str, int], int] = field(default_factory=dict)  # CONDSTORE, as read
    waiting: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    later: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # not errors
    notes: list[str] = field(default_factory=list)


def _keep(p: Plan, reason: str) -> Plan:
    from dataclasses import replace

    return replace(p, action=Action.KEEP, dest=None, reason=reason)


def prepare(
    mb: Mailbox,
    state: StateDB,
    account: str,
    plans: Sequence[Plan],
    *,
    write: bool,
    known: Mapping[str, FolderStatus] | None = None,
    scanned_modseqs: Mapping[tuple[str, int], int] | None = None,
) -> Prepared:
    """Read what each acting plan's message is, and turn into "keep" the plans that must not act:

    - the message carries $NdrKept, or its identity or Message-ID was put back by an undo;
    - it was acted on already (the journal has a done entry for this very message: the copy
      path can leave the original in place, flagged), or it carries $NdrBackscatter;
    - an earlier action on it is not finished (recovery could not settle it): it waits;
    - it is no longer in the folder;
    - its folder was renumbered (UIDVALIDITY) since the scan: its UID names another message;
    - another client changed it since the scan read it (CONDSTORE: its MODSEQ moved): it is
      left alone this time, and read again next sweep.

    The dry run calls this too, so its preview is what a real sweep would do. `known` is what
    the scan's SELECT of each folder said.
    """
    box = _Box(mb, known)
    scanned = {f: st.uidvalidity for f, st in (known or {}).items()}
    out = Prepared(list(plans), opened=box.known)
    by_folder: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(out.plans):
        if p.acts:
            by_folder[p.folder].append(i)
    for folder, indexes in by_folder.items():
        st = box.open(folder, write=write)
        uids = [out.plans[i].uid for i in indexes]
        if folder in scanned and st.uidvalidity != scanned[folder]:
            for i in indexes:
                out.plans[i] = _keep(
                    out.plans[i], "its folder was renumbered: read again next time"
                )
            out.waiting[folder].extend(uids)
            out.notes.append(
                f"UIDVALIDITY of {folder!r} changed during the sweep: nothing there was "
                "touched; the next sweep reads it again"
            )
            continue
        found: dict[int, tuple[Identity, frozenset[str]]] = {}
        for h in mb.fetch_headers(uids, FIELDS) if uids else ():
            found[h.uid] = (identity(h.header, h.size), h.flags)
            if h.modseq is not None:
                out.modseqs[(folder, h.uid)] = h.modseq
        history = state.entries_for_messages(account, folder, st.uidvalidity, uids)
        undone_fps = state.undone_fingerprints(account, [v[0].fingerprint for v in found.values()])
        undone_ids = state.undone_ids(
            account, [out.plans[i].bounce_message_id or "" for i in indexes]
        )
        gone = 0
        for i in indexes:
            p = out.plans[i]
            if p.uid not in found:
                gone += 1
                out.plans[i] = _keep(p, "no longer in the folder when acted on")
                continue
            ident, flags = found[p.uid]
            out.identities[(folder, p.uid)] = (ident, flags)
            before, now = (
                (scanned_modseqs or {}).get((folder, p.uid)),
                out.modseqs.get((folder, p.uid)),
            )
            if before is not None and now is not None and now != before:
                out.plans[i] = _keep(p, "changed by another client since it was read: left alone")
                out.later[folder].append(p.uid)
                continue
            states = {r.state for r in history.get(p.uid, ()) if r.action in ACTING}
            if (
                _has(flags, KEPT_KEYWORD)
                or ident.fingerprint in undone_fps
                or (p.bounce_message_id and p.bounce_message_id in undone_ids)
                or "undone" in states
            ):
                out.plans[i] = _keep(p, "put back by an earlier undo: kept")
            elif states & {"planned", "sent", "copied"}:
                out.plans[i] = _keep(p, "an earlier action on it is not finished: waiting")
                out.waiting[folder].append(p.uid)
            elif "done" in states or _has(flags, JUNK_KEYWORD):
                out.plans[i] = _keep(p, f"acted on by an earlier sweep ({JUNK_KEYWORD})")
        if gone:
            out.notes.append(
                f"{gone} message(s) in {folder!r} were gone before they were acted on "
                "(moved or deleted by another client)"
            )
    return out


# ---------------------------------------------------------------- finding copies


def _find_copies(box: _Box, dest: str, rows: Sequence[JournalRow]) -> dict[int, int]:
    """Journal entry id -> UID of the very message in `dest`, for the rows found there.

    Proof is the identity: at the UID the journal has (COPYUID) when it is the right message;
    else among the messages at or above the UIDNEXT `dest` had before the command (a copy made
    by it cannot sit lower, so an older message with the same identity is never taken for it);
    only when `dest` was renumbered (UIDVALIDITY) or nothing was recorded, anywhere in `dest`.
    Entries written before identities were journalled are found by their Message-ID.
    """
    from ndr_sweeper.sentids import ids_from_header

    mb = box.mb
    st = box.open(dest, write=False)
    wanted = _wanted(rows)
    found: dict[int, int] = {}
    same = [r for r in rows if r.dest_uidvalidity == st.uidvalidity]
    hints = {r.id: r.dest_uid for r in same if r.dest_uid}
    if hints:
        seen = _identities(mb, sorted(set(hints.values())))
        found.update(
            match(
                {k: wanted[k] for k in hints if k in wanted},
                ((u, v[0]) for u, v in seen.items()),
                hints,
            )
        )
    rest = [r for r in same if r.id in wanted and r.id not in found and r.dest_uidnext]
    if rest:
        since = min(r.dest_uidnext or 0 for r in rest)
        seen = _identities(mb, mb.search_uids(since))
        taken = set(found.values())
        found.update(
            match(
                {r.id: wanted[r.id] for r in rest},
                ((u, v[0]) for u, v in seen.items() if u not in taken),
            )
        )
    anywhere = [
        r
        for r in rows
        if r.id not in found
        and (r.id not in wanted or r.dest_uidvalidity != st.uidvalidity or not r.dest_uidnext)
    ]
    if anywhere:
        # Sizes (and Message-IDs) of the whole folder first, identities only where they can match.
        heads = list(mb.fetch_headers(mb.search_uids(), ["Message-ID"]))
        taken = set(found.values())
        sizes = {wanted[r.id].size for r in anywhere if r.id in wanted}
        maybe = [h.uid for h in heads if h.size in sizes and h.uid not in taken]
        seen = _identities(mb, maybe)
        found.update(
            match(
                {r.id: wanted[r.id] for r in anywhere if r.id in wanted},
                ((u, v[0]) for u, v in seen.items()),
            )
        )
        taken = set(found.values())
        by_id: dict[str, list[int]] = defaultdict(list)
        for h in heads:
            if h.uid not in taken:
                for mid in ids_from_header(h.header):
                    by_id[mid].append(h.uid)
        for r in anywhere:
            if r.id in found or r.id in wanted or not r.bounce_message_id:
                continue
            free = [u for u in by_id.get(r.bounce_message_id, []) if u not in taken]
            if free:
                found[r.id] = free[0]
                taken.add(free[0])
    return found


def _others(rows: Sequence[JournalRow], taken: Iterable[JournalRow]) -> list[JournalRow]:
    """*rows* without those in *taken*, by journal id (``r not in taken`` compared whole rows,
    field by field: quadratic, 5.8 s for 5,000 rows)."""
    ids = {r.id for r in taken}
    return [r for r in rows if r.id not in ids]


# ---------------------------------------------------------------- moving


def _transfer(
    box: _Box,
    state: StateDB,
    rows: Sequence[JournalRow],
    src: str,
    dest: str,
    fallback: str,
    outcome: Outcome,
    guard: ProtectJournal | None,
) -> list[JournalRow]:
    """Move `rows` (planned, in `src`) to `dest`; returns the rows now done."""
    mb = box.mb
    ids = [r.id for r in rows]
    box.open(src)
    dst = mb.status(dest)
    state.journal_update(ids, "sent", dest_uidvalidity=dst.uidvalidity, dest_uidnext=dst.uidnext)
    rows = state.entries(ids)
    command = "MOVE" if mb.has("MOVE") else "COPY"
    hints: dict[int, int] = {}
    refused: MailboxError | None = None
    max_bytes = getattr(mb, "max_set_bytes", uidset.DEFAULT_MAX_BYTES)
    for b in uidset.batches([r.uid for r in rows], max_count=BATCH, max_bytes=max_bytes):
        try:
            if command == "MOVE":
                hints.update(mb.move(list(b.uids), dest))
            else:
                hints.update(mb.copy(list(b.uids), dest))
        except MailboxError as exc:  # NO or BAD: carried out or not, only a look tells
            refused = exc
            break
    by_uid = {r.uid: r.id for r in rows}
    hinted = {by_uid[s]: d for s, d in hints.items() if s in by_uid}
    if hinted:
        state.journal_update([], "sent", dest_uids=hinted)  # a claim, checked in _settle
        rows = state.entries(ids)
    return _settle(box, state, rows, src, dest, fallback, outcome, guard, command, refused)


def _settle(
    box: _Box,
    state: StateDB,
    rows: Sequence[JournalRow],
    src: str,
    dest: str,
    fallback: str,
    outcome: Outcome,
    guard: ProtectJournal | None,
    command: str | None,
    refused: MailboxError | None,
) -> list[JournalRow]:
    """Decide what a MOVE/COPY (answered or not) did to `rows`, by looking; finish copies.
    `command` is None in recovery: the answer was never read."""
    mb = box.mb
    box.open(src)
    present = set(mb.search_uid_set([r.uid for r in rows]))
    copies = _find_copies(box, dest, rows)
    done = [r for r in rows if r.uid not in present and r.id in copies]
    copied = [r for r in rows if r.uid in present and r.id in copies]
    untouched = [r for r in rows if r.uid in present and r.id not in copies]
    vanished = [r for r in rows if r.uid not in present and r.id not in copies]
    if done:
        state.journal_update(
            [r.id for r in done], "done", dest_uids={r.id: copies[r.id] for r in done}
        )
    if copied:
        state.journal_update(
            [r.id for r in copied], "copied", dest_uids={r.id: copies[r.id] for r in copied}
        )
    if untouched and command is None:  # never reached the server: planned again by the rescan
        state.journal_update(
            [r.id for r in untouched], "failed", error="recovery: not carried out; planned again"
        )
    elif untouched:
        why = (
            str(refused)
            if refused is not None
            else f"the server answered OK to {command} but did not carry it out"
        )
        state.journal_update([r.id for r in untouched], "failed", error=why)
        outcome.failed += len(untouched)
        outcome.retry[src].extend(r.uid for r in untouched)
        outcome.note(
            why
            if refused is not None
            else f"{len(untouched)} message(s) in {src!r}: {why}; the next sweep tries again"
        )
    elif refused is not None:
        outcome.note(f"the server answered {command} with an error ({refused}) but had done it")
    if vanished:
        state.journal_update(
            [r.id for r in vanished],
            "failed",
            error=f"no longer in {src!r} and not found in {dest!r}: moved or deleted meanwhile",
        )
        outcome.vanished += len(vanished)
        outcome.note(
            f"{len(vanished)} message(s) left {src!r} but were not found in {dest!r} "
            "(moved or deleted by another client meanwhile)"
        )
    outcome.done += len(done)
    finished = list(done)
    if copied:
        box.open(src)
        finished += _remove_originals(
            box, state, state.entries([r.id for r in copied]), src, dest, fallback, outcome, guard
        )
    return finished


def _delete_ours(
    mb: Mailbox, uids: Sequence[int], fallback: str, guard: ProtectJournal | None
) -> None:
    """Flag these messages \\Deleted and expunge exactly them: UID EXPUNGE with UIDPLUS,
    the protect fallback's expunge without; with another fallback they stay flagged (the
    user's client expunges them)."""
    mb.add_flags(uids, [DELETED])
    if mb.has("UIDPLUS"):
        mb.expunge_uids(uids)
    elif fallback == PROTECT:
        _protected_expunge(mb, uids, guard)


def _remove_originals(
    box: _Box,
    state: StateDB,
    rows: Sequence[JournalRow],
    src: str,
    dest: str,
    fallback: str,
    outcome: Outcome,
    guard: ProtectJournal | None,
) -> list[JournalRow]:
    """Remove (or, without UIDPLUS, mark) the originals of proven copies; returns rows done."""
    mb = box.mb
    uids = [r.uid for r in rows]
    error: MailboxError | None = None
    # Not conditional (UNCHANGEDSINCE): the copy is made and proven, so an original left
    # behind would only be a duplicate; the check that matters was prepare()'s.
    if mb.has("UIDPLUS") or fallback == PROTECT:
        try:
            _delete_ours(mb, uids, fallback, guard)
        except MailboxError as exc:
            error = exc
        left = set(mb.search_uid_set(uids))
        done = [r for r in rows if r.uid not in left]
        if done:
            state.journal_update([r.id for r in done], "done")
    else:
        keywords = [DELETED, JUNK_KEYWORD] if fallback == "deleted" else [JUNK_KEYWORD]
        st = box.open(src)
        if fallback == "keyword" and not st.keeps_keyword(JUNK_KEYWORD):
            # Nothing would mark the original: it would be copied again on every sweep.
            outcome.failed += len(rows)
            outcome.retry[src].extend(r.uid for r in rows)
            outcome.note(
                f"{src!r} does not keep the keyword {JUNK_KEYWORD} (PERMANENTFLAGS), which "
                f'expunge_fallback = "keyword" needs: use expunge_fallback = "deleted"; the '
                f"copies are in {dest!r}, the originals were left as they were"
            )
            return []
        try:
            mb.add_flags(uids, keywords)
        except MailboxError as exc:
            error = exc
        now = _flags_now(mb, uids)
        need = DELETED if fallback == "deleted" else JUNK_KEYWORD
        done = [r for r in rows if r.uid in now and _has(now[r.uid], need)]
        gone = [r for r in rows if r.uid not in now]
        if done:
            state.journal_update(
                [r.id for r in done],
                "done",
                original_left=True,
                flags_added={
                    r.id: [
                        k
                        for k in keywords
                        if _has(now[r.uid], k) and not _has(r.flags_before or (), k)
                    ]
                    for r in done
                },
            )
            outcome.note(LEFT_FLAGGED[fallback])
        if gone:  # removed by someone else once copied: what we wanted
            state.journal_update([r.id for r in gone], "done")
            done += gone
    outcome.done += len(done)
    stuck = _others(rows, done)
    if stuck:
        why = f"{error}" if error is not None else "the server did not remove them"
        outcome.failed += len(stuck)
        outcome.retry[src].extend(r.uid for r in stuck)
        outcome.note(
            f"{len(stuck)} message(s) were copied to {dest!r} but are still in {src!r} ({why}); "
            "the next sweep removes them (never copying them again)"
        )
    return done


def _protected_expunge(mb: Mailbox, ours: Sequence[int], guard: ProtectJournal | None) -> None:
    """EXPUNGE on a server without UIDPLUS, keeping the \\Deleted messages that are not ours.

    Their flag is lifted (journalled first, so recovery puts it back after a crash), ours is
    set, and right before the EXPUNGE every message's flags are read again (FETCH, not only
    SEARCH DELETED, which a server may answer wrongly), lifting any flag set meanwhile. What
    remains: a flag another client sets between that last look and the EXPUNGE (one round
    trip) is expunged. The protocol offers no way to close it; README, Safety.
    """
    mine = set(ours)

    def flagged() -> set[int]:
        everything = mb.search_uids()
        by_fetch = {u for u, f in _flags_now(mb, everything).items() if _has(f, DELETED)}
        return (by_fetch | set(mb.search_flag(DELETED))) - mine

    lifted: set[int] = set()
    lifted_ids: list[int] = []
    try:
        for _ in range(3):
            theirs = flagged() - lifted
            if not theirs:
                break
            log.info("protecting %d message(s) flagged \\Deleted from our EXPUNGE", len(theirs))
            lifted_ids += guard.lifted(sorted(theirs)) if guard is not None else []
            mb.remove_flags(sorted(theirs), [DELETED])
            lifted |= theirs
            mb.add_flags(sorted(mine), [DELETED])
        else:
            raise MailboxError(
                "another client keeps flagging messages \\Deleted; nothing was expunged"
            )
        mb.expunge_flagged_deleted()
    finally:
        if lifted:
            mb.add_flags(sorted(lifted), [DELETED])
            if guard is not None:
                guard.restored(lifted_ids)


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


# ---------------------------------------------------------------- flags


def _set_flags(
    box: _Box,
    state: StateDB,
    rows: Sequence[JournalRow],
    folder: str,
    keywords: Sequence[str],
    outcome: Outcome,
) -> list[JournalRow]:
    """STORE +FLAGS, then read the flags back: done where every keyword stuck."""
    mb = box.mb
    st = box.open(folder)
    ids = [r.id for r in rows]
    uids = [r.uid for r in rows]
    lost = [k for k in keywords if not k.startswith("\\") and not st.keeps_keyword(k)]
    if lost:
        state.journal_update(ids, "failed", error=f"the server keeps no keyword {lost[0]}")
        outcome.failed += len(rows)
        outcome.note(
            f"{folder!r} does not keep the keyword {lost[0]} (PERMANENTFLAGS): nothing was "
            'flagged; use action = "move" on this server'
        )
        return []
    state.journal_update(ids, "sent")
    refused: MailboxError | None = None
    since = box.unchanged_since(folder, rows)  # CONDSTORE: a message changed since is skipped
    try:
        mb.add_flags(uids, list(keywords), unchanged_since=since)
    except MailboxError as exc:
        refused = exc
    now: dict[int, frozenset[str]] = {}
    moved: set[int] = set()  # changed by another client after we read it: left alone
    for h in mb.fetch_headers(uids, ["Message-ID"]) if uids else ():
        now[h.uid] = h.flags
        if since is not None and h.modseq is not None and h.modseq > since:
            moved.add(h.uid)
    done = [r for r in rows if r.uid in now and all(_has(now[r.uid], k) for k in keywords)]
    later = [r for r in _others(rows, done) if r.uid in moved]
    if later:
        state.journal_update(
            [r.id for r in later], "failed", error="changed by another client meanwhile"
        )
        outcome.retry[folder].extend(r.uid for r in later)
        outcome.note(
            f"{len(later)} message(s) in {folder!r} were changed by another client while the "
            "sweep ran: left alone, the next sweep reads them again"
        )
        rows = [r for r in rows if r not in later]
    if done:
        state.journal_update(
            [r.id for r in done],
            "done",
            flags_added={
                r.id: [k for k in keywords if not _has(r.flags_before or (), k)] for r in done
            },
        )
    failed = _others(rows, done)
    if failed:
        why = str(refused) if refused else "the server did not keep the keywords"
        state.journal_update([r.id for r in failed], "failed", error=why)
        outcome.failed += len(failed)
        outcome.retry[folder].extend(r.uid for r in failed if r.uid in now)
        outcome.note(why)
    outcome.done += len(done)
    return done


def _lift_flags(
    box: _Box,
    rows: Sequence[JournalRow],
    folder: str,
    flags_of: Callable[[JournalRow], Sequence[str]],
) -> tuple[list[JournalRow], MailboxError | None]:
    """STORE -FLAGS per distinct flag set, then read back: rows whose flags are all gone."""
    mb = box.mb
    box.open(folder)
    groups: dict[tuple[str, ...], list[JournalRow]] = defaultdict(list)
    for r in rows:
        groups[tuple(sorted(flags_of(r)))].append(r)
    refused = None
    for flags, grows in groups.items():
        if flags:
            try:
                mb.remove_flags([r.uid for r in grows], list(flags))
            except MailboxError as exc:
                refused = exc
    now = _flags_now(mb, [r.uid for r in rows])
    ok = [r for r in rows if r.uid in now and not any(_has(now[r.uid], f) for f in flags_of(r))]
    return ok, refused


# ---------------------------------------------------------------- applying plans


def apply_plans(
    mb: Mailbox,
    state: StateDB,
    run_id: str,
    account: str,
    plans: Sequence[Plan],
    reporter: Reporter,
    fallback: str = "deleted",
    scanned: Mapping[str, FolderStatus] | None = None,
    identities: Mapping[tuple[str, int], tuple[Identity, frozenset[str]]] | None = None,
    opened: Mapping[str, FolderStatus] | None = None,
    modseqs: Mapping[tuple[str, int], int] | None = None,
) -> Outcome:
    """Journal, then carry out and check, every plan that acts. One refused group does not
    stop the others; a lost connection does (the journal says what is left to settle).

    `scanned` is each folder's status when its UIDs were read: if its UIDVALIDITY has changed
    since, those UIDs name other messages, and nothing in that folder is touched. `identities`
    and `opened` (what the last SELECT of each folder said) come from :func:`prepare`.
    """
    from ndr_sweeper.state import JournalEntry

    box = _Box(mb, opened if opened is not None else scanned, modseqs)
    outcome = Outcome()
    identities = identities or {}
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
                    raise MailboxError(
                        f"the server refused to create folder {dest!r} that a rule moves "
                        f"messages to ({exc}); choose another folder name in the rule"
                    ) from None
            opened = box.open(folder)
            validity = opened.uidvalidity
            if (
                action is not Action.FLAG
                and fallback == "keyword"
                and not (mb.has("MOVE") or mb.has("UIDPLUS"))
                and not opened.keeps_keyword(JUNK_KEYWORD)
            ):
                # The copy would be made and the original never marked: copied again each time.
                raise MailboxError(
                    f"{folder!r} does not keep the keyword {JUNK_KEYWORD} (PERMANENTFLAGS), which "
                    'expunge_fallback = "keyword" needs on a server without MOVE and UIDPLUS: '
                    'use expunge_fallback = "deleted"; nothing was copied'
                )
            if scanned and folder in scanned and validity != scanned[folder].uidvalidity:
                outcome.failed += len(group)
                outcome.retry[folder].extend(p.uid for p in group)
                outcome.note(
                    f"UIDVALIDITY of {folder!r} changed during the sweep: nothing there was "
                    "touched; the next sweep reads it again"
                )
                continue
            entries: list[JournalEntry] = []
            for p in group:
                ident, flags = identities.get((folder, p.uid), (None, None))
                entries.append(
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
                        fingerprint=ident.fingerprint if ident else None,
                        size=ident.size if ident else None,
                        flags_before=tuple(sorted(flags)) if flags is not None else None,
                        bounce_domain=p.bounce_domain,
                        recipient_domain=p.recipient_domain,
                    )
                )
            rows = state.entries(state.journal_add(run_id, entries))
            if action is Action.FLAG:
                keywords = list(dict.fromkeys([dest or JUNK_KEYWORD, *FLAG_KEYWORDS]))
                _set_flags(box, state, rows, folder, keywords, outcome)
            else:
                assert dest is not None
                guard = ProtectJournal(state, run_id, account, folder, validity)
                _transfer(box, state, rows, folder, dest, fallback, outcome, guard)
        except MailboxError as exc:
            log.warning("%s: %s", account, exc)
            open_rows = [
                r
                for r in state.run_entries(run_id)
                if r.folder == folder and r.state == "planned" and r.uid in {p.uid for p in group}
            ]
            if open_rows:
                state.journal_update([r.id for r in open_rows], "failed", error=str(exc))
            outcome.failed += len(group) if not open_rows else len(open_rows)
            outcome.retry[folder].extend(p.uid for p in group)
            outcome.note(str(exc))
        reporter.advance(len(group))
    return outcome


# ---------------------------------------------------------------- recovery


def recover_pending(
    mb: Mailbox,
    state: StateDB,
    account: str,
    fallback: str = "deleted",
    run_id: str | None = None,
) -> list[str]:
    """Settle what an interrupted run (sweep or undo) left half done. Returns notes.

    Entries are settled by looking at the server, exactly as after a command whose answer was
    lost. Entries still "copied" afterwards (the server refused to remove the original) stay
    pending and their messages wait. `run_id` journals the user's \\Deleted flags that the
    protect path lifts here.
    """
    pending = state.pending_entries(account)
    if not pending:
        return []
    box = _Box(mb)
    outcome = Outcome()
    protect = [r for r in pending if r.action == PROTECT]
    work = [r for r in pending if r.action != PROTECT]
    if work:
        outcome.note(f"finishing {len(work)} action(s) left over from an interrupted run")
    groups: dict[tuple[str, str, str | None], list[JournalRow]] = defaultdict(list)
    for r in work:
        kind = "transfer" if r.action in TRANSFERS else r.action
        groups[(kind, r.folder, r.dest_folder)].append(r)
    for (kind, folder, dest), rows in groups.items():
        try:
            st = box.open(folder)
        except MailboxError as exc:
            state.journal_update([r.id for r in rows], "failed", error=f"recovery: {exc}")
            continue
        stale = [r for r in rows if r.uidvalidity != st.uidvalidity]
        if stale:
            state.journal_update(
                [r.id for r in stale], "failed", error="recovery: UIDVALIDITY changed; rescanned"
            )
        rows = [r for r in rows if r.uidvalidity == st.uidvalidity]
        never_sent = [r for r in rows if r.state == "planned"]
        if never_sent:
            state.journal_update(
                [r.id for r in never_sent], "failed", error="recovery: never sent; planned again"
            )
        rows = [r for r in rows if r.state != "planned"]
        if not rows:
            continue
        guard = ProtectJournal(state, run_id, account, folder, st.uidvalidity) if run_id else None
        if kind == "transfer":
            assert dest is not None
            sent = [r for r in rows if r.state == "sent"]
            copied = [r for r in rows if r.state == "copied"]
            finished: list[JournalRow] = []
            if sent:
                finished += _settle(
                    box,
                    state,
                    sent,
                    folder,
                    dest,
                    fallback,
                    outcome,
                    guard,
                    None,
                    None,
                )
            if copied:
                box.open(folder)
                finished += _remove_originals(
                    box, state, copied, folder, dest, fallback, outcome, guard
                )
            _mark_undone(state, finished)
        elif kind == "flag":
            now = _flags_now(mb, [r.uid for r in rows])
            keywords = {r.id: [r.dest_folder or JUNK_KEYWORD, *FLAG_KEYWORDS] for r in rows}
            ok = [
                r for r in rows if r.uid in now and all(_has(now[r.uid], k) for k in keywords[r.id])
            ]
            if ok:
                state.journal_update(
                    [r.id for r in ok],
                    "done",
                    flags_added={
                        r.id: [
                            k
                            for k in dict.fromkeys(keywords[r.id])
                            if not _has(r.flags_before or (), k)
                        ]
                        for r in ok
                    },
                )
            bad = _others(rows, ok)
            if bad:  # keywords are harmless: the rescan sets them again if still wanted
                state.journal_update([r.id for r in bad], "failed", error="recovery: interrupted")
        elif kind == "unflag":
            ok, _refused = _lift_flags(box, rows, folder, lambda r: r.flags_added or ())
            state.journal_update([r.id for r in ok], "done")
            _mark_undone(state, ok)
        elif kind == "drop":
            result = UndoResult()
            _drop(box, state, rows, fallback, result, guard)
            outcome.notes.extend(n for n in result.notes if n not in outcome.notes)
    if protect:
        outcome.notes.extend(_restore_protected(box, state, protect))
    return outcome.notes


def _restore_protected(box: _Box, state: StateDB, rows: Sequence[JournalRow]) -> list[str]:
    """Put back the \\Deleted flags an interrupted run lifted from the user's messages."""
    by_folder: dict[str, list[JournalRow]] = defaultdict(list)
    for r in rows:
        by_folder[r.folder].append(r)
    restored = 0
    for folder, frows in by_folder.items():
        try:
            st = box.open(folder)
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
                box.mb.add_flags(sorted({r.uid for r in live}), [DELETED])
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
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _mark_undone(state: StateDB, undo_rows: Iterable[JournalRow]) -> None:
    originals = [r.undoes for r in undo_rows if r.undoes is not None]
    if originals:
        state.journal_update(originals, "undone")


def undo_runs(
    mb: Mailbox,
    state: StateDB,
    account: str,
    run_ids: Sequence[str],
    undo_run_id: str,
    fallback: str = "deleted",
) -> UndoResult:
    """Put back what the runs `run_ids` did in `account`, as the journalled run `undo_run_id`.

    Idempotent and resumable: what an earlier (maybe interrupted) undo did is settled first and
    never done twice; only a message proven to be the one the run moved is moved back.
    """
    result = UndoResult()
    for n in recover_pending(mb, state, account, fallback, run_id=undo_run_id):
        result.note(n)
    rows = [
        r
        for rid in run_ids
        for r in state.run_entries(rid)
        if r.account == account and r.action in ACTING and r.state in ("done", "copied")
    ]
    box = _Box(mb)
    flags: dict[str, list[JournalRow]] = defaultdict(list)
    moves: dict[tuple[str, str], list[JournalRow]] = defaultdict(list)
    for r in rows:
        if r.action == "flag":
            flags[r.folder].append(r)
        elif r.dest_folder:
            moves[(r.dest_folder, r.folder)].append(r)
    for folder, frows in flags.items():
        _undo_flags(box, state, undo_run_id, frows, folder, result)
    for (dest, origin), mrows in moves.items():
        _undo_moves(box, state, undo_run_id, mrows, dest, origin, fallback, result)
    return result


def _undo_entry(
    r: JournalRow,
    *,
    folder: str,
    uidvalidity: int,
    uid: int,
    action: str,
    dest: str | None,
    flags: Sequence[str] | None = None,
) -> JournalEntry:
    from ndr_sweeper.state import JournalEntry

    return JournalEntry(
        account=r.account,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=uid,
        bounce_message_id=r.bounce_message_id,
        original_message_id=r.original_message_id,
        kind=r.kind,
        decision=r.decision,
        reason=f"undo of run {r.run_id}",
        action=action,
        dest_folder=dest,
        fingerprint=r.fingerprint,
        size=r.size,
        flags_added=tuple(flags) if flags is not None else None,
        undoes=r.id,
    )


def _ours_on_original(r: JournalRow) -> list[str]:
    """The flags a sweep may have added to an original it left in place (or half removed)."""
    if r.flags_added is not None and r.state == "done":
        return list(r.flags_added)
    if r.flags_before is None:  # journalled before flags were: never lift a \\Deleted
        return [JUNK_KEYWORD]
    return [f for f in (DELETED, JUNK_KEYWORD) if not _has(r.flags_before, f)]


def _undo_flags(
    box: _Box,
    state: StateDB,
    run_id: str,
    rows: Sequence[JournalRow],
    folder: str,
    result: UndoResult,
) -> None:
    try:
        st = box.open(folder)
    except MailboxError as exc:
        result.failed += len(rows)
        result.note(str(exc))
        return
    live = [r for r in rows if r.uidvalidity == st.uidvalidity]
    present = set(box.mb.search_uid_set([r.uid for r in live]))
    live = [r for r in live if r.uid in present]
    result.missing += len(rows) - len(live)
    if not live:
        return

    def lift(r: JournalRow) -> list[str]:
        if r.flags_added is not None:
            return list(r.flags_added)
        return [
            k for k in dict.fromkeys([r.dest_folder or JUNK_KEYWORD, JUNK_KEYWORD]) if k != "Junk"
        ]

    undo = state.entries(
        state.journal_add(
            run_id,
            [
                _undo_entry(
                    r,
                    folder=folder,
                    uidvalidity=st.uidvalidity,
                    uid=r.uid,
                    action="unflag",
                    dest=None,
                    flags=lift(r),
                )
                for r in live
            ],
        )
    )
    state.journal_update([u.id for u in undo], "sent")
    ok, refused = _lift_flags(box, undo, folder, lambda u: u.flags_added or ())
    state.journal_update([u.id for u in ok], "done")
    _mark_undone(state, ok)
    result.restored += len(ok)
    bad = _others(undo, ok)
    if bad:
        state.journal_update([u.id for u in bad], "failed", error=str(refused or "flags stayed"))
        result.failed += len(bad)
        result.note(f"the flags of {len(bad)} message(s) could not be removed ({refused})")


def _undo_moves(
    box: _Box,
    state: StateDB,
    run_id: str,
    rows: Sequence[JournalRow],
    dest: str,
    origin: str,
    fallback: str,
    result: UndoResult,
) -> None:
    mb = box.mb
    try:
        dst = box.open(dest)
        where = _find_copies(box, dest, rows)
    except MailboxError as exc:
        result.failed += len(rows)
        result.note(str(exc))
        return
    missing = [r for r in rows if r.id not in where]
    if missing:
        result.missing += len(missing)
        result.note(
            f"{len(missing)} message(s) are no longer in {dest!r} (deleted or moved since): "
            "they cannot be put back"
        )
    found = [r for r in rows if r.id in where]
    if not found:
        return
    left = [r for r in found if r.original_left or r.state == "copied"]
    still: set[int] = set()
    origin_st = None
    if left:
        origin_st = box.open(origin)
        still = set(
            mb.search_uid_set([r.uid for r in left if r.uidvalidity == origin_st.uidvalidity])
        )
    drop = [
        r for r in left if origin_st and r.uidvalidity == origin_st.uidvalidity and r.uid in still
    ]
    restore = _others(found, drop)
    if drop:
        assert origin_st is not None
        entries = [
            _undo_entry(
                r,
                folder=dest,
                uidvalidity=dst.uidvalidity,
                uid=where[r.id],
                action="drop",
                dest=origin,
                flags=_ours_on_original(r),
            )
            for r in drop
        ]
        undo = state.entries(state.journal_add(run_id, entries))
        state.journal_update([u.id for u in undo], "sent")
        guard = ProtectJournal(state, run_id, drop[0].account, dest, dst.uidvalidity)
        _drop(box, state, undo, fallback, result, guard)
    if restore:
        entries = [
            _undo_entry(
                r,
                folder=dest,
                uidvalidity=dst.uidvalidity,
                uid=where[r.id],
                action="restore",
                dest=origin,
            )
            for r in restore
        ]
        undo = state.entries(state.journal_add(run_id, entries))
        dst = box.open(dest)
        if dst.keeps_keyword(KEPT_KEYWORD):
            try:  # travels with the message: no sweep acts on it again, state or no state
                mb.add_flags([u.uid for u in undo], [KEPT_KEYWORD])
            except MailboxError as exc:
                log.warning("cannot mark put-back messages %s: %s", KEPT_KEYWORD, exc)
        outcome = Outcome()
        guard = ProtectJournal(state, run_id, restore[0].account, dest, dst.uidvalidity)
        done = _transfer(box, state, undo, dest, origin, fallback, outcome, guard)
        _mark_undone(state, done)
        result.restored += len(done)
        result.failed += outcome.failed
        for n in outcome.notes:
            result.note(n)


def _drop(
    box: _Box,
    state: StateDB,
    undo: Sequence[JournalRow],
    fallback: str,
    result: UndoResult,
    guard: ProtectJournal | None,
) -> None:
    """Undo a copy whose original is still in place: remove the copy, lift our flags from the
    original (and mark it $NdrKept). Idempotent: recovery runs it again after an interruption."""
    mb = box.mb
    if not undo:
        return
    originals = {r.id: r for r in state.entries([u.undoes for u in undo if u.undoes])}
    copy_folder, origin = undo[0].folder, undo[0].dest_folder or ""
    box.open(copy_folder)
    copies = [u.uid for u in undo]
    try:
        _delete_ours(mb, copies, fallback, guard)  # our own duplicates in Junk
        st = box.open(origin)
        by_flags: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for u in undo:
            by_flags[tuple(u.flags_added or ())].append(
                originals[u.undoes].uid if u.undoes in originals else 0
            )
        for flags, uids in by_flags.items():
            if flags and any(uids):
                mb.remove_flags([x for x in uids if x], list(flags))
        if st.keeps_keyword(KEPT_KEYWORD):
            mb.add_flags(
                [originals[u.undoes].uid for u in undo if u.undoes in originals], [KEPT_KEYWORD]
            )
    except MailboxError as exc:
        result.failed += len(undo)
        result.note(f"undo could not remove {len(undo)} copy(ies) from {copy_folder!r}: {exc}")
        return
    box.open(copy_folder)
    still = set(mb.search_uid_set(copies))
    flags_now = _flags_now(mb, sorted(still))
    gone = [u for u in undo if u.uid not in still or _has(flags_now.get(u.uid, ()), DELETED)]
    if gone:
        state.journal_update([u.id for u in gone], "done")
        _mark_undone(state, gone)
        result.restored += len(gone)
    if len(gone) < len(undo):
        result.failed += len(undo) - len(gone)
        result.note(f"{len(undo) - len(gone)} copy(ies) in {copy_folder!r} could not be removed")
