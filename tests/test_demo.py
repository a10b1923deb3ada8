"""`ndr-sweeper demo` and the sample Maildir that ships in the package: the README's first
command. The sample is swept as a user's copy of it would be, and what each message is is
checked by where it ends up."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from ndr_sweeper import cli
from ndr_sweeper.demo import MARKER, prepare, sample_messages

from maildirs import walk

MID = re.compile(rb"^Message-I[Dd]: <([^>]+)>", re.M)
BACKSCATTER = {  # the forged originals' bounces, one per kind of mail server
    "20261114031510.4ZrT7c1Hq8z3Pk@mail.shop.example.net",  # Postfix
    "E1tBxQz-0007Yh-2F@relay.example.com",  # Exim
    "qmail.28731.1763103765@mx1.forum.example.net",  # qmail
    "202611140843.5AE8hQ0r012345@smtp.university.example.edu",  # Sendmail
    "6735cd24.050a0220.2f1b4e.9c3dSMTPIN_ADDED_BOUNCE@mx.google.com",  # Gmail
}


def bounce_id(raw: bytes) -> str:
    m = MID.search(raw.split(b"\n\n", 1)[0])
    assert m, raw[:200]
    return m.group(1).decode()


def folder_ids(maildir: Path, folder: str) -> Counter[str]:
    return Counter(
        bounce_id(p.read_bytes()) for p in walk(maildir / folder) if p.parent.name != "tmp"
    )


def shipped_digest() -> str:
    h = hashlib.sha256()
    for folder, subs in sorted(sample_messages().items()):
        for sub, files in sorted(subs.items()):
            for f in files:
                h.update(f"{folder}/{sub}/{f.name}".encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_sample_swept_as_a_user_would(tmp_path: Path, capsys) -> None:
    config = prepare(tmp_path / "demo")
    maildir = tmp_path / "demo" / "Maildir"
    inbox_before = folder_ids(maildir, "INBOX")
    assert sum(inbox_before.values()) == 11 and sum(folder_ids(maildir, "Sent").values()) == 3
    assert all(",U=" in p.name for p in walk(maildir))  # as mbsync names what it downloaded
    code, out, err = run(capsys, "sweep", "--json", "--config", str(config))
    assert code == 0, err
    (acc,) = json.loads(out)["accounts"]
    counts = {k: acc[k] for k in ("scanned", "ndrs", "own", "backscatter", "acted")}
    assert counts == {"scanned": 11, "ndrs": 8, "own": 2, "backscatter": 5, "acted": 5}
    assert (acc["undetermined"], acc["too_young"], acc["errors"]) == (1, 0, 0)
    assert acc["sent_folders"] == ["Sent"]
    junk = folder_ids(maildir, "Junk")
    assert set(junk) == BACKSCATTER | {"8839201.prize@prizes.example"}
    assert folder_ids(maildir, "INBOX") == inbox_before - Counter(BACKSCATTER)
    moved = [p for p in walk(maildir / "Junk") if "sample-01-you-have-won" not in p.name]
    assert len(moved) == 5 and not any(",U=" in p.name for p in moved)  # new to mbsync
    code, out, err = run(capsys, "undo", "--last", "--config", str(config))
    assert code == 0 and "5 message(s) put back" in out, err
    assert folder_ids(maildir, "INBOX") == inbox_before
    assert set(folder_ids(maildir, "Junk")) == {"8839201.prize@prizes.example"}


def test_demo_is_one_command_and_leaves_the_shipped_copy_alone(tmp_path: Path, capsys) -> None:
    before = shipped_digest()
    target = tmp_path / "here"
    code, out, err = run(capsys, "demo", "--dir", str(target))
    assert code == 0, err
    config = target / "config.toml"
    for step in ("sweep --dry-run -v", "sweep", "undo --last"):
        assert f"$ ndr-sweeper {step} --config {config}" in out
    assert "dry run, nothing changed" in out and "5 message(s) put back" in out
    assert shipped_digest() == before
    assert (target / MARKER).is_file() and config.stat().st_mode & 0o077 == 0
    maildir = target / "Maildir"
    assert sum(folder_ids(maildir, "INBOX").values()) == 11
    assert set(folder_ids(maildir, "Junk")) == {"8839201.prize@prizes.example"}
    # again: a fresh copy, swept afresh (what the first undo put back does not count there)
    code, out, err = run(capsys, "demo", "--dir", str(target))
    assert code == 0 and "5 message(s) put back" in out, err


def test_demo_never_replaces_a_folder_it_did_not_make(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mail"
    mine.mkdir()
    (mine / "important.txt").write_text("keep me")
    code, _out, err = run(capsys, "demo", "--dir", str(mine))
    assert code == 2
    assert err.strip() == (
        f"ndr-sweeper: error: {mine} exists and is not a folder `ndr-sweeper demo` made: name "
        "an empty or new folder with --dir"
    )
    assert (mine / "important.txt").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["important.txt"]


def test_demo_default_folder_is_under_xdg_data_home(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert (tmp_path / "data" / "ndr-sweeper" / "demo" / "Maildir" / "INBOX" / "cur").is_dir()
    assert str(tmp_path / "data" / "ndr-sweeper" / "demo" / "config.toml") in out


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("01-own-bounce-postfix", "failed"),
        ("02-own-bounce-exchange", "failed"),
        ("03-out-of-office", "autoreply"),
        ("04-agenda-for-thursday", "not_ndr"),
        ("10-ndr-without-original", "failed"),
        ("11-are-we-still-on", "not_ndr"),
    ],
)
def test_the_sample_messages_are_what_their_names_say(name: str, kind: str) -> None:
    from ndr_sweeper.classify import classify

    (item,) = [
        f for subs in sample_messages().values() for fs in subs.values() for f in fs
        if f.name == f"{name}.eml"
    ]  # fmt: skip
    verdict = classify(item.read_bytes())
    assert verdict.kind == kind
    if name == "10-ndr-without-original":
        assert not verdict.all_original_ids()
