"""Hostile and broken mail through the classifier: it never raises, stays within a time bound
per message, and never reports an original Message-ID that does not occur in the input."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndr_sweeper.classify import classify, may_be_report

import bounces

SAMPLE = bounces.dsn("forged.1@laptop.example.org", bounce_id="b.1@mx.example.net")

# Generous: a slow CI machine, and the 50 MB case reads its input once.
TIME_BOUND = 5.0


def check(raw: bytes, bound: float = TIME_BOUND):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    verdict = classify(raw)
    took = time.monotonic() - started
    assert took < bound, f"classify took {took:.2f} s on {len(raw)} bytes"
    may_be_report(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    verdict.to_dict()
    if verdict.is_ndr:
        for oid in verdict.all_original_ids():
            assert (
                oid.encode("utf-8", "surrogateescape") in raw
                or oid.encode("latin-1", "replace") in raw
                or _decoded_in(oid, raw)
                or _normalised_in(oid, raw)
            ), f"made-up original ID {oid!r}"
    return verdict


def _normalised_in(oid: str, raw: bytes) -> bool:
    """The ID is what the one normaliser makes of a bracketed span of the input: it drops
    whitespace inside the brackets (a folded ID), so a mutation that puts a tab into an ID
    yields the ID without it (Hypothesis found "<f\trged.1@...>" read as "frged.1@...")."""
    import re

    from ndr_sweeper.msgid import normalise_message_id

    text = raw.decode("latin-1")
    return any(normalise_message_id(m) == oid for m in re.findall(r"<[^<>]{1,1000}>", text))


def _decoded_in(oid: str, raw: bytes) -> bool:
    """The ID may sit in the input in an encoded form (quoted-printable, base64 part)."""
    import base64
    import quopri

    if oid.encode("ascii", "replace") in quopri.decodestring(raw):
        return True
    for chunk in raw.split(b"\n\n"):
        try:
            if oid.encode("utf-8") in base64.b64decode(b"".join(chunk.split()), validate=False):
                return True
        except Exception:
            continue
    return False


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(
    [
        b"From",
        b"To",
        b"Subject",
        b"Message-ID",
        b"Content-Type",
        b"Content-Transfer-Encoding",
        b"Return-Path",
        b"Auto-Submitted",
        b"X-Failed-Recipients",
        b"In-Reply-To",
        b"References",
        b"Original-Message-ID",
        b"MIME-Version",
    ]
)
JUNK = st.binary(max_size=200)
TEXTISH = st.one_of(
    JUNK,
    st.sampled_from(
        [
            b"<a@b>",
            b"MAILER-DAEMON@x",
            b"<>",
            b"multipart/report; report-type=delivery-status; boundary=b",
            b'multipart/mixed; boundary="',
            b"message/rfc822",
            b"text/plain; charset=x-unknown-\xff",
            b"=?utf-8?B?////?=",
            b"=?x-bogus?Q?=ZZ?=",
            b"base64",
            b"quoted-printable",
            b"\x00\x00",
            b"{5}\r\nA1 LOGOUT",
        ]
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, TEXTISH), max_size=12))
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    body = draw(
        st.one_of(
            JUNK,
            st.sampled_from(
                [
                    b"--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n",
                    b"--b\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <x@y>\r\n\r\n",
                    b"--b\r\n\r\n--b--",
                    b"--\r\n",
                ]
            ),
        )
    )
    sep = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b""]))
    return head + sep + body


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(messages())
def test_random_header_soup(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.data())
def test_truncated_and_mutated_real_bounce(data: st.DataObject) -> None:
    raw = SAMPLE
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytearray(raw[:cut])
    for _ in range(data.draw(st.integers(0, 5))):
        if mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
    check(bytes(mutated))


def _report(parts: bytes, boundary: bytes = b"b") -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example.net\r\nReturn-Path: <>\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary="
        + boundary
        + b"\r\n\r\n"
        + parts
    )


def test_ten_thousand_parts() -> None:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nUser unknown\r\n"
    check(_report(part * 10_000 + b"--b--\r\n"))


def test_nested_a_thousand_deep() -> None:
    inner = b"Message-ID: <deep@x>\r\n\r\nhello\r\n"
    for i in range(1000):
        b = f"n{i}".encode()
        inner = (
            b"Content-Type: multipart/mixed; boundary="
            + b
            + b"\r\n\r\n--"
            + b
            + b"\r\n"
            + inner
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    check(_report(b"--b\r\n" + inner + b"--b--\r\n"))


def test_rfc822_nested_a_thousand_deep() -> None:
    inner = b"Message-ID: <deep@x>\r\n\r\nhello\r\n"
    for _ in range(1000):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    check(_report(b"--b\r\n" + inner + b"--b--\r\n"))


def test_header_of_one_megabyte() -> None:
    big = b"X-Filler: " + b"a" * (1024 * 1024) + b"\r\n"
    folded = b"Subject: " + b"x \r\n " * (200 * 1024) + b"\r\n"
    raw = bounces.dsn(bounces.new_id("forged"))
    check(big + raw)
    check(folded + raw)
    check(b"Message-ID: <" + b"m" * (1024 * 1024) + b">\r\n" + raw)


def test_invalid_encodings_and_charsets() -> None:
    raw = bounces.dsn(bounces.new_id("forged"))
    for bad in (
        b"Content-Type: text/plain; charset=utf-7\r\nContent-Transfer-Encoding: base64\r\n",
        b"Content-Type: text/plain; charset=\xff\xfe\r\nContent-Transfer-Encoding: x-uuencode\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    ):
        check(raw.replace(b"Content-Type: text/plain; charset=us-ascii\r\n", bad))
    check(raw.replace(b"5.1.1", b"\xc3\x28\xa0\xa1\xf0\x28\x8c\xbc"))
    check(b"Subject: =?utf-8?B?" + b"!" * 5000 + b"?=\r\n" + raw)


def test_nul_bytes() -> None:
    raw = bounces.dsn(bounces.new_id("forged"))
    check(raw.replace(b"\r\n", b"\x00\r\n"))
    check(b"\x00" * 100_000)
    check(raw.replace(b"Message-ID: <", b"Message-ID: <\x00"))


@pytest.mark.slow
def test_fifty_megabyte_attachment() -> None:
    raw = bounces.dsn(bounces.new_id("forged"))
    blob = b"QUJD" * (50 * 1024 * 1024 // 4)
    attach = (
        b"--B.x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"\r\n"
    )
    check(raw.replace(b"--B.", attach.replace(b"B.x", b"B.") + b"--B.", 1), bound=10.0)


# ---------------------------------------------------------------- crafted bounces


def test_forged_bounce_quoting_a_sent_id_is_not_backscatter() -> None:
    """A bounce that quotes one of the user's real Message-IDs names that ID as its original:
    the sweep then finds it in Sent and keeps the message (the safe side)."""
    sent_id = bounces.new_id()
    verdict = check(bounces.dsn(sent_id))
    assert verdict.is_ndr and sent_id in verdict.all_original_ids()


def test_ids_with_imap_syntax_are_reported_as_they_are() -> None:
    """Literal markers and CRLF-like content in IDs do not break out of the verdict."""
    raw = bounces.dsn('o{5}"x@y', bounce_id="b{7}@z")
    verdict = check(raw)
    for oid in verdict.all_original_ids():
        assert "\r" not in oid and "\n" not in oid
    assert verdict.message_id is None or ("\r" not in verdict.message_id)


# Found by test_truncated_and_mutated_real_bounce: a truncated bounce whose own Message-ID
# header holds one byte that is not UTF-8 was reported as an NDR with the original ID "\ufffd",
# an ID that does not occur in the input (the replacement character of the decoder).
TRUNCATED_WITH_BAD_BYTE = (
    b"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
    b"To: me@example.org\r\x00Subject: Undelivered Mail Returned to Sender\r\n"
    b"Date: Fri, 20 Nov 2026 09:31:00 +0000\r\nMessage-ID:\x80"
)


def test_undecodable_byte_is_not_an_original_id() -> None:
    verdict = classify(TRUNCATED_WITH_BAD_BYTE)
    assert not verdict.is_ndr or all("\ufffd" not in i for i in verdict.all_original_ids())
