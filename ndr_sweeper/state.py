"""Local state: folder cursors, the Sent Message-ID index, the journal of runs, account status.

One SQLite database per state directory (``state.db``, mode 0600, in a 0700 directory), in
WAL mode, schema version in ``PRAGMA user_version``. Every write is one transaction per
call. Any SQLite failure becomes a StateError: nothing may be acted on without a journal.

A :class:`StateDB` can be shared between threads (calls are serialised); each process opens
its own. The per-account lock (:func:`account_lock`) is separate from the database.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from .errors import LockedError, StateError
from .msgid import normalise_message_id
from .textsafe import printable

log = logging.getLogger(__name__)

DB_NAME: Final = "state.db"
SCHEMA_VERSION: Final = 4
BUSY_TIMEOUT: Final = 30.0  # seconds to wait for another process's write transaction

# planned -> sent -> done | copied -> done | failed; done (or copied) -> undone. "sent": the
# command is on its way or its answer was lost; only a look at the server tells what happened.
ENTRY_STATES: Final = ("planned", "sent", "copied", "done", "failed", "undone")
PENDING_STATES: Final = ("planned", "sent", "copied")
RUN_STATES: Final = ("running", "ok", "partial", "failed", "interrupted")
ERROR_MAX: Final = 2000  # characters of an error kept (errors carry server answers)


def _stored_text(text: str | None) -> str | None:
    """Server text as stored: control characters escaped, bounded (shown later by history)."""
    return None if text is None else printable(text, max_len=ERROR_MAX)


_SCHEMA_V1: Final = """
CREATE TABLE cursors (
    account     TEXT NOT NULL,
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);
CREATE TABLE sent_folders (
    account     TEXT NOT NULL,
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);
CREATE TABLE sent_ids (
    account     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    folder      TEXT NOT NULL,
    uid         INTEGER NOT NULL,
    PRIMARY KEY (account, message_id, folder, uid)
) WITHOUT ROWID;
CREATE INDEX sent_ids_by_folder ON sent_ids (account, folder);
CREATE TABLE runs (
    id       TEXT PRIMARY KEY,
    account  TEXT NOT NULL,
    started  TEXT NOT NULL,
    finished TEXT,
    dry_run  INTEGER NOT NULL,
    command  TEXT NOT NULL,
    status   TEXT NOT NULL,
    counts   TEXT NOT NULL DEFAULT '{}',
    error    TEXT
);
CREATE INDEX runs_by_account ON runs (account, started);
CREATE TABLE journal (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id              TEXT NOT NULL REFERENCES runs (id),
    account             TEXT NOT NULL,
    folder              TEXT NOT NULL,
    uidvalidity         INTEGER NOT NULL,
    uid                 INTEGER NOT NULL,
    bounce_message_id   TEXT,
    original_message_id TEXT,
    kind                TEXT NOT NULL,
    decision            TEXT NOT NULL,
    reason              TEXT NOT NULL,
    action              TEXT NOT NULL,
    dest_folder         TEXT,
    state               TEXT NOT NULL,
    dest_uidvalidity    INTEGER,
    dest_uid            INTEGER,
    error               TEXT,
    updated             TEXT NOT NULL
);
CREATE INDEX journal_by_run ON journal (run_id);
CREATE INDEX journal_by_state ON journal (account, state);
CREATE TABLE account_status (
    account  TEXT PRIMARY KEY,
    last_run TEXT,
    run_id   TEXT,
    counts   TEXT NOT NULL DEFAULT '{}',
    error    TEXT,
    next_run TEXT,
    updated  TEXT NOT NULL
);
"""

# v2: Sent IDs are also looked up ignoring case (find_sent), through an index of their own.
_SCHEMA_V2: Final = """
CREATE INDEX sent_ids_nocase ON sent_ids (account, message_id COLLATE NOCASE);
"""

# v3: every step proven on the server. A journal entry knows the message by what it is (a
# fingerprint of its header fields, and its size), the flags it had and the ones we added, and
# the destination's UIDNEXT before the command (a copy has a UID at or above it). Undo entries
# point at the entry they undo. Runs of one command invocation share an invocation id.
# A run that found and changed nothing is "quiet": only the last one of each account is kept,
# the others are counted in quiet_runs (a service sweeping every minute adds no rows).
# A Sent folder's extent: its oldest message (INTERNALDATE) and how many it holds, so that a
# bounce of mail older than every Sent folder is not judged by a folder that cannot know.
_SCHEMA_V3: Final = """
ALTER TABLE journal ADD COLUMN fingerprint TEXT;
ALTER TABLE journal ADD COLUMN size INTEGER;
ALTER TABLE journal ADD COLUMN flags_before TEXT;
ALTER TABLE journal ADD COLUMN flags_added TEXT;
ALTER TABLE journal ADD COLUMN dest_uidnext INTEGER;
ALTER TABLE journal ADD COLUMN undoes INTEGER;
ALTER TABLE journal ADD COLUMN original_left INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN invocation TEXT;
CREATE INDEX journal_by_fingerprint ON journal (account, fingerprint);
CREATE INDEX journal_by_message ON journal (account, folder, uidvalidity, uid);
CREATE INDEX journal_by_undoes ON journal (undoes);
CREATE INDEX runs_by_invocation ON runs (invocation);
CREATE INDEX runs_by_started ON runs (started);
ALTER TABLE runs ADD COLUMN quiet INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sent_folders ADD COLUMN oldest TEXT;
ALTER TABLE sent_folders ADD COLUMN messages INTEGER;
CREATE TABLE quiet_runs (
    account TEXT PRIMARY KEY,
    runs    INTEGER NOT NULL,
    first   TEXT NOT NULL,
    last    TEXT NOT NULL
);
UPDATE runs SET quiet = 1 WHERE status = 'ok'
    AND COALESCE(json_extract(counts, '$.acted'), 0) = 0
    AND COALESCE(json_extract(counts, '$.ndrs'), 0) = 0
    AND COALESCE(json_extract(counts, '$.errors'), 0) = 0
    AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.run_id = runs.id);
