"""Find the Sent, Junk and Trash folders in a folder list.  Pure: no I/O, no imapclient.

Order of preference: the config override; the RFC 6154 SPECIAL-USE flag (``\\Sent``,
``\\Junk``, ``\\Trash``); then well-known names, English first, then localised ones, compared
case-insensitively (and Unicode-normalised) with and without the personal namespace prefix
(``INBOX.``, ``INBOX/``).  Folder names are decoded str (``mailbox.mutf7`` decodes them).

Never chosen as Junk or Trash: a swept folder (the bounces would be "moved" to where they are),
a folder with an empty name, the SPECIAL-USE ``\\All`` folder (Gmail's All Mail: every message
is in it).  A folder whose LIST name no command can carry (``FolderInfo.unusable``) is never
chosen for anything; when it is the one the server flags, the error says so.  ``check_swept``
and ``check_destination`` refuse the same things when the config (or a rule) names them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from ndr_sweeper.errors import MailboxError
from ndr_sweeper.mailbox.base import FolderInfo

Role = Literal["sent", "junk", "trash"]

SPECIAL_USE: dict[Role, str] = {"sent": "\\Sent", "junk": "\\Junk", "trash": "\\Trash"}
ALL = "\\All"  # RFC 6154: the folder that holds every message (Gmail's "All Mail")
CONFIG_KEY: dict[Role, str] = {
    "sent": "sent_folders",
    "junk": "junk_folder",
    "trash": "trash_folder",
}

SENT_NAMES: tuple[str, ...] = (
    "Sent", "Sent Items", "Sent Messages", "Sent Mail", "Sent-Mail", "Sent Email",
    "INBOX.Sent", "INBOX/Sent", "[Gmail]/Sent Mail", "[Google Mail]/Sent Mail",
    "Gesendet", "Gesendete Elemente", "Gesendete Objekte", "Gesendete Nachrichten",
    "Éléments envoyés", "Messages envoyés", "Envoyés",
    "Enviados", "Elementos enviados", "Itens enviados", "Mensagens enviadas",
    "Posta inviata", "Inviata", "Inviati",
    "Verzonden items", "Verzonden", "Skickat", "Skickade objekt", "Skickade",
    "Sendt", "Sendte elementer", "Sendte", "Lähetetyt", "Lähetetyt kohteet",
    "Wysłane", "Elementy wysłane", "Odeslaná pošta", "Odeslané",
    "Отправленные", "送信済み", "送信済みアイテム", "已发送", "已发送邮件", "寄件備份",
)  # fmt: skip

JUNK_NAMES: tuple[str, ...] = (
    "Junk", "Junk E-mail", "Junk Email", "Junk Mail", "Spam", "Bulk Mail", "Bulk",
    "[Gmail]/Spam", "[Google Mail]/Spam", "INBOX.Junk", "INBOX.Spam", "INBOX/Junk",
    "INBOX/Spam", "Spam-Verdacht", "Spamverdacht", "Junk-E-Mail", "Unerwünscht",
    "Courrier indésirable", "Pourriel", "Indésirables",
    "Correo no deseado", "Lixo eletrônico", "Posta indesiderata",
    "Ongewenste e-mail", "Skräppost", "Søppelpost", "Roskaposti", "Wiadomości-śmieci",
    "Nevyžádaná pošta", "Спам", "迷惑メール", "垃圾邮件",
)  # fmt: skip

TRASH_NAMES: tuple[str, ...] = (
    "Trash", "Deleted Items", "Deleted Messages", "Deleted", "Bin",
    "[Gmail]/Trash", "[Gmail]/Bin", "[Google Mail]/Trash", "[Google Mail]/Bin",
    "INBOX.Trash", "INBOX/Trash", "Papierkorb", "Gelöscht", "Gelöschte Elemente", "Gelöschte Objekte",
    "Corbeille", "Éléments supprimés", "Papelera", "Elementos eliminados", "Lixeira",
    "Itens excluídos", "Cestino", "Posta eliminata", "Prullenbak", "Verwijderde items",
    "Papperskorgen", "Borttagna objekt", "Papirkurv", "Slettede elementer",
    "Roskakori", "Poistetut", "Kosz", "Elementy usunięte", "Koš", "Odstraněná pošta",
    "Корзина", "Удаленные", "ごみ箱", "削除済みアイテム", "已删除", "已删除邮件",
)  # fmt: skip

NAMES: dict[Role, tuple[str, ...]] = {"sent": SENT_NAMES, "junk": JUNK_NAMES, "trash": TRASH_NAMES}


def _norm(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _strip_prefix(name: str, prefixes: Iterable[str]) -> str | None:
    low = _norm(name)
    for prefix in prefixes:
        p = _norm(prefix)
        if p and low.startswith(p) and len(low) > len(p):
            return name[len(prefix) :]
    return None


def same_folder(a: str, b: str) -> bool:
    """Whether two names name one folder: the same, or both INBOX (in any case)."""
    return a == b or (_norm(a) == "inbox" and _norm(b) == "inbox")


def find_folder(
    role: Role,
    folders: Sequence[FolderInfo],
    override: str | None = None,
    *,
    prefix: str = "",
    exclude: Iterable[str] = (),
) -> str:
    """Name of the folder for *role* ("sent", "junk" or "trash").

    *override* (from the config) wins, but must be in *folders*.  *prefix* is the personal
    namespace prefix (``Mailbox.personal_prefix()``); ``INBOX.`` and ``INBOX/`` are always
    tried too.  *exclude*: folders never to discover (the swept ones).  Raises MailboxError
    saying which config key to set when nothing fits.
    """
    key = CONFIG_KEY[role]
    usable = [f for f in folders if f.selectable]
    if override:
        for f in usable:
            if same_folder(f.name, override):
                return f.name
        refuse_unusable(override, folders, key)
        raise MailboxError(
            f"{key} is set to {override!r}, but the server has no such folder "
            f"({_listing(usable)}); fix {key} in the config"
        )
    skip = tuple(exclude)
    name = next(_candidates(role, usable, prefix, exclude=skip), None)
    if name is not None:
        return name
    flag = SPECIAL_USE[role]
    for f in folders:
        if f.unusable is not None and f.has_flag(flag):
            raise MailboxError(
                f"the only {role} folder the server flags {flag}, {f.name!r}, cannot be used: "
                f"{f.unusable}; rename it (in webmail or another mail client), or set {key}"
            )
    for f in usable:
        if f.has_flag(flag):
            why = (
                "it has an empty name"
                if not f.name
                else "it is a swept folder (in `folders`)"
                if any(same_folder(f.name, x) for x in skip)
                else f"it is the {ALL} folder (every message is in it)"
            )
            raise MailboxError(
                f"no usable {role} folder: the server flags {f.name!r} {flag}, but {why}; "
                f"set {key} in the config"
            )
    create = " (or create one named Junk in your mail client)" if role == "junk" else ""
    raise MailboxError(
        f"no {role} folder found (no {flag} flag, no known name; {_listing(usable)}); "
        f"set {key} in the config to one of them{create}"
    )


def _listing(folders: Sequence[FolderInfo], most: int = 8) -> str:
    """ "the server has 'INBOX', 'Archive' and 3 more (`ndr-sweeper folders` lists them)"."""
    names = [repr(f.name) for f in folders if f.name]
    if not names:
        return "the server lists no folder you can open"
    shown = ", ".join(names[:most])
    if len(names) > most:
        return f"the server has {shown} and {len(names) - most} more: `ndr-sweeper folders`"
    return f"the server has {shown}"


def find_all(role: Role, folders: Sequence[FolderInfo], *, prefix: str = "") -> list[str]:
    """Every folder that plays *role*, best first: the SPECIAL-USE-flagged ones, then those with
    a well-known name.  Mailboxes used by several clients over the years often have two Sent
    folders ("Sent" and "Sent Items"); the Sent check reads them all.  [] when there is none."""
    usable = [f for f in folders if f.selectable]
    return list(dict.fromkeys(_candidates(role, usable, prefix, every=True)))


def refuse_unusable(name: str, folders: Sequence[FolderInfo], key: str) -> None:
    """Raise MailboxError when *name* (from the config key *key*) is a folder the server lists
    under a name no command can carry; return when it is not."""
    for f in folders:
        if f.unusable is not None and f.name == name:
            raise MailboxError(
                f"the server lists folder {name!r}, but no command can name it: {f.unusable}; "
                f"rename it (in webmail or another mail client) and fix {key}"
            )


def check_swept(swept: Iterable[str], folders: Sequence[FolderInfo]) -> None:
    """Refuse (MailboxError, one line) to sweep the ``\\All`` folder."""
    for name in swept:
        if any(_is_all(f, name) for f in folders):
            raise MailboxError(
                f"{name!r} is the server's {ALL} folder (every message of the account is in it, "
                "as in Gmail's All Mail): sweeping it would move mail out of every other folder; "
                "remove it from `folders`"
            )


def check_destination(
    what: str, dest: str, swept: Iterable[str], folders: Sequence[FolderInfo], fix: str
) -> None:
    """Refuse (MailboxError, one line) a destination that is a swept folder or the ``\\All``
    folder: *what* says whose it is ("junk_folder is"), *fix* how to change it."""
    for name in swept:
        if same_folder(dest, name):
            raise MailboxError(
                f"{what} {dest!r}, which is also a swept folder ({name!r} is in `folders`): "
                f"the bounces would stay where they are; {fix}, or take {name!r} out of `folders`"
            )
    if any(_is_all(f, dest) for f in folders):
        raise MailboxError(
            f"{what} {dest!r}, the server's {ALL} folder (every message of the account is in "
            f"it, as in Gmail's All Mail): mail moved there is not taken away; {fix}"
        )


def _is_all(f: FolderInfo, name: str) -> bool:
    return f.unusable is None and same_folder(f.name, name) and f.has_flag(ALL)


def _candidates(
    role: Role,
    usable: Sequence[FolderInfo],
    prefix: str,
    *,
    every: bool = False,
    exclude: tuple[str, ...] = (),
) -> Iterator[str]:
    """Folder names for *role* in order of preference; without *every*, the flagged folders
    end the search (a server that flags one has said which it is).  Never a folder with an
    empty name, one in *exclude*, or (for Junk and Trash) the \\All folder."""

    def fits(f: FolderInfo) -> bool:
        if not f.name or any(same_folder(f.name, x) for x in exclude):
            return False
        return role == "sent" or not f.has_flag(ALL)

    usable = [f for f in usable if fits(f)]
    flag = SPECIAL_USE[role].lower()
    flagged = [f for f in usable if flag in {x.lower() for x in f.flags}]
    yield from (f.name for f in flagged)
    if flagged and not every:
        return
    prefixes = [p for p in (prefix, "INBOX.", "INBOX/") if p]
    by_name: dict[str, list[FolderInfo]] = {}
    by_stripped: dict[str, list[FolderInfo]] = {}
    for f in usable:
        by_name.setdefault(_norm(f.name), []).append(f)
        stripped = _strip_prefix(f.name, prefixes)
        if stripped is not None:
            by_stripped.setdefault(_norm(stripped), []).append(f)
    for candidate in NAMES[role]:
        c = _norm(candidate)
        named, stripped_hits = by_name.get(c, []), by_stripped.get(c, [])
        for hit in named + stripped_hits if every else (named or stripped_hits)[:1]:
            yield hit.name
            if not every:
                return
