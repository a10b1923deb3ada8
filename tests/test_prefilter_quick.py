"""The prefilter's quick "no" (``prefilter._ordinary``) never says no where the full decision
says yes: on every fixture, every corpus message (its HEADER.FIELDS block, its whole header,
the message itself) and on generated header blocks built from the very words, markers,
foldings, line ends and bytes the quick test reasons about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_classify_corpus import corpus_dir, header_fields_only

from ndr_sweeper.classify import prefilter
from ndr_sweeper.classify.prefilter import HEADER_FIELDS, may_be_report

FIXTURES = Path(__file__).parent / "fixtures" / "messages"


def full(raw: bytes) -> bool:
    """may_be_report without the quick test."""
    try:
        return prefilter._full_decision(raw)
    except Exception:
        return True


def blocks(raw: bytes) -> list[bytes]:
    norm = raw.replace(b"\r\n", b"\n")
    head = norm.split(b"\n\n", 1)[0] + b"\n\n"
    return [header_fields_only(raw), head, head.replace(b"\n", b"\r\n"), raw]


def check(block: bytes) -> None:
    quick = prefilter._ordinary(block)
    assert not (quick and full(block)), f"quick no, full yes: {block[:300]!r}"
    assert may_be_report(block) == full(block)


def test_the_quick_test_is_on() -> None:
    """Its anchors were worked out (else it would silently always defer), and it does rule
    out ordinary mail."""
    assert prefilter._SENDER_ANCHORS is not None and prefilter._SUBJECT_ANCHORS is not None
    ordinary = (
        b"Return-Path: <anna@example.org>\r\nFrom: Anna Berg <anna@example.org>\r\n"
        b"Subject: Lunch on Friday?\r\nMessage-ID: <1@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nPrecedence: bulk\r\n\r\n"
    )
    assert prefilter._ordinary(ordinary) and not full(ordinary)


@pytest.mark.parametrize(
    "block",
    [
        b"From:\r\n  \r\n auto\r\n\r\n",  # the blank line ends the header: From is empty
        b"From:\r\n\t\r\nSubject: x\r\n\r\n",
        b"Sender: Anna\r\n <\r\n >\r\n\r\n",  # "< >" once unfolded
        b"Subject: could\r\n not be delivered\r\n\r\n",  # an anchor across a fold
        b"Subject: out  of\toffice\r\n\r\n",
        b"Subject: hi\rFrom: <>\r\n\r\n",  # a bare CR is a line end for the parser
        b"Return-Path: <>\r\n\r\n",
        b"Subject: =?utf-8?q?Undeliverable?=\r\n\r\n",
        b" From: MAILER-DAEMON@x.org\r\n\r\n",
    ],
)
def test_edges(block: bytes) -> None:
    check(block)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.eml")), ids=lambda p: p.name)
def test_fixtures(path: Path) -> None:
    for block in blocks(path.read_bytes()):
        check(block)


@pytest.mark.corpus
def test_corpus() -> None:
    d = corpus_dir()
    if d is None:
        pytest.skip("corpus not found (../shared/corpus/dev or NDR_SWEEPER_CORPUS)")
    rows = [json.loads(line) for line in (d / "labels.jsonl").read_text().splitlines() if line]
    for row in rows:
        for block in blocks((d / row["path"]).read_bytes()):
            check(block)


# ---------------------------------------------------------------- generated header blocks


def _anchors() -> list[str]:
    out: list[str] = []
    for p in (
        prefilter._DAEMON_FROM_FAST,
        prefilter._BOUNCE_SUBJECT_FAST,
        prefilter._LOOKALIKE_SUBJECT_FAST,
        prefilter._CR_VENDOR_FAST,
    ):
        out.extend(p.anchors or ())
    return out


ANCHORS = _anchors()
MARKERS = ["<>", "< >", "<\t>", "mailer-daemon", "<MAILER-DAEMON>", "auto", "report",
           "message/rfc822", "ms-tnef", "no", "auto-replied", "=?utf-8?q?Undeliverable?=",
           "=?utf-8?b?0L3QtSDQtNC+0YHRgtCw0LLQu9C10L3Qvg==?=", "MAILER-DAEMON@x.org",
           "postmaster@x.org", "Anna <anna@x.org>", "noreply@shop.example", "", " "]  # fmt: skip
NAMES = [*HEADER_FIELDS, "Sender", "To", "Received", "List-Id", "X-Mailer", "From ", "Subject\t",
         "from", "SUBJECT", "x-autoreply", "References", "X-From"]  # fmt: skip
BLANKS = [" ", "  ", "\t", " \t ", "\r\n ", "\r\n\t", "\n ", "\r ", "\r\n  \r\n ", ""]


@st.composite
def words(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 5))
    if choice <= 1:
        word = draw(st.sampled_from(ANCHORS))
        if " " in word and draw(st.booleans()):  # a phrase folded or spaced differently
            word = draw(st.sampled_from(BLANKS)).join(word.split(" ")) or word
        return word.upper() if draw(st.booleans()) else word
    if choice == 2:
        return draw(st.sampled_from(MARKERS))
    if choice == 3:
        return draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12))
    if choice == 4:
        return draw(st.sampled_from(["é", "\x00", "\x0b", "\x1c", "\x85", "\xa0", "\u0434", "\r"]))
    return draw(st.sampled_from(["Lunch", "on", "Friday", "report", "<a@b.c>", "(x)", ":", ";"]))


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    fields = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(NAMES))
        parts = draw(st.lists(words(), max_size=5))
        sep = [draw(st.sampled_from(BLANKS)) for _ in parts]
        value = "".join(s + p for s, p in zip(sep, parts, strict=True))
        colon = draw(st.sampled_from([":", ": ", " :", ":\t", ":\r\n "]))
        fields.append(f"{name}{colon}{value}")
    end = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    lead = draw(st.sampled_from(["", "", "", "\r\n", " ", "From sender@x Mon\n"]))
    text = lead + end.join(fields) + end + end
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    return text.encode(encoding, "replace")


@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_blocks())
def test_generated_header_blocks(block: bytes) -> None:
    check(block)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(block: bytes) -> None:
    check(block)


def test_the_sweep_fetches_exactly_the_fields_the_decision_reads() -> None:
    """A field the decision reads but the sweep does not fetch would make it blind to it (a
    bounce missed); one it fetches and never reads costs every message its bytes."""
    from ndr_sweeper.classify.message import Headers

    read: set[str] = set()

    class Recording(Headers):
        def _values(self, name: str) -> list[str] | None:
            read.add(name.lower())
            return super()._values(name)

        def __contains__(self, name: str) -> bool:
            read.add(name.lower())
            return super().__contains__(name)

    # Nothing in it says yes, so every test of the decision runs.
    assert prefilter.headers_may_be_report(Recording([])) is False
    assert read == {f.lower() for f in HEADER_FIELDS}