INSERT INTO quiet_runs (account, runs, first, last)
    SELECT account, COUNT(*) - 1, MIN(started), MAX(started) FROM runs WHERE quiet = 1
    GROUP BY account HAVING COUNT(*) > 1;
DELETE FROM runs WHERE quiet = 1
    AND rowid NOT IN (SELECT MAX(rowid) FROM runs WHERE quiet = 1 GROUP BY account);
"""

# v4: for `report`, what an acted-on bounce says about where it came from: the domain of the
# bounce's own From (the server that bounced) and of the recipient the forged mail was sent
# to. NULL for entries written before (the report counts them as unknown).
_SCHEMA_V4: Final = """
ALTER TABLE journal ADD COLUMN bounce_domain TEXT;
ALTER TABLE journal ADD COLUMN recipient_domain TEXT;
"""

# Index = the user_version a script upgrades from.
_MIGRATIONS: Final = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One planned action on one message, written before the action is taken."""

    account: str
    folder: str
    uidvalidity: int
    uid: int
    bounce_message_id: str | None
    original_message_id: str | None
    kind: str
    decision: str
    reason: str
    action: str  # move / delete / flag; undo: restore / drop / unflag; protect
    dest_folder: str | None
    state: str = "planned"
    fingerprint: str | None = None  # actions.identity: the message's header fields, hashed
    size: int | None = None  # RFC822.SIZE
    flags_before: tuple[str, ...] | None = None  # its flags when it was planned
    flags_added: tuple[str, ...] | None = None  # flags a flag/unflag step sets or removes
    undoes: int | None = None  # undo entries: the entry they undo
    bounce_domain: str | None = None  # the domain of the bounce's From (report)
    recipient_domain: str | None = None  # the domain of the forged mail's recipient (report)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """A journal entry as stored, with what happened to it."""

    id: int
    run_id: str
    account: str
    folder: str
    uidvalidity: int
    uid: int
    bounce_message_id: str | None
    original_message_id: str | None
    kind: str
    decision: str
    reason: str
    action: str
    dest_folder: str | None
    state: str
    dest_uidvalidity: int | None
    dest_uid: int | None
    error: str | None
    updated: datetime
    fingerprint: str | None = None
    size: int | None = None
    flags_before: tuple[str, ...] | None = None
    flags_added: tuple[str, ...] | None = None
    dest_uidnext: int | None = None
    undoes: int | None = None
    original_left: bool = False  # the copy path left the original in place, flagged
    bounce_domain: str | None = None
    recipient_domain: str | None = None


@dataclass(frozen=True, slots=True)
class ReportEntry:
    """What `report` reads of one acted-on backscatter entry."""

    account: str
    started: datetime  # the run's start (UTC)
    action: str
    state: str
    bounce_domain: str | None
    recipient_domain: str | None


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    account: str
    started: datetime
    finished: datetime | None
    dry_run: bool
    status: str  # "running" until finish_run
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    command: str = ""
    invocation: str | None = None  # shared by the runs of one command (several accounts)
    quiet: bool = False  # found and changed nothing; only the last one is kept


