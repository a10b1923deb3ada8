"""mail_date's quick path reads a Date exactly as the standard library does: on every Date
field of the fixtures and the corpus (and the originals' Dates the classifier finds), and on
generated values built from the pieces the quick path looks at."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_classify_corpus import corpus_dir

from ndr_sweeper import maildate
from ndr_sweeper.maildate import mail_date

FIXTURES = Path(__file__).parent / "fixtures" / "messages"
_DATE_FIELD = re.compile(rb"^date[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


def same(value: str) -> None:
    quick, slow = mail_date(value), maildate._standard(value[:200])
    assert quick == slow, value
    if quick is not None and slow is not None:
        assert quick.utcoffset() == slow.utcoffset(), value
        assert quick.tzinfo is not None


def corpus_dates() -> list[str]:
    raws = [p.read_bytes() for p in FIXTURES.glob("*.eml")]
    d = corpus_dir()
    if d is not None:
        for line in (d / "labels.jsonl").read_text().splitlines():
            raws.append((d / json.loads(line)["path"]).read_bytes())
    out = {m.group(1).decode("utf-8", "replace") for raw in raws for m in _DATE_FIELD.finditer(raw)}
    return sorted(out)


def test_every_date_of_the_corpus() -> None:
    values = corpus_dates()
    assert len(values) > 100
    for value in values:
        same(value)
    quick = sum(maildate._USUAL.fullmatch(v.strip()) is not None for v in values)
    assert quick > len(values) // 2  # the quick path is the usual one


def test_the_usual_shapes() -> None:
    assert mail_date("Thu, 3 Dec 2026 11:22:29 +0100") == datetime(
        2026, 12, 3, 10, 22, 29, tzinfo=UTC
    )
    assert mail_date("3 Dec 2026 11:22:29 -0000") == datetime(2026, 12, 3, 11, 22, 29, tzinfo=UTC)
    for odd in (
        "Thu, 31 Feb 2026 11:22:29 +0000",
        "Thu, 3 Dec 2026 25:22:29 +0000",
        "Thu, 3 Dec 2026 11:22:29 +9900",
        "Thu, 3 Dec 0099 11:22:29 +0000",
        "",
        "x",
    ):
        same(odd)


_PIECES = [
    "Thu, ",
    "Mon,",
    "3",
    "03",
    "31",
    "0",
    " ",
    "  ",
    "Dec",
    "dec",
    "Feb",
    "2026",
    "0099",
    "99",
    "11:22:29",
    "23:59:60",
    "11:22",
    ":",
    "+0000",
    "-0000",
    "+0130",
    "-1200",
    "+9900",
    "GMT",
    "(UTC)",
    "\t",
    ",",
    "x",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=9).map("".join))
@settings(max_examples=3000, deadline=None)
def test_generated_values(value: str) -> None:
    same(value)


@given(
    st.integers(1, 31),
    st.sampled_from(list(maildate._MONTHS)),
    st.integers(1000, 9999),
    st.integers(0, 29),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from("+-"),
    st.integers(0, 99),
    st.integers(0, 99),
)
@settings(max_examples=3000, deadline=None)
def test_generated_usual_values(day, mon, year, hh, mm, ss, sign, zh, zm) -> None:
    same(f"{day} {mon} {year} {hh:02d}:{mm:02d}:{ss:02d} {sign}{zh:02d}{zm:02d}")
