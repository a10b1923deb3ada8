"""Find the original message a report is about: its Message-ID(s) and headers.

Sources, best first:

1. an embedded message: ``message/rfc822`` or ``message/global`` (RFC 6533) parts,
   also when the part itself is base64 / quoted-printable encoded;
2. a header-only part: ``text/rfc822-headers`` or ``message/global-headers``;
3. ``Original-Message-ID`` / ``X-Original-Message-ID`` style fields of a
   delivery-status or disposition-notification part (or in the report's text);
4. headers quoted in the report's text, after a separator such as
   "------ This is a copy of the message, including all the headers" or
   "----- Original message -----".

Nested reports (a gateway's NDR wrapping another NDR): the original is the
innermost message that was *sent*; the wrapped report's own Message-ID goes into
``Original.other_message_ids``.  An embedded message that is not itself a report
(a digest, a forward) is never descended into.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from ..msgid import BARE_ID as _BARE_ID
from ..msgid import normalise_message_id as normalise_id
from ._rx import FOLD_EXCEPTIONS, Caseless
from .detectors._base import dsn_records
from .message import (
    MAX_TEXT,
    Headers,
    ParsedMessage,
    Part,
    parse_header_block,
)
from .verdict import Original

_ORIG_ID_FIELD = re.compile(
    r"^[ \t>|]*(?:X-)?Original-Message-ID[ \t]*:[ \t]*(\S[^\n]{0,1000})",
    re.IGNORECASE | re.MULTILINE,
)
# A "Message-ID:" line in quoted text; allows quote prefixes and indentation.
_QUOTED_ID = re.compile(
    r"^[ \t>|]*Message-?ID[ \t]*:[ \t]*(\S[^\n]{0,1000}|\n[ \t]+\S[^\n]{0,1000})",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED_HEAD = re.compile(r"^[ \t>|]*(?:from|to|subject|date)[ \t]*:", re.I | re.M)
_QUOTED_FIELD = re.compile(r"^[ \t>|]*([A-Za-z][A-Za-z0-9-]{0,60})[ \t]*:[ \t]*(.*)$")

REPORT_FROM = Caseless(
    r"mailer[-_ ]?daemon|postmaster|mail ?delivery|mailadmin|mail administrator|"
    r"mail system|mailer|daemon@|bounce|returned mail|"
    r"nobody@|mdaemon|mail ?router|smtp ?gateway",
)
REPORT_SUBJECT = Caseless(
    r"undeliver|undelivered|returned mail|returned to sender|delivery status|"
    r"delivery (?:failure|failed|notification|problem|report)|failure notice|"
    r"mail delivery|non[- ]?delivery|could not be delivered|not delivered|"
    r"delivery has failed|warning: |delayed|nondeliverable|mail system error|"
    r"rejected|unzustellbar|bounce",
)


def _looks_like_report(h: Headers) -> bool:
    ct = (h.get("content-type") or "").lower()
    if "multipart/report" in ct:
        return True
    frm = h.get("from") or ""
    subj = h.text("subject")
    return bool(REPORT_FROM.search(frm)) and bool(REPORT_SUBJECT.search(subj))


def _ancestors(p: Part) -> list[Part]:
    out: list[Part] = []
    q = p.parent
    while q is not None and len(out) < 100:
        out.append(q)
        q = q.parent
    return out


def _is_within(p: Part, container: Part) -> bool:
    return any(a is container for a in _ancestors(p))


_HEADER_PARTS = frozenset(
    {
        "text/rfc822-headers",
        "text/rfc822-header",
        "message/rfc822-headers",
        "message/global-headers",
        "text/global-headers",
    }
)


class _Source:
    __slots__ = ("headers", "kind", "part")

    def __init__(self, headers: Headers, kind: str, part: Part | None) -> None:
        self.headers = headers
        self.kind = kind
        self.part = part


def _structural_sources(msg: ParsedMessage) -> list[_Source]:
    out: list[_Source] = []
    for p in msg.parts:
        if p.is_message_head:
            out.append(_Source(p.headers, p.parent.ctype if p.parent else "message/rfc822", p))
        elif p.ctype in _HEADER_PARTS:
            block = p.decoded(msg.defects).lstrip("\n")
            fields = parse_header_block(block, lenient=True)
            if fields:
                out.append(_Source(Headers(fields), p.ctype, p))
        elif (
            "content-type" not in p.headers
            and "message-id" in p.headers
            and ("from" in p.headers or "to" in p.headers)
            and p.parent is not None
        ):
            # a returned message pasted as a part without a Content-Type
            out.append(_Source(p.headers, "part-headers", p))
    return out


def _choose_structural(
    msg: ParsedMessage, sources: list[_Source], outer_rcpts: set[str]
) -> tuple[_Source | None, list[str]]:
    """The innermost sent message, following only embedded *reports* inward.

    A report about an undeliverable *report* (a double bounce: the embedded
    report was addressed to the recipient the outer report says failed) stops
    there: the embedded report is the message that was not delivered.
    """
    wrapped_ids: list[str] = []
    if not sources:
        return None, wrapped_ids
    # top-level sources: those not inside another source's message
    heads = [s for s in sources if s.part is not None]
    current: _Source | None = None
    for s in heads:
        if s.part is not None and not any(
            o is not s
            and o.part is not None
            and o.part.is_message_head
            and _is_within(s.part, o.part)
            for o in heads
        ):
            current = s
            break
    if current is None:
        current = sources[0]
    for _ in range(20):
        if current.part is None or not current.part.is_message_head:
            break
        if not _looks_like_report(current.headers):
            break
        to = _addr(current.headers.get("to"))
        if to and to in outer_rcpts:
            break
        outer_rcpts = set()
        inner = [
            s
            for s in sources
            if s is not current and s.part is not None and _is_within(s.part, current.part)
        ]
        if not inner:
            # the embedded report may quote its original in text
            quoted = _quoted_source(current.part.text(), skip_first_report=False, msg=msg)
            if quoted is None:
                break
            own = normalise_id(current.headers.get("message-id"))
            if own:
                wrapped_ids.append(own)
            return quoted, wrapped_ids
        own = normalise_id(current.headers.get("message-id"))
        if own:
            wrapped_ids.append(own)
        # prefer the first direct (shallowest) inner source
        current = inner[0]
    return current, wrapped_ids


def _quoted_block(text: str, pos: int) -> Headers:
    """Header-like lines around ``pos`` in quoted text, as Headers.

    Lines are taken one at a time (find/rfind) rather than splitting the up to
    20,000 characters around ``pos``: the block usually ends after a few lines.
    """
    start = text.rfind("\n\n", max(0, pos - 20000), pos)
    start = 0 if start < 0 else start + 2
    # walk back line by line while lines look like header fields; the line that
    # holds pos (from its start up to pos) is not part of the walk
    kept: list[str] = []
    end = text.rfind("\n", start, pos)  # end of the line before the one at pos
    while end >= start and len(kept) <= 200:
        nl = text.rfind("\n", start, end)
        line = text[nl + 1 if nl >= 0 else start : end]
        stripped = line.lstrip(" \t>|")
        if not stripped:
            break
        if _QUOTED_FIELD.match(line):
            kept.append(stripped)
        elif line[:1] in " \t":
            kept.append(" " + stripped)
        else:
            break
        if nl < 0:
            break
        end = nl
    kept.reverse()
    # then forward from pos to the first empty (or quote-only) line
    limit = min(len(text), pos + 20000)
    p = pos
    i = 0
    while True:
        nl = text.find("\n", p, limit)
        line = text[p:limit] if nl < 0 else text[p:nl]
        stripped = line.lstrip(">|")
        if not stripped.strip():
            break
        is_field = _QUOTED_FIELD.match(line) is not None
        if i > 0 and not is_field and line[:1] not in " \t":
            break
        kept.append(stripped.lstrip() if is_field else " " + stripped.strip())
        if i > 200 or nl < 0:
            break
        p = nl + 1
        i += 1
    return Headers(parse_header_block("\n".join(kept)))


def _quoted_ids(text: str, low: str) -> Iterator[re.Match[str]]:
    """``_QUOTED_ID.finditer(text)``, found faster: the candidates are the lines where
    ``low`` (``text.lower()``) has "message-id"/"messageid" after quote marks only,
    and _QUOTED_ID is matched just there.  Used when that is exact: lower() kept
    every position and folds like re's IGNORECASE (see :mod:`._rx`)."""
    if len(low) != len(text) or (not text.isascii() and FOLD_EXCEPTIONS.search(text)):
        yield from _QUOTED_ID.finditer(text)
        return
    done = 0  # end of the previous match: matches do not overlap
    i = low.find("message")
    while i >= 0:
        if low.startswith("-id", i + 7) or low.startswith("id", i + 7):
            start = low.rfind("\n", 0, i) + 1
            if start >= done and not low[start:i].strip(" \t>|"):
                m = _QUOTED_ID.match(text, start)
                if m is not None:
                    yield m
                    done = m.end()
        i = low.find("message", i + 7)