@dataclass(frozen=True, slots=True)
class QuietRuns:
    """How many quiet runs of an account were not kept, and when they were."""

    account: str
    runs: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class AccountStatus:
    account: str
    last_run: datetime | None
    counts: dict[str, int]
    error: str | None
    next_run: datetime | None
    run_id: str | None
    updated: datetime


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive = local time
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


_DAMAGED_CODES: Final = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _damaged(path: Path) -> StateError:
    return StateError(
        f"state database {path} is damaged: move it aside and run again; the Sent index is "
        "rebuilt, the journal of earlier runs is lost"
    )


def _state_error(path: Path, exc: sqlite3.Error, doing: str) -> StateError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if isinstance(exc, sqlite3.DatabaseError) and (
        primary in _DAMAGED_CODES
        or (primary is None and not isinstance(exc, sqlite3.OperationalError))
    ):
        return _damaged(path)
    if primary == sqlite3.SQLITE_FULL:
        fix = "the disk is full: free some space and run again"
    elif primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        fix = f"it cannot be written ({exc}): check the permissions of {path.parent}"
    elif primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        fix = "another process kept it busy: run again"
    else:
        fix = f"{exc}"
    return StateError(f"cannot {doing} state database {path}: {fix}; nothing was acted on")


# --------------------------------------------------------------------------- database


