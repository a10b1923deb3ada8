"""The fast FETCH parser: the response shapes the sweep meets, and the fallback for others.

Input is what imaplib's ``uid("FETCH", ...)`` returns: a list whose elements are bytes (a
line, or the rest of a line after a literal) or ``(text ending in {n}, literal)`` tuples.
"""

from __future__ import annotations

import imaplib
import io
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient.response_parser import parse_fetch_response

from ndr_sweeper.errors import NdrSweeperError
from ndr_sweeper.mailbox import fastfetch
from ndr_sweeper.mailbox.fastfetch import Unparsed, parse_fetch, parse_internaldate

import lab

HDR = b"From: a@example.org\r\nSubject: hi\r\n\r\n"
FOLDED = b"Subject: a long\r\n subject, folded\r\nFrom: MAILER-DAEMON@x\r\n\r\n"
SECTION = b"BODY[HEADER.FIELDS (FROM SUBJECT)]"


def lit(prefix: bytes, body: bytes) -> tuple[bytes, bytes]:
    return (prefix + b" {%d}" % len(body), body)


def test_header_literal_with_all_items():
    data = [
        lit(
            b'1 (UID 7 FLAGS (\\Seen $Junk) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
            b"RFC822.SIZE 4286 " + SECTION,
            HDR,
        ),
        b")",
    ]
    got = parse_fetch(data)
    assert list(got) == [7]
    item = got[7]
    assert item[b"UID"] == 7
    assert item[b"FLAGS"] == (b"\\Seen", b"$Junk")
    assert item[b"RFC822.SIZE"] == 4286
    assert item[SECTION] == HDR
    assert item[b"INTERNALDATE"] == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )


