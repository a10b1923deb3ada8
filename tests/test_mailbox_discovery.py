"""discovery: Sent/Junk/Trash from SPECIAL-USE flags, names, config overrides (pure)."""

from __future__ import annotations

import unicodedata

import pytest

from ndr_sweeper.errors import MailboxError
from ndr_sweeper.mailbox.base import FolderInfo
from ndr_sweeper.mailbox.discovery import (
    JUNK_NAMES,
    SENT_NAMES,
    TRASH_NAMES,
    check_destination,
    check_swept,
    find_all,
    find_folder,
)


def folders(*names: str, **flagged: str) -> list[FolderInfo]:
    """folders("INBOX", "Sent", Junk="\\Junk"): keyword names carry a SPECIAL-USE flag."""
    out = [FolderInfo(n, frozenset({"\\HasNoChildren"}), "/") for n in names]
    out += [FolderInfo(n, frozenset({f, "\\HasNoChildren"}), "/") for n, f in flagged.items()]
    return out


def test_special_use_beats_names():
    fs = folders("INBOX", "Sent", "Junk", Gesendet="\\Sent", Werbung="\\Junk", Bin="\\Trash")
    assert find_folder("sent", fs) == "Gesendet"
    assert find_folder("junk", fs) == "Werbung"
    assert find_folder("trash", fs) == "Bin"


def test_find_all_sent_folders_flagged_first_then_names():
    fs = folders("INBOX", "Sent Messages", "INBOX.Sent", "Notes", Sent="\\Sent")
    assert find_all("sent", fs) == ["Sent", "INBOX.Sent", "Sent Messages"]
    assert find_folder("sent", fs) == "Sent"  # one folder where one is needed: the flagged one
    assert find_all("sent", folders("INBOX", "Drafts")) == []
    unselectable = [FolderInfo("Sent Items", frozenset({"\\Noselect"}), "/")]
    assert find_all("sent", folders("Sent") + unselectable) == ["Sent"]


def test_flag_match_is_case_insensitive():
    fs = [FolderInfo("Outbox copies", frozenset({"\\sent"}))]
    assert find_folder("sent", fs) == "Outbox copies"


def test_name_fallback_in_list_order():
    fs = folders("INBOX", "Sent Messages", "Sent")
    assert find_folder("sent", fs) == "Sent"  # "Sent" is preferred over "Sent Messages"
    assert find_folder("junk", folders("INBOX", "spam")) == "spam"
    assert find_folder("trash", folders("INBOX", "Deleted Items")) == "Deleted Items"


@pytest.mark.parametrize(
    ("names", "role", "expected"),
    [
        (["INBOX", "INBOX.Sent", "INBOX.Trash"], "sent", "INBOX.Sent"),
        (["INBOX", "INBOX.Gesendete Objekte"], "sent", "INBOX.Gesendete Objekte"),
        (["INBOX", "INBOX/Junk-E-Mail"], "junk", "INBOX/Junk-E-Mail"),
        (["INBOX", "[Gmail]", "[Gmail]/Sent Mail", "[Gmail]/Spam"], "sent", "[Gmail]/Sent Mail"),
        (["INBOX", "[Gmail]/Spam"], "junk", "[Gmail]/Spam"),
        (["INBOX", "[Google Mail]/Bin"], "trash", "[Google Mail]/Bin"),
        (["INBOX", "Éléments envoyés"], "sent", "Éléments envoyés"),
        (["INBOX", "ÉLÉMENTS ENVOYÉS"], "sent", "ÉLÉMENTS ENVOYÉS"),
        (["INBOX", "Отправленные"], "sent", "Отправленные"),
        (["INBOX", "送信済み"], "sent", "送信済み"),
        (["INBOX", "Courrier indésirable"], "junk", "Courrier indésirable"),
        (["INBOX", "Papierkorb"], "trash", "Papierkorb"),
        (["INBOX", "Gelöschte Elemente"], "trash", "Gelöschte Elemente"),
    ],
)
def test_known_names(names, role, expected):
    assert find_folder(role, folders(*names)) == expected


def test_unicode_normalisation():
    nfd = unicodedata.normalize("NFD", "Éléments envoyés")
    assert find_folder("sent", folders("INBOX", nfd)) == nfd


def test_personal_namespace_prefix():
    fs = folders("INBOX", "Mail/Verzonden")
    with pytest.raises(MailboxError):
        find_folder("sent", fs)
    assert find_folder("sent", fs, prefix="Mail/") == "Mail/Verzonden"


def test_noselect_is_skipped():
    fs = [
        FolderInfo("[Gmail]", frozenset({"\\Noselect", "\\Sent"}), "/"),
        FolderInfo("Sent", frozenset(), "/"),
    ]
    assert find_folder("sent", fs) == "Sent"


def test_override_wins_and_must_exist():
    fs = folders("INBOX", "Archive/Sent 2024", Sent="\\Sent")
    assert find_folder("sent", fs, "Archive/Sent 2024") == "Archive/Sent 2024"
    with pytest.raises(MailboxError, match=r"sent_folders .*'Nope'.*fix sent_folders"):
        find_folder("sent", fs, "Nope")
    assert find_folder("junk", fs, "inbox") == "INBOX"