class StateDB:
    """The state database. Use :func:`open_state`; close it (or use ``with``) when done."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()

    # --- plumbing

    def __enter__(self) -> StateDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover
                log.debug("closing %s failed", self.path, exc_info=True)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK and StateError."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _state_error(self.path, exc, "write to") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise _state_error(self.path, exc, "write to") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _state_error(self.path, exc, "read") from None

    def check(self) -> list[str]:
        """SQLite's integrity check: an empty list when the database is sound."""
        rows = self._read("PRAGMA integrity_check")
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    # --- folder cursors

    def get_cursor(self, account: str, folder: str) -> tuple[int, int] | None:
        """(uidvalidity, last UID seen) of a folder, None when it was never scanned."""
        rows = self._read(
            "SELECT uidvalidity, last_uid FROM cursors WHERE account = ? AND folder = ?",
            (account, folder),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def set_cursor(self, account: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO cursors (account, folder, uidvalidity, last_uid, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, folder) DO UPDATE SET "
                "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
                "updated = excluded.updated",
                (account, folder, uidvalidity, last_uid, _ts(_now())),
            )

    # --- Sent index

    def sent_cursor(self, account: str, folder: str) -> tuple[int, int] | None:
        """(uidvalidity, last UID indexed) of a Sent folder, None when never indexed."""
        rows = self._read(
            "SELECT uidvalidity, last_uid FROM sent_folders WHERE account = ? AND folder = ?",
            (account, folder),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def add_sent_ids(
        self,
        account: str,
        folder: str,
        uidvalidity: int,
        rows: Iterable[tuple[int, Iterable[str]]],
        last_uid: int,
        *,
        oldest: datetime | None = None,
        messages: int | None = None,
    ) -> int:
        """Index (uid, Message-IDs) pairs of a Sent folder and move its cursor to ``last_uid``.

        IDs are normalised (no ``<>``, no whitespace), case kept. When ``uidvalidity`` differs
        from the stored one, the folder's old entries are dropped first. ``oldest``: the oldest
        INTERNALDATE among the messages given (the folder's extent only grows back with it);
        ``messages``: how many the folder holds now. One transaction. Returns how many
        (uid, id) pairs were given.
        """
        values = [
            (account, norm, folder, uid)
            for uid, ids in rows
            for raw in ids
            if (norm := normalise_message_id(raw)) is not None
        ]
        with self._write() as c:
            row = c.execute(
                "SELECT uidvalidity FROM sent_folders WHERE account = ? AND folder = ?",
                (account, folder),
            ).fetchone()
            if row is not None and row[0] != uidvalidity:
                log.info(
                    "%s: Sent folder %s has a new UIDVALIDITY (%s, was %s): reindexing",
                    account,
                    folder,
                    uidvalidity,
                    row[0],
                )
                c.execute(
                    "DELETE FROM sent_ids WHERE account = ? AND folder = ?", (account, folder)
                )
            c.executemany(
                "INSERT OR IGNORE INTO sent_ids (account, message_id, folder, uid) "
                "VALUES (?, ?, ?, ?)",
                values,
            )
            renumbered = row is not None and row[0] != uidvalidity
            c.execute(
                "INSERT INTO sent_folders (account, folder, uidvalidity, last_uid, updated, "
                "oldest, messages) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, folder) "
                "DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
                "updated = excluded.updated, messages = COALESCE(excluded.messages, messages), "
                "oldest = CASE WHEN ? OR oldest IS NULL THEN excluded.oldest "
                "WHEN excluded.oldest IS NULL THEN oldest "
                "ELSE MIN(oldest, excluded.oldest) END",
                (
                    account,
                    folder,
                    uidvalidity,
                    last_uid,
                    _ts(_now()),
                    _ts(oldest),
                    messages,
                    int(renumbered),
                ),
            )
        return len(values)

    def sent_extent(self, account: str, folder: str) -> tuple[datetime | None, int | None]:
        """(oldest INTERNALDATE, messages) of a Sent folder as last indexed; (None, None) when
        never indexed or indexed before extents were kept."""
        rows = self._read(
            "SELECT oldest, messages FROM sent_folders WHERE account = ? AND folder = ?",
            (account, folder),
        )
        return (_dt(rows[0][0]), rows[0][1]) if rows else (None, None)

    def set_sent_extent(
        self, account: str, folder: str, oldest: datetime | None, messages: int
    ) -> None:
        """Overwrite a Sent folder's extent, read whole from the server (messages were
        deleted since it was last indexed: the oldest may be gone)."""
        with self._write() as c:
            c.execute(
                "UPDATE sent_folders SET oldest = ?, messages = ? WHERE account = ? AND folder = ?",
                (_ts(oldest), messages, account, folder),
            )

    def drop_sent_folder(self, account: str, folder: str) -> None:
        """Forget a Sent folder's index and cursor (its UIDVALIDITY changed, or it is gone)."""
        with self._write() as c:
            c.execute("DELETE FROM sent_ids WHERE account = ? AND folder = ?", (account, folder))
            c.execute(
                "DELETE FROM sent_folders WHERE account = ? AND folder = ?", (account, folder)
            )

    def find_sent(self, account: str, ids: Iterable[str]) -> str | None:
        """The first of ``ids`` (normalised, in the order given) that is in the Sent index, as
        the index spells it; failing an exact match, the first that matches ignoring case."""
        return self.find_sent_many(account, [ids])[0]

    def find_sent_many(self, account: str, id_lists: Sequence[Iterable[str]]) -> list[str | None]:
        """find_sent for each of ``id_lists``, in a few queries for all of them (a first sweep
        checks thousands of bounces: one query each cost more than the rest of the check)."""
        wanted = [
            list(dict.fromkeys(n for raw in ids if (n := normalise_message_id(raw)) is not None))
            for ids in id_lists
        ]
        found = self._present(
            "SELECT DISTINCT message_id FROM sent_ids WHERE account = ? AND message_id",
            account,
            list(dict.fromkeys(w for ws in wanted for w in ws)),
        )
        hits: list[str | None] = [next((w for w in ws if w in found), None) for ws in wanted]
        missed = [i for i, ws in enumerate(wanted) if ws and hits[i] is None]
        if missed:
            # The same ID in another case (a relay that changed it on the way) is still the
            # user's message: keeping its bounce is the safe side. Only misses pay for this
            # (no index).
            folded = {
                f.lower(): f
                for f in self._present(
                    "SELECT DISTINCT message_id FROM sent_ids INDEXED BY sent_ids_nocase "
                    "WHERE account = ? AND message_id COLLATE NOCASE",
                    account,
                    list(dict.fromkeys(w for i in missed for w in wanted[i])),
                )
            }
            for i in missed:
                hits[i] = next((folded[w.lower()] for w in wanted[i] if w.lower() in folded), None)
        return hits

    def undone_ids(self, account: str, bounce_ids: Iterable[str]) -> set[str]:
        """Those of ``bounce_ids`` whose message an earlier undo put back: the user keeps them."""
        return self._present(
            "SELECT DISTINCT bounce_message_id FROM journal "
            "WHERE account = ? AND state = 'undone' AND bounce_message_id",
            account,
            list(dict.fromkeys(i for i in bounce_ids if i)),
        )

    def _present(self, select: str, account: str, values: Sequence[str]) -> set[str]:
        """Which of ``values`` the query ``select ... IN (...)`` finds, 500 at a time."""
        found: set[str] = set()
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(r[0] for r in self._read(f"{select} IN ({marks})", (account, *chunk)))
        return found

    # --- runs and journal

    def start_run(
        self, account: str, *, dry_run: bool, command: str, invocation: str | None = None
    ) -> str:
        """Record a new run; its id sorts by start time, e.g. ``20261127-172600-ab12`` (UTC).

        ``invocation`` groups the runs of one command (a sweep of several accounts); by default
        a run is an invocation of its own.
        """
        now = _now()
        with self._write() as c:
            while True:
                run_id = _new_run_id(now)
                if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    break
            c.execute(
                "INSERT INTO runs (id, account, started, dry_run, command, status, invocation) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (run_id, account, _ts(now), int(dry_run), command, invocation or run_id),
            )
        return run_id

    def interrupt_stale_runs(self, account: str) -> list[str]:
        """Mark the account's runs still "running" as interrupted: a process killed mid-run
        leaves them so. Call it holding the account lock (then none of them can be running)."""
        with self._write() as c:
            rows = c.execute(
                "SELECT id FROM runs WHERE account = ? AND status = 'running'", (account,)
            ).fetchall()
            c.execute(
                "UPDATE runs SET status = 'interrupted', error = COALESCE(error, ?) "
                "WHERE account = ? AND status = 'running'",
                ("the process stopped before the run finished", account),
            )
        return [r[0] for r in rows]

    def journal_add(self, run_id: str, entries: Sequence[JournalEntry]) -> list[int]:
        """Write entries (one transaction) and return their ids, in the order given."""
        if not entries:
            return []
        for e in entries:
            if e.state not in ENTRY_STATES:
                raise ValueError(f"unknown journal state {e.state!r}")
        now = _ts(_now())
        values = [
            (
                run_id,
                e.account,
                e.folder,
                e.uidvalidity,
                e.uid,
                e.bounce_message_id,
                e.original_message_id,
                e.kind,
                e.decision,
                e.reason,
                e.action,
                e.dest_folder,
                e.state,
                now,
                e.fingerprint,
                e.size,
                _flags_out(e.flags_before),
                _flags_out(e.flags_added),
                e.undoes,
                e.bounce_domain,
                e.recipient_domain,
            )
            for e in entries
        ]
        with self._write() as c:
            if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise ValueError(f"unknown run id {run_id!r}")
            before = c.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0]
            c.executemany(
                "INSERT INTO journal (run_id, account, folder, uidvalidity, uid, "
                "bounce_message_id, original_message_id, kind, decision, reason, action, "
                "dest_folder, state, updated, fingerprint, size, flags_before, flags_added, "
                "undoes, bounce_domain, recipient_domain) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            # The write lock is held, so the new rows are exactly those after `before`.
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM journal WHERE id > ? ORDER BY id", (before,)
                ).fetchall()
            ]
        if len(ids) != len(entries):  # pragma: no cover - would mean a concurrent writer
            raise StateError(f"journal ids in {self.path} are not what was written; run again")
        return ids

    def journal_update(
        self,
        entry_ids: Iterable[int],
        state: str,
        *,
        dest_uidvalidity: int | None = None,
        dest_uidnext: int | None = None,
        dest_uids: Mapping[int, int] | None = None,
        error: str | None = None,
        original_left: bool | None = None,
        flags_added: Mapping[int, Sequence[str]] | None = None,
    ) -> None:
        """Move entries to ``state`` (planned -> sent -> copied -> done | failed; done -> undone).

        ``dest_uids`` maps entry id -> UID in the destination folder, ``flags_added`` entry id ->
        the flags a step added; the other keywords are written to every entry. Each is written
        only when given. One transaction.
        """
        if state not in ENTRY_STATES:
            raise ValueError(f"unknown journal state {state!r}: one of {', '.join(ENTRY_STATES)}")
        ids = list(dict.fromkeys(entry_ids))
        dest_uids = dict(dest_uids or {})
        added = {i: _flags_out(f) for i, f in (flags_added or {}).items()}
        if not ids and not dest_uids:
            return
        extra = [i for i in dest_uids if i not in ids]
        ids.extend(extra)
        now = _ts(_now())
        left = None if original_left is None else int(original_left)
        with self._write() as c:
            cur = c.executemany(
                "UPDATE journal SET state = ?, updated = ?, "
                "dest_uidvalidity = COALESCE(?, dest_uidvalidity), "
                "dest_uidnext = COALESCE(?, dest_uidnext), "
                "dest_uid = COALESCE(?, dest_uid), error = COALESCE(?, error), "
                "original_left = COALESCE(?, original_left), "
                "flags_added = COALESCE(?, flags_added) WHERE id = ?",
                [
                    (
                        state,
                        now,
                        dest_uidvalidity,
                        dest_uidnext,
                        dest_uids.get(i),
                        _stored_text(error),
                        left,
                        added.get(i),
                        i,
                    )
                    for i in ids
                ],
            )
            if cur.rowcount != len(ids):
                raise ValueError(
                    f"journal_update: {len(ids) - cur.rowcount} of the entry ids are unknown"
                )

    def pending_entries(self, account: str) -> list[JournalRow]:
        """Entries of real (not dry) runs left planned or copied: an earlier run stopped midway."""
        marks = ", ".join("?" * len(PENDING_STATES))
        rows = self._read(
            f"SELECT j.* FROM journal j JOIN runs r ON r.id = j.run_id "
            f"WHERE j.account = ? AND j.state IN ({marks}) AND r.dry_run = 0 ORDER BY j.id",
            (account, *PENDING_STATES),
        )
        return [_journal_row(r) for r in rows]

    def entries_for_messages(
        self, account: str, folder: str, uidvalidity: int, uids: Sequence[int]
    ) -> dict[int, list[JournalRow]]:
        """Journal entries (of real runs) about these messages, by UID: what was done to them."""
        out: dict[int, list[JournalRow]] = {}
        for start in range(0, len(uids), 500):
            chunk = list(uids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = self._read(
                "SELECT j.* FROM journal j JOIN runs r ON r.id = j.run_id "
                "WHERE j.account = ? AND j.folder = ? AND j.uidvalidity = ? AND r.dry_run = 0 "
                f"AND j.uid IN ({marks}) ORDER BY j.id",
                (account, folder, uidvalidity, *chunk),
            )
            for r in rows:
                out.setdefault(r["uid"], []).append(_journal_row(r))
        return out

    def undone_fingerprints(self, account: str, fingerprints: Iterable[str]) -> set[str]:
        """Those of ``fingerprints`` whose message an undo put back: the user keeps it."""
        return self._present(
            "SELECT DISTINCT fingerprint FROM journal "
            "WHERE account = ? AND state = 'undone' AND fingerprint",
            account,
            list(dict.fromkeys(f for f in fingerprints if f)),
        )

    def last_undoable_invocation(self) -> list[RunRow]:
        """The runs of the most recent sweep invocation that left something to undo (every
        account it acted on), newest first; [] when there is none. Quiet runs cost an index
        lookup each, however many there are."""
        rows = self._read(
            "SELECT r.* FROM runs r WHERE r.dry_run = 0 AND r.command = 'sweep' AND EXISTS ("
            "SELECT 1 FROM journal j WHERE j.run_id = r.id AND j.state IN ('done', 'copied') "
            "AND j.action IN ('move', 'delete', 'flag')) ORDER BY r.started DESC, r.rowid DESC "
            "LIMIT 1"
        )
        if not rows:
            return []
        invocation = rows[0]["invocation"] or rows[0]["id"]
        runs = self._read(
            "SELECT * FROM runs WHERE invocation = ? OR id = ? ORDER BY id DESC",
            (invocation, invocation),
        )
        return [_run_row(r) for r in runs]

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, int], error: str | None = None
    ) -> None:
        """Record how a run ended. A quiet run (ok, nothing found, nothing journalled) replaces
        the account's previous quiet run, which is counted in ``quiet_runs``: the runs table
        keeps what changed something, every error, and the last run of each account."""
        with self._write() as c:
            row = c.execute("SELECT account FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise ValueError(f"unknown run id {run_id!r}")
            journalled = c.execute("SELECT 1 FROM journal WHERE run_id = ? LIMIT 1", (run_id,))
            quiet = (
                status == "ok"
                and not any(counts.get(k) for k in ("acted", "ndrs", "errors"))
                and journalled.fetchone() is None
            )
            c.execute(
                "UPDATE runs SET finished = ?, status = ?, counts = ?, error = ?, quiet = ? "
                "WHERE id = ?",
                (
                    _ts(_now()),
                    status,
                    json.dumps(dict(counts), sort_keys=True),
                    _stored_text(error),
                    int(quiet),
                    run_id,
                ),
            )
            if quiet:
                self._fold_quiet(c, row[0], keep=run_id)

    @staticmethod
    def _fold_quiet(c: sqlite3.Connection, account: str, keep: str) -> None:
        """Count the account's quiet runs other than `keep` into quiet_runs, and drop them."""
        old = c.execute(
            "SELECT COUNT(*), MIN(started), MAX(started) FROM runs "
            "WHERE account = ? AND quiet = 1 AND id != ?",
            (account, keep),
        ).fetchone()
        if not old[0]:
            return
        c.execute(
            "INSERT INTO quiet_runs (account, runs, first, last) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account) DO UPDATE SET runs = runs + excluded.runs, "
            "first = MIN(first, excluded.first), last = MAX(last, excluded.last)",
            (account, old[0], old[1], old[2]),
        )
        c.execute("DELETE FROM runs WHERE account = ? AND quiet = 1 AND id != ?", (account, keep))

    def quiet_runs(self, account: str | None = None) -> list[QuietRuns]:
        """The quiet runs that were not kept, counted per account."""
        if account is None:
            rows = self._read("SELECT * FROM quiet_runs ORDER BY account")
        else:
            rows = self._read("SELECT * FROM quiet_runs WHERE account = ?", (account,))
        return [
            QuietRuns(
                r["account"],
                r["runs"],
                datetime.fromisoformat(r["first"]),
                datetime.fromisoformat(r["last"]),
            )
            for r in rows
        ]

    def runs(
        self, account: str | None = None, limit: int = 50, *, quiet: bool = True
    ) -> list[RunRow]:
        """The latest runs first; ``quiet=False`` leaves out runs that found nothing."""
        where: list[str] = []
        params: list[Any] = []
        if account is not None:
            where.append("account = ?")
            params.append(account)
        if not quiet:
            where.append("quiet = 0")
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read(sql + " ORDER BY started DESC, rowid DESC LIMIT ?", (*params, limit))
        return [_run_row(r) for r in rows]

    def last_runs(self, command: str = "sweep") -> dict[str, RunRow]:
        """Each account's latest real (not dry) run of `command`, whoever started it."""
        rows = self._read(
            "SELECT * FROM runs r WHERE command = ? AND dry_run = 0 AND rowid = ("
            "SELECT rowid FROM runs q WHERE q.account = r.account AND q.command = r.command "
            "AND q.dry_run = 0 ORDER BY q.started DESC, q.rowid DESC LIMIT 1)",
            (command,),
        )
        return {r["account"]: _run_row(r) for r in rows}

    def run(self, run_id: str) -> RunRow | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def entries(self, entry_ids: Iterable[int]) -> list[JournalRow]:
        """Journal entries by id, in the order given (unknown ids are left out)."""
        ids = list(dict.fromkeys(entry_ids))
        by_id: dict[int, JournalRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for r in self._read(f"SELECT * FROM journal WHERE id IN ({marks})", chunk):
                by_id[r["id"]] = _journal_row(r)
        return [by_id[i] for i in ids if i in by_id]

    def run_entries(self, run_id: str) -> list[JournalRow]:
        rows = self._read("SELECT * FROM journal WHERE run_id = ? ORDER BY id", (run_id,))
        return [_journal_row(r) for r in rows]

    # --- report (read only)

    def report_entries(self, since: datetime, account: str | None = None) -> list[ReportEntry]:
        """Backscatter that real sweeps started since ``since`` acted on (moved, deleted or
        flagged), whatever happened to it after (``state``: done, copied, undone, failed...)."""
        sql = (
            "SELECT j.account, r.started, j.action, j.state, j.bounce_domain, "
            "j.recipient_domain FROM journal j JOIN runs r ON r.id = j.run_id "
            "WHERE r.command = 'sweep' AND r.dry_run = 0 AND r.started >= ? "
            "AND j.decision = 'backscatter' AND j.action IN ('move', 'delete', 'flag')"
        )
        params: list[Any] = [_ts(since)]
        if account is not None:
            sql += " AND j.account = ?"
            params.append(account)
        return [
            ReportEntry(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5])
            for r in self._read(sql + " ORDER BY r.started, j.id", params)
        ]

    def sweep_runs_since(self, since: datetime, account: str | None = None) -> list[RunRow]:
        """Real (not dry) sweep runs started since ``since``, oldest first."""
        sql = "SELECT * FROM runs WHERE command = 'sweep' AND dry_run = 0 AND started >= ?"
        params: list[Any] = [_ts(since)]
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        return [_run_row(r) for r in self._read(sql + " ORDER BY started, rowid", params)]

    # --- account status (for the service)

    def set_account_status(
        self,
        account: str,
        last_run: datetime | None,
        counts: Mapping[str, int],
        error: str | None,
        next_run: datetime | None,
        *,
        run_id: str | None = None,
    ) -> None:
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO account_status "
                "(account, last_run, run_id, counts, error, next_run, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    _ts(last_run),
                    run_id,
                    json.dumps(dict(counts), sort_keys=True),
                    _stored_text(error),
                    _ts(next_run),
                    _ts(_now()),
                ),
            )

    def account_status(self, account: str | None = None) -> list[AccountStatus]:
        if account is None:
            rows = self._read("SELECT * FROM account_status ORDER BY account")
        else:
            rows = self._read("SELECT * FROM account_status WHERE account = ?", (account,))
        return [
            AccountStatus(
                account=r["account"],
                last_run=_dt(r["last_run"]),
                counts=json.loads(r["counts"]),
                error=r["error"],
                next_run=_dt(r["next_run"]),
                run_id=r["run_id"],
                updated=datetime.fromisoformat(r["updated"]),
            )
            for r in rows
        ]


