"""An in-memory Mailbox for unit tests of the sweep: same protocol, same errors, no server.

Folders have UIDVALIDITY/UIDNEXT; MOVE, COPY (+COPYUID), STORE and UID EXPUNGE behave as on
an IMAP server with UIDPLUS; capabilities are configurable so the no-MOVE and no-UIDPLUS paths
can be unit-tested.  Every command is recorded in ``calls`` for assertions.

Fault tests script a server that fails or lies, counted per IMAP command (a batched method sends
one command per ``store_batch`` UIDs, as the IMAP implementation does):
``fail_next(op, exc)`` makes the next command of *op* raise before it changes anything, and
``misbehave(op, how, nth=...)`` makes the *nth* one carry out and then fail (NO, or the answer
lost), answer OK without doing anything, or carry out and answer something else.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ndr_sweeper.errors import CapabilityError, ConnectError, MailboxError
from ndr_sweeper.mailbox import uidset
from ndr_sweeper.mailbox.base import (
    FolderInfo,
    FolderStatus,
    HeaderItem,
    LogoutOnExit,
    missing_folder_message,
)
from ndr_sweeper.mailbox.headers import header_fields, header_of, header_values

DEFAULT_CAPABILITIES = frozenset(
    {"IMAP4REV1", "UIDPLUS", "MOVE", "SPECIAL-USE", "CONDSTORE", "NAMESPACE", "MULTIAPPEND"}
)
DEFAULT_FOLDERS: dict[str, str | None] = {
    "INBOX": None,
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
}
_uidvalidity_seq = itertools.count(1_700_000_000)


@dataclass
class Misbehaviour:
    """One scripted lie: see ``MemoryMailbox.misbehave``."""

    op: str
    how: str  # "fail_before" | "perform_then_fail" | "ok_without_performing" | "rewrite"
    nth: int = 1
    error: BaseException | None = None
    rewrite: Callable[[object], object] | None = None
    seen: int = 0


_HOWS = ("fail_before", "perform_then_fail", "ok_without_performing", "rewrite")


@dataclass
class StoredMessage:
    data: bytes
    flags: set[str]
    internaldate: datetime
    modseq: int = 0  # the folder's modseq when it arrived or its flags last changed


@dataclass
class MemoryFolder:
    name: str
    flags: frozenset[str] = frozenset()
    uidvalidity: int = field(default_factory=lambda: next(_uidvalidity_seq))
    uidnext: int = 1
    highestmodseq: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)

    def add(self, msg: StoredMessage) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self.messages[uid] = msg
        self.highestmodseq += 1
        msg.modseq = self.highestmodseq
        return uid

    def touch(self, msg: StoredMessage) -> None:
        """Another change of a message's flags: it gets the folder's next modseq."""
        self.highestmodseq += 1
        msg.modseq = self.highestmodseq


class MemoryMailbox(LogoutOnExit):
    """In-memory implementation of ``base.Mailbox``."""

    def __init__(
        self,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        folders: dict[str, str | None] | None = None,
        *,
        delimiter: str = "/",
        prefix: str = "",
        store_batch: int = 5000,
    ) -> None:
        self.capabilities = frozenset(c.upper() for c in capabilities)
        self.delimiter = delimiter
        self.prefix = prefix
        self.folders: dict[str, MemoryFolder] = {}
        for name, special in (DEFAULT_FOLDERS if folders is None else folders).items():
            self.folders[name] = MemoryFolder(name, frozenset([special] if special else []))
        self.folders.setdefault("INBOX", MemoryFolder("INBOX"))
        self.selected: str | None = None
        self.readonly = False
        self.logged_out = False
        self.store_batch = store_batch  # UIDs per MOVE/COPY/STORE/EXPUNGE command
        self.permanent_flags: frozenset[str] | None = frozenset(
            {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\*"}
        )
        self.calls: list[tuple[object, ...]] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._script: list[Misbehaviour] = []
        self._meddling: list[list[Any]] = []  # [op, calls left, change]: see meddle()

    # ---------------------------------------------------------------- test helpers
    def fail_next(self, op: str, exc: BaseException) -> None:
        """Make the next call of method *op* raise *exc* (before it changes anything)."""
        self._failures.setdefault(op, []).append(exc)

    def misbehave(
        self,
        op: str,
        how: str,
        *,
        nth: int = 1,
        error: BaseException | None = None,
        rewrite: Callable[[object], object] | None = None,
    ) -> Misbehaviour:
        """Script the *nth* command of method *op* (counted from now) to lie, once.

        - ``fail_before``: raise *error*, changing nothing.
        - ``perform_then_fail``: carry the command out, then raise *error* (a NO after doing it,
          or a lost answer when *error* is a ConnectError: the connection is then dead).
        - ``ok_without_performing``: change nothing and answer OK (no COPYUID).
        - ``rewrite``: carry it out and return ``rewrite(result)`` instead of the result
          (a wrong COPYUID, a SEARCH that hides a message, ...).
        """
        if how not in _HOWS:
            raise ValueError(f"how must be one of {', '.join(_HOWS)}, not {how!r}")
        if how in ("fail_before", "perform_then_fail") and error is None:
            raise ValueError(f"{how} needs an error")
        if how == "rewrite" and rewrite is None:
            raise ValueError("rewrite needs a function")
        entry = Misbehaviour(op, how, nth, error, rewrite)
        self._script.append(entry)
        return entry

    def meddle(self, op: str, change: Callable[[], object], *, nth: int = 1) -> None:
        """Another client's *change*, made just before the *nth* call of method *op* (counted
        from now), once: what a sweep sees when the mailbox moves under it."""
        self._meddling.append([op, nth, change])

    def change_flags(
        self, folder: str, uid: int, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """Another client's STORE on one message: its flags change and its MODSEQ moves."""
        f = self._folder(folder)
        m = f.messages[uid]
        m.flags |= set(add)
        m.flags -= set(remove)
        f.touch(m)

    def add_message(
        self,
        folder: str,
        msg: bytes,
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
    ) -> int:
        """Deliver a message regardless of capabilities; returns its UID."""
        f = self._folder(folder)
        date = internaldate or datetime.now(UTC).replace(microsecond=0)
        return f.add(StoredMessage(bytes(msg), set(flags), date))

    def contents(self, folder: str) -> dict[int, StoredMessage]:
        return dict(sorted(self._folder(folder).messages.items()))

    def reset_uidvalidity(self, folder: str) -> None:
        """Renumber a folder as a server does after a rebuild: new UIDVALIDITY, UIDs from 1."""
        f = self._folder(folder)
        msgs = [f.messages[u] for u in sorted(f.messages)]
        f.uidvalidity = next(_uidvalidity_seq)
        f.messages = {i: m for i, m in enumerate(msgs, 1)}
        f.uidnext = len(msgs) + 1

    # ---------------------------------------------------------------- protocol
    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    def list_folders(self) -> list[FolderInfo]:
        self._enter("list_folders")
        return [
            FolderInfo(f.name, f.flags | {"\\HasNoChildren"}, self.delimiter)
            for f in self.folders.values()
        ]

    def personal_prefix(self) -> str:
        return self.prefix

    def status(self, folder: str) -> FolderStatus:
        self._enter("status", folder)
        return self._status(self._folder(folder))

    def select(self, folder: str, readonly: bool = False) -> FolderStatus:
        self._enter("select", folder, readonly)
        f = self._folder(folder)
        self.selected, self.readonly = f.name, readonly
        return dataclasses.replace(
            self._status(f), permanent_flags=None if readonly else self.permanent_flags
        )

    def search_uids(self, min_uid: int = 1, below: int | None = None) -> list[int]:
        lie = self._command("search_uids", min_uid)
        uids = self._answer(lie, [u for u in sorted(self._sel().messages) if u >= min_uid])
        return uids if below is None else [u for u in uids if u < below]

    def search_uid_set(self, uids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for b in uidset.batches(uids, max_count=self.store_batch):
            lie = self._command("search_uid_set", b.set)
            f = self._sel()
            out.extend(self._answer(lie, [u for u in b.uids if u in f.messages]))
        return sorted(out)

    def search_header(self, field: str, value: str) -> list[int]:
        lie = self._command("search_header", field, value)
        needle = value.casefold()
        return self._answer(
            lie,
            [
                uid
                for uid, m in sorted(self._sel().messages.items())
                if any(needle in v.casefold() for v in header_values(m.data, field))
            ],
        )

    def search_flag(self, flag: str) -> list[int]:
        lie = self._command("search_flag", flag)
        want = flag.lower()
        return self._answer(
            lie,
            [
                uid
                for uid, m in sorted(self._sel().messages.items())
                if want in {f.lower() for f in m.flags}
            ],
        )

    def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None, batch: int = 2000
    ) -> Iterator[HeaderItem]:
        for b in uidset.batches(uids, max_count=batch):
            self._enter("fetch_headers", b.set, tuple(fields) if fields else None)
            f = self._sel()
            for uid in b.uids:
                m = f.messages.get(uid)
                if m is None:
                    continue
                header = header_fields(m.data, fields) if fields else header_of(m.data)
                modseq = m.modseq if self.has("CONDSTORE") else None
                yield HeaderItem(
                    uid, header, m.internaldate, frozenset(m.flags), len(m.data), modseq
                )

    def fetch_messages(
        self, uids: Sequence[int], max_bytes: int | None = None, batch: int = 200
    ) -> Iterator[tuple[int, bytes]]:
        for b in uidset.batches(uids, max_count=batch):
            self._enter("fetch_messages", b.set, max_bytes)
            f = self._sel()
            for uid in b.uids:
                m = f.messages.get(uid)
                if m is not None:
                    yield uid, m.data if max_bytes is None else m.data[:max_bytes]

    def move(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        if not self.has("MOVE"):
            raise CapabilityError(
                "the server does not support MOVE; use copy + \\Deleted + expunge_uids"
            )
        mapping: dict[int, int] = {}
        for b in uidset.batches(uids, max_count=self.store_batch):
            lie = self._command("move", b.set, dest)
            src, dst = self._writable(), self._folder(dest)
            done: dict[int, int] = {}
            if not _skips(lie):
                for uid in b.uids:
                    m = src.messages.pop(uid, None)
                    if m is not None:
                        done[uid] = dst.add(StoredMessage(m.data, set(m.flags), m.internaldate))
                src.highestmodseq += 1
            mapping.update(self._answer(lie, done if self.has("UIDPLUS") else {}))
        return mapping

    def copy(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        mapping: dict[int, int] = {}
        for b in uidset.batches(uids, max_count=self.store_batch):
            lie = self._command("copy", b.set, dest)
            src, dst = self._sel(), self._folder(dest)
            done: dict[int, int] = {}
            if not _skips(lie):
                for uid in b.uids:
                    m = src.messages.get(uid)
                    if m is not None:
                        done[uid] = dst.add(StoredMessage(m.data, set(m.flags), m.internaldate))
            mapping.update(self._answer(lie, done if self.has("UIDPLUS") else {}))
        return mapping

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> None:
        self._store(uids, flags, add=True, unchanged_since=unchanged_since)

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store(uids, flags, add=False)

    def expunge_uids(self, uids: Sequence[int]) -> None:
        if not self.has("UIDPLUS"):
            raise CapabilityError(
                "the server does not support UIDPLUS, so messages cannot be expunged by UID "
                "without also expunging other \\Deleted messages"
            )
        for b in uidset.batches(uids, max_count=self.store_batch):
            lie = self._command("expunge_uids", b.set)
            f = self._writable()
            if not _skips(lie):
                for uid in b.uids:
                    m = f.messages.get(uid)
                    if m is not None and "\\Deleted" in m.flags:
                        del f.messages[uid]
                f.highestmodseq += 1
            self._answer(lie, None)

    def expunge_flagged_deleted(self) -> None:
        """Plain EXPUNGE: every \\Deleted message of the selected folder goes."""
        lie = self._command("expunge_flagged_deleted", "")
        f = self._writable()
        if not _skips(lie):
            for uid in [u for u, m in f.messages.items() if "\\Deleted" in m.flags]:
                del f.messages[uid]
            f.highestmodseq += 1
        self._answer(lie, None)

    def create_folder(self, name: str) -> None:
        self._enter("create_folder", name)
        if self._lookup(name) is not None:
            raise MailboxError(f"cannot create folder {name!r}: it already exists")
        self.folders[name] = MemoryFolder(name)

    def folder_exists(self, name: str) -> bool:
        self._enter("folder_exists", name)
        return self._lookup(name) is not None

    def append(
        self,
        folder: str,
        msg: bytes,
        flags: Sequence[str] = (),
        internaldate: datetime | None = None,
    ) -> int | None:
        self._enter("append", folder)
        uid = self.add_message(folder, msg, flags, internaldate)
        return uid if self.has("UIDPLUS") else None

    def logout(self) -> None:
        if not self.logged_out:
            self.calls.append(("logout",))
        self.logged_out = True
        self.selected = None

    # ---------------------------------------------------------------- internals
    def _enter(self, op: str, *args: object) -> None:
        if self.logged_out:
            raise ConnectError(f"{op}: the connection is closed (logged out)")
        pending = self._failures.get(op)
        if pending:
            raise pending.pop(0)
        self.calls.append((op, *args))
        for entry in list(self._meddling):
            if entry[0] == op:
                entry[1] -= 1
                if entry[1] == 0:
                    self._meddling.remove(entry)
                    entry[2]()

    def _command(self, op: str, *args: object) -> Misbehaviour | None:
        """Enter one IMAP command of *op*; the scripted lie for it, if any."""
        self._enter(op, *args)
        lie = None
        for entry in list(self._script):
            if entry.op != op:
                continue
            entry.seen += 1
            if entry.seen == entry.nth and lie is None:
                self._script.remove(entry)
                lie = entry
        if lie is not None and lie.how == "fail_before":
            self._raise(lie)
        return lie

    def _answer(self, lie: Misbehaviour | None, result: _T) -> _T:
        """What the server answers after carrying out (or not) a command."""
        if lie is None or lie.how == "ok_without_performing":
            return result
        if lie.how == "perform_then_fail":
            self._raise(lie)
        assert lie.rewrite is not None
        return lie.rewrite(result)  # type: ignore[return-value]

    def _raise(self, lie: Misbehaviour) -> None:
        assert lie.error is not None
        if isinstance(lie.error, ConnectError):
            self.logged_out = True  # the answer was lost with the connection
        raise lie.error

    def _lookup(self, name: str) -> MemoryFolder | None:
        if name.upper() == "INBOX":
            return self.folders.get("INBOX")
        return self.folders.get(name)

    def _folder(self, name: str) -> MemoryFolder:
        f = self._lookup(name)
        if f is None:
            raise MailboxError(missing_folder_message(name))
        return f

    def _sel(self) -> MemoryFolder:
        if self.selected is None:
            raise MailboxError("no folder is selected; call select() first")
        return self._folder(self.selected)

    def _writable(self) -> MemoryFolder:
        f = self._sel()
        if self.readonly:
            raise MailboxError(f"folder {f.name!r} is selected read-only (EXAMINE)")
        return f

    def _status(self, f: MemoryFolder) -> FolderStatus:
        modseq = f.highestmodseq if self.has("CONDSTORE") else None
        return FolderStatus(f.uidvalidity, f.uidnext, len(f.messages), modseq)

    def _store(
        self,
        uids: Sequence[int],
        flags: Sequence[str],
        *,
        add: bool,
        unchanged_since: int | None = None,
    ) -> None:
        op = "add_flags" if add else "remove_flags"
        conditional = unchanged_since is not None and self.has("CONDSTORE")
        for b in uidset.batches(uids, max_count=self.store_batch):
            lie = self._command(op, b.set, tuple(flags))
            f = self._writable()
            if not _skips(lie):
                for uid in b.uids:
                    m = f.messages.get(uid)
                    if m is None:
                        continue
                    if conditional and m.modseq > (unchanged_since or 0):
                        continue  # changed since: left alone (RFC 7162 UNCHANGEDSINCE)
                    if add:
                        m.flags |= set(flags)
                    else:
                        m.flags -= set(flags)
                    f.touch(m)
            self._answer(lie, None)


_T = TypeVar("_T")


def _skips(lie: Misbehaviour | None) -> bool:
    return lie is not None and lie.how == "ok_without_performing"
