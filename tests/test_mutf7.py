"""Folder names on the wire: the modified UTF-7 codec (pure) and how ImapMailbox names what a
server LISTs (strictly decoded, non-canonical forms kept, unusable names marked)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient import imap_utf7

from ndr_sweeper.mailbox import mutf7
from ndr_sweeper.mailbox.imap import _names

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@given(TEXT)
def test_encode_is_canonical_printable_ascii_and_decodes_back(name):
    raw = mutf7.encode(name)
    assert all(0x20 <= b <= 0x7E for b in raw)
    assert mutf7.decode(raw) == name
    assert raw == imap_utf7.encode(name)  # imapclient's encoder agrees (test reference only)


@pytest.mark.parametrize(
    "raw",
    [b"&A-", b"Old&Jjo", b"\xff", b"a\r\nb", b"&2D0-", b"&AOR-", b"&AOQ=-", b"&AOQ!-", b"x\x7f"],
)
def test_decode_refuses_what_is_not_modified_utf7(raw):
    with pytest.raises(ValueError):
        mutf7.decode(raw)


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b"&AEo-unk", "Junk"), (b"Spam-&AOQ-&AOQ-", "Spam-\xe4\xe4"), (b"&-", "&")],
)
def test_non_canonical_forms_decode(raw, text):
    assert mutf7.decode(raw) == text
    assert mutf7.encode(text) != raw or raw == b"&-"


def test_names_from_list():
    got = _names(
        [
            b"INBOX",
            b"Junk",
            b"&AEo-unk",  # "Junk" again, non-canonical: goes by its bytes
            b"Spam-&AOQ-&AOQ-",  # non-canonical, but the only "Spam-ää": keeps the text
            b"&A-",
            b"x\r\ny",
            b"M\xc3\xbcll",  # UTF-8 from a server that ignores RFC 3501
            b"\xff",
            b"&AAo-",  # a line break, validly encoded
            b"a" * 1025,
        ]
    )
    names = [n for n, _why in got]
    whys = [why for _n, why in got]
    assert names[:4] == ["INBOX", "Junk", "&AEo-unk", "Spam-\xe4\xe4"]
    assert whys[:4] == [None] * 4
    assert names[6] == "Müll" and whys[6] is None
    assert whys[4] and "modified UTF-7" in whys[4] and names[4] == "&A-"
    assert whys[5] and "control character" in whys[5]
    assert whys[7] and "neither" in whys[7] and names[7] == "\\xff"
    assert whys[8] and "control character" in whys[8]
    assert whys[9] and "longer" in whys[9]


def test_two_non_canonical_twins_and_an_8bit_twin():
    got = _names([b"&AEo-unk", b"&AEoAdQ-nk", b"Spam-&AOQA5A-", b"Spam-\xc3\xa4\xc3\xa4"])
    assert got[0] == ("&AEo-unk", None) and got[1] == ("&AEoAdQ-nk", None)
    assert got[2] == ("Spam-\xe4\xe4", None)
    assert got[3][1] is not None and "too" in got[3][1]
