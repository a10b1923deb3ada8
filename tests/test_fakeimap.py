"""The fake IMAP server itself (tests/fakeimap.py), driven by a plain imapclient: the protocol
it speaks when well-behaved, and each scripted misbehaviour."""

from __future__ import annotations

import imaplib
import socket
import time

import imapclient
import pytest

import lab
from fakeimap import (
    DEFAULT_CAPABILITIES,
    NO_MOVE_NO_UIDPLUS,
    FakeImapServer,
    header_fields,
    repeat,
    tokenize,
    wait_for,
)


def client(server: FakeImapServer, login: bool = True, timeout: float = 5):
    c = imapclient.IMAPClient(server.host, server.port, ssl=False, timeout=timeout)
    c.normalise_times = False
    if login:
        c.login(server.user, server.password)
    return c


def msg(mid: str, **kw: object) -> bytes:
    return lab.make_message(mid, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server(fake_imap) -> FakeImapServer:
    s = fake_imap()
    s.add("INBOX", msg("a@x", subject="hello"), ["\\Seen"])
    s.add("INBOX", msg("b@x", subject="Undeliverable", body="x" * 500), ["$Junk"])
    s.add("INBOX", msg("c@x"), ["\\Deleted"])
    return s


# ---------------------------------------------------------------- parsing


def test_tokenize_atoms_strings_lists_literals_sections() -> None:
    segs = [b'1:3 (UID BODY.PEEK[HEADER.FIELDS (A B)]<0.10>) "q \\" s" {3}', b"l\xc3t", b" X"]
    assert tokenize(segs) == [
        "1:3",
        ["UID", "BODY.PEEK[HEADER.FIELDS (A B)]<0.10>"],
        b'q " s',
        b"l\xc3t",
        "X",
    ]


def test_header_fields_keeps_continuations_and_order() -> None:
    header = b"A: 1\r\nB: 2\r\n  more\r\nC: 3\r\nb: 4\r\n\r\n"
    assert header_fields(header, ["b"]) == b"B: 2\r\n  more\r\nb: 4\r\n\r\n"
    assert header_fields(header, ["B"], exclude=True) == b"A: 1\r\nC: 3\r\n\r\n"


# ---------------------------------------------------------------- well-behaved


def test_capabilities_before_and_after_login(fake_imap) -> None:
    s = fake_imap(capabilities=DEFAULT_CAPABILITIES | {"LOGINDISABLED"})
    c = client(s, login=False)
    assert b"LOGINDISABLED" in c.capabilities() and b"AUTH=PLAIN" in c.capabilities()
    with pytest.raises(imapclient.exceptions.LoginError):
        c.login(s.user, s.password)
    c.plain_login(s.user, s.password)
    c._cached_capabilities = None
    after = c.capabilities()
    assert b"MOVE" in after and b"AUTH=PLAIN" not in after and b"LOGINDISABLED" not in after
    c.logout()
    assert s.names()[:3] == ["CAPABILITY", "LOGIN", "AUTHENTICATE"]


def test_wrong_password(server) -> None:
    c = client(server, login=False)
    with pytest.raises(imapclient.exceptions.LoginError, match="AUTHENTICATIONFAILED"):
        c.login(server.user, "nope")


def test_list_namespace_and_layout(fake_imap) -> None:
    s = fake_imap(
        folders={"INBOX": (), "Sent Items": ("\\Sent",), "Spam": ("\\Junk",)},
        delimiter=".",
        prefix="INBOX.",
    )
    c = client(s)
    rows = {name: (flags, delim) for flags, delim, name in c.list_folders()}
    assert set(rows) == {"INBOX", "INBOX.Sent Items", "INBOX.Spam"}
    assert b"\\Sent" in rows["INBOX.Sent Items"][0] and rows["INBOX.Spam"][1] == b"."
    assert c.namespace().personal == (("INBOX.", "."),)
    assert [r[2] for r in c.list_folders("", "INBOX.Sp%")] == ["INBOX.Spam"]
    plain = fake_imap(capabilities=DEFAULT_CAPABILITIES - {"SPECIAL-USE"})
    flags = {name: f for f, _d, name in client(plain).list_folders()}
    assert b"\\Junk" not in flags["Junk"]


def test_status_select_examine(server) -> None:
    c = client(server)
    st = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"])
    assert st[b"MESSAGES"] == 3 and st[b"UIDNEXT"] == 4 and st[b"UNSEEN"] == 2
    sel = c.select_folder("INBOX")
    assert sel[b"EXISTS"] == 3 and sel[b"UIDVALIDITY"] == st[b"UIDVALIDITY"]
    assert sel[b"HIGHESTMODSEQ"] == st[b"HIGHESTMODSEQ"] and b"\\*" in sel[b"PERMANENTFLAGS"]
    assert sel[b"READ-WRITE"]
    assert c.select_folder("Junk", readonly=True)[b"READ-ONLY"]
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="NONEXISTENT"):
        c.select_folder("Nope")


