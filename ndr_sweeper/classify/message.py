"""A small, bounded MIME reader for the classifier.

It does only what the detectors need and never raises: line endings are
normalised to LF, leading blank lines and an mbox ``From `` line are dropped,
the input is capped, the MIME tree is walked iteratively with limits on the
number of parts and the nesting depth, and anything malformed becomes a
defect string.  Text is held as ``str`` decoded as Latin-1 (lossless), and
re-decoded with the declared charset only when a part's text is asked for.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import Any

from ._rx import Caseless

MAX_INPUT = 2 * 1024 * 1024  # bytes of a message we look at at all
MAX_HEADER = 256 * 1024  # characters of one header block
MAX_HEADER_FIELDS = 2000
MAX_PARTS = 300  # MIME parts walked
MAX_DEPTH = 12  # multipart / message nesting
MAX_TEXT = 512 * 1024  # characters of body text scanned
MAX_PART_BODY = 1024 * 1024  # characters of one part decoded

_CT_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)', re.DOTALL)
_ENC_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_HEADER_LINE = re.compile(r"[!-9;-~]+[ \t]*:")


def _is_field_line(line: str) -> bool:
    """``Name: value`` (name of printable characters, no spaces; may end in blanks)."""
    colon = line.find(":")
    if colon <= 0:
        return False
    name = line[:colon].rstrip(" \t")
    if not name or " " in name or "\t" in name:
        return False
    return name.isascii() and name.isprintable()


def normalise(raw: bytes, defects: list[str]) -> str:
    """Bytes to a Latin-1 str with LF line ends, no leading blank lines, capped."""
    if len(raw) > MAX_INPUT:
        raw = raw[:MAX_INPUT]
        defects.append(f"message truncated to {MAX_INPUT} bytes")
    if b"\r" in raw:
        if b"\r\n" in raw:
            raw = raw.replace(b"\r\n", b"\n")
        if b"\r" in raw:
            raw = raw.replace(b"\r", b"\n")
    text = raw.decode("latin-1")
    stripped = text.lstrip(" \t\n")
    if len(stripped) != len(text) and "\n" in text[: len(text) - len(stripped)]:
        defects.append("blank lines before the header")
    text = stripped
    if text.startswith("From ") or text.startswith(">From "):
        nl = text.find("\n")
        text = text[nl + 1 :] if nl >= 0 else ""
    return text


def split_header(text: str) -> tuple[str, str]:
    """Split at the first empty line (header, body)."""
    idx = text.find("\n\n")
    if idx < 0:
        return text, ""
    return text[: idx + 1], text[idx + 2 :]


_FIELDS_RE = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*([^\n]*(?:\n[ \t]+[^\n]*)*)", re.MULTILINE)
_FIELD_LINE = re.compile(r"[!-9;-~]+[ \t]*:")
_NOT_HEADER_LINE = re.compile(r"\n(?![ \t]+\S|[!-9;-~]+[ \t]*:)")


def parse_header_block(
    block: str, defects: list[str] | None = None, lenient: bool = False
) -> list[tuple[str, str]]:
    """Split a header block into (name, raw value) pairs.

    A raw value may still hold its folded continuation lines and trailing blanks;
    :class:`Headers` unfolds a value (:func:`unfold`) when it is read, so the many
    long fields nobody asks for (Received, DKIM-Signature ...) are never unfolded.
    Stops at the first line that is neither a header field nor a continuation
    (the body started without an empty line); with ``lenient`` such lines are
    skipped instead (returned messages whose folding was damaged in transit).
    """
    if len(block) > MAX_HEADER:
        block = block[:MAX_HEADER]
        if defects is not None:
            defects.append("header block truncated")
    if not lenient:
        block = block[: header_end(block)]
        if defects is not None and block.strip() == "":
            defects.append("no header fields")
    found = _FIELDS_RE.findall(block)
    if len(found) >= MAX_HEADER_FIELDS:
        del found[MAX_HEADER_FIELDS:]
        if defects is not None:
            defects.append("too many header fields")
    return found


def unfold(value: str) -> str:
    """A raw header value as one line: folding undone, blanks collapsed/stripped."""
    return " ".join(value.split()) if "\n" in value else value.rstrip()


def header_bounds(text: str) -> tuple[int, bool]:
    """(index of the body start, whether an empty line separated header and body).

    The header ends at the first empty (or blank) line, which belongs to neither
    part, or at the first line that is not a header field, as the stdlib parser
    does; then the body starts at that line and there is no separator.
    """
    if _FIELD_LINE.match(text) is not None:
        # looking only at line starts (cheaper than matching every field line):
        # the first line that is neither a field nor a continuation ends the block
        bad = _NOT_HEADER_LINE.search(text, 0, MAX_HEADER + 1)
        end = min(len(text), MAX_HEADER + 1) if bad is None else bad.start() + 1
    else:
        end = 0
    if end >= len(text):
        return len(text), False
    nl = text.find("\n", end)
    line = text[end:] if nl < 0 else text[end:nl]
    if not line.strip():
        return (len(text) if nl < 0 else nl + 1), True
    return end, False


def header_end(text: str) -> int:
    """Where the header block of ``text`` ends (index of the body start)."""
    return header_bounds(text)[0]


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; never raises."""
    if "=?" not in value or _ENC_WORD.search(value) is None:
        return value
    value = value[:4000]
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


