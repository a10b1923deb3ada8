"""Watching folders for new mail: every IMAP IDLE connection of the service in one thread.

``watch = true`` keeps one IDLE connection per swept folder. They all live in one selector loop
(``selectors``: epoll or kqueue, no limit on descriptor numbers) in one thread; a few connector
threads log in and EXAMINE the folder with the blocking code every sweep uses
(``Service.open_mailbox``: credentials, TLS or STARTTLS, OAuth2, ``mailbox.guard``) and hand
the socket over. Connecting is bounded: at most ``connectors`` at once and ``connect_rate`` a
second (a token bucket), so 1,000 watchers never start 1,000 logins together, and a server
restart is followed by a steady trickle of reconnects rather than a stampede.

In the loop each connection is a small state machine::

    waiting -> queued -> connecting -> starting (IDLE sent) -> idling -> ending (DONE sent)
                                                      ^---------------------------'

``idling`` is re-issued every ``renew`` seconds (servers drop an IDLE after 30 minutes);
``* n EXISTS`` above the count known calls ``mail_arrived``; ``BYE``, end of file, a refused
IDLE or DONE, or no answer to either within the account's ``timeout`` closes the connection
and it reconnects with the per-folder back-off (first failure a WARNING, the rest of the
series DEBUG; a connection that lasted ``healthy`` seconds starts a new series).

Why selectors rather than asyncio: the login stays the existing, tested blocking code, and
asyncio cannot adopt a socket that is already TLS-wrapped, while a selector reads an
``ssl.SSLSocket`` in non-blocking mode as it is. What runs in the loop (IDLE, DONE, counting
EXISTS) is small enough that a state machine is shorter than coroutines plus the bridging.

Everything the server sends is hostile input (the guard's rule, kept here): a response line
of at most ``MAX_LINE`` bytes, literals skipped (never kept) up to the same size, at most
``READ_BUDGET`` bytes read from one connection per wake-up (a flooding server cannot starve
the others), and at most ``MAX_RESPONSES`` responses or ``MAX_BYTES`` bytes per
``FLOOD_WINDOW``: beyond that the connection is dropped with one warning and reconnected with
the back-off. Nothing a server sends is kept beyond the current line.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from ndr_sweeper.config import format_duration
from ndr_sweeper.errors import AuthenticationError, CredentialError

if TYPE_CHECKING:
    from ndr_sweeper.config import Account

log = logging.getLogger(__name__)

CONNECTORS: Final = 4  # logins in progress at once
CONNECT_RATE: Final = 50.0  # new connections a second, at most ...
CONNECT_BURST: Final = 10.0  # ... after a burst of this many
HEALTHY: Final = 60.0  # a connection that lasted this long ends a series of failures
MAX_LINE: Final = 64 * 1024  # one response line (or literal) during IDLE
READ_BUDGET: Final = 64 * 1024  # bytes read from one connection per wake-up
FLOOD_WINDOW: Final = 60.0  # seconds over which the next two are counted
MAX_RESPONSES: Final = 100_000  # as guard.MAX_RESPONSES: lines per window
MAX_BYTES: Final = 16 * 1024 * 1024  # bytes per window
_CHUNK: Final = 16 * 1024
_POLL: Final = 1.0  # the longest the loop sleeps without a reason

_EXISTS = re.compile(rb"\* (\d{1,10}) EXISTS\r?\n\Z", re.I)
_EXPUNGE = re.compile(rb"\* (\d{1,10}) EXPUNGE\r?\n\Z", re.I)
_BYE = re.compile(rb"\* BYE\b(.*)", re.I | re.S)
_TAGGED = re.compile(rb"(W\d{1,10}) (OK|NO|BAD)\b(.*)", re.I | re.S)
_LITERAL = re.compile(rb"\{(\d{1,10})\+?\}\r?\n\Z")
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Host(Protocol):
    """What the loop needs from the service."""

    reconnect_backoff: tuple[float, float]
    idle_renew: float

    def open_mailbox(self, name: str) -> Any: ...

    def auth_wait(self, name: str) -> float: ...

    def mail_arrived(self, name: str) -> None: ...


class _Flood(Exception):
    """The server overstepped a limit of this module (the message names it)."""


def _show(data: bytes) -> str:
    """Server text for a log line: at most 200 characters, quoted and escaped."""
    return repr(data[:200].decode("utf-8", "replace").strip())


def _drop(mailbox: Any) -> None:
    """Close a mailbox's connection without a word to the server (never blocks, never raises).

    Not imapclient's ``shutdown``: that logs "Connection closed" at INFO, once per watcher."""
    imap = getattr(getattr(mailbox, "client", None), "_imap", None)
    sock = getattr(imap, "sock", None)
    with contextlib.suppress(Exception):
        imap.file.close()  # type: ignore[union-attr]
    if sock is None:
        with contextlib.suppress(Exception):
            mailbox.logout()
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Handoff:
    """A logged-in connection with the folder EXAMINEd, from a connector to the loop."""

    mailbox: Any
    sock: Any
    leftover: bytes  # read from the socket but not yet parsed
    exists: int
    where: str  # host:port, for messages


