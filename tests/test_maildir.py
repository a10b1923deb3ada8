"""The Maildir mailbox: layouts, UIDs that survive other clients' renames, moves that a sync
tool takes for new mail, hostile names and files, and the whole CLI (sweep, re-run, undo, an
interrupted move, mbsync renaming files meanwhile) on trees laid out as Dovecot and mbsync lay
them out. Offline: no server, no Dovecot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import tag_of, tagged

from ndr_sweeper.errors import ConnectError, MailboxError
from ndr_sweeper.mailbox import discovery
from ndr_sweeper.mailbox import maildir as md
from ndr_sweeper.mailbox.maildir import MaildirMailbox, message_key, open_maildir

import bounces
from lab import make_message
from maildirs import Tree, mbsync_pass, toggle_seen
from test_journal import World, one_line

LAYOUTS = ["maildir++", "mbsync"]


def box_on(tree: Tree, state: Path) -> MaildirMailbox:
    return open_maildir(tree.root, state)


def by_id(box: MaildirMailbox, folder: str) -> dict[str, int]:
    """Message-ID -> UID in `folder`."""
    box.select(folder, readonly=True)
    out = {}
    for h in box.fetch_headers(box.search_uids(), ["Message-ID"]):
        out[h.header.decode().split("<", 1)[1].split(">", 1)[0]] = h.uid
    return out


# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("1700000001.M1P2.host:2,S", "1700000001.M1P2.host"),
        ("1700000001.M1P2.host,U=42:2,FS", "1700000001.M1P2.host"),  # mbsync
        (
            "1700000001_0.1234.host,U=7,FMD5=0123456789abcdef0123456789abcdef:2,",
            "1700000001_0.1234.host",
        ),
        (
            "1700000001.M1P2.host,S=1234,W=1260:2,RS",
            "1700000001.M1P2.host,S=1234,W=1260",
        ),  # Dovecot
        ("1700000001.M1P2.host", "1700000001.M1P2.host"),  # new/: no info
    ],
)
def test_message_key_is_what_stays_when_others_rename(name: str, key: str) -> None:
    assert message_key(name) == key


# ---------------------------------------------------------------- layouts


def test_maildirpp_layout_is_read_as_dovecot_names_it(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "maildir++").make(
        "INBOX", "Sent", "Junk", "Archive/2024", "Drafts"
    )
    (tree.root / ".&AMk-l&AOk-ments envoy&AOk-s" / "cur").mkdir(parents=True)  # Dovecot's mUTF-7
    (tree.root / ".notmuch" / "xapian").mkdir(parents=True)  # not a Maildir: not a folder
    (tree.root / "dovecot-uidlist").write_text("3 V1 N1\n")
    (tmp_path / "elsewhere" / "cur").mkdir(parents=True)
    (tree.root / ".Linked").symlink_to(tmp_path / "elsewhere")  # never followed
    box = box_on(tree, tmp_path / "state")
    assert box.layout == "maildir++"
    folders = box.list_folders()
    names = {f.name for f in folders}
    assert names == {"INBOX", "Sent", "Junk", "Archive.2024", "Drafts", "Éléments envoyés"}
    assert {f.delimiter for f in folders} == {"."}
    assert (
        discovery.find_folder("sent", folders) == "Sent"
        and discovery.find_folder("junk", folders) == "Junk"
    )
    box.create_folder("Résumé.2025")
    assert (tree.root / ".R&AOk-sum&AOk-.2025" / "maildirfolder").is_file()
    for sub in ("cur", "new", "tmp"):
        assert (tree.root / ".R&AOk-sum&AOk-.2025" / sub).is_dir()
    assert "Résumé.2025" in {f.name for f in box.list_folders()}
    assert box.status("Résumé.2025").messages == 0


def test_mbsync_verbatim_layout_is_read_as_mbsync_names_it(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "mbsync").make(
        "INBOX", "Junk", "Archive/2024", "[Gmail]/Sent Mail", "INBOX/Lists"
    )
    (tree.root / "[Gmail]" / ".uidvalidity").write_text("1\n")
    (tree.root / "Junk" / ".mbsyncstate").write_text("")
    box = box_on(tree, tmp_path / "state")
    assert box.layout == "verbatim"
    folders = box.list_folders()
    assert {f.name for f in folders} == {
        "INBOX",
        "Junk",
        "Archive/2024",
        "[Gmail]/Sent Mail",
        "INBOX/Lists",
    }
    assert {f.delimiter for f in folders} == {"/"}
    assert discovery.find_folder("sent", folders) == "[Gmail]/Sent Mail"
    assert discovery.find_folder("junk", folders) == "Junk"
    box.create_folder("Bounces/2025")
    assert (tree.root / "Bounces" / "2025" / "cur").is_dir()
    assert box.folder_exists("Bounces/2025") and not box.folder_exists("Bounces")


def test_a_root_that_is_a_maildir_with_plain_subfolders(tmp_path: Path) -> None:
    """mbsync with ``Inbox`` at the root of ``Path`` and ``SubFolders Verbatim``."""
    root = tmp_path / "Mail"
    for d in ("cur", "new", "tmp", "Sent/cur", "Sent/new", "Junk/cur", "Junk/new"):
        (root / d).mkdir(parents=True)
    box = open_maildir(root, tmp_path / "state")
    assert box.layout == "verbatim"
    assert {f.name for f in box.list_folders()} == {"INBOX", "Sent", "Junk"}


# ---------------------------------------------------------------- hostile names and files


@pytest.mark.parametrize("layout", LAYOUTS)
def test_folder_names_never_reach_outside_the_tree(tmp_path: Path, layout: str) -> None:
    tree = Tree(tmp_path / "Mail", layout).make()
    outside = tmp_path / "outside"
    (outside / "cur").mkdir(parents=True)
    (outside / "cur" / "1.M1.h:2,").write_bytes(make_message("outside@x"))
    box = box_on(tree, tmp_path / "state")
    before = sorted(str(p) for p in tmp_path.rglob("*") if "state" not in p.parts)
    bad = ["../outside", "a/../../outside", ".", "..", "/abs", "x/cur", "a\0b", "a\nb",
           ".hidden", "INBOX", "", "a/./b", "../../etc", "a/"]  # fmt: skip
    if layout == "maildir++":
        bad += ["a..b", ".a", "a.", "a/b"]  # "." is the separator there: no empty level
    else:
        bad += ["tmp", "a/new"]  # a folder's own cur/ new/ tmp/
    for name in bad:
        with pytest.raises(MailboxError):
            box.create_folder(name)
        with pytest.raises(MailboxError, match="does not exist"):
            box.select(name if name.upper() != "INBOX" else "Nope")
    after = sorted(str(p) for p in tmp_path.rglob("*") if "state" not in p.parts)
    assert after == before
    box.select("INBOX")
    with pytest.raises(MailboxError, match="does not exist"):
        box.move([1], "../outside")


def test_only_regular_files_in_cur_and_new_are_messages(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "mbsync").make()
    real = tree.deliver("INBOX", make_message("real@x"))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"Message-ID: <secret@x>\r\n\r\nthe password\r\n")
    (tree.path("INBOX") / "cur" / "1700.M9.h:2,").symlink_to(secret)
    (tree.path("INBOX") / "new" / "1700.M8.h").symlink_to(secret)
    os.mkfifo(tree.path("INBOX") / "cur" / "1700.M7.h:2,")
    (tree.path("INBOX") / "cur" / "1700.M6.h:2,").mkdir()
    (tree.path("INBOX") / "cur" / ".1700.M5.h:2,").write_bytes(make_message("hidden@x"))
    (tree.path("INBOX") / "tmp" / "1700.M4.h").write_bytes(make_message("half-written@x"))
    box = box_on(tree, tmp_path / "state")
    assert by_id(box, "INBOX") == {"real@x": 1}
    assert [m for _u, m in box.fetch_messages([1, 2, 3, 4, 5])] == [real.read_bytes()]


def test_reads_are_bounded_on_a_two_gigabyte_file(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "maildir++").make()
    path = tree.deliver("INBOX", b"Subject: no end of header in sight\r\nX-Pad: ")
    with open(path, "r+b") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB of NUL bytes and no blank line
    box = box_on(tree, tmp_path / "state")
    box.select("INBOX", readonly=True)
    (head,) = box.fetch_headers([1])
    assert head.size == 2 * 1024**3
    assert len(head.header) <= md.MAX_HEADER_BYTES + 4
    (got,) = box.fetch_messages([1], max_bytes=1024 * 1024)
    assert len(got[1]) == 1024 * 1024


# ---------------------------------------------------------------- UIDs


_LIST_UIDS = """
import json, sys
from ndr_sweeper.mailbox.maildir import open_maildir
box = open_maildir(sys.argv[1], sys.argv[2])
st = box.select("INBOX", readonly=True)
ids = {h.header.decode().split("<")[1].split(">")[0]: h.uid
       for h in box.fetch_headers(box.search_uids(), ["Message-ID"])}
