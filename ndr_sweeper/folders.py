"""``ndr-sweeper folders [ACCOUNT]``: the server's folders, their SPECIAL-USE flags and
message counts, and which ones the sweep would use as Sent, Junk and Trash.

Counting asks STATUS once per folder, so it is bounded: at most ``--count`` folders (INBOX,
the ones the sweep uses, then the rest in LIST order) within ``COUNT_SECONDS``; a server with
thousands of folders is listed whole, its counts only in part, and the screen says so.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import MailboxError

if TYPE_CHECKING:
    from .config import Account
    from .mailbox.base import FolderInfo, Mailbox

DEFAULT_COUNT = 200  # folders whose messages are counted
COUNT_SECONDS = 20.0  # and for at most this long
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


@dataclass
class FolderRow:
    name: str
    flags: list[str]  # the SPECIAL-USE flags, and \Noselect
    messages: int | None = None  # None: not counted (or not selectable)
    roles: list[str] = field(default_factory=list)  # "sent", "junk", "trash", "swept"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "flags": self.flags, "messages": self.messages,
                "roles": self.roles}  # fmt: skip


@dataclass
class Listing:
    account: str
    folders: list[FolderRow]
    sent: list[str]
    junk: str | None
    trash: str | None
    notes: list[str] = field(default_factory=list)
    uncounted: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "sent": self.sent,
            "junk": self.junk,
            "trash": self.trash,
            "folders": [f.to_dict() for f in self.folders],
            "uncounted": self.uncounted,
            "notes": self.notes,
        }


def _shown_flags(f: FolderInfo) -> list[str]:
    wanted = {s.lower(): s for s in SPECIAL_USE}
    out = [wanted[x.lower()] for x in f.flags if x.lower() in wanted]
    if not f.selectable:
        out.append("\\Noselect")
    return sorted(set(out))


def roles_of(
    folders: Sequence[FolderInfo], account: Account, prefix: str
) -> tuple[list[str], str | None, str | None, list[str]]:
    """Sent folders, Junk and Trash as the sweep chooses them (the very functions it uses),
    and for each that cannot be, the sweep's error as a note (it says which key to set)."""
    from .sweep import choose_destination, choose_sent

    notes: list[str] = []
    try:
        sent = choose_sent(folders, account, prefix)
    except MailboxError as exc:
        sent = []
        notes.append(str(exc))
    found: dict[str, str | None] = {}
    for role, action in (("junk", "move"), ("trash", "delete")):
        try:
            found[role] = choose_destination(role, folders, account, prefix)  # type: ignore[arg-type]
        except MailboxError as exc:
            found[role] = None
            needed = account.action == action
            notes.append(f"{exc}" + ("" if needed else f" (only needed for action = {action})"))
    return sent, found["junk"], found["trash"], notes


def list_folders(
    mb: Mailbox,
    account: Account,
    *,
    count: int = DEFAULT_COUNT,
    seconds: float = COUNT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Listing:
    from .mailbox.discovery import same_folder

    folders = mb.list_folders()
    sent, junk, trash, notes = roles_of(folders, account, mb.personal_prefix())
    rows = {f.name: FolderRow(f.name, _shown_flags(f)) for f in folders}

    def listed(name: str) -> str | None:
        return next((n for n in rows if same_folder(n, name)), None)  # INBOX in any case

    for role, names in (("sent", sent), ("junk", [junk]), ("trash", [trash])):
        for row in (listed(n) for n in names if n is not None):
            if row is not None:
                rows[row].roles.append(role)
    for name in account.folders:
        row = listed(name)
        if row is not None:
            rows[row].roles.append("swept")
        else:
            notes.append(f"folders names {name!r}, which the server does not have")
    selectable = [f.name for f in folders if f.selectable]
    first = [n for n in selectable if n.upper() == "INBOX" or rows[n].roles]
    order = first + [n for n in selectable if n not in set(first)]
    deadline = clock() + seconds
    counted = 0
    for name in order:
        if counted >= count or clock() > deadline:
            break
        try:
            rows[name].messages = mb.status(name).messages
        except MailboxError:
            pass
        counted += 1
    uncounted = len(order) - counted
    if uncounted:
        notes.append(
            f"{uncounted} of {len(order)} folders not counted (at most {count} folders or "
            f"{seconds:g} s); `--count N` counts more"
        )
    return Listing(account.name, list(rows.values()), sent, junk, trash, notes, uncounted)


def cmd_folders(args: argparse.Namespace) -> int:
    from . import render
    from .config import load_config
    from .connect import open_mailbox

    config = load_config(args.config)
    for w in config.warnings:
        render.warning(w)
    account = config.account(args.account) if args.account else config.select(None)[0]
    mb = open_mailbox(account)
    try:
        listing = list_folders(mb, account, count=max(args.count, 0))
    finally:
        try:
            mb.logout()
        except Exception:
            pass
    if args.json:
        render.json_doc(listing.to_dict())
        return 0
    out = render.narrow()
    label = {"sent": "Sent", "junk": "Junk", "trash": "Trash", "swept": "swept"}
    # The folder name last: it is the column that may be long, and the one that folds.
    render.table(
        f"{account.name}: {len(listing.folders)} folders",
        ["messages", "used as", "special-use", "folder"],
        [
            [
                "-" if f.messages is None else f.messages,
                ", ".join(label[r] for r in f.roles),
                " ".join(f.flags),
                f.name,
            ]
            for f in listing.folders
        ],
        out=out,
    )
    render.para(
        f"Sent: {', '.join(listing.sent) or 'none found'}; Junk: {listing.junk or 'none found'}; "
        f"Trash: {listing.trash or 'none found'}",
        out=out,
        indent="  ",
    )
    for note in listing.notes:
        render.para(f"note: {note}", out=out, indent="  ")
    return 0
