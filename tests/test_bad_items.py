"""One bad item must not block an account (issue 10): a folder name that is not valid modified
UTF-7, a name in a non-canonical form, a garbage INTERNALDATE, a UID in a SEARCH answer that
cannot exist, a Junk or Trash that is a swept folder, Gmail's \\All folder.

Each scenario runs the real CLI against the fake IMAP server and checks the outcome: nothing
lost or moved where it should not go, the exit status and the one-line message, no traceback.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from test_hostile_imap import Outcome, assert_bounded, run_measured

import bounces
import lab
from fakeimap import FakeImapServer
from test_sweep_fake import env_of
from test_sweep_imap import run_cli, write_config, xdg_dirs

STANDARD = {
    "INBOX": (),
    "Sent": ("\\Sent",),
    "Junk": ("\\Junk",),
    "Trash": ("\\Trash",),
}


class Mail:
    """A fake server holding a small mailbox: Sent has one original; INBOX two backscatter
    bounces, a bounce of the Sent message (own) and ordinary mail."""

    def __init__(
        self, server: FakeImapServer, tmp: Path, sent: str = "Sent", **cfg: object
    ) -> None:
        self.server = server
        self.tmp = tmp
        self.sent_id = bounces.new_id()
        server.add(sent, bounces.original(self.sent_id))
        self.backscatter = [bounces.new_id("bs"), bounces.new_id("bs")]
        self.own = bounces.new_id("own")
        self.inbox = [
            bounces.dsn(bounces.new_id("forged"), bounce_id=self.backscatter[0]),
            bounces.dsn(self.sent_id, bounce_id=self.own),
            bounces.ordinary(),
            bounces.dsn(bounces.new_id("forged"), bounce_id=self.backscatter[1]),
        ]
        for raw in self.inbox:
            server.add("INBOX", raw)
        self.before = self.snapshot()
        self.xdg = xdg_dirs(tmp)
        self.configure(**cfg)

    def configure(self, **cfg: object) -> None:
        self.config = write_config(self.tmp / "config.toml", env_of(self.server), **cfg)

    def snapshot(self) -> dict[str, list[tuple[bytes, frozenset[str]]]]:
        with self.server.lock:
            names = list(self.server.folders)
        return {f: [(m.data, frozenset(m.flags)) for m in self.server.messages(f)] for f in names}

    def ids(self, folder: str) -> Counter[str | None]:
        return Counter(m.message_id for m in self.server.messages(folder))

    def sweep(self) -> Outcome:
        return run_measured(self.xdg, "sweep", "--json", "--config", str(self.config))

    def undo(self) -> Outcome:
        return run_measured(self.xdg, "undo", "--last", "--config", str(self.config))

    def untouched(self) -> None:
        assert self.snapshot() == self.before, "nothing may be moved, flagged or lost"

    def swept_into(self, folder: str) -> None:
        """The two backscatter bounces are in *folder* (once each), everything else is where it
        was: INBOX holds the own bounce and the ordinary mail."""
        assert self.ids(folder) == Counter(self.backscatter), self.ids(folder)
        inbox = self.ids("INBOX")
        assert not set(inbox) & set(self.backscatter), inbox
        assert inbox[self.own] == 1 and len(self.server.messages("INBOX")) == 2, inbox


def ok(out: Outcome) -> dict[str, object]:
    assert_bounded(out)
    assert out.returncode == 0, out.stderr + out.stdout
    account = out.account()
    assert account["error"] is None, account
    return account


def refused(out: Outcome, pattern: str) -> str:
    """The sweep failed with one line matching *pattern*."""
    assert_bounded(out)
    assert out.returncode != 0, out.stdout
    error = str(out.account()["error"])
    assert "\n" not in error and "unexpected" not in error, error
    assert re.search(pattern, error), error
    return error


def warnings(out: Outcome, text: str) -> list[str]:
    return [line for line in out.stderr.splitlines() if text in line]


# ---------------------------------------------------------------- folder names (1, 2)

UNDECODABLE = {
    "bad-base64": "&A-",  # 6 bits: not even one byte
    "unterminated": "Old&Jjo",
    "line-break": "x\r\nX1 DELETE INBOX",  # served as a literal: a command if sent back as is
    "escape": "\x1b[31mred",
    "not-utf8": "Gel\udcf6scht",  # the byte 0xf6 (Latin-1), not UTF-8
}


@pytest.mark.parametrize("name", list(UNDECODABLE))
def test_an_undecodable_folder_nobody_needs_is_skipped_with_one_warning(
    fake_imap, tmp_path, name
) -> None:
    bad = UNDECODABLE[name]
    mail = Mail(fake_imap(folders={**STANDARD, bad: ()}), tmp_path)
    out = mail.sweep()
    account = ok(out)
    assert account["acted"] == 2
    mail.swept_into("Junk")
    assert len(warnings(out, "ignoring folder")) == 1, out.stderr
    assert "\x1b" not in out.stderr and "\nX1 DELETE" not in out.stderr
    # Only LIST ever named it: no command was sent for it.
    for cmd in mail.server.commands:
        if cmd.verb not in ("LIST", "LOGIN"):
            assert bad.encode("utf-8", "surrogateescape") not in cmd.raw, cmd.raw
    assert "DELETE" not in mail.server.names()


def test_an_undecodable_folder_named_in_folders_is_refused_in_one_line(fake_imap, tmp_path) -> None:
    mail = Mail(fake_imap(folders={**STANDARD, "&A-": ()}), tmp_path, folders=["INBOX", "&A-"])
    out = mail.sweep()
    refused(out, r"'&A-'.*not valid modified UTF-7.*rename it")
    assert not warnings(out, "ignoring folder")
    mail.untouched()


@pytest.mark.parametrize("role", ["junk", "sent"])
def test_the_only_junk_or_sent_folder_with_an_undecodable_name_is_refused(
    fake_imap, tmp_path, role
) -> None:
    if role == "junk":
        folders = {"INBOX": (), "Sent": ("\\Sent",), "Trash": ("\\Trash",), "&A-": ("\\Junk",)}
        mail = Mail(fake_imap(folders=folders), tmp_path)
        key = "junk_folder"
    else:
        folders = {"INBOX": (), "Junk": ("\\Junk",), "&A-": ("\\Sent",)}
        mail = Mail(fake_imap(folders=folders), tmp_path, sent="&A-")
        key = "sent_folders"
    out = mail.sweep()
    refused(out, rf"{role} folder .*'&A-'.*not valid modified UTF-7.*{key}")
    mail.untouched()


@pytest.mark.parametrize(
    ("listed", "configured"),
    [
        ("&AEo-unk", None),  # "Junk" with its J in base64; a real "Junk" folder beside it
        ("Spam-&AOQ-&AOQ-", None),  # two adjacent shifts; canonical is "Spam-&AOQA5A-"
        ("Spam-&AOQ-&AOQ-", "Spam-ää"),  # typed in the config, it is the listed folder
    ],
)
def test_a_non_canonical_junk_name_is_used_as_the_server_lists_it(
    fake_imap, tmp_path, listed, configured
) -> None:
    folders: dict[str, tuple[str, ...]] = {"INBOX": (), "Sent": ("\\Sent",), "Junk": ()}
    if configured is None:  # the canonical twin of the listed name exists too
        folders["Spam-&AOQA5A-"] = ()
    folders[listed] = ("\\Junk",) if configured is None else ()
    cfg = {"junk_folder": configured} if configured else {}
    mail = Mail(fake_imap(folders=folders), tmp_path, **cfg)
    out = mail.sweep()
    assert ok(out)["acted"] == 2
    mail.swept_into(listed)
    assert not mail.server.messages("Junk")
    assert "Spam-&AOQA5A-" not in folders or not mail.server.messages("Spam-&AOQA5A-")
    moves = mail.server.received("MOVE")
    assert moves and all(listed.encode() in c.raw for c in moves)
    undo = mail.undo()
    assert undo.returncode == 0, undo.stderr + undo.stdout
    assert not mail.server.messages(listed)
    assert sorted(m.data for m in mail.server.messages("INBOX")) == sorted(mail.inbox)


def test_a_raw_utf8_folder_name_is_sent_back_as_the_server_listed_it(fake_imap, tmp_path) -> None:
    """A server that lists 8-bit (UTF-8) names, against RFC 3501: the name is kept as bytes."""
    mail = Mail(fake_imap(folders={**STANDARD, "Junk": (), "Müll": ("\\Junk",)}), tmp_path)
    out = mail.sweep()
    assert ok(out)["acted"] == 2
    mail.swept_into("Müll")


# ---------------------------------------------------------------- INTERNALDATE (3)


@pytest.mark.parametrize("garbage", ["garbage", "31-Foo-2026 25:61:61 +9999", ""])
def test_a_garbage_internaldate_makes_the_bounce_wait(fake_imap, tmp_path, garbage) -> None:
    server = fake_imap()
    late = bounces.new_id("bs")
    uid = server.add(
        "INBOX", bounces.dsn(bounces.new_id("forged"), bounce_id=late), wire_date=garbage
    )
    server.add("INBOX", bounces.ordinary(), wire_date=garbage)  # not a bounce: nothing to wait for
    mail = Mail(server, tmp_path)  # the usual mail after them: the cursor must stop before uid
    out = mail.sweep()
    account = ok(out)
    assert account["acted"] == 2 and account["too_young"] == 1
    assert late in mail.ids("INBOX")
    decision = [d for d in account["decisions"] if d["uid"] == uid]  # type: ignore[union-attr]
    assert decision and "arrival time" in decision[0]["reason"], decision
    assert any("INTERNALDATE" in n for n in account["notes"]), account["notes"]  # type: ignore[union-attr]
    # Looked at again next time: once the server sends its date, it is acted on.
    with server.lock:
        next(m for m in server.folder("INBOX").messages if m.uid == uid).wire_date = None
    again = ok(mail.sweep())
    assert again["acted"] == 1 and again["too_young"] == 0
    assert set(mail.ids("Junk")) == {*mail.backscatter, late}


def test_undo_reads_past_garbage_internaldates(fake_imap, tmp_path) -> None:
    server = fake_imap()
    mail = Mail(server, tmp_path)
    assert ok(mail.sweep())["acted"] == 2
    with server.lock:
        for folder in server.folders.values():
            for m in folder.messages:
                m.wire_date = "no date at all"
    undo = mail.undo()
    assert_bounded(undo)
    assert undo.returncode == 0, undo.stderr + undo.stdout
    assert not server.messages("Junk")
    assert sorted(m.data for m in server.messages("INBOX")) == sorted(mail.inbox)


# ---------------------------------------------------------------- SEARCH (4)


@pytest.mark.parametrize("bogus", ["4294967295", "uidnext"])
def test_a_uid_beyond_uidnext_in_search_does_not_blind_the_folder(
    fake_imap, tmp_path, bogus
) -> None:
    server = fake_imap()
    mail = Mail(server, tmp_path)

    def lie(answer: bytes) -> bytes:
        extra = bogus if bogus != "uidnext" else str(server.folder("INBOX").uidnext)
        return answer.replace(b"* SEARCH", b"* SEARCH " + extra.encode(), 1)

    server.on("SEARCH", times=None).rewrite(lie)
    out = mail.sweep()
    assert ok(out)["acted"] == 2
    mail.swept_into("Junk")
    # once per folder searched (INBOX, and Sent for the Sent check)
    said = warnings(out, "UIDNEXT")
    assert sorted(re.findall(r"in '(\w+)' at or beyond", "\n".join(said))) == ["INBOX", "Sent"]
    server.rules.clear()
    late = bounces.new_id("bs")
    server.add("INBOX", bounces.dsn(bounces.new_id("forged"), bounce_id=late))
    again = ok(mail.sweep())
    assert again["acted"] == 1, "the cursor stayed where the real messages are"
    assert late in mail.ids("Junk")


# ---------------------------------------------------------------- destinations (5, 6)


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ({"INBOX": ("\\Junk",), "Sent": ("\\Sent",), "Spam": ()}, "Spam"),
        ({"INBOX": (), "": ("\\Junk",), "Sent": ("\\Sent",), "Junk": ()}, "Junk"),
        ({"INBOX": (), "Sent": ("\\Sent",), "Junk": ("\\All",), "Bulk": ()}, "Bulk"),
    ],
    ids=["junk-flag-on-inbox", "junk-flag-on-empty-name", "all-mail-named-junk"],
)
def test_discovery_skips_a_junk_that_is_swept_unnamed_or_all_mail(
    fake_imap, tmp_path, folders, expected
) -> None:
    mail = Mail(fake_imap(folders=folders), tmp_path)
    out = mail.sweep()
    assert ok(out)["acted"] == 2
    mail.swept_into(expected)


def test_only_a_junk_flag_on_inbox_finds_no_junk(fake_imap, tmp_path) -> None:
    mail = Mail(fake_imap(folders={"INBOX": ("\\Junk",), "Sent": ("\\Sent",)}), tmp_path)
    refused(
        mail.sweep(), r"the server flags 'INBOX' \\Junk, but it is a swept folder.*set junk_folder"
    )
    mail.untouched()


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [
        ({"junk_folder": "INBOX"}, r"junk_folder is 'INBOX'.*swept.*folders"),
        ({"junk_folder": "inbox"}, r"junk_folder is 'INBOX'.*swept"),
        (
            {"junk_folder": "Archive", "folders": ["INBOX", "Archive"]},
            r"junk_folder is 'Archive'.*swept.*folders",
        ),
        ({"action": "delete", "trash_folder": "INBOX"}, r"trash_folder is 'INBOX'.*swept"),
        ({"junk_folder": "[Gmail]/All Mail"}, r"junk_folder is '\[Gmail\]/All Mail'.*\\All folder"),
        (
            {"folders": ["INBOX", "[Gmail]/All Mail"]},
            r"'\[Gmail\]/All Mail'.*\\All folder.*folders",
        ),
    ],
    ids=["junk-inbox", "junk-inbox-case", "junk-swept", "trash-inbox", "junk-all", "swept-all"],
)
def test_a_destination_that_is_swept_or_all_mail_is_refused(
    fake_imap, tmp_path, cfg, pattern
) -> None:
    folders = {**STANDARD, "Archive": (), "[Gmail]/All Mail": ("\\All",)}
    mail = Mail(fake_imap(folders=folders), tmp_path, **cfg)
    refused(mail.sweep(), pattern)
    mail.untouched()
    assert not {"MOVE", "COPY", "STORE", "UID MOVE", "UID COPY", "UID STORE"} & set(
        mail.server.names()
    )


@pytest.mark.parametrize("dest", ["INBOX", "[Gmail]/All Mail"])
def test_a_rule_moving_to_a_swept_or_all_mail_folder_is_refused(fake_imap, tmp_path, dest) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rule]]\nname = "back"\ndecision = "backscatter"\nmove = "{dest}"\n', encoding="utf-8"
    )
    folders = {**STANDARD, "[Gmail]/All Mail": ("\\All",)}
    mail = Mail(fake_imap(folders=folders), tmp_path, rules=[str(rules)])
    refused(mail.sweep(), rf"rule 'back' moves .* to '{re.escape(dest)}'")
    mail.untouched()


# ---------------------------------------------------------------- a real server


@pytest.mark.imap
def test_non_ascii_and_ampersand_names_round_trip_on_dovecot(dovecot, new_imap_user, tmp_path):
    """Names are encoded by us now (not by imapclient): a swept folder, a Sent folder and a
    Junk folder with accents and "&" work against Dovecot, through sweep and undo."""

    env = new_imap_user(dovecot)
    swept, sent, junk = "Boîte & co", "Éléments envoyés", "Courrier indésirable"
    mine, own = bounces.new_id(), bounces.new_id("own")
    back = [bounces.new_id("bs"), bounces.new_id("bs")]
    client = env.connect()
    try:
        for name in (swept, sent, junk):
            client.create_folder(name)
        lab.append_messages(client, sent, [bounces.original(mine)])
        lab.append_messages(client, "INBOX", [bounces.dsn(bounces.new_id("f"), bounce_id=back[0])])
        lab.append_messages(
            client,
            swept,
            [bounces.dsn(mine, bounce_id=own), bounces.dsn(bounces.new_id("f"), bounce_id=back[1])],
        )
    finally:
        client.logout()
    cfg = write_config(
        tmp_path / "c.toml",
        env,
        folders=["INBOX", swept],
        sent_folders=[sent],
        junk_folder=junk,
    )
    xdg = xdg_dirs(tmp_path)
    result = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    acc = json.loads(result.stdout)["accounts"][0]
    assert (acc["own"], acc["backscatter"], acc["acted"]) == (1, 2, 2), acc

    def ids(folder: str) -> list[str]:
        client = env.connect()
        try:
            return sorted(m.message_id or "" for m in lab.read_folder(client, folder))
        finally:
            client.logout()

    assert ids(junk) == sorted(back) and ids(swept) == [own] and ids("INBOX") == []
    undo = run_cli(xdg, "undo", "--last", "--config", str(cfg))
    assert undo.returncode == 0, undo.stderr
    assert ids(junk) == [] and ids(swept) == sorted([own, back[1]]) and ids("INBOX") == [back[0]]


@pytest.mark.imap
def test_a_bogus_search_uid_on_dovecot_does_not_blind_the_folder(
    dovecot, new_imap_user, imap_proxy, tmp_path
):
    """Dovecot behind a proxy that adds UID 4294967295 to every SEARCH answer."""
    from test_sweep_imap import fill

    env = new_imap_user(dovecot)
    backscatter, _keep, _ = fill(env)
    proxy = imap_proxy(dovecot)
    rule = proxy.rewrite(
        ("UID SEARCH", "SEARCH"),
        lambda line: line + " 4294967295" if line.startswith("* SEARCH") else line,
        times=None,
    )
    cfg = write_config(tmp_path / "c.toml", proxy.wrap(env))
    xdg = xdg_dirs(tmp_path)
    first = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["accounts"][0]["acted"] == len(backscatter)
    assert rule.hits and "4294967295" in first.stderr
    late = bounces.new_id("bs")
    client = env.connect()
    try:
        lab.append_messages(client, "INBOX", [bounces.dsn(bounces.new_id("f"), bounce_id=late)])
    finally:
        client.logout()
    again = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accounts"][0]["acted"] == 1
    client = env.connect()
    try:
        junk = {m.message_id for m in lab.read_folder(client, "Junk")}
    finally:
        client.logout()
    assert junk == backscatter | {late}
