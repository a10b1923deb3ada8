"""A local Maildir tree behind the mailbox protocol: the sweep, the journal and undo work on it
as on an IMAP server, and a sync tool (mbsync, offlineimap) carries the moves to the server.

Layouts, detected from the tree (``detect_layout``):

- **Maildir++** (Dovecot, Courier, mbsync ``SubFolders Maildir++``): the root is INBOX (it has
  ``cur/``), folders are ``.Name`` directories beside it, the hierarchy separator is "."
  (``.Archive.2024`` is "Archive.2024"); names on disk are modified UTF-7, as Dovecot writes them.
- **verbatim** (mbsync ``SubFolders Verbatim``, offlineimap): folders are nested directories
  (``INBOX/``, ``Sent/``, ``Archive/2024/``), separator "/". A root that is itself a Maildir
  with only such plain subfolders is read this way too (its INBOX is the root).

A message is a regular file in ``cur/`` or ``new/`` (``tmp/``, dot files, symlinks and
anything else are ignored); its flags are the ``:2,`` info suffix (S \\Seen, R \\Answered,
F \\Flagged, T \\Deleted, D \\Draft; other letters are kept as they are). Reading never renames
a file: a message in ``new/`` stays there until we act on it.

UIDs: a Maildir has none, so ndr-sweeper keeps its own map per folder (UIDVALIDITY, UIDNEXT,
and a UID for each message) in ``STATE_DIR/maildir-uids.db`` (SQLite), not in the Maildir: a
dry run then writes nothing into the user's mail, notmuch/mutt/mbsync never meet a file of
ours, and the map lives and dies with the journal that refers to its UIDs (a map that is lost
means a new UIDVALIDITY, which the sweep and the journal already handle). A message is keyed
by the stable part of its file name: before the ``:2,`` info, without mbsync's ``,U=<n>`` and
offlineimap's ``,FMD5=<hex>`` fields, so a flag change by another client (a rename of the info
part) or a sync tool numbering the file keeps its UID. UIDs are never reused.

MOVE is a rename into the destination's ``cur/`` under a new unique name without any ``,U=``:
mbsync's documentation asks that a file moved between folders get "a completely new filename
... as if the message was new" (stripping ``,U=`` is the minimum), so that mbsync uploads it to
the destination and expunges it from the source on the server. COPY and APPEND write through
``tmp/`` as a delivery does. Flags are renames of the info part; EXPUNGE removes only files
flagged \\Deleted and named by UID. Keywords cannot be kept (Dovecot keeps them in a
dovecot-keywords file, mbsync not at all): PERMANENTFLAGS has no ``\\*``, so the journal knows.

Everything a file or folder name holds is hostile: folders are only those found by walking the
tree (no symlinks followed, no ``..``), names asked for are looked up among them, and reads are
bounded (a header by ``MAX_HEADER_BYTES``, a message by the caller's ``max_bytes``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from ndr_sweeper.errors import CapabilityError, ConnectError, MailboxError, StateError
from ndr_sweeper.mailbox import mutf7
from ndr_sweeper.mailbox.base import (
    FolderInfo,
    FolderStatus,
    HeaderItem,
    LogoutOnExit,
    missing_folder_message,
)
from ndr_sweeper.mailbox.headers import header_fields, header_of, header_values
from ndr_sweeper.textsafe import printable


def _decoded(name: str) -> str:
    """A Maildir++ folder name as Dovecot writes it (modified UTF-7); kept as it is when it is
    not valid modified UTF-7 (another program's own name for it)."""
    try:
        return mutf7.decode(name.encode("ascii")) if "&" in name else name
    except (ValueError, UnicodeEncodeError):
        return name


log = logging.getLogger(__name__)

Layout = Literal["maildir++", "verbatim"]

CAPABILITIES: Final = frozenset({"IMAP4REV1", "MOVE", "UIDPLUS"})
PERMANENT_FLAGS: Final = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})
FLAG_OF_CHAR: Final = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
CHAR_OF_FLAG: Final = {v.lower(): k for k, v in FLAG_OF_CHAR.items()}
UID_DB: Final = "maildir-uids.db"
MAX_HEADER_BYTES: Final = 2 * 1024 * 1024  # a header longer than this is cut there
MAX_DEPTH: Final = 16  # folder nesting walked in the verbatim layout
MAX_FOLDERS: Final = 10_000
SCAN_TRIES: Final = 5  # listings of cur/ + new/ until one is not disturbed by a rename
SETTLED_NS: Final = 2_000_000_000  # a listing is reused only if cur/ and new/ were older
BUSY_TIMEOUT: Final = 30.0
_SUBDIRS: Final = ("cur", "new", "tmp")
# mbsync's ",U=<uid>" and offlineimap's ",U=<uid>,FMD5=<md5 of the folder name>" in a file name
_SYNC_FIELDS: Final = re.compile(r",(?:U=\d+|FMD5=[0-9A-Fa-f]+)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_names = itertools.count(1)


# ---------------------------------------------------------------- file names


def message_key(filename: str) -> str:
    """The part of a message's file name that stays when another client renames it: before the
    ``:`` of the info, without ``,U=<n>`` (mbsync) and ``,FMD5=<hex>`` (offlineimap)."""
    return _SYNC_FIELDS.sub("", filename.split(":", 1)[0])


def info_chars(filename: str) -> str | None:
    """The flag letters after ``:2,`` (None when the name has no ``:2,`` info)."""
    _base, sep, info = filename.partition(":")
    if not sep or not info.startswith("2,"):
        return None
    return info[2:]


def flags_of(filename: str) -> frozenset[str]:
    """IMAP system flags from the info letters (other letters are not flags we can report)."""
    return frozenset(FLAG_OF_CHAR[c] for c in info_chars(filename) or "" if c in FLAG_OF_CHAR)


def with_flags(filename: str, chars: Iterable[str]) -> str:
    """``filename`` with its info set to ``2,`` + *chars* (sorted, once each, as Maildir asks)."""
    return f"{filename.split(':', 1)[0]}:2,{''.join(sorted(set(chars)))}"


def _host() -> str:
    host = socket.gethostname() or "localhost"
    host = host.replace("/", "\\057").replace(":", "\\072")
    return re.sub(r"[^A-Za-z0-9.\\_-]", "_", host)[:64] or "localhost"


def unique_name() -> str:
    """A new Maildir file name (no info, no ``,U=``): time, microseconds, pid, a counter and
    random bits, and the host, as deliveries name theirs."""
    ns = time.time_ns()
    sec, usec = divmod(ns // 1000, 1_000_000)
    rand = os.urandom(6).hex()
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_names)}R{rand}.{_host()}"