@pytest.mark.parametrize(("role", "key"), [("sent", "sent_folders"), ("junk", "junk_folder"),
                                           ("trash", "trash_folder")])  # fmt: skip
def test_nothing_found_names_the_config_key(role, key):
    with pytest.raises(MailboxError, match=f"set {key} in the config") as info:
        find_folder(role, folders("INBOX", "Archive"))
    assert "\n" not in str(info.value)


def test_a_missing_folder_error_names_the_folders_the_server_has():
    with pytest.raises(MailboxError) as info:
        find_folder("junk", folders("INBOX", "Archive", "Projects"))
    msg = str(info.value)
    assert "'INBOX', 'Archive', 'Projects'" in msg and "create one named Junk" in msg, msg
    with pytest.raises(MailboxError) as info:
        find_folder("junk", folders("INBOX", "Archive"), "Spam")
    assert "the server has 'INBOX', 'Archive'" in str(info.value)
    many = folders(*(f"F{i}" for i in range(20)))
    with pytest.raises(MailboxError) as info:
        find_folder("sent", many)
    msg = str(info.value)
    assert "'F7' and 12 more: `ndr-sweeper folders`" in msg and "'F8'" not in msg, msg


def test_name_lists_have_no_duplicates():
    for names in (SENT_NAMES, JUNK_NAMES, TRASH_NAMES):
        low = [n.casefold() for n in names]
        assert len(low) == len(set(low))
    for name in ("Sent Items", "Skickat", "Wysłane", "已发送", "Spam-Verdacht", "Prullenbak"):
        assert name in SENT_NAMES + JUNK_NAMES + TRASH_NAMES


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("&AMk-l&AOk-ments envoy&AOk-s", "Éléments envoyés"),
        ("&kAFP4W4IMH8-", "送信済み"),
        ("Tom &- Jerry", "Tom & Jerry"),
        (b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
        ("plain", "plain"),
    ],
)
def test_localised_names_decode(raw, decoded):
    from ndr_sweeper.mailbox import mutf7

    assert mutf7.decode(raw if isinstance(raw, bytes) else raw.encode()) == decoded


def test_junk_and_trash_are_never_a_swept_folder_an_empty_name_or_all_mail():
    fs = [
        FolderInfo("INBOX", frozenset({"\\Junk"})),
        FolderInfo("", frozenset({"\\Junk", "\\Trash"})),
        FolderInfo("[Gmail]/All Mail", frozenset({"\\All", "\\Trash"})),
        FolderInfo("Spam", frozenset({"\\All"})),  # a known name, but every message is in it
        *folders("Bulk", "Bin"),
    ]
    assert find_folder("junk", fs, exclude=["inbox"]) == "Bulk"
    assert find_folder("trash", fs, exclude=["INBOX"]) == "Bin"
    # Sent discovery is not limited (issue 12 will say more about Gmail)
    assert find_all("junk", fs, prefix="") == ["INBOX", "Bulk"]  # nothing excluded here
    with pytest.raises(MailboxError, match=r"flags 'INBOX' \\Junk, but it is a swept folder"):
        find_folder("junk", fs[:1], exclude=["INBOX"])
    with pytest.raises(MailboxError, match=r"flags '' \\Junk, but it has an empty name"):
        find_folder("junk", fs[1:2])
    with pytest.raises(MailboxError, match=r"flags '\[Gmail\]/All Mail' \\Trash, but it is the"):
        find_folder("trash", fs[2:3])


def test_an_unusable_folder_is_never_chosen_and_is_named_when_it_was_the_one():
    bad = FolderInfo("&A-", frozenset({"\\Junk"}), "/", unusable="it is not valid UTF-7")
    assert not bad.selectable
    assert find_folder("junk", [bad, *folders("Spam")]) == "Spam"
    with pytest.raises(MailboxError, match=r"only junk folder .*'&A-', cannot be used: it is not"):
        find_folder("junk", [bad, *folders("INBOX")])
    with pytest.raises(MailboxError, match=r"lists folder '&A-', but no command .*fix junk_folder"):
        find_folder("junk", [bad, *folders("INBOX")], "&A-")


def test_check_destination_and_check_swept():
    fs = [*folders("INBOX", "Junk"), FolderInfo("[Gmail]/All Mail", frozenset({"\\All"}))]
    check_destination("junk_folder is", "Junk", ["INBOX"], fs, "fix it")  # fine
    with pytest.raises(MailboxError, match=r"^junk_folder is 'Inbox', which is also a swept"):
        check_destination("junk_folder is", "Inbox", ["INBOX"], fs, "fix it")
    with pytest.raises(MailboxError, match=r"'\[Gmail\]/All Mail', the server's \\All folder"):
        check_destination("junk_folder is", "[Gmail]/All Mail", ["INBOX"], fs, "fix it")
    check_swept(["INBOX", "Junk"], fs)
    with pytest.raises(MailboxError, match=r"remove it from `folders`"):
        check_swept(["INBOX", "[Gmail]/All Mail"], fs)
