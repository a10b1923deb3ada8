"""The classifier against our own hand-written messages in tests/fixtures/messages.

expected.json holds one entry per .eml file: kind, is_ndr, the original's Message-ID
(without angle brackets, null when the report does not carry it) and the recipient
addresses the report names.  Each file is its own test case, so a failure names it.

The fixture checks at the bottom (file list, parsing, IDs present in the bytes) run even
while the classifier is not importable; the classifier checks are skipped then.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "messages"
EXPECTED: list[dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text("utf-8"))
KINDS = {
    "failed",
    "delayed",
    "autoreply",
    "challenge_response",
    "mdn",
    "feedback_report",
    "dmarc_report",
    "tlsrpt_report",
    "delivery_success",
    "virus_notice",
    "not_ndr",
}


def _case(entry: dict[str, Any]) -> Any:
    return pytest.param(entry, id=entry["file"])


CASES = [_case(e) for e in EXPECTED]


@pytest.fixture(scope="module")
def classify() -> Callable[[bytes], Any]:
    try:
        from ndr_sweeper.classify import classify as fn
    except ImportError as exc:  # the classifier is written in parallel
        pytest.skip(f"ndr_sweeper.classify.classify is not importable yet: {exc}")
    if isinstance(fn, types.ModuleType):  # a submodule named classify
        fn = fn.classify
    return fn


def _raw(entry: dict[str, Any]) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


# --------------------------------------------------------------------------- classifier


@pytest.mark.parametrize("entry", CASES)
def test_kind(classify: Callable[[bytes], Any], entry: dict[str, Any]) -> None:
    verdict = classify(_raw(entry))
    assert str(verdict.kind) == entry["kind"], verdict.evidence
    assert verdict.is_ndr is entry["is_ndr"]


@pytest.mark.parametrize("entry", CASES)
def test_original_message_id(classify: Callable[[bytes], Any], entry: dict[str, Any]) -> None:
    verdict = classify(_raw(entry))
    got = verdict.original_message_id
    if entry["is_ndr"]:
        assert got == entry["original_message_id"], verdict.evidence
    else:
        # A look-alike names no undelivered original.  Reports that embed a message
        # (MDN, ARF, success DSN, forwards) may name that one, and no other.
        assert got in (None, entry.get("embedded_message_id")), verdict.evidence


@pytest.mark.parametrize("entry", [c for c in CASES if c.values[0]["recipients"]])
def test_recipients(classify: Callable[[bytes], Any], entry: dict[str, Any]) -> None:
    verdict = classify(_raw(entry))
    got = {r.address.lower() for r in verdict.recipients}
    missing = [a for a in entry["recipients"] if a.lower() not in got]
    assert not missing, f"missing {missing}; classifier found {sorted(got)}"


@pytest.mark.parametrize("entry", [c for c in CASES if c.values[0]["is_ndr"]])
def test_prefilter_passes_every_ndr_fixture(entry: dict[str, Any]) -> None:
    """The sweep fetches only HEADER_FIELDS first: every NDR must pass the prefilter on them."""
    try:
        from ndr_sweeper.classify import may_be_report
    except ImportError as exc:
        pytest.skip(f"ndr_sweeper.classify is not importable yet: {exc}")
    from tests.test_classify_corpus import header_fields_only

    assert may_be_report(header_fields_only(_raw(entry)))


# --------------------------------------------------------------------------- the fixtures themselves


def test_every_file_has_one_entry() -> None:
    files = sorted(p.name for p in FIXTURES.glob("*.eml"))
    listed = [e["file"] for e in EXPECTED]
    assert len(listed) == len(set(listed)), "duplicate entries in expected.json"
    assert files == sorted(listed)


@pytest.mark.parametrize("entry", CASES)
def test_entry_is_consistent(entry: dict[str, Any]) -> None:
    assert entry["kind"] in KINDS
    assert entry["is_ndr"] is (entry["kind"] in ("failed", "delayed"))
    assert isinstance(entry["recipients"], list)
    assert entry["family"]
    if not entry["is_ndr"]:
        assert entry["original_message_id"] is None
        assert not entry["recipients"]
    mid = entry["original_message_id"]
    assert mid is None or ("<" not in mid and ">" not in mid and mid == mid.strip())


def _decoded_texts(raw: bytes) -> bytes:
    """The raw bytes plus every base64 block in them, decoded (for encoded originals)."""
    out = [raw]
    for block in re.findall(rb"(?:^[A-Za-z0-9+/=]{40,}\r?\n)+", raw, re.M):
        try:
            out.append(base64.b64decode(block))
        except binascii.Error:
            pass
    return b"\n".join(out)


@pytest.mark.parametrize("entry", CASES)
def test_fixture_parses_and_carries_the_ids(entry: dict[str, Any]) -> None:
    raw = _raw(entry)
    head = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").lstrip(b"\n")
    msg = email.message_from_bytes(head, policy=email.policy.compat32)
    for name in ("From", "Date", "Subject", "Message-ID", "MIME-Version", "Content-Type"):
        assert msg[name] is not None, f"{entry['file']} has no {name}"
    if entry["is_ndr"]:
        assert msg["Return-Path"].strip() == "<>"
    for key in ("original_message_id", "embedded_message_id"):
        mid = entry.get(key)
        if mid:
            assert mid.encode() in _decoded_texts(raw)
            assert mid not in msg["Message-ID"], "the report's own ID, not the original's"
    text = _decoded_texts(raw).decode("utf-8", "replace")
    for address in entry["recipients"]:
        assert address in text