def test_items_in_any_order_and_after_the_literal():
    data = [
        lit(b"3 (" + SECTION, FOLDED),
        b' FLAGS () RFC822.SIZE 12 INTERNALDATE " 1-Jan-2024 00:00:00 +0000" UID 9)',
        lit(b'4 (INTERNALDATE "02-Feb-2024 10:11:12 +0130" UID 10 ' + SECTION, HDR),
        b" FLAGS (\\Answered))",
    ]
    got = parse_fetch(data)
    assert got[9][SECTION] == FOLDED  # folded header lines arrive untouched
    assert got[9][b"FLAGS"] == ()
    assert got[9][b"INTERNALDATE"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert got[10][b"FLAGS"] == (b"\\Answered",)
    assert got[10][b"INTERNALDATE"].utcoffset() == timedelta(hours=1, minutes=30)


def test_two_literals_in_one_response():
    data = [
        lit(b"1 (UID 5 BODY[HEADER]", HDR),
        lit(b" BODY[TEXT]", b"text\r\n"),
        b")",
    ]
    got = parse_fetch(data)
    assert got[5][b"BODY[HEADER]"] == HDR
    assert got[5][b"BODY[TEXT]"] == b"text\r\n"


def test_nil_body_and_partial_section_name():
    data = [b"1 (UID 3 BODY[]<0> NIL)", lit(b"2 (UID 4 BODY[]<0>", b"whole\r\n"), b")"]
    got = parse_fetch(data)
    assert got[3][b"BODY[]<0>"] is None
    assert got[4][b"BODY[]<0>"] == b"whole\r\n"


def test_quoted_value_with_escapes():
    got = parse_fetch([b'1 (UID 2 X-THING "a \\"b\\" \\\\c")'])
    assert got[2][b"X-THING"] == b'a "b" \\c'


def test_messages_expunged_before_the_fetch_are_simply_absent():
    # UID FETCH 1:3 after message 2 was expunged by another client: no response for it,
    # and the server may add an unsolicited FETCH (flag change) that has no UID.
    data = [
        lit(b"1 (UID 1 " + SECTION, HDR),
        b")",
        b"2 (FLAGS (\\Deleted))",
        lit(b"2 (UID 3 " + SECTION, HDR),
        b")",
    ]
    got = parse_fetch(data)
    assert sorted(got) == [1, 3]


def test_responses_for_one_uid_are_merged():
    data = [b"5 (UID 8 FLAGS (\\Seen) MODSEQ (42))", lit(b"5 (UID 8 " + SECTION, HDR), b")"]
    got = parse_fetch(data)
    assert got[8][b"FLAGS"] == (b"\\Seen",)
    assert got[8][b"MODSEQ"] == 42
    assert got[8][SECTION] == HDR


def test_empty_and_none():
    assert parse_fetch([]) == {}
    assert parse_fetch([None]) == {}


@pytest.mark.parametrize(
    "data",
    [
        [b'1 (UID 1 BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 1 1))'],  # nested
        [b"1 (UID 1 FLAGS (\\Seen)"],  # no closing parenthesis
        [(b"1 (UID 1 BODY[] {10}", b"short")],  # literal shorter than announced
        [(b"1 (UID 1 BODY[] {3}", b"abc")],  # the line never goes on
        [b"garbage"],
    ],
)
def test_unknown_shapes_raise_unparsed(data):
    with pytest.raises(Unparsed):
        parse_fetch(data)


@pytest.mark.parametrize(
    "value",
    [b'"32-Foo-2024 00:00:00 +0000"', b'"garbage"', b'""', b"NIL", b"12345", b"(1 2)"],
)
def test_a_garbage_internaldate_is_none_not_the_batch_s_problem(value):
    got = parse_fetch(
        [
            b"1 (UID 1 INTERNALDATE " + value + b" RFC822.SIZE 5)",
            b'2 (UID 2 INTERNALDATE " 1-Jan-2024 00:00:00 +0000" RFC822.SIZE 6)',
        ]
    )
    assert got[1][b"INTERNALDATE"] is None and got[1][b"RFC822.SIZE"] == 5
    assert got[2][b"INTERNALDATE"] == datetime(2024, 1, 1, tzinfo=UTC)


def test_internaldate_forms():
    assert parse_internaldate(b" 7-Jul-1996 02:44:25 +0200").day == 7
    assert parse_internaldate(b"07-jul-1996 02:44:25 +0200").utcoffset() == timedelta(hours=2)


def test_same_result_as_imapclient_on_a_mixed_response():
    data = [
        lit(b'1 (UID 1 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" ' + SECTION, HDR),
        b" RFC822.SIZE 10)",
        lit(b"2 (" + SECTION, FOLDED),
        b' UID 2 FLAGS () INTERNALDATE " 1-Jan-2024 00:00:00 +0000" RFC822.SIZE 11)',
    ]
    ours = parse_fetch(data)
    theirs = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    assert sorted(ours) == sorted(theirs)
    for uid, item in theirs.items():
        for key in (b"FLAGS", b"RFC822.SIZE", SECTION):
            assert ours[uid][key] == item[key]
        assert ours[uid][b"INTERNALDATE"].utcoffset() == item[b"INTERNALDATE"].utcoffset()
        assert ours[uid][b"INTERNALDATE"].replace(tzinfo=None) == item[b"INTERNALDATE"].replace(
            tzinfo=None
        )


class Wire:
    """imaplib's side of one command for ``ImapMailbox._uid_fetch``: what the server sends,
    read through ``readline``/``read`` as from a socket."""

    abort = imaplib.IMAP4.abort

    def __init__(self, wire: bytes) -> None:
        self.file = io.BytesIO(wire)
        self.tagged_commands: dict[bytes, object] = {}
        self.sent: tuple[object, ...] = ()
        self.closed = False

    def _command(self, *args: object) -> bytes:
        self.sent = args
        self.tagged_commands[b"A1"] = None
        return b"A1"

    def readline(self) -> bytes:
        return self.file.readline()

    def read(self, n: int) -> bytes:
        return self.file.read(n)

    def shutdown(self) -> None:
        self.closed = True


def wire_box(wire: bytes):  # type: ignore[no-untyped-def]
    from ndr_sweeper.mailbox.imap import ImapMailbox

    class FakeClient:
        _imap = Wire(wire)

    return ImapMailbox(FakeClient()), FakeClient._imap  # type: ignore[arg-type]


def header_answer(seq: int, uid: int, body: bytes, flags: bytes = b"\\Seen") -> bytes:
    return (
        b'* %d FETCH (UID %d FLAGS (%s) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b"RFC822.SIZE 4286 %s {%d}\r\n%s)\r\n" % (seq, uid, flags, SECTION, len(body), body)
    )


def test_mailbox_falls_back_to_imapclient_for_unknown_shapes(monkeypatch):
    """A response the fast parser refuses still reaches the caller, through imapclient."""
    box, _ = wire_box(
        b'* 1 FETCH (UID 4 BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 1 1))\r\nA1 OK done\r\n'
    )
    calls = []
    real = fastfetch.parse_fetch

    def spy(d):
        calls.append(d)
        return real(d)

    monkeypatch.setattr(fastfetch, "parse_fetch", spy)
    got = dict(box._uid_fetch("INBOX", "4", "(UID BODYSTRUCTURE)"))
    assert calls and 4 in got and b"BODYSTRUCTURE" in got[4]


def test_streamed_answers_parse_like_the_whole_list():
    """The fast path of the stream reader and the general parser agree, item by item; other
    untagged answers (EXISTS, EXPUNGE, OK) between them are skipped."""
    wire = (
        header_answer(1, 7, HDR)
        + b"* 3 EXISTS\r\n"
        + header_answer(2, 9, FOLDED, b"")
        + b"* OK [ALERT] {5}\r\nhello\r\n"
        + b"* 2 FETCH ("
        + SECTION
        + b" {%d}\r\n%s UID 11 FLAGS ())\r\n" % (len(HDR), HDR)
        + b"* 1 EXPUNGE\r\n"
        + b"* 4 FETCH (FLAGS (\\Seen))\r\n"  # unsolicited: no UID
        + b"A1 OK Fetch completed.\r\n"
    )
    box, imap = wire_box(wire)
    got = list(box._uid_fetch("INBOX", "1:*", "(UID FLAGS)"))
    assert [uid for uid, _ in got] == [7, 9, 11]
    by_uid = dict(got)
    assert by_uid[7][SECTION] == HDR and by_uid[9][SECTION] == FOLDED
    assert by_uid[7][b"FLAGS"] == (b"\\Seen",) and by_uid[9][b"FLAGS"] == ()
    assert by_uid[7][b"INTERNALDATE"] == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )
    assert by_uid[11][b"FLAGS"] == () and by_uid[11][SECTION] == HDR
    assert imap.tagged_commands == {} and imap.sent[:2] == ("UID", "FETCH")
    whole = parse_fetch(
        [
            lit(b"1 (UID 7 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
                b"RFC822.SIZE 4286 " + SECTION, HDR),
            b")",
        ]
    )  # fmt: skip
    assert whole[7] == by_uid[7]


