"""An in-memory Mailbox for unit tests of the sweep: same protocol, same errors, no server.

Folders have UIDVALIDITY/UIDNEXT; MOVE, COPY (+COPYUID), STORE and UID EXPUNGE behave as on
an IMAP server with UIDPLUS; capabilities are configurable so the no-MOVE and no-UIDPLUS paths
can be unit-tested.  Every command is recorded in ``calls`` for assertions, and
``fail_next(op, exc)`` makes the next call of *op* raise (fault tests).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ndr_sweeper.errors import CapabilityError, ConnectError, MailboxError
from ndr_sweeper.mailbox import uidset
from ndr_sweeper.mailbox.base import (
    FolderInfo,
    FolderStatus,
    HeaderItem,
    LogoutOnExit,
    missing_folder_message,
)

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
class StoredMessage:
    data: bytes
    flags: set[str]
    internaldate: datetime


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
        return uid


def header_of(data: bytes) -> bytes:
    """The header block of a message, up to and including the blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        pos = data.find(sep)
        if pos >= 0:
            return data[: pos + len(sep)]
    return data


def header_fields(data: bytes, fields: Sequence[str]) -> bytes:
    """Like BODY[HEADER.FIELDS (...)]: the matching header lines (with continuations) + CRLF."""
    wanted = {f.lower().encode() for f in fields}
    out: list[bytes] = []
    keep = False
    for line in header_of(data).splitlines(keepends=True):
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = name in wanted
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


def _header_values(data: bytes, field_name: str) -> list[str]:
    block = header_fields(data, [field_name]).decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", block)
    return [ln.split(":", 1)[1].strip() for ln in unfolded.splitlines() if ":" in ln]


class MemoryMailbox(LogoutOnExit):
    """In-memory implementation of ``base.Mailbox``."""

    def __init__(
        self,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        folders: dict[str, str | None] | None = None,
        *,
        delimiter: str = "/",
        prefix: str = "",
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
        self.calls: list[tuple[object, ...]] = []
        self._failures: dict[str, list[BaseException]] = {}

    # ---------------------------------------------------------------- test helpers
    def fail_next(self, op: str, exc: BaseException) -> None:
        """Make the next call of method *op* raise *exc* (before it changes anything)."""
        self._failures.setdefault(op, []).append(exc)

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
        return self._status(f)

    def search_uids(self, min_uid: int = 1) -> list[int]:
        self._enter("search_uids", min_uid)
        return [u for u in sorted(self._sel().messages) if u >= min_uid]

    def search_header(self, field: str, value: str) -> list[int]:
        self._enter("search_header", field, value)
        needle = value.casefold()
        return [
            uid
            for uid, m in sorted(self._sel().messages.items())
            if any(needle in v.casefold() for v in _header_values(m.data, field))
        ]

    def search_flag(self, flag: str) -> list[int]:
        self._enter("search_flag", flag)
        want = flag.lower()
        return [
            uid
            for uid, m in sorted(self._sel().messages.items())
            if want in {f.lower() for f in m.flags}
        ]

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
                yield HeaderItem(uid, header, m.internaldate, frozenset(m.flags), len(m.data))

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
        for b in uidset.batches(uids):
            self._enter("move", b.set, dest)
            src, dst = self._writable(), self._folder(dest)
            for uid in b.uids:
                m = src.messages.pop(uid, None)
                if m is not None:
                    mapping[uid] = dst.add(StoredMessage(m.data, set(m.flags), m.internaldate))
            src.highestmodseq += 1
        return mapping if self.has("UIDPLUS") else {}

    def copy(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        mapping: dict[int, int] = {}
        for b in uidset.batches(uids):
            self._enter("copy", b.set, dest)
            src, dst = self._sel(), self._folder(dest)
            for uid in b.uids:
                m = src.messages.get(uid)
                if m is not None:
                    mapping[uid] = dst.add(StoredMessage(m.data, set(m.flags), m.internaldate))
        return mapping if self.has("UIDPLUS") else {}

    def add_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store(uids, flags, add=True)

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store(uids, flags, add=False)

    def expunge_uids(self, uids: Sequence[int]) -> None:
        if not self.has("UIDPLUS"):
            raise CapabilityError(
                "the server does not support UIDPLUS, so messages cannot be expunged by UID "
                "without also expunging other \\Deleted messages"
            )
        for b in uidset.batches(uids):
            self._enter("expunge_uids", b.set)
            f = self._writable()
            for uid in b.uids:
                m = f.messages.get(uid)
                if m is not None and "\\Deleted" in m.flags:
                    del f.messages[uid]
            f.highestmodseq += 1

    def expunge_flagged_deleted(self) -> None:
        """Plain EXPUNGE: every \\Deleted message of the selected folder goes."""
        self._enter("expunge_flagged_deleted", "")
        f = self._writable()
        for uid in [u for u, m in f.messages.items() if "\\Deleted" in m.flags]:
            del f.messages[uid]
        f.highestmodseq += 1

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

    def noop(self) -> None:
        self._enter("noop")

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

    def _store(self, uids: Sequence[int], flags: Sequence[str], *, add: bool) -> None:
        op = "add_flags" if add else "remove_flags"
        for b in uidset.batches(uids):
            self._enter(op, b.set, tuple(flags))
            f = self._writable()
            for uid in b.uids:
                m = f.messages.get(uid)
                if m is None:
                    continue
                if add:
                    m.flags |= set(flags)
                else:
                    m.flags -= set(flags)
            f.highestmodseq += 1
