"""Build Maildir trees for the tests, laid out as Dovecot/Courier (Maildir++) or mbsync
(``SubFolders Verbatim``, file names with ``,U=<n>``) lay them out, and read them back.

``Tree`` writes files the way those tools do (no ndr-sweeper code involved), so what the Maildir
mailbox reads is what a user's disk holds; ``mbsync_pass`` plays one mbsync run: it numbers
every file without ``,U=`` (a rename that adds ``,U=<n>``), as mbsync does after uploading it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_seq = itertools.count(1)
FOLDERS = ("INBOX", "Drafts", "Sent", "Junk", "Trash")


@dataclass
class Tree:
    root: Path
    layout: str  # "maildir++" or "mbsync"

    def path(self, folder: str) -> Path:
        if folder == "INBOX":
            return self.root if self.layout == "maildir++" else self.root / "INBOX"
        if self.layout == "maildir++":
            return self.root / ("." + folder.replace("/", "."))
        return self.root.joinpath(*folder.split("/"))

    def make(self, *folders: str) -> Tree:
        for f in folders or FOLDERS:
            for sub in ("cur", "new", "tmp"):
                (self.path(f) / sub).mkdir(parents=True, exist_ok=True)
            if self.layout == "maildir++" and f != "INBOX":
                (self.path(f) / "maildirfolder").touch()
        return self

    def deliver(
        self,
        folder: str,
        raw: bytes,
        *,
        new: bool = False,
        flags: str = "",
        uid: int | None = None,
        mtime: float | None = None,
    ) -> Path:
        """Put a message in `folder` as a delivery (new/) or a sync tool (cur/ with info)
        would; `uid` adds mbsync's ``,U=<uid>``."""
        n = next(_seq)
        base = f"17000{n:05d}.M{n}P{os.getpid()}.testhost"
        if uid is not None:
            base += f",U={uid}"
        name = base if new else f"{base}:2,{flags}"
        target = self.path(folder) / ("new" if new else "cur") / name
        tmp = self.path(folder) / "tmp" / base
        tmp.write_bytes(raw)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        tmp.rename(target)
        return target

    def files(self, folder: str) -> list[Path]:
        return sorted(
            p
            for sub in ("cur", "new")
            for p in (self.path(folder) / sub).iterdir()
            if p.is_file() and not p.name.startswith(".")
        )

    def messages(self, folder: str) -> list[tuple[bytes, str]]:
        """(content, flag letters) of each message file in `folder`."""
        out = []
        for p in self.files(folder):
            info = p.name.split(":", 1)[1] if ":" in p.name else ""
            out.append((p.read_bytes(), info[2:] if info.startswith("2,") else ""))
        return out


def mbsync_pass(tree: Tree, *folders: str, start: int = 1000) -> int:
    """Number every file without ``,U=`` as mbsync does after uploading it (a rename that adds
    ``,U=<n>`` before the info); returns how many files were renamed."""
    renamed = 0
    uid = itertools.count(start)
    for folder in folders or FOLDERS:
        for p in tree.files(folder):
            if ",U=" in p.name:
                continue
            base, sep, info = p.name.partition(":")
            p.rename(p.with_name(f"{base},U={next(uid)}{sep}{info}"))
            renamed += 1
    return renamed


def toggle_seen(tree: Tree, folder: str) -> int:
    """Another client marks every message in `folder` read (a rename of the info part)."""
    n = 0
    for p in tree.files(folder):
        if p.parent.name != "cur":
            continue
        base, _sep, info = p.name.partition(":")
        letters = set(info[2:]) if info.startswith("2,") else set()
        letters ^= {"S"}
        p.rename(p.with_name(f"{base}:2,{''.join(sorted(letters))}"))
        n += 1
    return n


U_FIELD = re.compile(r",U=\d+")


def walk(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield Path(dirpath) / f


@dataclass
class Stored:
    data: bytes
    flags: set[str]


LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}


class MaildirServer:
    """A Maildir tree seen the way test_journal's World looks at a server: ``contents(folder)``
    (numbered in file name order, not by our UIDs) and ``add_message``."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._uids = itertools.count(1)

    def contents(self, folder: str) -> dict[int, Stored]:
        out = {}
        for i, (data, letters) in enumerate(self.tree.messages(folder), 1):
            flags = {f for f, c in LETTERS.items() if c in letters}
            out[i] = Stored(data, flags)
        return out

    def add_message(self, folder: str, raw: bytes, flags: tuple[str, ...] = ()) -> None:
        """Delivered (new/) when it has no flags; else in cur/. In the mbsync layout every
        message carries ``,U=<n>``, as one that mbsync downloaded does."""
        letters = "".join(sorted(LETTERS[f] for f in flags if f in LETTERS))
        uid = next(self._uids) if self.tree.layout == "mbsync" else None
        self.tree.deliver(folder, raw, new=not letters, flags=letters, uid=uid)