def _quoted_source(
    text: str, skip_first_report: bool = True, msg: ParsedMessage | None = None
) -> _Source | None:
    text = text[:MAX_TEXT]
    low = msg.lowered(text) if msg is not None else text.lower()
    if "message-id" not in low and "messageid" not in low:
        return None
    found: list[_Source] = []
    for m in _quoted_ids(text, low):
        h = _quoted_block(text, m.start())
        if h.get("message-id") is None:
            val = m.group(1).strip()
            h = Headers([*h.fields, ("Message-ID", val)])
        found.append(_Source(h, "quoted-text", None))
        if len(found) >= 6:
            break
    if not found:
        return None
    # a quoted report (a bounce forwarded / wrapped as text) -> prefer what it quotes
    chosen = found[0]
    for s in found[1:]:
        if _looks_like_report(chosen.headers) and normalise_id(
            s.headers.get("message-id")
        ) != normalise_id(chosen.headers.get("message-id")):
            chosen = s
        else:
            break
    return chosen


def why_no_original(msg: ParsedMessage) -> str:
    """Why an NDR names no usable original, in words for ``explain``."""
    sources = _structural_sources(msg)
    own = normalise_id(msg.headers.get("message-id"))
    for p in msg.parts[1:]:
        if own and normalise_id(p.headers.get("message-id")) == own:
            return "the returned copy carries the report's own Message-ID"
    if any(s.part is not None and s.part.is_message_head and not s.headers.fields for s in sources):
        return "the attached message is malformed (no header fields could be read)"
    if sources:
        return "the returned headers carry no Message-ID"
    if any(p.ctype.startswith("message/") and "status" not in p.ctype for p in msg.parts[1:]):
        return "the attached message is malformed"
    if _QUOTED_HEAD.search(msg.body_text()[:MAX_TEXT]):
        return "the quoted headers carry no Message-ID"
    return "none is attached or quoted"