def test_search_keys(server) -> None:
    c = client(server)
    c.select_folder("INBOX")
    assert c.search("ALL") == [1, 2, 3]
    assert c.search(["UID", "2:*"]) == [2, 3]
    assert c.search(["UID", "9:*"]) == [3]  # "*" is the highest UID (RFC 3501 6.4.8)
    assert c.search(["HEADER", "Message-ID", "B@X"]) == [2]
    assert c.search(["HEADER", "Subject", "undeliverable", "UNDELETED"]) == [2]
    assert c.search("DELETED") == [3] and c.search(["NOT", "DELETED"]) == [1, 2]
    assert c.search(["KEYWORD", "$Junk"]) == [2] and c.search("UNSEEN") == [2, 3]
    assert c.search(["LARGER", "400"]) == [2] and c.search(["SMALLER", "400"]) == [1, 3]
    assert c.search(["OR", "SEEN", "DELETED"]) == [1, 3]
    assert c.search(["HEADER", "Subject", "héllo"], charset="UTF-8") == []  # a literal


def test_fetch_items_and_partial(server) -> None:
    c = client(server)
    c.select_folder("INBOX", readonly=True)
    items = ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]
    got = c.fetch([1, 2], [*items, "BODY.PEEK[]<0.10>", "BODY.PEEK[HEADER]"])
    assert got[1][b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: hello\r\n\r\n"
    assert got[2][b"BODY[]<0>"] == msg("b@x")[:10]
    assert got[2][b"BODY[HEADER]"].endswith(b"\r\n\r\n")
    assert got[2][b"RFC822.SIZE"] == len(server.messages("INBOX")[1].data)
    assert got[1][b"FLAGS"] == (b"\\Seen",)
    c.select_folder("INBOX")
    c.fetch([2], ["BODY[]"])  # not PEEK: sets \Seen
    assert "\\Seen" in server.messages("INBOX")[1].flags


def test_store_copy_move_expunge_append(server) -> None:
    c = client(server)
    c.select_folder("INBOX")
    c.add_flags([1], ["\\Deleted", "$NdrBackscatter"], silent=True)
    assert server.messages("INBOX")[0].flags == {"\\Seen", "\\Deleted", "$NdrBackscatter"}
    c.remove_flags([1], ["$NdrBackscatter"])
    c._imap.uid("COPY", "1:2", "Junk")
    copyuid = c._imap.untagged_responses.pop("COPYUID")[0]
    assert (
        copyuid.endswith(b" 1:2 1:2")
        and int(copyuid.split()[0]) == server.folder("Junk").uidvalidity
    )
    c._imap.uid("MOVE", "2", "Trash")
    assert c._imap.untagged_responses.pop("COPYUID")[0].endswith(b" 2 1")
    assert [m.message_id for m in server.messages("Trash")] == ["b@x"]
    c.uid_expunge([3])  # \Deleted and in the set
    assert [m.uid for m in server.messages("INBOX")] == [1]
    c.expunge()  # every \Deleted message
    assert server.messages("INBOX") == []
    resp = c.append("Sent", msg("d@x"), ["\\Seen"])
    assert b"APPENDUID" in resp
    assert server.messages("Sent")[0].message_id == "d@x"
    c.create_folder("Review")
    assert server.folder("Review").messages == []
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="TRYCREATE"):
        c.copy([1], "Missing")


def test_without_move_and_uidplus(fake_imap) -> None:
    s = fake_imap(capabilities=NO_MOVE_NO_UIDPLUS, permanent_keywords=False)
    s.add("INBOX", msg("a@x"))
    c = client(s)
    sel = c.select_folder("INBOX")
    assert b"\\*" not in sel[b"PERMANENTFLAGS"]
    assert c._imap.uid("COPY", "1", "Junk")[0] == "OK"
    assert "COPYUID" not in c._imap.untagged_responses
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c._imap.uid("MOVE", "1", "Junk")
    c.add_flags([1], ["$Kw", "\\Flagged"])
    assert s.messages("INBOX")[0].flags == {"\\Flagged"}  # keywords are not permanent


def test_idle_reports_new_mail(server) -> None:
    c = client(server)
    c.select_folder("INBOX", readonly=True)
    c.idle()
    server.add("INBOX", msg("late@x"))
    assert (4, b"EXISTS") in c.idle_check(2)
    assert c.idle_done()[0] == b"IDLE terminated"
    c.noop()


# ---------------------------------------------------------------- scripting