def test_garbage_date_is_none_on_the_fast_path():
    box, _ = wire_box(header_answer(1, 7, HDR).replace(b"17-Jul-1996", b"yesterday") + b"A1 OK\r\n")
    [(uid, item)] = box._uid_fetch("INBOX", "7", "(UID)")
    assert uid == 7 and item[b"INTERNALDATE"] is None


@pytest.mark.parametrize(
    "wire, error",
    [
        (b"A1 NO [SERVERBUG] oops\r\n", "FETCH failed: NO [SERVERBUG] oops"),
        (b"A1 BAD syntax\r\n", "FETCH failed: BAD syntax"),
        (b"* BYE going away\r\n", "BYE"),
        (b"A2 OK not ours\r\n", "unexpected response"),
        (b"+ go on\r\n", "unexpected response"),
        (b"* 1 FETCH (UID 7 " + SECTION + b" {100}\r\nshort", "EOF"),
        (header_answer(1, 7, HDR), "EOF"),  # no tagged answer: the connection ended
        (b"* 1 FETCH (UID 7 FLAGS ()", "unterminated line"),
    ],
)
def test_stream_errors(wire: bytes, error: str):
    """Refusals and broken answers become our errors (the message keeps the server's words),
    and the command's tag is forgotten either way."""
    box, imap = wire_box(wire)
    with pytest.raises(NdrSweeperError, match=re.escape(error)):
        list(box._uid_fetch("INBOX", "1:*", "(UID)"))
    assert imap.tagged_commands == {}