def _journal_row(r: sqlite3.Row) -> JournalRow:
    return JournalRow(
        fingerprint=r["fingerprint"],
        size=r["size"],
        flags_before=_flags_in(r["flags_before"]),
        flags_added=_flags_in(r["flags_added"]),
        dest_uidnext=r["dest_uidnext"],
        undoes=r["undoes"],
        original_left=bool(r["original_left"]),
        bounce_domain=r["bounce_domain"],
        recipient_domain=r["recipient_domain"],
        id=r["id"],
        run_id=r["run_id"],
        account=r["account"],
        folder=r["folder"],
        uidvalidity=r["uidvalidity"],
        uid=r["uid"],
        bounce_message_id=r["bounce_message_id"],
        original_message_id=r["original_message_id"],
        kind=r["kind"],
        decision=r["decision"],
        reason=r["reason"],
        action=r["action"],
        dest_folder=r["dest_folder"],
        state=r["state"],
        dest_uidvalidity=r["dest_uidvalidity"],
        dest_uid=r["dest_uid"],
        error=r["error"],
        updated=datetime.fromisoformat(r["updated"]),
    )


def _run_row(r: sqlite3.Row) -> RunRow:
    return RunRow(
        id=r["id"],
        account=r["account"],
        started=datetime.fromisoformat(r["started"]),
        finished=_dt(r["finished"]),
        dry_run=bool(r["dry_run"]),
        status=r["status"],
        counts=json.loads(r["counts"]),
        error=r["error"],
        command=r["command"],
        invocation=r["invocation"],
        quiet=bool(r["quiet"]),
    )


