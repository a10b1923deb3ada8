"""textsafe: what a server or a message sends is shown escaped, never interpreted."""

from __future__ import annotations

import io
import json
import logging
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from ndr_sweeper.textsafe import SafeFormatter, json_safe, printable, printable_lines

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def controls_in(text: str) -> list[str]:
    """Every character a terminal could act on: C0, DEL, C1, bidi controls, separators."""
    return [
        c
        for c in text
        if ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in BIDI
        or c in "\u061c\u200e\u200f\u2028\u2029"
        or unicodedata.category(c) == "Cs"
    ]


def test_escapes_a_hostile_server_answer() -> None:
    hostile = "\x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07\x1b[2J\r\n\x9b31m\u202eevil\x7f\t"
    assert printable(hostile) == (
        "\\x1b]0;pwned\\x07 \\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\r\\n\\x9b31m\\u202eevil\\x7f\\t"
    )


def test_printable_text_is_unchanged() -> None:
    for text in ("", "Undeliverable: Grüße 日本語 🙂", r"C:\x1b is text", "a\u200db"):
        assert printable(text) == text


def test_max_len_never_cuts_an_escape() -> None:
    assert printable("abcdef", max_len=6) == "abcdef"
    assert printable("abcdefg", max_len=6) == "abc..."
    # "ab\x1b" escapes to "ab\\x1b": a cut inside the escape drops all of it.
    for n in range(4, 12):
        out = printable("ab\x1bcdefgh", max_len=n)
        assert len(out) <= n
        assert "\\" not in out or "\\x1b" in out, (n, out)
    assert printable("abc", max_len=2) == ".."


def test_lone_surrogates_become_escapes_that_can_be_written() -> None:
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    out = printable(raw)
    assert out == "caf\\udce9"
    out.encode("utf-8")  # would raise with the surrogate


@given(st.text())
def test_never_a_control_character(text: str) -> None:
    out = printable(text)
    assert controls_in(out) == []
    out.encode("utf-8")


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_max_len_bounds(text: str, n: int) -> None:
    out = printable(text, max_len=n)
    assert len(out) <= n and controls_in(out) == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))))
def test_round_trip_of_printable_text(text: str) -> None:
    text = "".join(c for c in text if not controls_in(c))
    assert printable(text) == text


@given(st.text())
def test_lines_keep_their_breaks_only(text: str) -> None:
    out = printable_lines(text)
    assert out.count("\n") == text.count("\n")
    assert controls_in(out.replace("\n", "")) == []


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_json_safe_is_the_same_data_without_raw_controls(obj: object) -> None:
    doc = json_safe(json.dumps(obj, ensure_ascii=False))
    assert controls_in(doc) == []
    assert json.loads(doc) == obj


def test_log_formatter_escapes_message_arguments_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test_textsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("folder %s: %r", "IN\x1b[2JBOX", "\x9b")
        try:
            raise ValueError("bad \x1b]52;c;eA==\x07")
        except ValueError:
            logger.exception("server said \u202e%s", "\r\n")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert controls_in(out.replace("\n", "")) == []
    assert "IN\\x1b[2JBOX" in out and "'\\x9b'" in out
    assert "server said \\u202e\\r\\n" in out
    assert "ValueError: bad \\x1b]52;c;eA==\\x07" in out  # the traceback, line by line
    assert "Traceback" in out