def _malformed_attachment(msg: ParsedMessage, chosen: _Source) -> _Source | None:
    """The returned message's headers where a broken attachment put them.

    A mailer that writes the copied header block straight after the part's own header
    (no blank line; often after an unterminated quoted ``name="...`` parameter) leaves a
    MIME reader an embedded message with no header at all: the copied fields sit in the
    part's header, or only in the raw text.  Found there, it is recorded as a defect."""
    own = normalise_id(msg.headers.get("message-id"))
    part = chosen.part
    holder = part.parent if part is not None and part.is_message_head else None
    if (
        holder is not None
        and holder.parent is not None  # the attachment, not the report itself
        and "message-id" in holder.headers
        and ("from" in holder.headers or "received" in holder.headers)
        and normalise_id(holder.headers.get("message-id")) != own
    ):
        msg.defects.append("the returned message's headers run into its MIME part header")
        return _Source(holder.headers, "malformed", holder)
    q = _quoted_source(msg.body, msg=msg)
    if q is None or normalise_id(q.headers.get("message-id")) in (None, own):
        return None
    msg.defects.append("the returned message's headers found in the raw text")
    return _Source(q.headers, "malformed", None)


def _dsn_original_ids(msg: ParsedMessage) -> list[str]:
    ids: list[str] = []
    for p in msg.parts:
        if p.ctype.startswith("message/") and (
            "delivery-status" in p.ctype
            or "disposition-notification" in p.ctype
            or "feedback-report" in p.ctype
        ):
            body = p.decoded(msg.defects)
            if "original-message-id" not in body.lower():
                continue
            for m in _ORIG_ID_FIELD.finditer(body):
                i = normalise_id(m.group(1))
                if i and i not in ids:
                    ids.append(i)
    return ids