def _flags_out(flags: Sequence[str] | None) -> str | None:
    """Flags as stored: space-separated (IMAP flags never contain a space)."""
    return None if flags is None else " ".join(flags)


def _flags_in(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split())


# --------------------------------------------------------------------------- opening


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with the leaf at 0700; leave an existing one alone."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir():
                raise StateError(f"state directory {path} exists and is not a directory") from None
            return
        os.chmod(path, 0o700)  # the umask may have removed bits; never added any
    except OSError as exc:
        raise StateError(
            f"cannot create state directory {path}: {exc.strerror}: check its parent's "
            "permissions, or set state_dir in the config file"
        ) from None


def _private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 before SQLite writes a byte into it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            st = path.stat()
            if st.st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError as exc:
            log.warning("cannot make %s private: %s", path, exc.strerror)
        return
    except OSError as exc:
        raise StateError(f"cannot create state database {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def open_state(state_dir: Path | str) -> StateDB:
    """Open (creating when needed) ``state_dir/state.db`` and bring its schema up to date."""
    state_dir = Path(state_dir)
    _private_dir(state_dir)
    path = state_dir / DB_NAME
    _private_file(path)
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise _state_error(path, exc, "open") from None
    conn.row_factory = sqlite3.Row
    deadline = time.monotonic() + BUSY_TIMEOUT
    try:
        while True:
            try:
                _prepare(conn, path)
                break
            except sqlite3.OperationalError as exc:
                # Two processes creating the file at once: switching to WAL does not wait on
                # SQLite's busy handler, so wait here instead of failing the second one.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    except sqlite3.Error as exc:
        conn.close()
        raise _state_error(path, exc, "open") from None
    except BaseException:
        conn.close()
        raise
    return StateDB(path, conn)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    # Reading the schema is what fails first on a file that is not a database.
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("state database %s: WAL mode unavailable, using %s", path, mode)
    conn.execute("PRAGMA synchronous = FULL")  # the journal must survive a crash
    conn.execute("PRAGMA foreign_keys = ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state database {path} was written by a newer ndr-sweeper (schema {version}, this "
            f"one knows {SCHEMA_VERSION}): upgrade ndr-sweeper, or move the file aside"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated it while we waited for the lock.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for script in _MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    log.debug("state database %s: schema %s -> %s", path, version, SCHEMA_VERSION)


# --------------------------------------------------------------------------- lock


@contextlib.contextmanager
def account_lock(state_dir: Path | str, account: str, wait: float = 0) -> Iterator[Path]:
    """Hold ``state_dir/locks/ACCOUNT.lock`` (flock, 0600, holds our pid) for one sweep.

    Held elsewhere: wait up to ``wait`` seconds, then LockedError. Also exclusive within one
    process (each call opens its own file description).
    """
    if not account or "/" in account or "\0" in account or account in (".", ".."):
        raise ValueError(f"not a usable account name for a lock file: {account!r}")
    locks = Path(state_dir) / "locks"
    _private_dir(Path(state_dir))
    _private_dir(locks)
    path = locks / f"{account}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        deadline = time.monotonic() + max(wait, 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another ndr-sweeper is sweeping account {account!r} "
                        f"(pid {_read_pid(fd)}): wait for it to finish"
                    ) from None
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
