"""One Message-ID normaliser: the classifier, the Sent index and the journal agree on every ID."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndr_sweeper.classify import classify
from ndr_sweeper.msgid import normalise_message_id
from ndr_sweeper.sentids import ids_from_header

import bounces

CASES = [
    ("<a@b>", "a@b"),
    (" <AbC@Example.COM> ", "AbC@Example.COM"),
    ("  <Ab.C@D>\r\n", "Ab.C@D"),
    ("a@b", "a@b"),
    ("<a\r\n @b>", "a@b"),  # folded inside the brackets
    ("<lunch.42@example.org (sent from my phone)>", "lunch.42@example.org"),
    ("(comment) <x.1@y>", "x.1@y"),
    ("no brackets@x", "brackets@x"),
    ("<>", None),
    ("", None),
    ("none", None),
    ("<none>", None),
    ("<bad\x01id@x>", None),
]


@pytest.mark.parametrize(("raw", "norm"), CASES)
def test_normalise(raw: str, norm: str | None) -> None:
    assert normalise_message_id(raw) == norm


@pytest.mark.parametrize(("raw", "norm"), [c for c in CASES if c[1] and "\r" not in c[0]])
def test_sent_index_and_classifier_agree(raw: str, norm: str) -> None:
    """The Sent copy's Message-ID field and the bounce quoting it end up as the same string."""
    assert ids_from_header(f"Message-ID: {raw}\r\n".encode()) == [norm]
    dsn = bounces.dsn("placeholder@x").replace(b"<placeholder@x>", raw.encode())
    assert norm in classify(dsn).all_original_ids()


@given(st.text(max_size=80))
def test_idempotent_and_clean(value: str) -> None:
    once = normalise_message_id(value)
    if once is not None:
        assert normalise_message_id(once) == once
        assert once.strip() == once and not any(c.isspace() for c in once)
        assert "<" not in once and ">" not in once
