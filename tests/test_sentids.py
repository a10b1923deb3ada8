"""The Sent index's reading of a Sent message's header: its IDs, and first_field."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_classify_corpus import corpus_dir

from ndr_sweeper import sentids
from ndr_sweeper.sentids import first_field, ids_from_header, parsed_field

FIXTURES = Path(__file__).parent / "fixtures" / "messages"


def test_all_provider_ids_are_collected_in_order():
    header = (
        b"Message-ID: <AM0PR01MB1234.outlook@eurprd01.prod.example.com>\r\n"
        b"X-Microsoft-Original-Message-ID: <client-1@laptop.example.org>\r\n"
        b"X-Google-Original-Message-ID: <g-2@mail.example.org>\r\n"
    )
    assert ids_from_header(header) == [
        "AM0PR01MB1234.outlook@eurprd01.prod.example.com",
        "client-1@laptop.example.org",
        "g-2@mail.example.org",
    ]


def test_folded_and_case_insensitive_field_names():
    header = b"message-id:\n  <folded@example.com>\nSubject: x\n"
    assert ids_from_header(header) == ["folded@example.com"]


def test_duplicates_and_junk_are_dropped():
    header = b"Message-ID: <a@b>\nX-Google-Original-Message-ID: <a@b>\nMessage-ID: \n"
    assert ids_from_header(header) == ["a@b"]


def test_a_comment_or_a_fold_inside_the_brackets():
    header = b"Message-ID: <lunch.42@example.org (sent from my phone)>\r\n"
    assert ids_from_header(header) == ["lunch.42@example.org"]
    assert ids_from_header(b"Message-ID: <a\r\n @b>\r\n") == ["a@b"]


def test_ids_in_message_finds_every_quoted_id_once():
    from ndr_sweeper.sentids import ids_in_message

    raw = (
        b"Message-ID: <bounce@mx.example>\r\n\r\nYour message <orig@laptop.example> to\r\n"
        b"<user@example.net> failed.\r\nReferences: <orig@laptop.example> <older@laptop.example>\r\n"
        b"not an id: <no-at-sign> <a b@c>\r\n"
    )
    assert ids_in_message(raw) == [
        "bounce@mx.example",
        "orig@laptop.example",
        "user@example.net",
        "older@laptop.example",
    ]
    assert len(ids_in_message(b"".join(b"<%d@x>" % i for i in range(1000)), limit=10)) == 10


# ------------------------------------------------------------------ first_field's quick path
# first_field reads a block of plain unfolded lines with one search; anything else goes to the
# classifier's parser (parsed_field). Both must give the same answer on every block.

_NAMES = ("date", "from", "message-id", "subject", "x-microsoft-original-message-id")
_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*", re.M)


def _same(block: bytes) -> bool:
    """Both readers agree on every name; True when the block took the quick path."""
    for name in _NAMES:
        assert first_field(block, name) == parsed_field(block, name), (name, block)
    return sentids._SIMPLE_BLOCK.fullmatch(block) is not None


def _blocks() -> list[bytes]:
    """Every fixture's and corpus message's header block, and the few fields of it a Sent
    index fetches, as a server answers HEADER.FIELDS (CRLF lines, a blank line at the end)."""
    raws = [p.read_bytes() for p in FIXTURES.glob("*.eml")]
    d = corpus_dir()
    if d is not None:
        for line in (d / "labels.jsonl").read_text().splitlines():
            raws.append((d / json.loads(line)["path"]).read_bytes())
    out = []
    for raw in raws:
        text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        head = text.split(b"\n\n", 1)[0] + b"\n"
        out.append(raw[: raw.find(b"\n\n") + 2] if b"\n\n" in raw else raw)
        wanted = (b"message-id", b"date", b"from", b"x-microsoft-original-message-id")
        lines = [m.group(0) for m in _LINE.finditer(head) if m.group(1).lower() in wanted]
        out.append(b"".join(lines).replace(b"\n", b"\r\n") + b"\r\n")
    return out


def test_first_field_on_every_corpus_header() -> None:
    blocks = _blocks()
    quick = sum(_same(b) for b in blocks)
    assert quick > len(blocks) // 3  # the quick path is taken, on the few-field blocks


def test_first_field_usual_block() -> None:
    block = b"Message-ID: <a@b>\r\nDATE :\t Mon, 1 Dec 2026 10:00:00 +0000 \t\r\nDate: x\r\n\r\n"
    assert _same(block)
    assert first_field(block, "date") == "Mon, 1 Dec 2026 10:00:00 +0000"
    assert first_field(block, "from") is None


_PIECES = [
    b"Date",
    b"date",
    b"DATE",
    b"From",
    b"Message-ID",
    b"Subject",
    b"X-Date",
    b"Date-Sent",
    b":",
    b" :",
    b"\t:",
    b": ",
    b":\t",
    b" ",
    b"\t",
    b"  ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"Mon, 1 Dec 2026 10:00:00 +0000",
    b"<a@b>",
    b"x",
    b"\xc3\xa9",
    b"\xff",
    b"\x1f",
    b"\x0b",
    b"\x7f",
    b"\x00",
    b"\r\n ",
    b"\r\n\t",
    b"From ",
    b"(c)",
    b'"q"',
]


@given(st.lists(st.sampled_from(_PIECES), max_size=14).map(b"".join))
@settings(max_examples=4000, deadline=None)
def test_first_field_generated_blocks(block: bytes) -> None:
    _same(block)