def test_cut_before_does_nothing_cut_after_does_it(server) -> None:
    server.on("MOVE", nth=1).cut_before()
    c = client(server)
    c.select_folder("INBOX")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        c.move([1], "Junk")
    assert server.messages("Junk") == []
    server.on("MOVE").cut_after()
    c = client(server)
    c.select_folder("INBOX")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        c.move([1], "Junk")
    assert [m.message_id for m in server.messages("Junk")] == ["a@x"]
    assert server.sessions == 2


def test_answer_no_after_doing_and_fake_ok(server) -> None:
    server.on("STORE").answer_no("[OVERQUOTA] full")
    server.on("COPY").fake_ok()
    c = client(server)
    c.select_folder("INBOX")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="OVERQUOTA"):
        c.add_flags([1], ["$X"])
    assert "$X" in server.messages("INBOX")[0].flags  # carried out anyway
    c.copy([1], "Junk")
    assert server.messages("Junk") == []  # OK, not carried out


def test_match_predicate_times_and_rewrite(server) -> None:
    rule = server.on("COPY", match=lambda cmd: "Junk" in cmd.arg_text(), times=None)
    rule.rewrite(lambda r: r.replace(b"COPYUID", b"COPYUID 1 1:150000000 1:150000000 X"))
    c = client(server)
    c.select_folder("INBOX")
    for _ in range(2):
        c._imap.uid("COPY", "1", "Junk")
        assert b"1:150000000" in c._imap.untagged_responses.pop("COPYUID")[0]
    c._imap.uid("COPY", "1", "Trash")
    assert b"1:150000000" not in c._imap.untagged_responses.pop("COPYUID")[0]
    assert rule.fired == 2


def test_before_runs_another_client(server) -> None:
    server.on("UID SEARCH").before(lambda s: s.add("INBOX", msg("sneaky@x")))
    c = client(server)
    c.select_folder("INBOX")
    assert c.search("ALL") == [1, 2, 3, 4]


def test_send_raw_before_answer_and_instead(server) -> None:
    server.on("NOOP").send(b"* 7 EXISTS\r\n* 8 EXISTS\r\n")
    server.on("CHECK").send_instead(b"* BYE going away\r\n")
    c = client(server)
    c.select_folder("INBOX")
    assert c.noop()[1] == [(7, b"EXISTS"), (8, b"EXISTS")]
    with pytest.raises(imaplib.IMAP4.abort, match="going away"):
        c._imap.check()


def test_endless_flood_stops_when_the_client_goes(server) -> None:
    server.on("NOOP").send(repeat(b"* 1 EXISTS\r\n"))
    c = client(server)
    c._imap.send(b"X1 NOOP\r\n")
    sock = c.socket()
    got = 0
    while got < 1_000_000:
        got += len(sock.recv(65536))
    c.shutdown()
    assert wait_for(lambda: not server._tasks, 5), "the flooding session ended"


def test_trickled_greeting_and_hang(fake_imap) -> None:
    s = fake_imap()
    s.on("GREETING").trickle(20)  # 22 bytes at 20 bytes/s
    started = time.monotonic()
    client(s, login=False, timeout=5)
    assert 0.8 < time.monotonic() - started < 4
    s.on("LOGIN").hang()
    c = client(s, login=False, timeout=0.5)
    with pytest.raises(socket.timeout):
        c.login(s.user, s.password)


def test_transcript_keeps_what_each_session_sent(server) -> None:
    c = client(server)
    c.select_folder("INBOX")
    c.logout()
    c = client(server, login=False)
    c.logout()
    assert [cmd.name for cmd in server.commands if cmd.session == 1] == ["CAPABILITY", "LOGOUT"]
    login = server.received("LOGIN")[0]
    assert [str(a) if isinstance(a, str) else a.decode() for a in login.args] == [
        server.user,
        server.password,
    ]
    assert login.session == 0
    assert server.received("SELECT")[0].raw.endswith(b'SELECT "INBOX"\r\n')


def test_hostile_folder_names_and_dates_are_served_as_given(fake_imap) -> None:
    """Names as their exact bytes (invalid modified UTF-7, a line break as a literal, a byte
    that is not UTF-8 through surrogateescape); wire_date answers INTERNALDATE verbatim."""
    s = fake_imap(folders={"INBOX": (), "&A-": (), "a\r\nb": (), "Gel\udcf6scht": ("\\Junk",)})
    s.add("INBOX", msg("a@x"), wire_date="not a date")
    c = client(s)
    c.folder_encode = False
    names = {name for _f, _d, name in c.list_folders()}
    assert names == {b"INBOX", b"&A-", b"a\r\nb", b"Gel\xf6scht"}
    typ, data = c._imap.select('"&A-"')
    assert typ == "OK"
    c.select_folder("INBOX")
    typ, data = c._imap.uid("FETCH", "1", "(INTERNALDATE)")
    assert typ == "OK" and b'INTERNALDATE "not a date"' in data[0]
