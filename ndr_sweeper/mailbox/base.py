"""The mailbox protocol the sweep is written against, and the values it passes around.

Everything is UID-based: state is keyed by (folder, UIDVALIDITY, UID).  Implementations:
``imap.ImapMailbox`` (imapclient) and ``memory.MemoryMailbox`` (unit tests).  Both raise only
errors from ``ndr_sweeper.errors``: MailboxError (refused operation, missing folder),
CapabilityError (the server lacks MOVE/UIDPLUS/...), ConnectError (connection lost).

No sweep or undo ever writes new mail, so APPEND is not part of the protocol; the
implementations keep an ``append`` to fill a mailbox (the contract tests use it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self, runtime_checkable


@dataclass(frozen=True)
class FolderInfo:
    """One LIST entry; ``name`` is decoded from modified UTF-7."""

    name: str
    flags: frozenset[str]  # e.g. "\\Sent", "\\Noselect", "\\HasNoChildren"
    delimiter: str | None = None  # hierarchy separator ("/" or "."), None when flat
    # Why no command may name this folder ("it is not valid modified UTF-7"), None when one
    # can.  Such a folder's ``name`` is only the server's bytes as text, for messages.
    unusable: str | None = None

    @property
    def selectable(self) -> bool:
        if self.unusable is not None:
            return False
        return not ({"\\noselect", "\\nonexistent"} & {f.lower() for f in self.flags})

    def has_flag(self, flag: str) -> bool:
        """Whether the server lists it with *flag* ("\\Junk", "\\All"), in any case."""
        return flag.lower() in {f.lower() for f in self.flags}


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None = None  # only when the server has CONDSTORE
    # PERMANENTFLAGS of a folder selected read-write (None: not known, e.g. from STATUS).
    # "\\*" among them means any keyword may be set.
    permanent_flags: frozenset[str] | None = None

    def keeps_keyword(self, keyword: str) -> bool:
        """Will a keyword set on a message in this folder stay (RFC 3501 PERMANENTFLAGS)?
        Unknown (no PERMANENTFLAGS sent) counts as yes: most servers keep keywords."""
        if self.permanent_flags is None:
            return True
        lowered = {f.lower() for f in self.permanent_flags}
        return "\\*" in lowered or keyword.lower() in lowered


@dataclass(frozen=True)
class HeaderItem:
    uid: int
    header: bytes  # the requested header lines (or the whole header), ending in a blank line
    internaldate: datetime | None  # tz-aware; None when the server's INTERNALDATE is garbage
    flags: frozenset[str]  # without the session-only "\\Recent"
    size: int  # RFC822.SIZE of the whole message
    modseq: int | None = None  # RFC 7162 MODSEQ, when the server has CONDSTORE


@runtime_checkable
class Mailbox(Protocol):
    """A logged-in mailbox.  Operations on messages act on the selected folder."""

    capabilities: frozenset[str]  # upper-case, as advertised after login

    def has(self, cap: str) -> bool: ...

    def list_folders(self) -> list[FolderInfo]: ...

    def personal_prefix(self) -> str:
        """Personal namespace prefix ("" or e.g. "INBOX."), for folder discovery."""
        ...

    def status(self, folder: str) -> FolderStatus:
        """STATUS without selecting."""
        ...

    def select(self, folder: str, readonly: bool = False) -> FolderStatus:
        """SELECT, or EXAMINE when readonly."""
        ...

    def search_uids(self, min_uid: int = 1, below: int | None = None) -> list[int]:
        """UIDs >= min_uid in the selected folder, ascending.  *below*: only UIDs under it
        (the UIDNEXT the folder had when selected: a higher one the server names cannot exist,
        and must never move a cursor)."""
        ...

    def search_uid_set(self, uids: Sequence[int]) -> list[int]:
        """Those of *uids* that still exist in the selected folder (UID SEARCH UID set)."""
        ...

    def search_header(self, field: str, value: str) -> list[int]:
        """UIDs whose header *field* contains *value* (IMAP SEARCH HEADER), ascending."""
        ...

    def search_flag(self, flag: str) -> list[int]:
        """UIDs carrying *flag* (system flag like "\\Deleted" or a keyword), ascending."""
        ...

    def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None, batch: int = 2000
    ) -> Iterator[HeaderItem]:
        """Headers of *uids* (never sets \\Seen); UIDs that no longer exist are skipped.
        Items may be handed out while the answer still arrives: send no other command on
        this mailbox before the iterator is exhausted (or closed)."""
        ...

    def fetch_messages(
        self, uids: Sequence[int], max_bytes: int | None = None, batch: int = 200
    ) -> Iterator[tuple[int, bytes]]:
        """Whole messages (or their first *max_bytes*), never setting \\Seen; no other
        command on this mailbox before the iterator is exhausted (as fetch_headers)."""
        ...

    def move(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        """UID MOVE (CapabilityError without MOVE); source->dest UID map, {} if unknown."""
        ...

    def copy(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        """UID COPY; source->dest UID map from COPYUID, {} if the server sends none."""
        ...

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> None:
        """STORE +FLAGS.  *unchanged_since* (CONDSTORE, RFC 7162): only messages whose MODSEQ
        is not above it; the others are left as they are (a later look says which)."""
        ...

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None: ...

    def expunge_uids(self, uids: Sequence[int]) -> None:
        """UID EXPUNGE of those *uids* that carry \\Deleted (CapabilityError without UIDPLUS)."""
        ...

    def expunge_flagged_deleted(self) -> None:
        """Plain EXPUNGE of the selected folder: removes every \\Deleted message there.

        Only `actions.apply.remove_from_selected` calls it, on servers without UIDPLUS, after
        lifting the \\Deleted flag of every message that is not ours.
        """
        ...

    def create_folder(self, name: str) -> None: ...

    def folder_exists(self, name: str) -> bool: ...

    def logout(self) -> None: ...


SYSTEM_FLAG_SEARCH = {
    "\\deleted": "DELETED",
    "\\seen": "SEEN",
    "\\flagged": "FLAGGED",
    "\\answered": "ANSWERED",
    "\\draft": "DRAFT",
}


def missing_folder_message(folder: str) -> str:
    """The one message both implementations use for a folder that is not there."""
    return (
        f"folder {folder!r} does not exist on the server; "
        "check folders/sent_folders/junk_folder in the config"
    )


class LogoutOnExit:
    """`close()` and the context manager for a mailbox: both log out."""

    def logout(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.logout()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.logout()