@dataclass(eq=False)
class _Watch:
    """One watched folder of one account (owned by the loop thread)."""

    account: Account
    folder: str
    delay: float  # the next reconnect wait
    state: str = "waiting"
    failing: bool = False  # in a series of failures: only its first is a warning
    settled: bool = False  # has had a first outcome (for the summary line)
    cancelled: bool = False  # removed; read by connector threads
    mailbox: Any = None
    sock: Any = None
    where: str = ""
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    writing: bool = False  # registered for EVENT_WRITE too
    exists: int = 0
    tag: int = 0
    skip: int = 0  # literal bytes still to drop
    tail: bool = False  # the next line ends a response whose literal was dropped
    announced: bool = False  # "watching ..." said for this connection
    connected_at: float | None = None
    window_start: float = 0.0
    window_lines: int = 0
    window_bytes: int = 0
    timer: int = 0  # generation of the one live timer

    @property
    def name(self) -> str:
        return self.account.name


class WatchLoop:
    """Every watched folder's IDLE connection, in one thread (see the module doc).

    ``add``, ``remove`` and ``stop`` may be called from any thread; everything else runs in
    the loop thread. ``host`` is the service (``open_mailbox``, ``auth_wait``,
    ``mail_arrived``, ``reconnect_backoff``, ``idle_renew``).
    """

    def __init__(
        self,
        host: Host,
        *,
        connectors: int = CONNECTORS,
        connect_rate: float = CONNECT_RATE,
        healthy: float = HEALTHY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._rate = connect_rate
        self._burst = max(1.0, min(CONNECT_BURST, connect_rate))
        self._healthy = healthy
        self._clock = clock
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._closed = False
        # loop-thread state
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._timers: list[tuple[float, int, int, _Watch]] = []
        self._seq = itertools.count()
        self._queued: collections.deque[_Watch] = collections.deque()
        self._ready: set[_Watch] = set()  # TLS connections with decrypted bytes left
        self._inflight = 0
        self._tokens = self._burst
        self._refilled = clock()
        self._unsettled = 0
        self._jobs: queue.SimpleQueue[_Watch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="watch loop", daemon=True)
        self._connectors = [
            threading.Thread(target=self._connector, name=f"watch connect {i + 1}", daemon=True)
            for i in range(connectors)
        ]
        self._started = False

    # ------------------------------------------------------------ any thread

    def start(self) -> WatchLoop:
        if not self._started:
            self._started = True
            self._thread.start()
            for t in self._connectors:
                t.start()
        return self

    def add(self, account: Account, folders: Iterable[str]) -> None:
        """Watch *folders* of *account* (replacing what was watched under the same names)."""
        self._post(("add", account, tuple(folders)))

    def remove(self, name: str, timeout: float = 2.0) -> None:
        """Stop watching every folder of account *name*; returns once its connections are
        closed (or after *timeout*)."""
        done = threading.Event()
        if self._post(("remove", name, done)) and self._thread.is_alive():
            done.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Close every connection and end the threads (connectors in a login finish it first,
        then close it: they are daemon threads and never hold up the exit)."""
        if self._post(("stop",)) and self._thread.is_alive():
            self._thread.join(timeout)
        for _ in self._connectors:
            self._jobs.put(None)
        deadline = time.monotonic() + 0.5
        for t in self._connectors:
            if t.is_alive():
                t.join(max(deadline - time.monotonic(), 0.0))
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._sel.close()
            for s in (self._wake_r, self._wake_w):
                s.close()

    def states(self) -> collections.Counter[str]:
        """How many watched folders are in each state (a snapshot, for logs and tests)."""
        return collections.Counter(w.state for w in list(self._watches.values()))

    @property
    def threads(self) -> list[threading.Thread]:
        return [self._thread, *self._connectors]

    def _post(self, item: tuple[Any, ...]) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._inbox.append(item)
        self._wake()
        return True

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the loop is awake already
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------ connector threads

    def _connector(self) -> None:
        while True:
            w = self._jobs.get()
            if w is None:
                return
            result = self._open(w)
            with self._lock:
                if not self._closed:
                    self._inbox.append(("opened", w, result))
                    posted = True
                else:
                    posted = False
            if posted:
                self._wake()
            elif isinstance(result[1], _Handoff):
                _drop(result[1].mailbox)

    def _open(self, w: _Watch) -> tuple[str, Any]:
        """Log in and EXAMINE: ("ok", _Handoff) / ("auth", exc) / ("noidle", None) /
        ("fail", exc) / ("cancelled", None)."""
        if w.cancelled:
            return "cancelled", None
        try:
            mb = self._host.open_mailbox(w.name)
        except (AuthenticationError, CredentialError) as exc:
            return "auth", exc  # the service backs off and says so
        except Exception as exc:
            return "fail", exc
        try:
            if w.cancelled:
                _drop(mb)
                return "cancelled", None
            if not mb.has("IDLE"):
                mb.logout()
                return "noidle", None
            status = mb.select(w.folder, readonly=True)
            imap = mb.client._imap
            buffered = getattr(imap, "_rbuf", b"")[getattr(imap, "_rpos", 0) :]
            where = f"{getattr(mb, 'host', '?')}:{getattr(mb, 'port', '?')}"
            return "ok", _Handoff(mb, imap.sock, bytes(buffered), int(status.messages), where)
        except Exception as exc:
            with contextlib.suppress(Exception):
                mb.logout()
            return "fail", exc

    # ------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        try:
            while True:
                for key, mask in self._sel.select(self._timeout()):
                    w = key.data
                    if w is None:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    if w.sock is not key.fileobj:
                        continue  # closed by an earlier event of this round
                    self._guarded(w, self._on_event, w, mask)
                for w in list(self._ready):
                    self._ready.discard(w)
                    if w.sock is not None:
                        self._guarded(w, self._read, w)
                if self._handle_inbox():
                    return
                self._fire_timers()
                self._dispatch()
        except Exception:
            log.exception("the IDLE watcher failed: new mail is found by the schedule only")
        finally:
            self._shutdown()

    def _guarded(self, w: _Watch, fn: Callable[..., None], *args: Any) -> None:
        """One connection's bug never ends the loop: it is logged and the connection retried."""
        try:
            fn(*args)
        except Exception:
            log.exception("%s: watching %s failed unexpectedly", w.name, w.folder)
            self._failed(w, "unexpected error")

    def _timeout(self) -> float:
        if self._ready:
            return 0.0
        now = self._clock()
        timeout = _POLL
        if self._timers:
            timeout = min(timeout, self._timers[0][0] - now)
        if self._queued and self._inflight < len(self._connectors) and self._tokens < 1:
            timeout = min(timeout, (1 - self._tokens) / self._rate)
        return max(timeout, 0.0)

    def _handle_inbox(self) -> bool:
        """Commands and connector results; True when asked to stop."""
        while True:
            with self._lock:
                if not self._inbox:
                    return False
                item = self._inbox.popleft()
            kind = item[0]
            if kind == "stop":
                return True
            if kind == "add":
                self._add(item[1], item[2])
            elif kind == "remove":
                for key in [k for k in self._watches if k[0] == item[1]]:
                    self._cancel(self._watches.pop(key))
                item[2].set()
            elif kind == "opened":
                self._inflight -= 1
                w: _Watch = item[1]
                outcome, value = item[2]
                if w.cancelled or self._watches.get((w.name, w.folder)) is not w:
                    if isinstance(value, _Handoff):
                        _drop(value.mailbox)
                    continue
                self._guarded(w, self._opened, w, outcome, value)

    def _add(self, account: Account, folders: tuple[str, ...]) -> None:
        first = self._host.reconnect_backoff[0]
        now = self._clock()
        for folder in folders:
            old = self._watches.pop((account.name, folder), None)
            if old is not None:
                self._cancel(old)
            w = _Watch(account, folder, delay=first)
            self._watches[(account.name, folder)] = w
            self._unsettled += 1
            self._set_timer(w, now)

    def _cancel(self, w: _Watch) -> None:
        w.cancelled = True
        self._close(w, polite=True)
        if not w.settled:
            w.settled = True
            self._unsettled -= 1
        w.state = "removed"

    # --- timers: one live timer per watch; older heap entries are skipped

    def _set_timer(self, w: _Watch, when: float) -> None:
        w.timer += 1
        heapq.heappush(self._timers, (when, next(self._seq), w.timer, w))

    def _fire_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, gen, w = heapq.heappop(self._timers)
            if gen == w.timer and not w.cancelled:
                self._guarded(w, self._on_timer, w, now)

    def _on_timer(self, w: _Watch, now: float) -> None:
        if w.state == "waiting":
            wait = self._host.auth_wait(w.name)
            if wait > 0:  # a refused login: the service says when to try again
                self._set_timer(w, now + wait)
                return
            w.state = "queued"
            self._queued.append(w)
        elif w.state == "idling":  # renew before the server drops it
            self._send(w, b"DONE\r\n")
            if w.sock is not None:
                w.state = "ending"
                self._set_timer(w, now + w.account.timeout)
        elif w.state in ("starting", "ending"):
            what = "IDLE" if w.state == "starting" else "DONE"
            self._failed(w, f"{w.where} did not answer {what} within {w.account.timeout:g} s")

    def _dispatch(self) -> None:
        """Hand queued watches to the connectors, within the concurrency and the rate."""
        if not self._queued:
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        while self._queued and self._inflight < len(self._connectors) and self._tokens >= 1:
            w = self._queued.popleft()
            if w.cancelled:
                continue
            self._tokens -= 1
            self._inflight += 1
            w.state = "connecting"
            self._jobs.put(w)

    # --- a connection's life

    def _opened(self, w: _Watch, outcome: str, value: Any) -> None:
        now = self._clock()
        if outcome == "ok":
            h: _Handoff = value
            w.mailbox, w.sock, w.where, w.exists = h.mailbox, h.sock, h.where, h.exists
            w.connected_at, w.announced = now, False
            w.window_start, w.window_lines, w.window_bytes = now, 0, 0
            w.inbuf[:] = h.leftover
            w.sock.setblocking(False)
            self._sel.register(w.sock, selectors.EVENT_READ, w)
            self._start_idle(w)
            if w.inbuf and w.sock is not None:
                self._parse(w)
        elif outcome == "auth":
            w.state = "waiting"
            self._settle(w)
            self._set_timer(w, now + max(self._host.auth_wait(w.name), 1.0))
        elif outcome == "noidle":
            w.state = "no idle"
            log.warning(
                "%s: the server does not support IDLE: not watching %s (the schedule still "
                "sweeps it)",
                w.name,
                w.folder,
            )
            self._settle(w)
        elif outcome == "fail":
            self._failed(w, str(value) or type(value).__name__)
        else:  # cancelled meanwhile
            w.state = "removed"

    def _start_idle(self, w: _Watch) -> None:
        w.tag += 1
        self._send(w, b"W%d IDLE\r\n" % w.tag)
        if w.sock is not None:
            w.state = "starting"
            self._set_timer(w, self._clock() + w.account.timeout)

    def _on_event(self, w: _Watch, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(w)
        if mask & selectors.EVENT_READ and w.sock is not None:
            self._read(w)

    def _read(self, w: _Watch) -> None:
        budget = READ_BUDGET
        sock = w.sock
        while budget > 0 and w.sock is sock:
            try:
                chunk = sock.recv(min(_CHUNK, budget))
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._failed(w, f"connection to {w.where} lost: {exc.strerror or exc}")
                return
            if not chunk:
                self._failed(w, f"{w.where} closed the connection")
                return
            budget -= len(chunk)
            now = self._clock()
            if now - w.window_start > FLOOD_WINDOW:
                w.window_start, w.window_lines, w.window_bytes = now, 0, 0
            w.window_bytes += len(chunk)
            try:
                if w.window_bytes > MAX_BYTES:
                    raise _Flood(f"sent more than {MAX_BYTES // (1024 * 1024)} MB")
                w.inbuf += chunk
                self._parse(w)
            except _Flood as exc:
                self._failed(w, f"{w.where} {exc} during IDLE within {FLOOD_WINDOW:g} s")
                return
        if w.sock is sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._ready.add(w)  # decrypted bytes the selector cannot see

    def _parse(self, w: _Watch) -> None:
        buf = w.inbuf
        while w.sock is not None:
            if w.skip:
                take = min(w.skip, len(buf))
                del buf[:take]
                w.skip -= take
                if w.skip:
                    return
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    raise _Flood(f"sent a line of more than {MAX_LINE // 1024} KB")
                return
            if end >= MAX_LINE:
                raise _Flood(f"sent a line of more than {MAX_LINE // 1024} KB")
            line = bytes(buf[: end + 1])
            del buf[: end + 1]
            w.window_lines += 1
            if w.window_lines > MAX_RESPONSES:
                raise _Flood(f"sent more than {MAX_RESPONSES} responses")
            tail, lit = w.tail, _LITERAL.search(line)
            w.tail = False
            if lit:
                size = int(lit.group(1))
                if size > MAX_LINE:
                    raise _Flood(f"sent a {size}-byte literal")
                w.skip, w.tail = size, True
            if not tail:
                self._response(w, line)

    def _response(self, w: _Watch, line: bytes) -> None:
        if line.startswith(b"+"):
            if w.state == "starting":
                w.state = "idling"
                self._set_timer(w, self._clock() + self._host.idle_renew)
                if not w.announced:
                    w.announced = True
                    if w.failing:
                        log.info("%s: watching %s again", w.name, w.folder)
                    else:
                        log.info("%s: watching %s for new mail", w.name, w.folder)
                    self._settle(w)
            return
        if line.startswith(b"* "):
            if m := _EXISTS.match(line):
                n = int(m.group(1))
                if n > w.exists:
                    try:
                        self._host.mail_arrived(w.name)
                    except Exception:
                        log.exception("%s: asking for a sweep failed", w.name)
                w.exists = n
            elif _EXPUNGE.match(line):
                w.exists = max(w.exists - 1, 0)
            elif m := _BYE.match(line):
                self._failed(w, f"{w.where} closed the connection: {_show(m.group(1))}")
            return
        m = _TAGGED.match(line)
        if m is None or m.group(1).decode() != f"W{w.tag}":
            return  # not ours, or an old tag: nothing to do
        ok = m.group(2).upper() == b"OK"
        if w.state == "ending" and ok:
            self._start_idle(w)
        elif w.state == "starting" and not ok:
            self._failed(w, f"{w.where} refused IDLE: {_show(m.group(3))}")
        elif w.state == "starting":
            self._failed(w, f"{w.where} ended IDLE at once")
        elif w.state == "ending":
            self._failed(w, f"{w.where} refused DONE: {_show(m.group(3))}")

    def _send(self, w: _Watch, data: bytes) -> None:
        w.outbuf += data
        self._flush(w)

    def _flush(self, w: _Watch) -> None:
        while w.outbuf and w.sock is not None:
            try:
                n = w.sock.send(w.outbuf)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                self._failed(w, f"connection to {w.where} lost: {exc.strerror or exc}")
                return
            del w.outbuf[:n]
        if w.sock is None:
            return
        want = bool(w.outbuf)
        if want != w.writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self._sel.modify(w.sock, events, w)
            w.writing = want

    def _failed(self, w: _Watch, reason: str) -> None:
        """Close, and reconnect after the back-off (not when removed or stopping)."""
        connected_at = w.connected_at
        self._close(w)
        if w.cancelled:
            return
        now = self._clock()
        first, cap = self._host.reconnect_backoff
        if connected_at is not None and now - connected_at >= self._healthy:
            w.delay, w.failing = first, False  # it worked for a while: a new incident
        log.log(
            logging.DEBUG if w.failing else logging.WARNING,
            "%s: watching %s: %s: reconnecting in %s",
            w.name,
            w.folder,
            reason,
            format_duration(w.delay),
        )
        w.failing = True
        w.state = "waiting"
        self._settle(w)
        self._set_timer(w, now + w.delay)
        w.delay = min(w.delay * 2, cap)

    def _settle(self, w: _Watch) -> None:
        if w.settled:
            return
        w.settled = True
        self._unsettled -= 1
        if self._unsettled == 0:
            states = self.states()
            accounts = len({k[0] for k in self._watches})
            extra = []
            if states["waiting"]:
                extra.append(f"{states['waiting']} reconnecting")
            if states["no idle"]:
                extra.append(f"{states['no idle']} without IDLE")
            log.info(
                "watching %d folder(s) of %d account(s) for new mail%s",
                states["idling"] + states["starting"] + states["ending"],
                accounts,
                f" ({', '.join(extra)})" if extra else "",
            )

    def _close(self, w: _Watch, *, polite: bool = False) -> None:
        w.timer += 1  # whatever was due for this connection is off
        self._ready.discard(w)
        sock, mailbox = w.sock, w.mailbox
        w.sock = w.mailbox = None
        w.inbuf.clear()
        w.outbuf.clear()
        w.skip, w.tail, w.writing, w.connected_at = 0, False, False, None
        if sock is None:
            return
        with contextlib.suppress(Exception):
            self._sel.unregister(sock)
        if polite and w.state in ("idling", "starting"):
            with contextlib.suppress(Exception):  # best effort, never waits
                sock.send(b"DONE\r\nW%d LOGOUT\r\n" % (w.tag + 1))
        _drop(mailbox)

    def _shutdown(self) -> None:
        with self._lock:
            self._closed = True
            leftovers = list(self._inbox)
            self._inbox.clear()
        for w in self._watches.values():
            w.cancelled = True
            self._close(w, polite=True)
        for item in leftovers:
            if item[0] == "opened" and isinstance(item[2][1], _Handoff):
                _drop(item[2][1].mailbox)
            elif item[0] == "remove":
                item[2].set()
        n = sum(1 for w in self._watches.values() if w.state != "no idle")
        self._watches.clear()
        if n:
            log.debug("closed %d IDLE connection(s)", n)