_CT_CACHE: dict[str, tuple[str, dict[str, str]]] = {}


def content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Parse a Content-Type value into (type/subtype lowercased, params).

    Results are cached by value (the same few values, "text/plain;
    charset=us-ascii", recur in every message); the params dict is shared, so
    callers must not change it.
    """
    if not value:
        return "", {}
    hit = _CT_CACHE.get(value)
    if hit is not None:
        return hit
    semi = value.find(";")
    main = (value if semi < 0 else value[:semi]).strip().lower()
    params: dict[str, str] = {}
    if semi >= 0:
        for name, v in _CT_PARAM.findall(value[semi:]):
            if v.startswith('"'):
                v = v[1:-1] if v.endswith('"') and len(v) > 1 else v[1:]
                v = v.replace('\\"', '"')
            params.setdefault(name.lower(), v)
    if "/" not in main:
        main = main + "/" if main else ""
    if len(value) <= 200 and "oundary" not in value and "OUNDARY" not in value:
        # (a boundary is unique to its message: not worth remembering)
        if len(_CT_CACHE) >= 1024:
            _CT_CACHE.clear()
        _CT_CACHE[value] = (main, params)
    return main, params


class Headers:
    """Header fields of a message or part, case-insensitive look-up.

    ``fields`` holds (name, raw value) pairs as :func:`parse_header_block` gives
    them; every accessor returns unfolded values.  The look-up index is built on
    first use (most parts' headers are never asked).
    """

    __slots__ = ("_decoded", "_index", "fields")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._index: dict[str, list[str]] | None = None
        self._decoded: dict[str, str] | None = None

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, value in self.fields:
            key = name.lower()
            if key in index:
                index[key].append(value)
            else:
                index[key] = [value]
        self._index = index
        return index

    # The index keys are lower-case and the callers ask with lower-case names, so
    # the name is tried as given first (no lower() for each of ~30 look-ups).

    def _values(self, name: str) -> list[str] | None:
        index = self._index
        if index is None:
            index = self._build()
        vals = index.get(name)
        if vals is None and not name.islower():
            vals = index.get(name.lower())
        return vals

    def get(self, name: str, default: str | None = None) -> str | None:
        vals = self._values(name)
        if not vals:
            return default
        v = vals[0]
        return " ".join(v.split()) if "\n" in v else v.rstrip()

    def get_all(self, name: str) -> list[str]:
        vals = self._values(name)
        return [unfold(v) for v in vals] if vals else []

    def get_all_raw(self, name: str, limit: int) -> list[str]:
        """The first ``limit`` values still folded (for callers that collapse
        whitespace themselves: unfolding them first would be done twice)."""
        vals = self._values(name)
        return vals[:limit] if vals else []

    def __contains__(self, name: str) -> bool:
        index = self._index
        if index is None:
            index = self._build()
        return name in index or (not name.islower() and name.lower() in index)

    def names(self) -> list[str]:
        """The lower-cased field names present."""
        index = self._index
        return list(index if index is not None else self._build())

    def text(self, name: str) -> str:
        """The decoded value (RFC 2047) or '', decoded once per field name."""
        decoded = self._decoded
        if decoded is None:
            decoded = self._decoded = {}
        s = decoded.get(name)
        if s is None:
            v = self.get(name)
            s = decoded[name] = decode_words(v) if v else ""
        return s


@dataclass(slots=True)
class Part:
    """One MIME part (or the header of an embedded message).

    ``embedded`` counts how many message/* envelopes enclose the part; 0 is
    the report itself.  ``is_message_head`` marks the pseudo part that holds
    the headers of an embedded message (its ``body`` is that message's body).
    """

    ctype: str
    params: dict[str, str]
    headers: Headers
    body: str
    depth: int
    embedded: int
    is_message_head: bool = False
    parent: Part | None = None
    _text: str | None = None
    _cte: str | None = None

    @property
    def cte(self) -> str:
        cte = self._cte
        if cte is None:
            v = self.headers.get("content-transfer-encoding")
            cte = self._cte = v.strip().lower() if v else ""
        return cte

    def payload_bytes(self, defects: list[str] | None = None) -> bytes:
        """The body with its Content-Transfer-Encoding undone."""
        body = self.body[:MAX_PART_BODY]
        cte = self.cte
        if cte == "base64":
            try:
                return binascii.a2b_base64(_clean_b64(body))
            except (binascii.Error, ValueError):
                if defects is not None:
                    defects.append(f"bad base64 in {self.ctype or 'part'}")
                return body.encode("latin-1", "replace")
        if cte == "quoted-printable":
            try:
                return binascii.a2b_qp(body.encode("latin-1", "replace"))
            except (binascii.Error, ValueError):
                return body.encode("latin-1", "replace")
        return body.encode("latin-1", "replace")

    def decoded(self, defects: list[str] | None = None) -> str:
        """The decoded body as Latin-1 str (bytes 1:1), CTE undone, LF line ends."""
        cte = self.cte
        if cte not in ("base64", "quoted-printable"):
            return self.body[:MAX_PART_BODY]
        data = self.payload_bytes(defects)
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data.decode("latin-1")

    def text(self, defects: list[str] | None = None) -> str:
        """The body decoded with its charset (for reading phrases)."""
        if self._text is None:
            raw = self.decoded(defects).encode("latin-1", "replace")
            charset = self.params.get("charset", "").strip().lower() or "utf-8"
            try:
                txt = raw.decode(charset, "replace")
            except (LookupError, ValueError):
                txt = raw.decode("utf-8", "replace")
            if charset == "utf-8" and raw.find(b"\x1b$", 0, 4096) >= 0:
                try:
                    txt = raw.decode("iso-2022-jp", "replace")
                except (LookupError, ValueError):
                    pass
            self._text = txt
        return self._text


def _clean_b64(body: str) -> bytes:
    data = body.encode("latin-1", "replace")
    data = re.sub(rb"[^A-Za-z0-9+/=]", b"", data)
    rem = len(data.rstrip(b"=")) % 4
    data = data.rstrip(b"=")
    if rem == 1:
        data = data[:-1]
    elif rem:
        data += b"=" * (4 - rem)
    return data


_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/partial"})


@dataclass(slots=True)
class ParsedMessage:
    """A message read by :func:`parse`: top headers now, MIME parts on demand."""

    text: str
    headers: Headers
    body: str
    defects: list[str] = field(default_factory=list)
    ctype: str = ""
    params: dict[str, str] = field(default_factory=dict)
    _parts: list[Part] | None = None
    _body_text: str | None = None
    cache: dict[str, str] = field(default_factory=dict)  # detectors' shared derived text
    memo: dict[str, Any] = field(default_factory=dict)  # other derived values
    _lowered: dict[int, tuple[str, str]] = field(default_factory=dict)

    # ---- top-level header conveniences -------------------------------------------------
    def header(self, name: str) -> str:
        return self.headers.text(name)

    @property
    def subject(self) -> str:
        s = self.cache.get("subject")
        if s is None:
            s = self.cache["subject"] = " ".join(self.headers.text("subject").split())
        return s

    @property
    def from_(self) -> str:
        s = self.cache.get("from")
        if s is None:
            s = self.cache["from"] = self.headers.text("from")
        return s

    def lower_text(self, limit: int = 131072) -> str:
        """body_text()[:limit].lower(), cached (phrase patterns are lower-case)."""
        s = self.cache.get("lower")
        if s is None:
            s = self.cache["lower"] = self.lowered(self.body_text()[:131072])
        if limit >= len(s):
            return s
        key = f"lower:{limit}"  # the prefixes are asked for again (13 MTA formats)
        p = self.cache.get(key)
        if p is None:
            p = self.cache[key] = s[:limit]
        return p

    def lowered(self, text: str) -> str:
        """``text.lower()``, cached per text object: the same body text, report text
        or part text is lowered by several detectors and by the ID extraction."""
        hit = self._lowered.get(id(text))
        if hit is not None and hit[0] is text:
            return hit[1]
        low = text.lower()
        if len(text) > 256:  # short strings are cheaper to lower again than to remember
            self._lowered[id(text)] = (text, low)
        return low

    # ---- MIME ------------------------------------------------------------------------
    @property
    def parts(self) -> list[Part]:
        if self._parts is None:
            self._parts = walk(self, self.defects)
        return self._parts

    @property
    def report_type(self) -> str:
        return self.params.get("report-type", "").strip().lower()

    def body_text(self) -> str:
        """The report's own human-readable text (not the embedded message), capped.

        Text parts outside any embedded message, decoded; when the MIME structure
        gives nothing (or is broken) the raw body is used so phrases are still found.
        """
        if self._body_text is None:
            chunks: list[str] = []
            size = 0
            for p in self.parts:
                if p.embedded or p.is_message_head:
                    continue
                if p.ctype in ("text/plain", "", "text/"):
                    t = p.text(self.defects)
                elif p.ctype == "text/html" and not any(
                    q.ctype == "text/plain" and q.parent is p.parent and not q.embedded
                    for q in self.parts
                ):
                    t = strip_html(p.text(self.defects))
                else:
                    continue
                chunks.append(t)
                size += len(t)
                if size > MAX_TEXT:
                    break
            text = "\n".join(chunks)
            if not text.strip():
                text = self.body
            self._body_text = text[:MAX_TEXT]
        return self._body_text


_TAG = re.compile(r"<[^>]{0,2000}>")
_BR = re.compile(r"<(?:br|/p|/div|/tr|p|div)\b[^>]{0,200}>", re.IGNORECASE)


def strip_html(html: str) -> str:
    import html as html_mod

    html = html[:MAX_TEXT]
    html = re.sub(r"(?is)<(style|script)\b.*?</\1\s*>", " ", html)
    html = _BR.sub("\n", html)
    html = _TAG.sub("", html)
    return html_mod.unescape(html)


def parse(raw: bytes) -> ParsedMessage:
    """Read the top-level header of ``raw``; the MIME body is read lazily."""
    defects: list[str] = []
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        defects.append("input is not bytes")
        raw = str(raw).encode("utf-8", "replace")
    text = normalise(bytes(raw), defects)
    end, separated = header_bounds(text)
    if end > MAX_HEADER:
        defects.append("header block longer than the limit")
    block = text[:end]
    body = text[end:]
    if body and not separated:
        defects.append("missing blank line after the header")
    fields = parse_header_block(block, defects, lenient=True)
    headers = Headers(fields)
    ctype, params = content_type(headers.get("content-type"))
    return ParsedMessage(
        text=text, headers=headers, body=body, defects=defects, ctype=ctype, params=params
    )


def _find_boundary(body: str) -> str | None:
    """Guess a multipart boundary from the body (first ``--token`` line)."""
    for m in re.finditer(r"^--([^\s-][^\n]{0,200}?)[ \t]*$", body[:65536], re.MULTILINE):
        token = m.group(1)
        if token.endswith("--"):
            token = token[:-2]
        if len(token) >= 6:
            return token
    return None


def _delimiters(body: str, boundary: str) -> list[tuple[int, int, bool]]:
    """(line start, line end, is_close) of each ``--boundary`` line."""
    token = "--" + boundary
    out: list[tuple[int, int, bool]] = []
    pos = 0
    n = len(body)
    while len(out) <= MAX_PARTS + 1:
        i = body.find(token, pos)
        if i < 0:
            break
        pos = i + len(token)
        if i and body[i - 1] != "\n":
            continue
        nl = body.find("\n", pos)
        end = n if nl < 0 else nl
        rest = body[pos:end]
        close = rest.startswith("--")
        if (rest[2:] if close else rest).strip(" \t"):
            continue  # a longer token that only starts with this boundary
        out.append((i, end, close))
        if close:
            break
    return out


def _split_multipart(body: str, boundary: str) -> tuple[list[str], bool]:
    """Split a multipart body into its parts. Returns (parts, closed)."""
    pieces: list[str] = []
    start: int | None = None
    closed = False
    for line_start, line_end, close in _delimiters(body, boundary):
        if start is not None:
            end = line_start
            if end > start and body[end - 1] == "\n":
                end -= 1
            pieces.append(body[start:end])
            if len(pieces) > MAX_PARTS:
                break
        if close:
            closed = True
            start = None
            break
        start = line_end + 1
    if start is not None and start <= len(body):
        pieces.append(body[start:])
    return pieces, closed


_REPORTISH = Caseless(
    r"daemon|postmaster|mail ?delivery|mail ?system|mailer|bounce|returned|undeliver|"
    r"deliver|failure|fail|report|notif|admin|gateway|error|warning|delay|reject|"
    r"smtp|mta|mail ?server",
)


def _may_be_report_head(h: Headers) -> bool:
    """Could this embedded message be a report (a nested NDR) rather than mail?"""
    text = " ".join((h.get("content-type") or "", h.get("from") or "", h.get("subject") or ""))
    return _REPORTISH.search(text) is not None


def walk(msg: ParsedMessage, defects: list[str]) -> list[Part]:
    """Flatten the MIME tree of ``msg`` into parts in document order (bounded)."""
    out: list[Part] = []
    root = Part(msg.ctype, msg.params, msg.headers, msg.body, 0, 0)
    # stack of parts still to expand, processed in document order
    stack: list[Part] = [root]
    seen_limit = False
    while stack:
        part = stack.pop()
        out.append(part)
        if len(out) >= MAX_PARTS:
            if not seen_limit:
                defects.append(f"more than {MAX_PARTS} MIME parts; the rest ignored")
                seen_limit = True
            break
        children: list[Part] = []
        if part.is_message_head and not _may_be_report_head(part.headers):
            continue  # a returned ordinary message: its own MIME parts are not needed
        if part.ctype.startswith("multipart/"):
            if part.depth >= MAX_DEPTH:
                defects.append("MIME nesting too deep")
                continue
            boundary = part.params.get("boundary")
            body = part.body
            if part.cte in ("base64", "quoted-printable") and not (
                boundary and "--" + boundary in body[:65536]
            ):
                # RFC 2045 allows no encoding on a multipart; some mailers still declare one
                # (a Coremail bounce says base64 over plain MIME): decode only when the
                # boundary is not already there in the clear
                body = part.decoded(defects)
            pieces: list[str] = []
            if boundary:
                pieces, closed = _split_multipart(body, boundary)
                if not pieces:
                    defects.append("multipart boundary not found")
                elif not closed:
                    defects.append("multipart not closed")
            if not pieces:
                guess = _find_boundary(body)
                if guess and guess != boundary:
                    pieces, _ = _split_multipart(body, guess)
                    if pieces:
                        defects.append("multipart boundary guessed from the body")
            if not pieces:
                # treat the whole body as text so phrases are still found
                children.append(
                    Part(
                        "text/plain",
                        {},
                        Headers([]),
                        body,
                        part.depth + 1,
                        part.embedded,
                        parent=part,
                    )
                )
            for piece in pieces:
                end = header_end(piece)
                fields = parse_header_block(piece[:end], lenient=True)
                sub_body = piece[end:]
                h = Headers(fields)
                ct, params = content_type(h.get("content-type"))
                if not ct:
                    ct = "message/rfc822" if part.ctype == "multipart/digest" else "text/plain"
                children.append(
                    Part(ct, params, h, sub_body, part.depth + 1, part.embedded, parent=part)
                )
        elif part.ctype in _MESSAGE_TYPES:
            if part.depth >= MAX_DEPTH:
                defects.append("message nesting too deep")
                continue
            inner = part.decoded(defects).lstrip("\n")
            head_block, sub_body = split_header(inner)
            fields = parse_header_block(head_block, lenient=True)
            h = Headers(fields)
            ct, params = content_type(h.get("content-type"))
            head = Part(
                ct or "text/plain",
                params,
                h,
                sub_body,
                part.depth + 1,
                part.embedded + 1,
                is_message_head=True,
                parent=part,
            )
            children.append(head)
        stack.extend(reversed(children))
    return out
