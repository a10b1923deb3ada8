"""The Dovecot lab fixture itself: it must be reliable before anything is built on it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lab import LabMessage, append_messages, make_message, read_folder

pytestmark = pytest.mark.imap


def test_fresh_user_has_special_use_folders(imap_user):
    with imap_user.connect() as c:
        folders = {name: set(flags) for flags, _, name in c.list_folders()}
    assert set(folders) == {"INBOX", "Drafts", "Sent", "Junk", "Trash"}
    assert b"\\Sent" in folders["Sent"] and b"\\Junk" in folders["Junk"]


def test_users_do_not_see_each_other(dovecot, new_imap_user):
    a, b = new_imap_user(dovecot), new_imap_user(dovecot)
    with a.connect() as c:
        append_messages(c, "INBOX", [make_message("only-a@x")])
    with b.connect() as c:
        assert read_folder(c, "INBOX") == []


def test_append_with_flags_and_internaldate(imap_user):
    when = datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    msgs = [
        LabMessage(make_message(f"m{i}@x"), ["\\Seen"] if i % 2 else [], when) for i in range(5)
    ]
    with imap_user.connect() as c:
        assert append_messages(c, "Sent", msgs, chunk=2) == [1, 2, 3, 4, 5]
        got = read_folder(c, "Sent")
        dates = c.fetch([1], ["INTERNALDATE"])[1][b"INTERNALDATE"]
    assert [e.message_id for e in got] == [f"m{i}@x" for i in range(5)]
    assert ["\\Seen" in e.flags for e in got] == [False, True, False, True, False]
    assert dates == when


def test_tls_port_verifies_with_lab_ca(imap_user):
    with imap_user.connect(tls=True) as c:
        assert c.noop()


def test_nomove_server_hides_move_and_uidplus(imap_user_nomove):
    with imap_user_nomove.connect() as c:
        caps = set(c.capabilities())
    assert b"MOVE" not in caps and b"UIDPLUS" not in caps and b"SPECIAL-USE" in caps


def test_nomove_uidplus_and_nouidplus_servers(dovecot_nomove_uidplus, dovecot_nouidplus):
    with dovecot_nomove_uidplus.env.connect() as c:
        caps = set(c.capabilities())
    assert b"MOVE" not in caps and b"UIDPLUS" in caps
    with dovecot_nouidplus.env.connect() as c:
        caps = set(c.capabilities())
    assert b"MOVE" in caps and b"UIDPLUS" not in caps


def test_kill_and_restart_keep_ports_and_mail(dovecot_factory):
    server = dovecot_factory()
    env = server.env
    with env.connect() as c:
        append_messages(c, "INBOX", [make_message("kept@x")])
    server.kill()
    assert not server.running
    with pytest.raises(OSError):
        env.connect()
    server.start()
    assert server.env == env
    with env.connect() as c:
        assert [e.message_id for e in read_folder(c, "INBOX")] == ["kept@x"]
    server.restart()
    with env.connect() as c:
        assert [e.message_id for e in read_folder(c, "INBOX")] == ["kept@x"]