# ---------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Folder:
    name: str  # as the protocol names it ("INBOX", "Sent", "Archive/2024" or "Archive.2024")
    path: str  # the folder's directory (holding cur/ new/ tmp/)


def _is_dir(path: str) -> bool:
    """A real directory (a symlink to one is not followed)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_maildir(path: str) -> bool:
    return _is_dir(os.path.join(path, "cur"))


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(
                e.name for e in it if e.is_dir(follow_symlinks=False) and e.name not in (".", "..")
            )
    except OSError:
        return []


def detect_layout(root: str) -> Layout:
    """Maildir++ when the root is itself a Maildir with ``.Name`` folders (or none at all
    beside it); verbatim when folders are plain directories (mbsync, offlineimap)."""
    if not is_maildir(root):
        return "verbatim"
    names = [n for n in _subdirs(root) if n not in _SUBDIRS]
    dotted = [n for n in names if n.startswith(".") and is_maildir(os.path.join(root, n))]
    plain = [n for n in names if not n.startswith(".")]
    if dotted or not any(_holds_maildir(os.path.join(root, n)) for n in plain):
        return "maildir++"
    return "verbatim"


def _holds_maildir(path: str, depth: int = 0) -> bool:
    if is_maildir(path):
        return True
    if depth >= 3:
        return False
    return any(
        _holds_maildir(os.path.join(path, n), depth + 1)
        for n in _subdirs(path)
        if not n.startswith(".")
    )


def list_tree(root: str, layout: Layout) -> dict[str, Folder]:
    """Every folder of the tree by name, INBOX first."""
    found: dict[str, Folder] = {}
    if layout == "maildir++":
        if is_maildir(root):
            found["INBOX"] = Folder("INBOX", root)
        for n in _subdirs(root):
            if len(found) >= MAX_FOLDERS:
                log.warning("%s: more than %d folders: the rest is not read", root, MAX_FOLDERS)
                break
            if not n.startswith(".") or n in ("..", ".") or not is_maildir(os.path.join(root, n)):
                continue
            name = _decoded(n[1:])
            parts = name.split(".")
            if not all(parts) or name.upper() == "INBOX" or _CONTROL.search(name):
                continue
            found.setdefault(name, Folder(name, os.path.join(root, n)))
        return found

    if is_maildir(root):
        found["INBOX"] = Folder("INBOX", root)

    def walk(path: str, prefix: str, depth: int) -> None:
        for n in _subdirs(path):
            if len(found) >= MAX_FOLDERS:
                return
            if n.startswith(".") or n in _SUBDIRS or _CONTROL.search(n):
                continue
            sub = os.path.join(path, n)
            name = prefix + n
            if not prefix and n.upper() == "INBOX":
                if "INBOX" in found and n != "INBOX":
                    continue
                name = "INBOX"
            if is_maildir(sub):
                found.setdefault(name, Folder(name, sub))
            if depth < MAX_DEPTH:
                walk(sub, name + "/", depth + 1)

    walk(root, "", 1)
    if len(found) >= MAX_FOLDERS:
        log.warning("%s: more than %d folders: the rest is not read", root, MAX_FOLDERS)
    return found


def check_new_name(name: str, layout: Layout) -> list[str]:
    """The directory names (from the root down) of a folder to create; MailboxError when the
    name could reach outside the tree or is not a usable Maildir folder name."""
    bad = MailboxError(
        f"cannot create folder {printable(name)!r}: not a usable Maildir folder name"
    )
    if not name or "\0" in name or _CONTROL.search(name) or name.upper() == "INBOX":
        raise bad
    if layout == "maildir++":
        parts = name.split(".")
        if "/" in name or not all(parts):
            raise bad
        encoded = "." + mutf7.encode(name).decode("ascii")
        if len(encoded.encode()) > 255:
            raise bad
        return [encoded]
    parts = name.split("/")
    for p in parts:
        if not p or p in (".", "..") or p.startswith(".") or p in _SUBDIRS:
            raise bad
        if len(p.encode("utf-8", "surrogateescape")) > 255:
            raise bad
    return parts


# ---------------------------------------------------------------- listing a folder


@dataclass(frozen=True, slots=True)
class Entry:
    sub: str  # "cur" or "new"
    name: str  # the file name

    @property
    def flags(self) -> frozenset[str]:
        return flags_of(self.name) if self.sub == "cur" else frozenset()

    @property
    def chars(self) -> str:
        return (info_chars(self.name) or "") if self.sub == "cur" else ""


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


Stamp = tuple[int | None, int | None]  # modification times of new/ and cur/ (ns)


def stamp_of(folder: Folder) -> Stamp:
    return _mtime(os.path.join(folder.path, "new")), _mtime(os.path.join(folder.path, "cur"))


def scan(folder: Folder) -> tuple[dict[str, Entry], Stamp | None]:
    """The messages of a folder by key, and the stamp (modification times of ``new/`` and
    ``cur/``) they were read at, None when the listing was not stable (a rename in ``cur/`` or
    ``new/`` while it was read: a message renamed meanwhile can be seen twice or not at all,
    so such a listing is read again, up to ``SCAN_TRIES`` times).

    ``new/`` is read before ``cur/``: a message moved from one to the other in between is
    then seen twice (and taken from ``cur/``), never missed."""
    entries: dict[str, Entry] = {}
    for _ in range(SCAN_TRIES):
        before = stamp_of(folder)
        if before[1] is None:
            raise MailboxError(missing_folder_message(folder.name))
        entries = {}
        for sub in ("new", "cur"):
            try:
                with os.scandir(os.path.join(folder.path, sub)) as it:
                    for e in it:
                        if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                            continue
                        key = message_key(e.name)
                        if key in entries and entries[key].sub == sub:
                            key = f"{sub}/{e.name}"  # two files, one key: keep both apart
                        entries[key] = Entry(sub, e.name)
            except FileNotFoundError:
                if sub == "cur":
                    raise MailboxError(missing_folder_message(folder.name)) from None
            except OSError as exc:
                raise MailboxError(
                    f"cannot read folder {printable(folder.name)!r} ({folder.path}): {exc.strerror}"
                ) from None
        if stamp_of(folder) == before:
            return entries, before
    return entries, None


# ---------------------------------------------------------------- the UID map


@dataclass
class View:
    """One folder as the UID map sees it after a scan."""

    uidvalidity: int
    uidnext: int
    by_uid: dict[int, Entry]


class UidStore:
    """UIDVALIDITY, UIDNEXT and the UID of each message key, per Maildir folder directory, in
    one SQLite file (``STATE_DIR/maildir-uids.db``). Several processes may use it at once:
    every change is one IMMEDIATE transaction."""

    def __init__(self, path: Path) -> None:
        from ndr_sweeper.state import _private_dir, _private_file

        _private_dir(path.parent)
        _private_file(path)
        self.path = path
        try:
            self.conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            with self._tx():
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS folders (id INTEGER PRIMARY KEY, "
                    "path BLOB UNIQUE NOT NULL, uidvalidity INTEGER NOT NULL, "
                    "uidnext INTEGER NOT NULL)"
                )
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS uids (folder INTEGER NOT NULL, key BLOB NOT NULL, "
                    "uid INTEGER NOT NULL, PRIMARY KEY (folder, key)) WITHOUT ROWID"
                )
                self.conn.execute(
                    "CREATE UNIQUE INDEX IF NOT EXISTS uids_by_uid ON uids (folder, uid)"
                )
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot use the Maildir UID map {path}: {exc}: move the file aside (the "
                "folders then get a new UIDVALIDITY and are read again)"
            ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _folder(self, path: bytes) -> tuple[int, int, int]:
        row = self.conn.execute(
            "SELECT id, uidvalidity, uidnext FROM folders WHERE path = ?", (path,)
        ).fetchone()
        if row is not None:
            return int(row[0]), int(row[1]), int(row[2])
        latest = self.conn.execute("SELECT MAX(uidvalidity) FROM folders").fetchone()[0] or 0
        validity = max(int(time.time()) & 0x7FFFFFFF, 1)
        if validity <= latest:  # two folders made in one second get different ones
            validity = latest + 1
        cur = self.conn.execute(
            "INSERT INTO folders (path, uidvalidity, uidnext) VALUES (?, ?, 1)", (path, validity)
        )
        return int(cur.lastrowid or 0), validity, 1

    def sync(
        self,
        path: str,
        present: Mapping[str, Entry],
        *,
        prune: bool,
        order: Callable[[list[str]], list[str]],
    ) -> View:
        """UIDs for every key in *present*: new keys get the next UIDs, in *order*; with
        *prune*, keys no longer present are forgotten (their UIDs are never given again)."""
        fpath = os.fsencode(path)
        try:
            row = self.conn.execute(
                "SELECT id, uidvalidity, uidnext FROM folders WHERE path = ?", (fpath,)
            ).fetchone()
            if row is not None:
                known = self._known(int(row[0]))
                if present.keys() == known.keys() or (not prune and present.keys() <= known.keys()):
                    return View(int(row[1]), int(row[2]), {known[k]: present[k] for k in present})
            with self._tx():
                fid, validity, uidnext = self._folder(fpath)
                known = self._known(fid)
                fresh = order([k for k in present if k not in known])
                rows = []
                for k in fresh:
                    known[k] = uidnext
                    rows.append((fid, _kb(k), uidnext))
                    uidnext += 1
                if rows:
                    self.conn.executemany(
                        "INSERT INTO uids (folder, key, uid) VALUES (?, ?, ?)", rows
                    )
                if prune:
                    gone = [(fid, _kb(k)) for k in known if k not in present]
                    if gone:
                        self.conn.executemany("DELETE FROM uids WHERE folder = ? AND key = ?", gone)
                self.conn.execute("UPDATE folders SET uidnext = ? WHERE id = ?", (uidnext, fid))
            return View(validity, uidnext, {known[k]: present[k] for k in present})
        except sqlite3.Error as exc:
            raise StateError(f"the Maildir UID map {self.path} cannot be used: {exc}") from None

    def _known(self, fid: int) -> dict[str, int]:
        return {
            os.fsdecode(bytes(k)): int(u)
            for k, u in self.conn.execute("SELECT key, uid FROM uids WHERE folder = ?", (fid,))
        }

    def assign(self, path: str, keys: Sequence[str]) -> dict[str, int]:
        """UIDs for *keys* we just placed in a folder (those another process numbered
        meanwhile keep theirs)."""
        fpath = os.fsencode(path)
        out: dict[str, int] = {}
        try:
            with self._tx():
                fid, _validity, uidnext = self._folder(fpath)
                for k in keys:
                    row = self.conn.execute(
                        "SELECT uid FROM uids WHERE folder = ? AND key = ?", (fid, _kb(k))
                    ).fetchone()
                    if row is not None:
                        out[k] = int(row[0])
                        continue
                    self.conn.execute(
                        "INSERT INTO uids (folder, key, uid) VALUES (?, ?, ?)",
                        (fid, _kb(k), uidnext),
                    )
                    out[k] = uidnext
                    uidnext += 1
                self.conn.execute("UPDATE folders SET uidnext = ? WHERE id = ?", (uidnext, fid))
        except sqlite3.Error as exc:
            raise StateError(f"the Maildir UID map {self.path} cannot be used: {exc}") from None
        return out

    def forget(self, path: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            with self._tx():
                fid, _v, _n = self._folder(os.fsencode(path))
                self.conn.executemany(
                    "DELETE FROM uids WHERE folder = ? AND key = ?", [(fid, _kb(k)) for k in keys]
                )
        except sqlite3.Error as exc:
            raise StateError(f"the Maildir UID map {self.path} cannot be used: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


def _kb(key: str) -> bytes:
    return os.fsencode(key)


# ---------------------------------------------------------------- reading files


class _NotAMessage(Exception):
    """The path is no longer a regular file (gone, or replaced by something else)."""


def _open(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _NotAMessage from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink put there meanwhile
            raise _NotAMessage from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotAMessage
    return fd


def _read(fd: int, limit: int | None, *, until_blank_line: bool = False) -> bytes:
    buf = bytearray()
    size = 8192
    while limit is None or len(buf) < limit:
        want = size if limit is None else min(size, limit - len(buf))
        chunk = os.read(fd, want)
        if not chunk:
            break
        start = max(len(buf) - 3, 0)
        buf += chunk
        if until_blank_line and (b"\n\n" in buf[start:] or b"\n\r\n" in buf[start:]):
            break
        size = min(size * 2, 1024 * 1024)
    return bytes(buf)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rename(src: str, dst: str) -> None:
    """Rename, never over an existing file (names are unique, so that is never expected)."""
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "a file of that name exists", dst)
    os.rename(src, dst)


# ---------------------------------------------------------------- the mailbox


class MaildirMailbox(LogoutOnExit):
    """``base.Mailbox`` on a Maildir tree; see the module docstring."""

    def __init__(self, root: str | Path, state_dir: str | Path, *, account: str = "") -> None:
        root = os.path.realpath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(root):
            what = "does not exist" if not os.path.exists(root) else "is not a directory"
            label = f"account {account!r}: " if account else ""
            raise ConnectError(
                f"{label}the Maildir {root} {what}: check `maildir` in the config (or mount "
                "the disk it is on)"
            )
        self.root = root
        self.account = account
        self.capabilities = CAPABILITIES
        self.layout: Layout = detect_layout(root)
        self.delimiter = "." if self.layout == "maildir++" else "/"
        self.store = UidStore(Path(state_dir) / UID_DB)
        self.selected: str | None = None
        self.readonly = False
        self.logged_out = False
        self._tree: dict[str, Folder] = {}
        self._view: View | None = None
        self._cache: dict[str, tuple[Stamp, View]] = {}  # folder path -> last settled listing
        log.debug("%s: Maildir %s, %s layout", account, root, self.layout)

    # ------------------------------------------------------------ folders
    def _folders(self, *, fresh: bool = False) -> dict[str, Folder]:
        if fresh or not self._tree:
            self._tree = list_tree(self.root, self.layout)
        return self._tree

    def _lookup(self, name: str) -> Folder | None:
        key = "INBOX" if name.upper() == "INBOX" else name
        f = self._folders().get(key)
        if f is None or not is_maildir(f.path):
            f = self._folders(fresh=True).get(key)
        return f

    def _folder(self, name: str) -> Folder:
        f = self._lookup(name)
        if f is None:
            raise MailboxError(missing_folder_message(printable(name)))
        return f

    def _sync(self, folder: Folder, *, prune: bool = True, fresh: bool = False) -> View:
        """The folder's messages with their UIDs. A listing is read again only when ``new/``
        or ``cur/`` changed since the last one, and that one is trusted only when neither had
        changed for ``SETTLED_NS`` before it was read (a rename within one tick of the file
        system's clock leaves the time as it was); *fresh* reads it in any case."""
        if not fresh:
            cached = self._cache.get(folder.path)
            if cached is not None and cached[0] == stamp_of(folder):
                return cached[1]
        started = time.time_ns()
        entries, stamp = scan(folder)
        stable = stamp is not None

        def order(keys: list[str]) -> list[str]:
            def when(k: str) -> tuple[int, str]:
                e = entries[k]
                try:
                    return os.stat(os.path.join(folder.path, e.sub, e.name)).st_mtime_ns, k
                except OSError:
                    return 0, k

            return sorted(keys, key=when)

        view = self.store.sync(folder.path, entries, prune=prune and stable, order=order)
        self._cache.pop(folder.path, None)
        if stamp is not None and all(t is None or t < started - SETTLED_NS for t in stamp):
            self._cache[folder.path] = (stamp, view)
        return view

    # ------------------------------------------------------------ protocol
    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    def list_folders(self) -> list[FolderInfo]:
        tree = self._folders(fresh=True)
        out = []
        for name in tree:
            children = any(n.startswith(name + self.delimiter) for n in tree)
            flag = "\\HasChildren" if children else "\\HasNoChildren"
            out.append(FolderInfo(name, frozenset({flag}), self.delimiter))
        return out

    def personal_prefix(self) -> str:
        return ""

    def status(self, folder: str) -> FolderStatus:
        self._alive()
        v = self._sync(self._folder(folder))
        return FolderStatus(v.uidvalidity, v.uidnext, len(v.by_uid))

    def select(self, folder: str, readonly: bool = False) -> FolderStatus:
        self._alive()
        f = self._folder(folder)
        v = self._sync(f)
        self.selected, self.readonly, self._view = f.name, readonly, v
        return FolderStatus(
            v.uidvalidity,
            v.uidnext,
            len(v.by_uid),
            permanent_flags=None if readonly else PERMANENT_FLAGS,
        )

    def search_uids(self, min_uid: int = 1, below: int | None = None) -> list[int]:
        v = self._refresh()
        return sorted(u for u in v.by_uid if u >= min_uid and (below is None or u < below))

    def search_uid_set(self, uids: Sequence[int]) -> list[int]:
        v = self._refresh()
        return sorted({u for u in uids if u in v.by_uid})

    def search_header(self, field: str, value: str) -> list[int]:
        v = self._refresh()
        f = self._sel()
        needle = value.casefold()
        out = []
        for uid in sorted(v.by_uid):
            got = self._read_entry(
                f, uid, lambda fd: _read(fd, MAX_HEADER_BYTES, until_blank_line=True)
            )
            if got is None:
                continue
            header = header_of(got[1])
            if any(needle in h.casefold() for h in header_values(header, field)):
                out.append(uid)
        return out

    def search_flag(self, flag: str) -> list[int]:
        v = self._refresh()
        want = flag.lower()
        return sorted(u for u, e in v.by_uid.items() if want in {f.lower() for f in e.flags})

    def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None, batch: int = 2000
    ) -> Iterator[HeaderItem]:
        self._refresh()
        f = self._sel()
        for uid in sorted(set(uids)):
            got = self._read_entry(
                f, uid, lambda fd: _read(fd, MAX_HEADER_BYTES, until_blank_line=True), stat_too=True
            )
            if got is None:
                continue
            entry, data, st = got
            header = header_of(data)
            if fields:
                header = header_fields(header, fields)
            assert st is not None
            yield HeaderItem(
                uid,
                header,
                datetime.fromtimestamp(int(st.st_mtime), UTC),
                entry.flags,
                st.st_size,
            )

    def fetch_messages(
        self, uids: Sequence[int], max_bytes: int | None = None, batch: int = 200
    ) -> Iterator[tuple[int, bytes]]:
        self._refresh()
        f = self._sel()
        for uid in sorted(set(uids)):
            got = self._read_entry(f, uid, lambda fd: _read(fd, max_bytes))
            if got is not None:
                yield uid, got[1]

    def move(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        return self._transfer(uids, dest, move=True)

    def copy(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        return self._transfer(uids, dest, move=False)

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> None:
        # No CONDSTORE on a Maildir: unchanged_since is ignored.
        self._store(uids, flags, add=True)

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store(uids, flags, add=False)

    def expunge_uids(self, uids: Sequence[int]) -> None:
        """Remove the files of those *uids* that carry \\Deleted (T); nothing else."""
        f, v = self._writable()
        gone: list[str] = []
        for uid in sorted(set(uids)):
            entry = v.by_uid.get(uid)
            if entry is None or "\\Deleted" not in entry.flags:
                continue
            path = os.path.join(f.path, entry.sub, entry.name)
            try:
                os.unlink(path)
            except FileNotFoundError:  # renamed or removed by another client: look again
                now = self._sync(f, prune=False, fresh=True).by_uid.get(uid)
                if now is None or "\\Deleted" not in now.flags:
                    continue
                try:
                    os.unlink(os.path.join(f.path, now.sub, now.name))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._os_error("remove a message from", f, exc) from None
            except OSError as exc:
                raise self._os_error("remove a message from", f, exc) from None
            gone.append(message_key(entry.name))
        if gone:
            _fsync_dir(os.path.join(f.path, "cur"))
            self.store.forget(f.path, gone)
        # No listing read again here: every reading method looks at the folder first.

    def expunge_flagged_deleted(self) -> None:
        raise CapabilityError(
            "a Maildir mailbox removes only the messages it is asked to by UID (UID EXPUNGE), "
            "never every \\Deleted message of a folder"
        )

    def create_folder(self, name: str) -> None:
        self._alive()
        if self._lookup(name) is not None:
            raise MailboxError(f"cannot create folder {printable(name)!r}: it already exists")
        parts = check_new_name(name, self.layout)
        path = self.root
        try:
            for p in parts:
                path = os.path.join(path, p)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
                if not _is_dir(path):
                    raise MailboxError(
                        f"cannot create folder {printable(name)!r}: {path} is not a directory"
                    )
            for sub in _SUBDIRS:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(os.path.join(path, sub), 0o700)
            if self.layout == "maildir++":
                with open(os.path.join(path, "maildirfolder"), "ab"):
                    pass
        except OSError as exc:
            raise MailboxError(
                f"cannot create folder {printable(name)!r} in {self.root}: {exc.strerror}"
            ) from None
        self._folders(fresh=True)

    def folder_exists(self, name: str) -> bool:
        self._alive()
        return self._lookup(name) is not None

    def append(
        self,
        folder: str,
        msg: bytes,
        flags: Sequence[str] = (),
        internaldate: datetime | None = None,
    ) -> int | None:
        self._alive()
        f = self._folder(folder)
        chars = {CHAR_OF_FLAG[x.lower()] for x in flags if x.lower() in CHAR_OF_FLAG}
        name = unique_name()
        tmp = os.path.join(f.path, "tmp", name)
        final = os.path.join(f.path, "cur", with_flags(name, chars))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(msg)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if internaldate is not None:
                ts = internaldate.timestamp()
                os.utime(tmp, (ts, ts))
            _rename(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._os_error("add a message to", f, exc) from None
        _fsync_dir(os.path.join(f.path, "cur"))
        return self.store.assign(f.path, [message_key(name)])[message_key(name)]

    def logout(self) -> None:
        if not self.logged_out:
            self.store.close()
        self.logged_out = True
        self.selected = None
        self._view = None

    # ------------------------------------------------------------ internals
    def _alive(self) -> None:
        if self.logged_out:
            raise ConnectError("the Maildir mailbox was closed (logged out)")

    def _sel(self) -> Folder:
        self._alive()
        if self.selected is None:
            raise MailboxError("no folder is selected; call select() first")
        return self._folder(self.selected)

    def _refresh(self) -> View:
        """The selected folder as it is now (other clients rename and add files)."""
        f = self._sel()
        v = self._sync(f)
        if self._view is not None and v.uidvalidity != self._view.uidvalidity:
            raise MailboxError(
                f"UIDVALIDITY of {printable(f.name)!r} changed while it was open: sweep again"
            )
        self._view = v
        return v

    def _writable(self) -> tuple[Folder, View]:
        f = self._sel()
        if self.readonly:
            raise MailboxError(f"folder {printable(f.name)!r} is selected read-only (EXAMINE)")
        return f, self._refresh()

    def _read_entry(
        self, f: Folder, uid: int, read: Callable[[int], bytes], *, stat_too: bool = False
    ) -> tuple[Entry, bytes, os.stat_result | None] | None:
        """Read one message of the selected folder *f* (looking again once if another client
        renamed it meanwhile); None when it is gone or is not a regular file."""
        for attempt in range(2):
            assert self._view is not None
            entry = self._view.by_uid.get(uid)
            if entry is None:
                return None
            try:
                fd = _open(os.path.join(f.path, entry.sub, entry.name))
            except _NotAMessage:
                if attempt == 0:
                    self._sync_view(f)
                    continue
                return None
            except OSError as exc:
                raise self._os_error("read a message in", f, exc) from None
            try:
                data = read(fd)
                st = os.fstat(fd) if stat_too else None
            except OSError as exc:
                raise self._os_error("read a message in", f, exc) from None
            finally:
                os.close(fd)
            return entry, data, st
        return None

    def _sync_view(self, f: Folder) -> None:
        self._view = self._sync(f, prune=False, fresh=True)

    def _os_error(self, what: str, f: Folder, exc: OSError) -> MailboxError:
        return MailboxError(
            f"cannot {what} folder {printable(f.name)!r} ({f.path}): {exc.strerror or exc}"
        )

    def _transfer(self, uids: Sequence[int], dest: str, *, move: bool) -> dict[int, int]:
        """MOVE (rename) or COPY (through tmp/) into *dest*'s cur/ under new names; the
        source->dest UID map (UIDPLUS). Each file lands under a new unique name without
        ``,U=`` so that a sync tool takes it for the new message it is in *dest*."""
        if move:
            src, v = self._writable()
        else:
            src, v = self._sel(), self._refresh()
        dst = self._folder(dest)
        placed: dict[int, str] = {}
        moved_keys: list[str] = []
        error: MailboxError | None = None
        for uid in sorted(set(uids)):
            entry = v.by_uid.get(uid)
            if entry is None:
                continue
            try:
                new = self._place(src, entry, dst, move=move)
                if new is None:  # renamed by another client (or removed): look again
                    v = self._sync(src, prune=False, fresh=True)
                    again = v.by_uid.get(uid)
                    if again is None:
                        continue
                    new = self._place(src, again, dst, move=move)
                    if new is None:
                        continue
                    entry = again
            except OSError as exc:
                error = self._os_error(
                    "move a message to" if move else "copy a message to", dst, exc
                )
                break
            placed[uid] = new
            if move:
                moved_keys.append(message_key(entry.name))
        if placed:
            _fsync_dir(os.path.join(dst.path, "cur"))
            if move:
                _fsync_dir(os.path.join(src.path, "cur"))
                _fsync_dir(os.path.join(src.path, "new"))
        got = self.store.assign(dst.path, [message_key(n) for n in placed.values()])
        if move:
            self.store.forget(src.path, moved_keys)
        if error is not None:
            raise error
        return {uid: got[message_key(n)] for uid, n in placed.items()}

    def _place(self, src: Folder, entry: Entry, dst: Folder, *, move: bool) -> str | None:
        """Put one message into dst/cur under a new name; None when the source file is gone."""
        chars = [c for c in entry.chars if c.isupper()]  # Dovecot keyword letters stay behind
        name = unique_name()
        final = os.path.join(dst.path, "cur", with_flags(name, chars))
        source = os.path.join(src.path, entry.sub, entry.name)
        if move:
            try:
                _rename(source, final)
                return name
            except FileNotFoundError:
                if not os.path.lexists(source):
                    return None
                raise
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            # another file system (a folder that is a mount point): copy, then remove
            if not self._copy_file(source, dst, name, final):
                return None
            os.unlink(source)
            return name
        return name if self._copy_file(source, dst, name, final) else None

    def _copy_file(self, source: str, dst: Folder, name: str, final: str) -> bool:
        try:
            fd = _open(source)
        except _NotAMessage:
            return False
        tmp = os.path.join(dst.path, "tmp", name)
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                while chunk := os.read(fd, 1024 * 1024):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
            st = os.fstat(fd)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            _rename(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        return True

    def _store(self, uids: Sequence[int], flags: Sequence[str], *, add: bool) -> None:
        f, v = self._writable()
        chars = {CHAR_OF_FLAG[x.lower()] for x in flags if x.lower() in CHAR_OF_FLAG}
        kept = [x for x in flags if x.lower() not in CHAR_OF_FLAG]
        if kept:
            log.debug("%s: a Maildir keeps no keywords: %s not stored", self.account, kept)
        if not chars:
            return
        changed = False
        for uid in sorted(set(uids)):
            for attempt in range(2):
                entry = v.by_uid.get(uid)
                if entry is None:
                    break
                have = set(entry.chars)
                want = have | chars if add else have - chars
                if want == have and (entry.sub == "cur" or not add):
                    break
                source = os.path.join(f.path, entry.sub, entry.name)
                target = os.path.join(f.path, "cur", with_flags(entry.name, want))
                try:
                    _rename(source, target)
                    changed = True
                    break
                except FileNotFoundError:
                    if attempt == 0 and not os.path.lexists(source):
                        v = self._sync(f, prune=False, fresh=True)  # renamed meanwhile
                        continue
                    break
                except OSError as exc:
                    raise self._os_error("change flags in", f, exc) from None
        if changed:
            _fsync_dir(os.path.join(f.path, "cur"))


def open_maildir(root: str | Path, state_dir: str | Path, *, account: str = "") -> MaildirMailbox:
    """Open the Maildir tree at *root* (ConnectError naming the path when it is not there);
    its UID map lives in *state_dir*."""
    return MaildirMailbox(root, state_dir, account=account)
