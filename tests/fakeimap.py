"""A scriptable fake IMAP server for tests: asyncio, standard library only, loopback, plain TCP.

Well-behaved by default: enough of IMAP4rev1 plus MOVE, UIDPLUS, CONDSTORE, SPECIAL-USE, IDLE,
NAMESPACE, ENABLE and LITERAL+ for a whole ``ndr-sweeper sweep``, a re-run and ``undo``.  Each
of those capabilities can be switched off, and LOGINDISABLED switched on; the folder layout
(names, SPECIAL-USE attributes, delimiter, personal namespace prefix) and PERMANENTFLAGS (with or
without ``\\*``) are parameters.

    with FakeImapServer(capabilities=NO_MOVE) as server:
        server.add("INBOX", raw_message)
        server.on("MOVE", nth=2).cut_after()        # carry out the 2nd MOVE, then drop the line
        server.on("COPY").rewrite(lambda r: r.replace(b"COPYUID", b"X"))
        server.on("IDLE").send(repeat(b"* 1 EXISTS\\r\\n"))   # an endless flood once idling
        server.on("GREETING").trickle(1)            # the greeting at 1 byte/s
        ...                                          # connect to server.host, server.port
        assert "LOGIN" not in server.names()         # what the sessions sent (the transcript)

Misbehaviour is scripted with rules (:meth:`FakeImapServer.on`): a rule matches commands by name
("FETCH" matches ``UID FETCH`` too; "GREETING" is the greeting), by the *nth* such command
since the server started, and by a predicate on the parsed :class:`Command`; it fires *times*
times (default once; ``None``: always).  What it does is chained on it:

- ``.before(fn)``: ``fn(server)`` runs before the command is carried out (another client);
- ``.cut_before()`` / ``.cut_after()``: close the connection without carrying it out / after
  carrying it out, with no answer either way;
- ``.answer_no(text, do=True)``: carry it out (or not) and answer ``NO``;
- ``.fake_ok()``: answer ``OK`` without carrying it out;
- ``.rewrite(fn)``: ``fn(wire_bytes) -> wire_bytes`` over the whole answer (untagged lines,
  literals and the tagged line);
- ``.send(data)`` / ``.send_instead(data)``: raw bytes (bytes, or an iterable of chunks, which
  may be endless) sent before the answer / in place of it (the command is still carried out);
  for IDLE they follow the ``+`` continuation;
- ``.trickle(rate)``: everything this answer sends goes out at *rate* bytes per second;
- ``.hang()``: send nothing more and never read again (the connection stays open).

Hostile data is served as given: a folder name is sent on the wire as its UTF-8 bytes, with
``surrogateescape`` (so ``"\\udcff"`` serves the byte 0xff, and ``"&A-"``, invalid modified
UTF-7, goes out as it is); a message added with ``wire_date=...`` answers FETCH INTERNALDATE
with that text instead of its date (``add("INBOX", raw, wire_date="garbage")``).

Everything is held in memory; tests read and change it with :meth:`add`, :meth:`messages`,
:meth:`folder`.  The server thread holds ``server.lock`` while it carries out a command, so
the same calls are safe from the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

DEFAULT_CAPABILITIES = frozenset(
    {
        "IMAP4rev1",
        "LITERAL+",
        "AUTH=PLAIN",
        "MOVE",
        "UIDPLUS",
        "CONDSTORE",
        "SPECIAL-USE",
        "IDLE",
        "NAMESPACE",
        "ENABLE",
    }
)
NO_MOVE = DEFAULT_CAPABILITIES - {"MOVE"}  # COPY + \Deleted + UID EXPUNGE
NO_MOVE_NO_UIDPLUS = DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"}  # COPY + EXPUNGE only
DEFAULT_FOLDERS: dict[str, tuple[str, ...]] = {
    "INBOX": (),
    "Drafts": ("\\Drafts",),
    "Sent": ("\\Sent",),
    "Junk": ("\\Junk",),
    "Trash": ("\\Trash",),
    "Archive": ("\\Archive",),
}
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_PREAUTH_ONLY = ("AUTH=", "LOGINDISABLED", "STARTTLS")
_uidvalidity = itertools.count(1_600_000_000)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------------- the mailbox
@dataclass
class Message:
    uid: int
    data: bytes
    flags: set[str]
    internaldate: datetime
    modseq: int = 1
    wire_date: str | None = None  # sent as INTERNALDATE instead of internaldate (garbage)

    @property
    def header(self) -> bytes:
        return split_message(self.data)[0]

    @property
    def message_id(self) -> str | None:
        m = re.search(rb"(?im)^Message-ID:\s*<?([^>\s]*)>?", self.header)
        return m.group(1).decode("ascii", "replace") if m else None


@dataclass
class Folder:
    name: str
    attrs: tuple[str, ...] = ()
    uidvalidity: int = field(default_factory=lambda: next(_uidvalidity))
    uidnext: int = 1
    highestmodseq: int = 1
    messages: list[Message] = field(default_factory=list)

    def add(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        date: datetime | None = None,
        wire_date: str | None = None,
    ) -> int:
        self.highestmodseq += 1
        msg = Message(
            self.uidnext,
            data,
            set(flags),
            date or datetime.now(UTC).replace(microsecond=0),
            self.highestmodseq,
            wire_date,
        )
        self.uidnext += 1
        self.messages.append(msg)
        return msg.uid

    def touch(self, msg: Message) -> None:
        self.highestmodseq += 1
        msg.modseq = self.highestmodseq


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return data[: i + len(sep)], data[i + len(sep) :]
    return data, b""


def header_fields(header: bytes, names: Iterable[str], *, exclude: bool = False) -> bytes:
    """The header lines (with their continuations) of the fields *names*, then a blank line."""
    wanted = {n.lower() for n in names}
    out: list[bytes] = []
    keep = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = (name in wanted) != exclude
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


def _field_values(header: bytes, name: str) -> list[bytes]:
    values: list[bytes] = []
    current: bytes | None = None
    for line in header.splitlines():
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current += b" " + line.strip()
            continue
        if current is not None:
            values.append(current)
            current = None
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name.lower().encode():
            current = value.strip()
    if current is not None:
        values.append(current)
    return values


# ---------------------------------------------------------------------- parsing commands
class Atom(str):
    """An unquoted token (a string or literal arrives as bytes)."""


class ParseError(ValueError):
    pass


@dataclass
class Command:
    """One command a client sent.  ``name`` is upper-case with ``UID `` in front when used;
    ``verb`` is the name without it.  ``args`` are parsed: Atom, bytes (string or literal),
    list (parenthesised)."""

    tag: str
    name: str
    args: list[Any]
    raw: bytes  # the whole command as received, literals included
    session: int  # which connection (0, 1, ...)

    @property
    def verb(self) -> str:
        return self.name[4:] if self.name.startswith("UID ") else self.name

    @property
    def uid(self) -> bool:
        return self.name.startswith("UID ")

    def arg_text(self) -> str:
        """The arguments as text, for predicates (literals included, decoded leniently)."""
        return self.raw.decode("utf-8", "replace").split(" ", 2 + self.uid)[-1]


_LITERAL_END = re.compile(rb"~?\{(\d+)(\+?)\}$")


def tokenize(segments: list[bytes | bytearray]) -> list[Any]:
    """Parse command arguments.  *segments*: text, then (after each text ending in a literal
    announcement) the literal's bytes, then text again."""
    stack: list[list[Any]] = [[]]
    si = 0
    text = bytes(segments[0]) if segments else b""
    pos = 0
    while True:
        if pos >= len(text):
            break
        c = text[pos : pos + 1]
        if c == b" ":
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            if len(stack) < 2:
                raise ParseError("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
            pos += 1
        elif c == b'"':
            out = bytearray()
            pos += 1
            while pos < len(text) and text[pos : pos + 1] != b'"':
                if text[pos : pos + 1] == b"\\":
                    pos += 1
                out += text[pos : pos + 1]
                pos += 1
            if pos >= len(text):
                raise ParseError("unterminated quoted string")
            pos += 1
            stack[-1].append(bytes(out))
        elif _LITERAL_END.match(text, pos):
            if si + 1 >= len(segments):
                raise ParseError("literal missing")
            stack[-1].append(bytes(segments[si + 1]))
            si += 2
            text = bytes(segments[si]) if si < len(segments) else b""
            pos = 0
        else:
            start = pos
            depth = 0
            while pos < len(text):
                ch = text[pos : pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")"):
                    break
                pos += 1
            stack[-1].append(Atom(text[start:pos].decode("utf-8", "replace")))
    if len(stack) != 1:
        raise ParseError("unbalanced (")
    return stack[0]


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _name(value: Any) -> str:
    """A folder name argument: its bytes kept (invalid UTF-8 as surrogates, see the module doc)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def parse_set(text: str, largest: int) -> list[tuple[int, int]]:
    """A sequence set as (lo, hi) ranges; ``*`` is *largest*."""
    out = []
    for part in text.split(","):
        lo_s, _, hi_s = part.partition(":")
        lo = largest if lo_s == "*" else int(lo_s)
        hi = lo if not hi_s else (largest if hi_s == "*" else int(hi_s))
        out.append((min(lo, hi), max(lo, hi)))
    return out


def in_set(n: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= n <= hi for lo, hi in ranges)


def uid_set(uids: Iterable[int]) -> str:
    """[1, 2, 3, 7] -> "1:3,7" in the order given (consecutive ascending runs merged)."""
    parts: list[list[int]] = []
    for u in uids:
        if parts and u == parts[-1][1] + 1:
            parts[-1][1] = u
        else:
            parts.append([u, u])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in parts)


def quote(text: str | bytes) -> bytes:
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if any(b > 126 or b in (0, 10, 13) for b in raw):
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def imap_date(d: datetime) -> str:
    months = _MONTHS
    off = d.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{d.day:2d}-{months[d.month - 1]}-{d.year:04d} {d.hour:02d}:{d.minute:02d}:"
        f"{d.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_imap_date(text: str) -> datetime:
    m = re.match(r"\s*(\d+)-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", text)
    if not m:
        raise ParseError(f"bad date-time {text!r}")
    months = [m.lower() for m in _MONTHS]
    off = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    tz = timezone(-off if m.group(7) == "-" else off)
    return datetime(
        int(m.group(3)),
        months.index(m.group(2).lower()) + 1,
        int(m.group(1)),
        int(m.group(4)),
        int(m.group(5)),
        int(m.group(6)),
        tzinfo=tz,
    )


# ---------------------------------------------------------------------- scripting
def repeat(chunk: bytes, total: int | None = None) -> Iterator[bytes]:
    """*chunk* again and again (*total* bytes at most; endless when None)."""
    sent = 0
    while total is None or sent < total:
        piece = chunk if total is None else chunk[: total - sent]
        sent += len(piece)
        yield piece


def huge_literal(fetch_prefix: bytes, announced: int, actual: int | None = None) -> Iterator[bytes]:
    """An untagged FETCH announcing an *announced*-byte literal, then *actual* bytes of it
    (all of them when None)."""
    yield fetch_prefix + b" {%d}\r\n" % announced
    yield from repeat(b"x" * 65536, announced if actual is None else actual)


@dataclass
class Rule:
    """What to do with matching commands; build it with :meth:`FakeImapServer.on`."""

    command: str | None = None
    nth: int | None = None
    match: Callable[[Command], bool] | None = None
    times: int | None = 1
    seen: int = 0  # matching commands so far (for nth)
    fired: int = 0
    action: str = "do"  # do, skip-ok, no, no-skip, cut-before, cut-after, hang
    no_text: str = "refused by the test"
    callback: Callable[[FakeImapServer], None] | None = None
    rewriter: Callable[[bytes], bytes] | None = None
    prefix: bytes | Iterable[bytes] | None = None
    replace: bytes | Iterable[bytes] | None = None
    rate: float | None = None

    def matches(self, cmd: Command) -> bool:
        if self.command is not None:
            want = self.command.upper()
            if want not in (cmd.name, cmd.verb):
                return False
        if self.match is not None and not self.match(cmd):
            return False
        self.seen += 1
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    # the chainable actions
    def before(self, fn: Callable[[FakeImapServer], None]) -> Rule:
        self.callback = fn
        return self

    def cut_before(self) -> Rule:
        self.action = "cut-before"
        return self

    def cut_after(self) -> Rule:
        self.action = "cut-after"
        return self

    def answer_no(self, text: str = "refused by the test", *, do: bool = True) -> Rule:
        self.action, self.no_text = ("no" if do else "no-skip"), text
        return self

    def fake_ok(self) -> Rule:
        self.action = "skip-ok"
        return self

    def hang(self) -> Rule:
        self.action = "hang"
        return self

    def rewrite(self, fn: Callable[[bytes], bytes]) -> Rule:
        self.rewriter = fn
        return self

    def send(self, data: bytes | Iterable[bytes]) -> Rule:
        self.prefix = data
        return self

    def send_instead(self, data: bytes | Iterable[bytes]) -> Rule:
        self.replace = data
        return self

    def trickle(self, rate: float) -> Rule:
        self.rate = rate
        return self


class _Cut(Exception):
    """Close this connection now."""


class _Hang(Exception):
    """Keep the connection open and silent."""


# ---------------------------------------------------------------------- the server
class FakeImapServer:
    """See the module doc.  ``user``/``password`` are what LOGIN and AUTHENTICATE accept."""

    def __init__(
        self,
        *,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        folders: dict[str, tuple[str, ...]] | None = None,
        delimiter: str = "/",
        prefix: str = "",
        permanent_keywords: bool = True,
        user: str = "user",
        password: str = "secret",
        greeting: bytes = b"* OK fake IMAP ready\r\n",
    ) -> None:
        caps = sorted(set(capabilities), key=lambda c: (c.upper() != "IMAP4REV1", c))
        self.capabilities = caps
        self.delimiter = delimiter
        self.prefix = prefix
        self.permanent_keywords = permanent_keywords
        self.user, self.password = user, password
        self.greeting = greeting
        self.lock = threading.RLock()
        self.folders: dict[str, Folder] = {}
        for name, attrs in (folders if folders is not None else DEFAULT_FOLDERS).items():
            full = name if name.upper() == "INBOX" else prefix + name
            self.folders[full] = Folder(full, tuple(attrs))
        self.rules: list[Rule] = []
        self.commands: list[Command] = []  # everything every session sent, in order
        self.sessions = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> FakeImapServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                self._server = await asyncio.start_server(
                    self._session, self.host, 0, limit=64 * 1024 * 1024
                )
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fakeimap", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake IMAP server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> FakeImapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- test helpers
    def on(
        self,
        command: str | None = None,
        *,
        nth: int | None = None,
        match: Callable[[Command], bool] | None = None,
        times: int | None = 1,
    ) -> Rule:
        """A rule for matching commands (see the module doc); rules are tried in order and the
        first that matches is used."""
        rule = Rule(command=command, nth=nth, match=match, times=times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def names(self) -> list[str]:
        """The names of every command received so far (e.g. "LOGIN", "UID FETCH")."""
        with self.lock:
            return [c.name for c in self.commands]

    def received(self, name: str) -> list[Command]:
        """Commands whose name (or name without UID) is *name*."""
        want = name.upper()
        with self.lock:
            return [c for c in self.commands if want in (c.name, c.verb)]

    def folder(self, name: str) -> Folder:
        with self.lock:
            return self.folders[self._resolve(name)]

    def add(
        self,
        folder: str,
        data: bytes,
        flags: Iterable[str] = (),
        date: datetime | None = None,
        *,
        wire_date: str | None = None,
    ) -> int:
        """Deliver a message (as another client or the MTA would); returns its UID.
        *wire_date*: what FETCH INTERNALDATE answers for it instead of *date* (any text)."""
        with self.lock:
            return self.folders[self._resolve(folder)].add(data, flags, date, wire_date)

    def messages(self, folder: str) -> list[Message]:
        """A snapshot of the folder's messages, in UID order."""
        with self.lock:
            return [
                Message(m.uid, m.data, set(m.flags), m.internaldate, m.modseq, m.wire_date)
                for m in self.folders[self._resolve(folder)].messages
            ]

    def create(self, name: str, attrs: Iterable[str] = ()) -> Folder:
        with self.lock:
            f = self.folders[name] = Folder(name, tuple(attrs))
            return f

    def _resolve(self, name: str) -> str:
        if name.upper() == "INBOX":
            return next((k for k in self.folders if k.upper() == "INBOX"), "INBOX")
        return name

    # -------------------------------------------------------------- the connection
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self.lock:
            number = self.sessions
            self.sessions += 1
        s = _Session(self, number, reader, writer)
        try:
            await s.run()
        except (_Cut, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except _Hang:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    def _rule_for(self, cmd: Command) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(cmd):
                    return rule
        return None


class _Session:
    """One client connection."""

    def __init__(
        self,
        server: FakeImapServer,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.number = number
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.selected: Folder | None = None
        self.readonly = False
        self.known_exists = 0
        self.condstore = False

    # ---------------------------------------------------------------- wire
    async def write(self, data: bytes | Iterable[bytes], rate: float | None = None) -> None:
        chunks: Iterable[bytes] = [data] if isinstance(data, bytes | bytearray) else data
        for chunk in chunks:
            if rate is None:
                self.writer.write(chunk)
                await self.writer.drain()
                continue
            step = max(1, int(rate / 10)) if rate >= 10 else 1
            for i in range(0, len(chunk), step):
                self.writer.write(chunk[i : i + step])
                await self.writer.drain()
                await asyncio.sleep(step / rate)

    async def read_command(self) -> tuple[list[bytes], bytes] | None:
        """(segments, raw) of the next command; None at EOF."""
        segments: list[bytes] = []
        raw = bytearray()
        while True:
            line = await self.reader.readline()
            if not line:
                return None
            raw += line
            text = line.rstrip(b"\r\n")
            m = _LITERAL_END.search(text)
            segments.append(text)
            if not m:
                return segments, bytes(raw)
            size = int(m.group(1))
            if not m.group(2):
                await self.write(b"+ go ahead\r\n")
            literal = await self.reader.readexactly(size)
            raw += literal
            segments.append(literal)

    def caps(self) -> list[str]:
        caps = self.server.capabilities
        if self.authenticated:
            return [c for c in caps if not c.upper().startswith(_PREAUTH_ONLY)]
        return list(caps)

    def has(self, cap: str) -> bool:
        return cap.upper() in {c.upper() for c in self.server.capabilities}

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        greet = Command("*", "GREETING", [], b"", self.number)
        rule = self.server._rule_for(greet)
        out = self.server.greeting
        await self._answer(rule, lambda: out, greet)
        while True:
            got = await self.read_command()
            if got is None:
                return
            segments, raw = got
            first = segments[0]
            tag, _, rest = first.partition(b" ")
            name, _, args_text = rest.partition(b" ")
            name_s = name.decode("ascii", "replace").upper()
            if name_s == "UID":
                sub, _, args_text = args_text.partition(b" ")
                name_s = "UID " + sub.decode("ascii", "replace").upper()
            segs = [args_text, *segments[1:]]
            try:
                args = tokenize(segs)
            except ParseError as exc:
                await self.write(tag + b" BAD " + str(exc).encode() + b"\r\n")
                continue
            cmd = Command(tag.decode("ascii", "replace"), name_s, args, raw, self.number)
            with self.server.lock:
                self.server.commands.append(cmd)
            rule = self.server._rule_for(cmd)
            if cmd.verb == "IDLE" and (rule is None or rule.action == "do"):
                await self._idle(cmd, rule)
                continue
            if cmd.verb == "AUTHENTICATE" and (rule is None or rule.action == "do"):
                answer = await _authenticate(self, cmd)
                await self._answer(rule, lambda answer=answer: answer, cmd)
                continue
            await self._answer(rule, lambda cmd=cmd: self._execute(cmd), cmd)
            if cmd.name == "LOGOUT":
                raise _Cut

    async def _answer(self, rule: Rule | None, execute: Callable[[], bytes], cmd: Command) -> None:
        """Carry out *cmd* (via *execute*, which returns its whole wire answer) as *rule* says."""
        tag = cmd.tag.encode()
        if rule is not None and rule.callback is not None:
            with self.server.lock:
                rule.callback(self.server)
        action = rule.action if rule is not None else "do"
        rate = rule.rate if rule is not None else None
        if action == "cut-before":
            raise _Cut
        if action == "hang":
            raise _Hang
        if action in ("skip-ok", "no-skip"):
            word = b"OK" if action == "skip-ok" else b"NO " + rule.no_text.encode()  # type: ignore[union-attr]
            answer = tag + b" " + (word if action == "no-skip" else b"OK done") + b"\r\n"
        else:
            with self.server.lock:
                answer = execute()
            if action == "cut-after":
                raise _Cut
            if action == "no":
                assert rule is not None
                answer = _retag(answer, tag, b"NO " + rule.no_text.encode())
        if rule is not None and rule.rewriter is not None:
            answer = rule.rewriter(answer)
        if rule is not None and rule.prefix is not None:
            await self.write(rule.prefix, rate)
        if rule is not None and rule.replace is not None:
            await self.write(rule.replace, rate)
            return
        await self.write(answer, rate)

    async def _idle(self, cmd: Command, rule: Rule | None) -> None:
        if not self.has("IDLE") or not self.authenticated:
            await self.write(cmd.tag.encode() + b" BAD IDLE not available\r\n")
            return
        if rule is not None and rule.callback is not None:
            with self.server.lock:
                rule.callback(self.server)
        rate = rule.rate if rule is not None else None
        await self.write(b"+ idling\r\n", rate)
        if rule is not None and rule.prefix is not None:
            await self.write(rule.prefix, rate)
        line_task = asyncio.ensure_future(self.reader.readline())
        try:
            while True:
                done, _ = await asyncio.wait({line_task}, timeout=0.05)
                if done:
                    line = line_task.result()
                    if not line:
                        raise _Cut
                    with self.server.lock:
                        tail = self._updates()
                    if line.strip().upper() == b"DONE":
                        await self.write(tail + cmd.tag.encode() + b" OK IDLE terminated\r\n")
                    else:
                        await self.write(tail + cmd.tag.encode() + b" BAD expected DONE\r\n")
                    return
                with self.server.lock:
                    news = self._updates()
                if news:
                    await self.write(news, rate)
        finally:
            if not line_task.done():
                line_task.cancel()

    # ---------------------------------------------------------------- commands
    def _updates(self) -> bytes:
        """Untagged EXISTS for messages another client delivered meanwhile."""
        if self.selected is None:
            return b""
        n = len(self.selected.messages)
        if n > self.known_exists:
            self.known_exists = n
            return b"* %d EXISTS\r\n" % n
        self.known_exists = n
        return b""

    def _execute(self, cmd: Command) -> bytes:
        tag = cmd.tag.encode()
        handler = getattr(self, "cmd_" + cmd.name.replace(" ", "_").lower(), None)
        need_auth = cmd.verb not in ("CAPABILITY", "NOOP", "LOGOUT", "LOGIN", "AUTHENTICATE")
        if handler is None:
            return tag + b" BAD unknown command\r\n"
        if need_auth and not self.authenticated:
            return tag + b" BAD log in first\r\n"
        try:
            untagged, status = handler(cmd)
        except ParseError as exc:
            return tag + b" BAD " + str(exc).encode() + b"\r\n"
        except (IndexError, ValueError, TypeError) as exc:
            return tag + b" BAD malformed arguments: " + str(exc).encode()[:200] + b"\r\n"
        if not status.startswith(b"NO") and not status.startswith(b"BAD"):
            untagged += self._updates()
        return untagged + tag + b" " + status + b"\r\n"

    def _folder_arg(self, value: Any) -> Folder | None:
        name = _name(value)
        return self.server.folders.get(self.server._resolve(name))

    # --- any state
    def cmd_capability(self, cmd: Command) -> tuple[bytes, bytes]:
        return b"* CAPABILITY " + " ".join(self.caps()).encode() + b"\r\n", b"OK done"

    def cmd_noop(self, cmd: Command) -> tuple[bytes, bytes]:
        return b"", b"OK done"

    def cmd_check(self, cmd: Command) -> tuple[bytes, bytes]:
        return b"", b"OK done"

    def cmd_logout(self, cmd: Command) -> tuple[bytes, bytes]:
        return b"* BYE logging out\r\n", b"OK done"

    def cmd_login(self, cmd: Command) -> tuple[bytes, bytes]:
        if self.has("LOGINDISABLED"):
            return b"", b"NO [PRIVACYREQUIRED] LOGIN is disabled"
        user, password = _text(cmd.args[0]), _text(cmd.args[1])
        return self._login(user, password)

    def _login(self, user: str, password: str) -> tuple[bytes, bytes]:
        if (user, password) != (self.server.user, self.server.password):
            return b"", b"NO [AUTHENTICATIONFAILED] Authentication failed."
        self.authenticated = True
        return b"", b"OK [CAPABILITY " + " ".join(self.caps()).encode() + b"] Logged in"

    def cmd_enable(self, cmd: Command) -> tuple[bytes, bytes]:
        enabled = [_text(a).upper() for a in cmd.args if self.has(_text(a))]
        if "CONDSTORE" in enabled:
            self.condstore = True
        return b"* ENABLED " + " ".join(enabled).encode() + b"\r\n", b"OK enabled"

    # --- authenticated
    def cmd_namespace(self, cmd: Command) -> tuple[bytes, bytes]:
        if not self.has("NAMESPACE"):
            return b"", b"BAD unknown command"
        d = quote(self.server.delimiter)
        return b"* NAMESPACE ((" + quote(
            self.server.prefix
        ) + b" " + d + b")) NIL NIL\r\n", b"OK Namespace completed"

    def cmd_list(self, cmd: Command) -> tuple[bytes, bytes]:
        args = list(cmd.args)
        if args and isinstance(args[0], list):  # LIST (selection options) ref pattern
            args = args[1:]
        ref, pattern = _name(args[0]), _name(args[1])
        delim = self.server.delimiter
        regex = (
            re.escape(ref + pattern).replace(r"\*", ".*").replace("%", f"[^{re.escape(delim)}]*")
        )
        out = []
        for f in self.server.folders.values():
            if not re.fullmatch(regex, f.name, re.S | (re.I if f.name.upper() == "INBOX" else 0)):
                continue
            attrs = [a for a in f.attrs if self.has("SPECIAL-USE") or a in ("\\Noselect",)]
            children = any(o.name.startswith(f.name + delim) for o in self.server.folders.values())
            attrs.append("\\HasChildren" if children else "\\HasNoChildren")
            out.append(
                b"* LIST ("
                + " ".join(attrs).encode()
                + b") "
                + quote(delim)
                + b" "
                + quote(f.name)
                + b"\r\n"
            )
        return b"".join(out), b"OK List completed"

    def cmd_status(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._folder_arg(cmd.args[0])
        if f is None:
            return b"", b"NO [NONEXISTENT] Mailbox doesn't exist"
        items = []
        for item in cmd.args[1]:
            key = _text(item).upper()
            value = {
                "MESSAGES": len(f.messages),
                "UIDNEXT": f.uidnext,
                "UIDVALIDITY": f.uidvalidity,
                "UNSEEN": sum("\\Seen" not in m.flags for m in f.messages),
                "RECENT": 0,
            }.get(key)
            if key == "HIGHESTMODSEQ" and self.has("CONDSTORE"):
                value = f.highestmodseq
            if value is None:
                return b"", b"BAD unknown STATUS item " + key.encode()
            items.append(f"{key} {value}")
        return (
            b"* STATUS " + quote(f.name) + b" (" + " ".join(items).encode() + b")\r\n",
            b"OK Status completed",
        )

    def _select(self, cmd: Command, readonly: bool) -> tuple[bytes, bytes]:
        self.selected = None
        f = self._folder_arg(cmd.args[0])
        if f is None or "\\Noselect" in f.attrs:
            return b"", b"NO [NONEXISTENT] Mailbox doesn't exist"
        if len(cmd.args) > 1 and "CONDSTORE" in str(cmd.args[1]).upper():
            self.condstore = True
        self.selected, self.readonly = f, readonly
        self.known_exists = len(f.messages)
        perm = [*SYSTEM_FLAGS]
        if self.server.permanent_keywords:
            perm.append("\\*")
        out = [
            b"* FLAGS (" + " ".join(SYSTEM_FLAGS).encode() + b")",
            b"* OK [PERMANENTFLAGS (" + (" ".join(perm) if not readonly else "").encode() + b")]",
            b"* %d EXISTS" % len(f.messages),
            b"* 0 RECENT",
            b"* OK [UIDVALIDITY %d] UIDs valid" % f.uidvalidity,
            b"* OK [UIDNEXT %d] Predicted next UID" % f.uidnext,
        ]
        if self.has("CONDSTORE"):
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest" % f.highestmodseq)
        mode = b"READ-ONLY" if readonly else b"READ-WRITE"
        return b"\r\n".join(out) + b"\r\n", b"OK [" + mode + b"] Select completed"

    def cmd_select(self, cmd: Command) -> tuple[bytes, bytes]:
        return self._select(cmd, False)

    def cmd_examine(self, cmd: Command) -> tuple[bytes, bytes]:
        return self._select(cmd, True)

    def cmd_create(self, cmd: Command) -> tuple[bytes, bytes]:
        name = _name(cmd.args[0]).rstrip(self.server.delimiter)
        if self.server._resolve(name) in self.server.folders:
            return b"", b"NO [ALREADYEXISTS] Mailbox already exists"
        if not name or name.startswith("~"):
            return b"", b"NO [CANNOT] Invalid mailbox name"
        self.server.folders[name] = Folder(name)
        return b"", b"OK Create completed"

    def cmd_append(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._folder_arg(cmd.args[0])
        rest = list(cmd.args[1:])
        data = rest.pop()
        if f is None:
            return b"", b"NO [TRYCREATE] Mailbox doesn't exist"
        flags: list[str] = []
        date = None
        for extra in rest:
            if isinstance(extra, list):
                flags = [_text(x) for x in extra]
            else:
                date = parse_imap_date(_text(extra))
        uid = f.add(bytes(data), self._storable(flags), date)
        if self.has("UIDPLUS"):
            return b"", b"OK [APPENDUID %d %d] Append completed" % (f.uidvalidity, uid)
        return b"", b"OK Append completed"

    def _storable(self, flags: Iterable[str]) -> set[str]:
        out = set()
        for flag in flags:
            system = next((s for s in SYSTEM_FLAGS if s.lower() == flag.lower()), None)
            if system:
                out.add(system)
            elif not flag.startswith("\\") and self.server.permanent_keywords:
                out.add(flag)
        return out

    # --- selected
    def _need_selected(self) -> Folder:
        if self.selected is None:
            raise ParseError("no mailbox selected")
        return self.selected

    def _targets(self, cmd: Command, set_text: str) -> list[tuple[int, Message]]:
        """(sequence number, message) of the set, by UID or by sequence number."""
        f = self._need_selected()
        msgs = f.messages
        if cmd.uid:
            largest = msgs[-1].uid if msgs else 0
            ranges = parse_set(set_text, largest)
            return [(i + 1, m) for i, m in enumerate(msgs) if in_set(m.uid, ranges)]
        ranges = parse_set(set_text, len(msgs))
        return [(i + 1, m) for i, m in enumerate(msgs) if in_set(i + 1, ranges)]

    def cmd_close(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._need_selected()
        if not self.readonly:
            f.messages = [m for m in f.messages if "\\Deleted" not in m.flags]
        self.selected = None
        return b"", b"OK Close completed"

    def cmd_unselect(self, cmd: Command) -> tuple[bytes, bytes]:
        self.selected = None
        return b"", b"OK Unselect completed"

    def _search(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._need_selected()
        keys = list(cmd.args)
        if keys and _text(keys[0]).upper() == "CHARSET":
            keys = keys[2:]
        pred = _SearchParser(keys, cmd.uid, f).parse_all()
        hits = [(m.uid if cmd.uid else i + 1) for i, m in enumerate(f.messages) if pred(i + 1, m)]
        line = b"* SEARCH" + b"".join(b" %d" % n for n in hits) + b"\r\n"
        return line, b"OK Search completed"

    cmd_search = _search
    cmd_uid_search = _search

    def _fetch(self, cmd: Command) -> tuple[bytes, bytes]:
        items = cmd.args[1] if isinstance(cmd.args[1], list) else [cmd.args[1]]
        names = [_text(x).upper() if not isinstance(x, list) else x for x in items]
        flat: list[str] = []
        for n in names:
            if n in ("FAST", "ALL", "FULL"):
                flat += ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
            else:
                flat.append(str(n))
        if cmd.uid and "UID" not in flat:
            flat.insert(0, "UID")
        out = []
        for seq, m in self._targets(cmd, _text(cmd.args[0])):
            parts: list[bytes] = []
            for item in flat:
                parts.append(self._fetch_item(m, item))
            out.append(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
        return b"".join(out), b"OK Fetch completed"

    cmd_fetch = _fetch
    cmd_uid_fetch = _fetch

    def _fetch_item(self, m: Message, item: str) -> bytes:
        if item == "UID":
            return b"UID %d" % m.uid
        if item == "FLAGS":
            return b"FLAGS (" + " ".join(sorted(m.flags)).encode() + b")"
        if item == "INTERNALDATE":
            date = m.wire_date if m.wire_date is not None else imap_date(m.internaldate)
            return b"INTERNALDATE " + quote(date)
        if item == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % len(m.data)
        if item == "MODSEQ":
            return b"MODSEQ (%d)" % m.modseq
        if item in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            header, body = split_message(m.data)
            data = {"RFC822": m.data, "RFC822.HEADER": header, "RFC822.TEXT": body}[item]
            if item != "RFC822.HEADER":
                self._see(m)
            return item.encode() + b" {%d}\r\n" % len(data) + data
        mm = re.fullmatch(r"(BODY|BINARY)(\.PEEK)?\[([^\]]*)\](?:<(\d+)\.(\d+)>)?", item, re.I)
        if not mm:
            raise ParseError(f"unknown FETCH item {item}")
        section = mm.group(3)
        header, body = split_message(m.data)
        sec = section.upper()
        if sec == "":
            data = m.data
        elif sec == "HEADER":
            data = header
        elif sec == "TEXT":
            data = body
        elif sec.startswith("HEADER.FIELDS"):
            fields = re.search(r"\(([^)]*)\)", section)
            names = fields.group(1).split() if fields else []
            data = header_fields(header, names, exclude=sec.startswith("HEADER.FIELDS.NOT"))
        else:
            raise ParseError(f"unsupported section {section}")
        key = f"BODY[{section}]"
        if mm.group(4) is not None:
            start, length = int(mm.group(4)), int(mm.group(5))
            data = data[start : start + length]
            key += f"<{start}>"
        if not mm.group(2):
            self._see(m)
        return key.encode() + b" {%d}\r\n" % len(data) + data

    def _see(self, m: Message) -> None:
        if not self.readonly and "\\Seen" not in m.flags and self.selected is not None:
            m.flags.add("\\Seen")
            self.selected.touch(m)

    def _store(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._need_selected()
        if self.readonly:
            return b"", b"NO [READ-ONLY] Mailbox is read-only"
        args = list(cmd.args)
        set_text = _text(args[0])
        if isinstance(args[1], list):  # (UNCHANGEDSINCE n)
            args.pop(1)
        op = _text(args[1]).upper()
        flags = args[2] if isinstance(args[2], list) else args[2:]
        wanted = self._storable(_text(x) for x in flags)
        out = []
        for seq, m in self._targets(cmd, set_text):
            before = set(m.flags)
            if op.startswith("+"):
                m.flags |= wanted
            elif op.startswith("-"):
                m.flags -= {x for x in m.flags if x.lower() in {w.lower() for w in wanted}}
            else:
                m.flags = set(wanted)
            if m.flags != before:
                f.touch(m)
            if not op.endswith(".SILENT"):
                uid = b"UID %d " % m.uid if cmd.uid else b""
                flags_b = " ".join(sorted(m.flags)).encode()
                out.append(b"* %d FETCH (" % seq + uid + b"FLAGS (" + flags_b + b"))\r\n")
        return b"".join(out), b"OK Store completed"

    cmd_store = _store
    cmd_uid_store = _store

    def _copy_into(self, cmd: Command) -> tuple[Folder | None, list[tuple[int, Message]], bytes]:
        dest = self._folder_arg(cmd.args[1])
        targets = self._targets(cmd, _text(cmd.args[0]))
        if dest is None:
            return None, targets, b""
        src_uids, dst_uids = [], []
        for _seq, m in targets:
            dst_uids.append(dest.add(m.data, m.flags - {"\\Recent"}, m.internaldate, m.wire_date))
            src_uids.append(m.uid)
        code = b""
        if self.has("UIDPLUS") and targets:
            code = b"[COPYUID %d %s %s] " % (
                dest.uidvalidity,
                uid_set(src_uids).encode(),
                uid_set(dst_uids).encode(),
            )
        return dest, targets, code

    def _copy(self, cmd: Command) -> tuple[bytes, bytes]:
        self._need_selected()
        dest, _targets, code = self._copy_into(cmd)
        if dest is None:
            return b"", b"NO [TRYCREATE] Mailbox doesn't exist"
        return b"", b"OK " + code + b"Copy completed"

    cmd_copy = _copy
    cmd_uid_copy = _copy

    def _move(self, cmd: Command) -> tuple[bytes, bytes]:
        if not self.has("MOVE"):
            return b"", b"BAD unknown command"
        f = self._need_selected()
        if self.readonly:
            return b"", b"NO [READ-ONLY] Mailbox is read-only"
        dest, targets, code = self._copy_into(cmd)
        if dest is None:
            return b"", b"NO [TRYCREATE] Mailbox doesn't exist"
        out = [b"* OK " + code + b"Moved\r\n"] if code else []
        out.append(self._expunge(f, {id(m) for _s, m in targets}))
        return b"".join(out), b"OK Move completed"

    cmd_move = _move
    cmd_uid_move = _move

    def _expunge(self, f: Folder, which: set[int]) -> bytes:
        out = []
        for seq in range(len(f.messages), 0, -1):
            if id(f.messages[seq - 1]) in which:
                del f.messages[seq - 1]
                out.append(b"* %d EXPUNGE\r\n" % seq)
        if out:
            f.highestmodseq += 1
        self.known_exists = len(f.messages)
        return b"".join(out)

    def cmd_expunge(self, cmd: Command) -> tuple[bytes, bytes]:
        f = self._need_selected()
        if self.readonly:
            return b"", b"NO [READ-ONLY] Mailbox is read-only"
        gone = {id(m) for m in f.messages if "\\Deleted" in m.flags}
        return self._expunge(f, gone), b"OK Expunge completed"

    def cmd_uid_expunge(self, cmd: Command) -> tuple[bytes, bytes]:
        if not self.has("UIDPLUS"):
            return b"", b"BAD unknown command"
        f = self._need_selected()
        if self.readonly:
            return b"", b"NO [READ-ONLY] Mailbox is read-only"
        targets = self._targets(cmd, _text(cmd.args[0]))
        gone = {id(m) for _s, m in targets if "\\Deleted" in m.flags}
        return self._expunge(f, gone), b"OK Expunge completed"


def _retag(answer: bytes, tag: bytes, status: bytes) -> bytes:
    """*answer* with its tagged line replaced by ``tag status``."""
    marker = b"\r\n" + tag + b" "
    i = answer.rfind(marker)
    head = answer[: i + 2] if i >= 0 else b""
    if i < 0 and not answer.startswith(tag + b" "):
        head = answer
    return head + tag + b" " + status + b"\r\n"


class _SearchParser:
    """SEARCH keys -> a predicate (seq, message) -> bool.  Keys in a row are ANDed."""

    def __init__(self, keys: list[Any], uid: bool, folder: Folder) -> None:
        self.keys = keys
        self.pos = 0
        self.folder = folder

    def parse_all(self) -> Callable[[int, Message], bool]:
        preds = []
        while self.pos < len(self.keys):
            preds.append(self.one())
        return lambda seq, m: all(p(seq, m) for p in preds)

    def _next(self) -> Any:
        if self.pos >= len(self.keys):
            raise ParseError("SEARCH key missing")
        k = self.keys[self.pos]
        self.pos += 1
        return k

    def one(self) -> Callable[[int, Message], bool]:
        k = self._next()
        if isinstance(k, list):
            sub = _SearchParser(k, False, self.folder).parse_all()
            return sub
        key = _text(k).upper()
        flag_keys = {
            "DELETED": "\\Deleted",
            "SEEN": "\\Seen",
            "FLAGGED": "\\Flagged",
            "ANSWERED": "\\Answered",
            "DRAFT": "\\Draft",
        }
        if key == "ALL":
            return lambda seq, m: True
        if key in flag_keys:
            flag = flag_keys[key]
            return lambda seq, m: flag in m.flags
        if key.startswith("UN") and key[2:] in flag_keys:
            flag = flag_keys[key[2:]]
            return lambda seq, m: flag not in m.flags
        if key in ("KEYWORD", "UNKEYWORD"):
            word = _text(self._next()).lower()
            has = key == "KEYWORD"
            return lambda seq, m: any(f.lower() == word for f in m.flags) == has
        if key == "NOT":
            inner = self.one()
            return lambda seq, m: not inner(seq, m)
        if key == "OR":
            a, b = self.one(), self.one()
            return lambda seq, m: a(seq, m) or b(seq, m)
        if key in ("LARGER", "SMALLER"):
            n = int(_text(self._next()))
            if key == "LARGER":
                return lambda seq, m: len(m.data) > n
            return lambda seq, m: len(m.data) < n
        if key == "HEADER":
            name = _text(self._next())
            value = _text(self._next()).lower().encode()
            return lambda seq, m: any(value in v.lower() for v in _field_values(m.header, name))
        if key in ("FROM", "TO", "CC", "SUBJECT"):
            value = _text(self._next()).lower().encode()
            return lambda seq, m: any(
                value in v.lower() for v in _field_values(m.header, key.title())
            )
        if key == "UID":
            set_text = _text(self._next())
            msgs = self.folder.messages
            ranges = parse_set(set_text, msgs[-1].uid if msgs else 0)
            return lambda seq, m: in_set(m.uid, ranges)
        if re.fullmatch(r"[\d*:,]+", key):
            ranges = parse_set(key, len(self.folder.messages))
            return lambda seq, m: in_set(seq, ranges)
        raise ParseError(f"unsupported SEARCH key {key}")


# The AUTHENTICATE exchange needs the connection (the session reads the client's response
# line itself), so it runs before _answer rather than in _execute.
async def _authenticate(session: _Session, cmd: Command) -> bytes:
    import base64

    tag = cmd.tag.encode()
    mech = _text(cmd.args[0]).upper() if cmd.args else ""
    if mech != "PLAIN" or not session.has("AUTH=PLAIN"):
        return tag + b" NO [CANNOT] unsupported mechanism\r\n"
    if len(cmd.args) > 1:
        response = bytes(cmd.args[1]) if not isinstance(cmd.args[1], Atom) else cmd.args[1]
        text = str(response) if isinstance(response, Atom) else response.decode()
    else:
        await session.write(b"+ \r\n")
        line = await session.reader.readline()
        with session.server.lock:
            session.server.commands.append(
                Command(cmd.tag, "AUTHENTICATE-RESPONSE", [], line, session.number)
            )
        text = line.strip().decode("ascii", "replace")
    if text == "*":
        return tag + b" BAD authentication cancelled\r\n"
    try:
        _authz, user, password = base64.b64decode(text).decode("utf-8").split("\0")
    except ValueError:
        return tag + b" BAD bad PLAIN response\r\n"
    with session.server.lock:
        _u, status = session._login(user, password)
    return tag + b" " + status + b"\r\n"


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* until it is true (True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