def extract_original(msg: ParsedMessage) -> Original:
    """Everything the report says about the original message (worked out once per message:
    a detector may ask before the verdict is completed)."""
    cached = msg.memo.get("original")
    if isinstance(cached, Original):
        return cached
    found = _extract_original(msg)
    if found.message_id is None and not found.other_message_ids:
        # last resort: the report's own header naming the original (Coremail's
        # X-CM-Original-Message-ID and the like); never preferred to the returned message
        for name in msg.headers.names():
            if name.endswith("original-message-id") and name != "x-ms-exchange-original-message-id":
                ident = normalise_id(msg.headers.get(name))
                if ident and ident != normalise_id(msg.headers.get("message-id")):
                    found = dataclasses.replace(found, message_id=ident)
                    break
    msg.memo["original"] = found
    return found


def _extract_original(msg: ParsedMessage) -> Original:
    structural = _structural_sources(msg)
    outer_rcpts = {_addr(r.get("final-recipient").split(";")[-1]) for r in dsn_records(msg)}
    outer_rcpts.discard("")
    chosen, wrapped = _choose_structural(msg, structural, outer_rcpts)
    other: list[str] = list(wrapped)
    dsn_ids = _dsn_original_ids(msg)
    text = msg.body_text()
    if chosen is not None and normalise_id(chosen.headers.get("message-id")) is None:
        # an embedded message without an ID (e.g. "Message removed"): try other sources
        alt = next((s for s in structural if normalise_id(s.headers.get("message-id"))), None)
        if alt is not None and not dsn_ids:
            chosen = alt
        elif dsn_ids:
            return _build(chosen.headers, dsn_ids[0], [*other, *dsn_ids[1:]])
        else:
            q = _quoted_source(text, msg=msg) or _malformed_attachment(msg, chosen)
            if q is not None:
                return _build(
                    q.headers if q.kind == "malformed" else chosen.headers,
                    normalise_id(q.headers.get("message-id")),
                    other,
                )
    if chosen is None and dsn_ids:
        return _build(None, dsn_ids[0], [*other, *dsn_ids[1:]])
    if chosen is None:
        orig_fields = (
            [normalise_id(m.group(1)) for m in _ORIG_ID_FIELD.finditer(text[:MAX_TEXT])]
            if "original-message-id" in msg.lowered(text[:MAX_TEXT])
            else []
        )
        orig_ids = [i for i in orig_fields if i]
        q = _quoted_source(text, msg=msg)
        if q is None and orig_ids:
            return _build(None, orig_ids[0], orig_ids[1:])
        if q is None and text is not msg.body:
            # the raw body: returned headers in a part the MIME reading did not name
            q = _quoted_source(msg.body, msg=msg)
        if q is None:
            return Original()
        chosen = q
    mid = normalise_id(chosen.headers.get("message-id"))
    for i in dsn_ids:
        if i != mid and i not in other:
            other.append(i)
    return _build(chosen.headers, mid, [i for i in other if i != mid])


def _addr(value: str | None) -> str:
    if not value:
        return ""
    m = _BARE_ID.search(value)
    return m.group(1).strip("<>").lower() if m else ""


def _build(h: Headers | None, mid: str | None, other: list[str]) -> Original:
    if h is None:
        return Original(message_id=mid, other_message_ids=tuple(dict.fromkeys(other)))
    received = tuple(" ".join(r.split())[:300] for r in h.get_all_raw("received", 30))
    return Original(
        message_id=mid,
        other_message_ids=tuple(i for i in dict.fromkeys(other) if i != mid),
        from_=_clean(h.text("from")),
        to=_clean(h.text("to")),
        subject=_clean(h.text("subject")),
        date=_clean(h.text("date")),
        received=received,
    )


def _clean(v: str) -> str | None:
    v = " ".join(v.split())
    return v[:500] if v else None