print(json.dumps({"uidvalidity": st.uidvalidity, "uidnext": st.uidnext, "ids": ids}))
"""


@pytest.mark.parametrize("layout", LAYOUTS)
def test_uids_survive_other_processes_and_other_clients_renames(
    tmp_path: Path, layout: str
) -> None:
    tree = Tree(tmp_path / "Mail", layout).make()
    for i in range(4):
        tree.deliver("INBOX", make_message(f"m{i}@x"), new=i == 3, uid=100 + i, mtime=1e9 + i)
    state = tmp_path / "state"

    def other_process() -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", _LIST_UIDS, str(tree.root), str(state)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    first = other_process()
    assert first["ids"] == {"m0@x": 1, "m1@x": 2, "m2@x": 3, "m3@x": 4}  # by arrival (mtime)
    # mutt marks everything read and moves new/ to cur/; mbsync numbers the files anew
    assert toggle_seen(tree, "INBOX") == 3
    for p in tree.files("INBOX"):
        name = re.sub(r",U=(\d+)", lambda m: f",U={int(m.group(1)) + 500}", p.name)
        if p.parent.name == "new":
            p.rename(tree.path("INBOX") / "cur" / f"{name}:2,S")
        else:
            p.rename(p.with_name(name))
    assert all(",U=60" in p.name and p.parent.name == "cur" for p in tree.files("INBOX"))
    tree.deliver("INBOX", make_message("m4@x"), mtime=1e9 + 10)
    box = box_on(tree, state)
    assert by_id(box, "INBOX") == {"m0@x": 1, "m1@x": 2, "m2@x": 3, "m3@x": 4, "m4@x": 5}
    second = other_process()
    assert second["uidvalidity"] == first["uidvalidity"]
    assert second["ids"] == by_id(box, "INBOX") and second["uidnext"] == 6
    # a message that leaves and a new one: the UID that left is never given again
    box.select("INBOX")
    box.move([2], "Junk")
    tree.deliver("INBOX", make_message("m5@x"))
    assert by_id(box, "INBOX") == {"m0@x": 1, "m2@x": 3, "m3@x": 4, "m4@x": 5, "m5@x": 6}
    assert other_process()["ids"] == by_id(box, "INBOX")


def test_a_lost_uid_map_is_a_new_uidvalidity(tmp_path: Path, monkeypatch) -> None:
    tree = Tree(tmp_path / "Mail", "mbsync").make()
    tree.deliver("INBOX", make_message("a@x"))
    box = box_on(tree, tmp_path / "state")
    before = box.status("INBOX").uidvalidity
    box.logout()
    later = md.time.time() + 5
    monkeypatch.setattr(md.time, "time", lambda: later)
    (tmp_path / "state" / md.UID_DB).unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / "state" / (md.UID_DB + extra)).unlink(missing_ok=True)
    assert box_on(tree, tmp_path / "state").status("INBOX").uidvalidity != before


# ---------------------------------------------------------------- reading and writing


def test_reading_never_touches_new_and_sets_no_flag(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "mbsync").make()
    a = tree.deliver("INBOX", make_message("a@x"), new=True, uid=1)
    b = tree.deliver("INBOX", make_message("b@x"), new=True, uid=2)
    files = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (a, b)}
    box = box_on(tree, tmp_path / "state")
    box.select("INBOX")
    list(box.fetch_headers([1, 2]))
    list(box.fetch_messages([1, 2]))
    assert box.search_header("Message-ID", "a@x") == [1]
    assert box.search_flag("\\Seen") == []
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (a, b)} == files
    # acting on one message moves only that one to cur/, under the same key (same UID)
    box.add_flags([1], ["\\Flagged"])
    assert not a.exists() and b.exists()
    (flagged,) = [p for p in tree.files("INBOX") if p.parent.name == "cur"]
    assert flagged.name == a.name + ":2,F" and flagged.read_bytes() == make_message("a@x")
    assert box.search_flag("\\Flagged") == [1] and box.search_uids() == [1, 2]


def test_move_gives_a_new_name_without_mbsyncs_uid(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "mbsync").make()
    seen = tree.deliver("INBOX", make_message("seen@x"), flags="FSa", uid=41)  # "a": a keyword
    fresh = tree.deliver("INBOX", make_message("fresh@x"), new=True, uid=42)
    stays = tree.deliver("INBOX", make_message("stays@x"), flags="S", uid=43)
    box = box_on(tree, tmp_path / "state")
    box.select("INBOX")
    assert box.move([1, 2], "Junk") == {1: 1, 2: 2}
    assert not seen.exists() and not fresh.exists() and stays.exists()
    moved = tree.files("Junk")
    assert [p.parent.name for p in moved] == ["cur", "cur"]
    for p in moved:
        assert ",U=" not in p.name  # mbsync takes it for a new message in Junk
        assert message_key(p.name) not in {message_key(seen.name), message_key(fresh.name)}
    infos = sorted(p.name.split(":", 1)[1] for p in moved)
    assert infos == ["2,", "2,FS"]  # flags kept; the keyword letter stays behind
    contents = sorted(p.read_bytes() for p in moved)
    assert contents == sorted([make_message("seen@x"), make_message("fresh@x")])
    assert by_id(box, "Junk") == {"seen@x": 1, "fresh@x": 2}


def test_expunge_removes_only_deleted_files_named_by_uid(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "Mail", "maildir++").make()
    users = tree.deliver("INBOX", make_message("user-trashed@x"), flags="T")
    for i in range(3):
        tree.deliver("INBOX", make_message(f"m{i}@x"))
    box = box_on(tree, tmp_path / "state")
    box.select("INBOX")
    box.add_flags([2], ["\\Deleted"])
    box.expunge_uids([2, 3])  # 3 is not flagged: stays
    assert users.exists()
    assert by_id(box, "INBOX") == {"user-trashed@x": 1, "m1@x": 3, "m2@x": 4}
    box.select("INBOX")
    assert box.search_flag("\\Deleted") == [1]


def test_a_missing_maildir_is_one_line_naming_the_path(tmp_path: Path, capsys) -> None:
    from ndr_sweeper import cli

    gone = tmp_path / "unmounted" / "Mail"
    with pytest.raises(ConnectError, match=f"the Maildir {gone} does not exist"):
        open_maildir(gone, tmp_path / "state")
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[[accounts]]\nname = "m"\nmaildir = "{gone}"\n'
    )
    code = cli.main(["sweep", "--config", str(config)])
    err = capsys.readouterr().err
    assert code != 0
    one_line(err)
    assert f"the Maildir {gone} does not exist: check `maildir` in the config" in err


# ---------------------------------------------------------------- the CLI on a Maildir


@pytest.fixture(params=LAYOUTS)
def mworld(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> World:
    return World(tmp_path, monkeypatch, capsys, backend=request.param)


def test_sweep_rerun_undo_and_sweep_again(mworld: World) -> None:
    w = mworld
    n = len(w.mail["acc"].backscatter)
    code, acc, err = w.sweep("--dry-run")
    assert code == 0 and acc["acc"]["backscatter"] == n and acc["acc"]["acted"] == 0, err
    w.check(junk=set())
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["acted"] == n, err
    w.check()
    for p in w.mb.tree.files("Junk"):
        assert ",U=" not in p.name and p.parent.name == "cur"
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, err
    code, out, err = w.undo()
    assert code == 0 and f"{n} message(s) put back" in out, err
    w.check(junk=set())
    code, acc, err = w.sweep("--full")
    assert code == 0 and acc["acc"]["acted"] == 0, acc["acc"]["notes"]
    w.check(junk=set())


@pytest.mark.parametrize("nth", [1, 3])
def test_a_move_interrupted_between_two_renames(mworld: World, monkeypatch, nth: int) -> None:
    """Ctrl-C (or a kill) after `nth - 1` files were renamed into Junk and before the next:
    the next sweep settles what was done, moves the rest, and undo puts all of it back."""
    w = mworld
    calls = {"n": 0}
    real = md._rename

    def rename(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == nth:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(md, "_rename", rename)
    code, _out, _err = w.cli("sweep")
    assert code == 130
    assert len(w.mb.tree.files("Junk")) == nth - 1
    monkeypatch.setattr(md, "_rename", real)
    code, _acc, err = w.sweep()
    assert code == 0, err
    w.check()
    # the interrupted run's moves (settled by the sweep after it) are its own run to undo
    for _ in range(2 if nth > 1 else 1):
        code, _out, err = w.undo()
        assert code == 0, err
    w.check(junk=set())


def test_mbsync_renaming_files_meanwhile(mworld: World, monkeypatch) -> None:
    """Another process renames files in the middle of our moves (mutt marks them read, mbsync
    numbers the ones it uploaded), and between the sweep and the undo: nothing is missed."""
    w = mworld
    tree = w.mb.tree
    real = md._rename
    done = {"meddled": False}

    def rename(src: str, dst: str) -> None:
        if not done["meddled"]:
            done["meddled"] = True
            toggle_seen(tree, "INBOX")
            mbsync_pass(tree, "INBOX", start=5000)
        real(src, dst)

    monkeypatch.setattr(md, "_rename", rename)
    code, acc, err = w.sweep()
    assert done["meddled"]
    assert code == 0 and acc["acc"]["acted"] == len(w.mail["acc"].backscatter), (err, acc)
    w.check()
    monkeypatch.setattr(md, "_rename", real)
    # mbsync uploads the moved files to the server's Junk and numbers them; mutt reads INBOX
    assert mbsync_pass(tree, "Junk", start=7000) == len(w.mail["acc"].backscatter)
    toggle_seen(tree, "INBOX")
    toggle_seen(tree, "Junk")
    code, _out, err = w.undo()
    assert code == 0, err
    w.check(junk=set())
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, err


def test_undo_finds_a_message_another_client_moved_back_into_new(mworld: World) -> None:
    w = mworld
    assert w.sweep()[0] == 0
    tree = w.mb.tree
    first = tree.files("Junk")[0]
    first.rename(tree.path("Junk") / "new" / first.name.split(":", 1)[0])
    code, _out, err = w.undo()
    assert code == 0, err
    w.check(junk=set())


def test_a_sweep_with_a_bounce_of_the_users_own_mail_in_sent(tmp_path, monkeypatch, capsys):
    """Sent found by its name among the subfolders; own bounces stay, backscatter goes."""
    w = World(tmp_path, monkeypatch, capsys, backend="mbsync")
    sent_id = bounces.new_id()
    w.mb.add_message("Sent", bounces.original(sent_id))
    w.mb.add_message("INBOX", tagged(bounces.dsn(sent_id), "own"))
    w.mail["acc"].keep.add("own")
    code, acc, err = w.sweep()
    assert code == 0, err
    assert acc["acc"]["own"] == 2 and acc["acc"]["sent_folders"] == ["Sent"]  # make_mail's too
    w.check()
    assert "own" in {tag_of(d) for d, _f in w.mb.tree.messages("INBOX")}


def test_login_on_a_maildir_account_says_it_needs_none(tmp_path: Path, capsys) -> None:
    from ndr_sweeper import cli

    config = tmp_path / "config.toml"
    config.write_text(f'[[accounts]]\nname = "m"\nmaildir = "{tmp_path}"\n')
    assert cli.main(["login", "m", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert f"account 'm' is the local Maildir {tmp_path}: it needs no login" in err


def test_a_listing_is_reused_until_the_folder_changes(tmp_path: Path, monkeypatch) -> None:
    tree = Tree(tmp_path / "Mail", "maildir++").make()
    for i in range(3):
        tree.deliver("INBOX", make_message(f"m{i}@x"))
    old = 1e9
    for sub in ("cur", "new"):
        os.utime(tree.path("INBOX") / sub, (old, old))  # settled long ago
    scans = {"n": 0}
    real = md.scan

    def counting(folder):  # type: ignore[no-untyped-def]
        scans["n"] += 1
        return real(folder)

    monkeypatch.setattr(md, "scan", counting)
    box = box_on(tree, tmp_path / "state")
    box.select("INBOX")
    for _ in range(5):
        box.status("INBOX")
        assert box.search_uids() == [1, 2, 3]
    assert scans["n"] == 1
    toggle_seen(tree, "INBOX")  # another client: cur/ changes
    assert box.search_flag("\\Seen") == [1, 2, 3] and scans["n"] == 2
    box.add_flags([2], ["\\Flagged"])  # our own change is seen at once too
    assert box.search_flag("\\Flagged") == [2]
