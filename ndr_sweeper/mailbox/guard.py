"""Bounds on what an IMAP server can make the client read: time and memory per command.

imaplib reads with a timeout per socket read, and believes what the server announces: a server
that keeps talking (a literal announced as 4 GB, an endless flood of untagged lines, a greeting
trickled at a byte a second) is never timed out and can fill the memory.  This module is the
one choke point under imaplib that puts a stop to it: an ``imaplib.IMAP4`` subclass whose
``read``/``readline`` (imaplib's overridable I/O methods) read the socket themselves and
account for every byte against the command being answered:

- a deadline per command: ``timeout`` from the moment the command is sent (or the connection
  opened, for the greeting), plus one second for every ``MIN_RATE`` bytes that actually arrive
  (so a big answer on a slow link is not cut, and a trickle is);
- at most ``max_literal`` bytes per literal (checked on the announcement, before reading), at
  most ``MAX_LINE`` per line, ``MAX_RESPONSES`` lines and ``MAX_COMMAND_BYTES`` bytes per command;
- in IDLE, the same caps per ``idle_check``, and a wall limit on each, so the watcher regains
  control;
- untagged responses a command did not consume are dropped when the next command starts.

Reaching a cap raises :class:`LimitExceeded` (not an ``OSError`` and not an imaplib error, so
neither imaplib nor imapclient swallows or rewraps it), after shutting the socket down and
dropping what was buffered; every later read or send raises it again.  ``ImapMailbox`` turns
it into ``errors.ServerLimitError`` (a ``ConnectError``).  A server that says nothing for
``timeout`` still raises ``TimeoutError``, as a socket read would.
"""

from __future__ import annotations

import imaplib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient import imap4, tls

MAX_LITERAL = 2 * 1024 * 1024  # a literal nobody asked a size for (headers): a sane maximum
LITERAL_MARGIN = 4096  # on top of what a partial FETCH asked for
MAX_LINE = 8 * 1024 * 1024  # one response line (a SEARCH of a million UIDs is ~7 MB)
MAX_COMMAND_BYTES = 64 * 1024 * 1024  # everything in answer to one command
MAX_RESPONSES = 100_000  # lines in answer to one command (or one idle_check)
MIN_RATE = 256 * 1024  # bytes per second that earn a slow answer one more second
_CHUNK = 256 * 1024
_KEEP = ("BYE", "READ-ONLY", "CAPABILITY")  # untagged responses kept across commands


class LimitExceeded(Exception):
    """The server overstepped a limit; the connection is closed.  ``str()`` is one line;
    ``slow``: it was too slow (so a larger ``timeout`` may help), not too much."""

    def __init__(self, message: str, *, slow: bool = False) -> None:
        super().__init__(message)
        self.slow = slow


@dataclass(frozen=True)
class Limits:
    timeout: float  # per command (see the module doc), and per silent read
    max_literal: int = MAX_LITERAL
    max_line: int = MAX_LINE
    max_command_bytes: int = MAX_COMMAND_BYTES
    max_responses: int = MAX_RESPONSES
    min_rate: int = MIN_RATE


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


class GuardedIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 with bounded reads (mixed into imapclient's plain and TLS classes)."""

    limits: Limits

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        self.limits = limits
        self._next_literal: tuple[int, int] | None = None
        self._reset_reader()
        self._begin(None)
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------- phases
    def _reset_reader(self) -> None:
        self._rbuf = b""
        self._rpos = 0
        self._rsock: Any = None
        self._failure: LimitExceeded | None = None

    def _begin(self, command: str | None) -> None:
        """A new command (None: the greeting): fresh deadline and counters."""
        self._command_name = command
        self._started = time.monotonic()
        self._deadline: float | None = self._started + self.limits.timeout
        self._idle_until: float | None = None
        self._got = 0  # bytes received for this command
        self._lines = 0
        self._literal_cap = self.limits.max_literal
        self._byte_cap = self.limits.max_command_bytes

    def expect_literals(self, size: int | None, count: int = 1) -> None:
        """The next command asks for *count* literals of at most *size* bytes each (None: no
        per-literal cap beyond the per-command one), e.g. ``BODY.PEEK[]<0.size>`` of *count*
        messages: its answer may then also hold that much more than ``max_command_bytes``."""
        if size is None:
            self._next_literal = (self.limits.max_command_bytes, self.limits.max_command_bytes)
            return
        cap = size + LITERAL_MARGIN
        self._next_literal = (cap, max(self.limits.max_command_bytes, count * cap + (1 << 20)))

    def enter_idle(self) -> None:
        """IDLE was accepted: no deadline until DONE; idle_window bounds each check."""
        self._deadline = None

    def idle_window(self, seconds: float) -> None:
        """One idle_check: fresh counters, and at most *seconds* of reading."""
        self._started = time.monotonic()
        self._idle_until = self._started + seconds
        self._got = self._lines = 0
        self._byte_cap = self.limits.max_command_bytes

    def leave_idle(self) -> None:
        """DONE is about to be sent: the end of IDLE is answered like a command."""
        self._begin("IDLE")

    def _context(self) -> str:
        if self._idle_until is not None:
            return "during IDLE"
        if self._command_name is None:
            return "in its greeting"
        return f"in answer to {self._command_name}"

    def _fail(self, what: str, *, slow: bool = False) -> LimitExceeded:
        """Close the connection, drop what was read, remember why."""
        self._failure = LimitExceeded(f"{self.host}:{self.port} {what}", slow=slow)
        self._rbuf, self._rpos = b"", 0
        self.untagged_responses.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return self._again()

    def _again(self) -> LimitExceeded:
        assert self._failure is not None
        return LimitExceeded(str(self._failure), slow=self._failure.slow)

    # ---------------------------------------------------------------- imaplib hooks
    def open(self, host: str = "", port: int = imaplib.IMAP4_PORT, timeout: Any = None) -> None:
        super().open(host, port, timeout)
        self._begin(None)  # the greeting gets `timeout` once the connection is up

    def _new_tag(self) -> bytes:
        tag = super()._new_tag()
        if self._failure is not None:
            raise self._again()
        literal, self._next_literal = self._next_literal, None
        self._begin("?")
        if literal is not None:
            self._literal_cap, self._byte_cap = literal
        # What the previous command left unconsumed can only pile up: drop it.
        ur = self.untagged_responses
        for key in [k for k in ur if k not in _KEEP]:
            del ur[key]
        for key in _KEEP:
            if len(ur.get(key, ())) > 1:
                ur[key] = ur[key][-1:]
        return tag

    def send(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._again()
        if self._command_name == "?":
            words = bytes(data[:64]).split(b" ", 3)  # tag, name[, sub]: never the arguments
            name = words[1] if len(words) > 1 else b""
            if name.upper() == b"UID" and len(words) > 2:
                name = words[2]
            self._command_name = name.strip().decode("ascii", "replace").upper() or "?"
        super().send(data)

    def readline(self) -> bytes:
        buf, pos = self._rbuf, self._rpos
        end = buf.find(b"\n", pos)
        if end >= 0:
            self._rpos = end + 1
            line = buf[pos : end + 1]
        else:
            line = self._readline_slow()
        self._lines += 1
        if self._lines > self.limits.max_responses:
            raise self._fail(
                f"sent more than {self.limits.max_responses} responses {self._context()}"
            )
        return line

    def read(self, size: int) -> bytes:
        if size > self._literal_cap:
            raise self._fail(
                f"sent a {size}-byte literal {self._context()} (limit {_size(self._literal_cap)})"
            )
        buf, pos = self._rbuf, self._rpos
        have = len(buf) - pos
        if have >= size:
            self._rpos = pos + size
            return buf[pos : pos + size]
        out = bytearray(size)
        out[:have] = buf[pos:]
        self._rbuf, self._rpos = b"", 0
        view = memoryview(out)
        got = have
        while got < size:
            n = self._recv_into(view[got:], min(size - got, 4 * _CHUNK))
            if n == 0:
                return bytes(out[:got])  # EOF: imaplib fails on the next line
            got += n
        return bytes(out)

    # ---------------------------------------------------------------- the socket
    def _readline_slow(self) -> bytes:
        parts = [self._rbuf[self._rpos :]]
        length = len(parts[0])
        self._rbuf, self._rpos = b"", 0
        while True:
            if length > self.limits.max_line:
                raise self._fail(
                    f"sent a line of more than {_size(self.limits.max_line)} {self._context()}"
                )
            try:
                chunk = self._recv()
            except LimitExceeded:
                raise
            except OSError:
                # a non-blocking read with nothing there yet (idle_check): keep what came
                self._rbuf, self._rpos = b"".join(parts), 0
                raise
            if not chunk:
                return b"".join(parts)  # EOF
            end = chunk.find(b"\n")
            if end >= 0:
                parts.append(chunk[: end + 1])
                self._rbuf, self._rpos = chunk, end + 1
                return b"".join(parts)
            parts.append(chunk)
            length += len(chunk)

    def _recv(self) -> bytes:
        return bytes(self._io(lambda sock: sock.recv(_CHUNK)))

    def _recv_into(self, view: memoryview, n: int) -> int:
        return int(self._io(lambda sock: sock.recv_into(view, n)))

    def _io(self, op: Callable[[Any], Any]) -> Any:
        if self._failure is not None:
            raise self._again()
        sock = self.sock
        if sock is not self._rsock:  # a new socket (STARTTLS): nothing carries over
            self._rsock = sock
            self._rbuf, self._rpos = b"", 0
        now = time.monotonic()
        lowered = False
        if self._idle_until is not None:
            if now > self._idle_until:
                raise self._fail(
                    f"kept sending for more than {self._idle_until - self._started:.0f} s "
                    "during IDLE"
                )
        elif self._deadline is not None:
            remaining = self._deadline + self._got / self.limits.min_rate - now
            if remaining <= 0:
                if not self._got:
                    raise TimeoutError("timed out")  # said nothing: as a socket read would
                raise self._too_slow(now)
            current = sock.gettimeout()
            if current != 0.0 and remaining < self.limits.timeout:
                sock.settimeout(remaining)
                lowered = True
        try:
            data = op(sock)
        except TimeoutError:
            if lowered and self._got:
                raise self._too_slow(time.monotonic()) from None
            raise
        finally:
            if lowered:
                sock.settimeout(self.limits.timeout)
        n = data if isinstance(data, int) else len(data)
        self._got += n
        if self._got > self._byte_cap:
            raise self._fail(f"sent more than {_size(self._byte_cap)} {self._context()}")
        return data

    def _too_slow(self, now: float) -> LimitExceeded:
        noun = "byte" if self._got == 1 else "bytes"
        return self._fail(
            f"was too slow {self._context()}: {self._got} {noun} in "
            f"{now - self._started:.0f} s (raise `timeout` in the config if it is merely slow)",
            slow=True,
        )


class _GuardedPlain(GuardedIMAP4, imap4.IMAP4WithTimeout):
    pass


class _GuardedTLS(GuardedIMAP4, tls.IMAP4_TLS):
    pass


class GuardedClient(imapclient.IMAPClient):
    """An IMAPClient on :class:`GuardedIMAP4`; IDLE marks its phases for the limits."""

    def __init__(self, host: str, *args: Any, limits: Limits, **kwargs: Any) -> None:
        self._limits = limits
        super().__init__(host, *args, **kwargs)

    def _create_IMAP4(self) -> GuardedIMAP4:  # imapclient's factory of its imaplib object
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _GuardedTLS(
                self.host, self.port, self.ssl_context, connect_timeout, limits=self._limits
            )
        return _GuardedPlain(self.host, self.port, connect_timeout, limits=self._limits)

    def idle(self) -> Any:
        result = super().idle()
        self._imap.enter_idle()
        return result

    def idle_check(self, timeout: float | None = None) -> Any:
        self._imap.idle_window((timeout or 0.0) + self._limits.timeout)
        try:
            return super().idle_check(timeout)
        finally:
            if self._imap._failure is not None:  # imapclient ends its loop on OSError: say why
                raise self._imap._again()

    def idle_done(self) -> Any:
        self._imap.leave_idle()
        return super().idle_done()