def test_modseq_on_the_fast_path(monkeypatch):
    """A CONDSTORE server's answer (MODSEQ between RFC822.SIZE and the body, as Dovecot sends
    it) takes the one-regex path and keeps its MODSEQ."""
    calls = []
    monkeypatch.setattr(fastfetch, "parse_fetch", lambda d: calls.append(d) or {})
    wire = header_answer(1, 7, HDR).replace(b"RFC822.SIZE 4286 ", b"RFC822.SIZE 4286 MODSEQ (42) ")
    box, _ = wire_box(wire + b"A1 OK\r\n")
    [(uid, item)] = box._uid_fetch("INBOX", "7", "(UID)")
    assert uid == 7 and item[b"MODSEQ"] == 42 and item[SECTION] == HDR and not calls


def test_stopping_early_reads_the_rest_of_the_answer():
    """The connection stays usable: what the caller did not take is read to the tag."""
    wire = b"".join(header_answer(i, i, HDR) for i in range(1, 5)) + b"A1 OK\r\n* 9 EXISTS\r\n"
    box, imap = wire_box(wire)
    stream = box._uid_fetch("INBOX", "1:*", "(UID)")
    assert next(stream)[0] == 1
    stream.close()
    assert imap.tagged_commands == {} and not imap.closed
    assert imap.readline() == b"* 9 EXISTS\r\n"  # the next answer, untouched


@pytest.mark.imap
def test_real_server_responses_parse_like_imapclient(imap_user):
    """Dovecot's own bytes: headers, whole messages, after one message was expunged."""
    from ndr_sweeper.mailbox import imap as imap_mod
    from ndr_sweeper.mailbox.imap import connect

    client = imap_user.connect()
    msgs = [lab.make_message(f"m{i}@example.org") for i in range(5)]
    uids = lab.append_messages(client, "INBOX", msgs)
    client.select_folder("INBOX")
    client.add_flags([uids[1]], [b"\\Deleted"])
    client.uid_expunge([uids[1]])
    client.add_flags([uids[2]], [b"\\Flagged", b"$Ours"])
    client.logout()
    mb = connect(imap_user.host, imap_user.port, "plain", imap_user.user, imap_user.password)
    try:
        mb.select("INBOX", readonly=True)
        items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])"
        for fetch in (items, "(UID BODY.PEEK[]<0.1048576>)"):
            typ, data = mb.client._imap.uid("FETCH", f"{uids[0]}:{uids[-1]}", fetch)
            assert typ == "OK"
            ours = parse_fetch(data)
            theirs = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
            assert sorted(ours) == sorted(theirs) == sorted(set(uids) - {uids[1]})
            streamed = dict(mb._uid_fetch("INBOX", f"{uids[0]}:{uids[-1]}", fetch))
            assert sorted(streamed) == sorted(theirs)
            for uid, item in theirs.items():
                for key, value in item.items():
                    if key not in (b"SEQ", b"INTERNALDATE"):
                        assert ours[uid][key] == value
                        assert streamed[uid][key] == value
                    elif key == b"INTERNALDATE":
                        assert streamed[uid][key].utcoffset() == value.utcoffset()
                        assert streamed[uid][key].replace(tzinfo=None) == value.replace(tzinfo=None)
        got = list(mb.fetch_headers(uids, ["From", "Subject"]))
        assert [h.uid for h in got] == [u for u in uids if u != uids[1]]
        assert mb.has("CONDSTORE") and all(h.modseq for h in got)
        assert all(h.header.startswith(b"From:") or b"Subject" in h.header for h in got)
        # fetch_headers reads the usual shape straight from the line (_Head): the same items
        # as imapclient's parser makes of the same answer
        fetch = (
            "(UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])"
        )
        raw = list(mb._uid_fetch("INBOX", f"{uids[0]}:{uids[-1]}", fetch, heads=True))
        assert raw and all(type(item) is imap_mod._Head for _, item in raw)
        typ, data = mb.client._imap.uid("FETCH", f"{uids[0]}:{uids[-1]}", fetch)
        theirs = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
        for h in got:
            t = theirs[h.uid]
            assert h.header == t[b"BODY[HEADER.FIELDS (FROM SUBJECT)]"]
            assert h.flags == imap_mod._flags(t[b"FLAGS"])
            assert h.size == t[b"RFC822.SIZE"]
            assert h.modseq == t[b"MODSEQ"][0]
            assert h.internaldate == imap_mod._aware(t[b"INTERNALDATE"])
        assert {"\\Flagged", "$Ours"} <= next(h.flags for h in got if h.uid == uids[2])
    finally:
        mb.logout()
