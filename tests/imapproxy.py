r"""A TCP proxy between an IMAP client and a lab Dovecot that misbehaves on purpose.

The fault tests need a real server whose answers go wrong at a chosen command: the connection
drops before or after the server acted, the server refuses or pretends, a response code lies, or
another client changes the mailbox in between.  The proxy forwards everything unchanged except
the commands a rule picks out.  Fixture ``imap_proxy`` (tests/conftest.py) starts one in front
of a lab server and stops it after the test:

    proxy = imap_proxy(dovecot)               # or ImapProxy(dovecot).start(), ~1 ms
    env = proxy.wrap(imap_user)               # the same user, reached through the proxy
    proxy.cut_before("UID MOVE")              # 1. drop the connection; the server never sees it
    proxy.cut_after("UID MOVE", nth=2)        # 2. the server carries it out; the answer is lost
    proxy.answer_no("UID MOVE", "[OVERQUOTA] Quota exceeded")   # 3. carried out, answered NO
    proxy.answer_ok("UID MOVE", "[COPYUID 7 3 40] Done")        # 4. answered OK, not carried out
    proxy.refuse("UID MOVE", "[OVERQUOTA] Full")      # answered NO, not carried out (throttling)
    proxy.rewrite("UID MOVE", replace_copyuid(lambda v, src, dst: (v, src, "90")))  # 5.
    proxy.on("UID STORE", before=fn, after=fn2, where=lambda args: "\\Deleted" in args)  # 6.
    client = env.connect()                    # imapclient (or ndr-sweeper with port=proxy.port)
    ...
    [c.line for c in proxy.transcript]        # ['LOGIN ...', 'SELECT "INBOX"', 'UID MOVE ...']
    proxy.transcript[-1].action               # 'cut_before'

Matching.  A rule names one command or several (``("UID MOVE", "MOVE")``) as the client sends
it, case-insensitive, with the ``UID`` prefix: ``"MOVE"`` does not match ``UID MOVE``.  The
optional ``where(args)`` sees the rest of the command after the name (literals inline).  Every
command the rule matches counts, over all connections of the proxy (a retry after reconnecting
is the next occurrence); the rule fires on occurrence ``nth`` and the ``times - 1`` after it
(``times=None``: every one from ``nth`` on).  ``rule.hits`` lists the commands it fired on.
When several rules fire on one command, all their hooks and rewrites run (in the order the
rules were added) and the first one with an action other than forwarding decides that action.

Hooks ``before(cmd)`` / ``after(cmd)`` get the :class:`Command`; ``before`` runs when the whole
command has arrived and before it is forwarded (or answered or cut), ``after`` when the
server's tagged completion has arrived and before the client gets it.  The client is blocked
meanwhile, so a hook may use a second connection (``lab_env.connect()``) to change the mailbox.
A hook that raises is recorded in ``proxy.errors`` and cuts the connection; the fixture fails
the test with it.

Framing.  The proxy reads whole commands (client literals ``{n}`` and ``{n+}``; it answers a
synchronising literal's ``+`` itself, and when forwarding waits for the server's ``+`` before
each literal) and whole responses (server literals, as in FETCH bodies), and works in lock step:
the next command is read only once the server has completed the previous one.  Continuation
requests the server sends for other reasons (IDLE's ``+ idling``, AUTHENTICATE challenges) go to
the client, whose one-line reply (``DONE``, a SASL response) goes to the server.  After a
successful STARTTLS or COMPRESS the proxy only copies bytes both ways; rules no longer apply.

Not a general IMAP proxy: one upstream connection per client connection, plain TCP, threads;
the client's replies to continuation requests (``DONE``, SASL) are not in the transcript; and a
command the server cannot tag its answer to (a malformed tag) stalls that connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "ImapProxy", "ProxyError", "Rule", "replace_copyuid"]

FORWARD = "forward"
CUT_BEFORE = "cut_before"
CUT_AFTER = "cut_after"
ANSWER_NO = "answer_no"
ANSWER_OK = "answer_ok"
REFUSE = "refuse"
REWRITE = "rewrite"  # forwarded, answer rewritten (what Command.action says for a rewrite rule)
ACTIONS = frozenset({FORWARD, CUT_BEFORE, CUT_AFTER, ANSWER_NO, ANSWER_OK, REFUSE})

MAX_LINE = 8 << 20  # one line of a command or response
MAX_LITERAL = 256 << 20
# After these succeed the stream is no longer IMAP text the proxy can read.
_STREAM_SWITCH = frozenset({"STARTTLS", "COMPRESS"})

_CLIENT_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r?\n\Z")
_SERVER_LITERAL = re.compile(rb"\{(\d+)\}\r?\n\Z")
# Status responses carry resp-text, never a literal (RFC 3501 resp-cond-*).
_UNTAGGED_STATUS = re.compile(rb"\* (OK|NO|BAD|BYE|PREAUTH)\b", re.IGNORECASE)
_COPYUID = re.compile(r"\[COPYUID (\d+) ([0-9:,*]+) ([0-9:,*]+)\]", re.IGNORECASE)

Hook = Callable[["Command"], object]
LineRewrite = Callable[[str], "str | None"]


class ProxyError(RuntimeError):
    """The proxy met something it cannot frame, or could not be stopped cleanly."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _norm(name: str) -> str:
    return " ".join(name.split()).upper()


@dataclass(eq=False)
class Command:
    """One command the client sent, what the proxy did with it and what came back.

    ``action`` is ``forward``, ``rewrite``, ``cut_before``, ``cut_after``, ``answer_no`` or
    ``answer_ok``; ``server_reply`` is the server's tagged line (None when it was not forwarded
    or the connection went first), ``client_reply`` the tagged line the client got (None when
    it got none).
    """

    conn: int
    tag: str
    name: str
    args: str
    action: str = FORWARD
    server_reply: str | None = None
    client_reply: str | None = None

    @property
    def line(self) -> str:
        """The command without its tag: ``'UID MOVE 3 "Junk"'``."""
        return f"{self.name} {self.args}" if self.args else self.name

    def __repr__(self) -> str:
        line = self.line if len(self.line) <= 120 else self.line[:117] + "..."
        return (
            f"Command(conn={self.conn}, {self.tag} {line!r}, action={self.action!r}, "
            f"server={self.server_reply!r}, client={self.client_reply!r})"
        )


@dataclass(eq=False)
class Rule:
    """What to do with which command (see the module doc); made by ``ImapProxy.rule``."""

    commands: frozenset[str]
    nth: int = 1
    times: int | None = 1
    where: Callable[[str], bool] | None = None
    action: str = FORWARD
    reply: str | None = None  # answer_no / answer_ok: the text after the status
    status: str = "NO"  # answer_no: NO or BAD
    untagged: tuple[str, ...] = ()  # answer_ok: untagged lines sent before the tagged OK
    rewrite: LineRewrite | None = None
    before: Hook | None = None
    after: Hook | None = None
    drop_untagged: bool | None = None  # None: True for cut_after, else False
    seen: int = 0
    hits: list[Command] = field(default_factory=list)

    def _matches(self, cmd: Command) -> bool:
        return cmd.name in self.commands and (self.where is None or bool(self.where(cmd.args)))

    def _in_window(self) -> bool:
        return self.seen >= self.nth and (self.times is None or self.seen < self.nth + self.times)

    @property
    def fired(self) -> int:
        return len(self.hits)


@dataclass
class _Plan:
    cmd: Command
    rules: list[Rule]
    action: str = FORWARD
    decider: Rule | None = None

    @property
    def drop_untagged(self) -> bool:
        r = self.decider
        if r is None or r.drop_untagged is None:
            return self.action == CUT_AFTER
        return r.drop_untagged

    def rewrite(self, line: str) -> str | None:
        for r in self.rules:
            if r.rewrite is not None:
                out = r.rewrite(line)
                if out is None:
                    return None
                line = out
        return line

    @property
    def rewrites(self) -> bool:
        return any(r.rewrite is not None for r in self.rules)

    def hooks(self, which: str) -> list[Hook]:
        return [h for r in self.rules if (h := getattr(r, which)) is not None]


def replace_copyuid(new: str | Callable[[int, str, str], tuple[object, object, object]]):
    """A line rewrite for ``ImapProxy.rewrite`` that replaces the ``[COPYUID v src dst]`` code.

    *new* is the replacement ``"v src dst"``, or a function ``(uidvalidity, src, dst) ->
    (uidvalidity, src, dst)`` given the server's values (``7, "3:4", "12:13"``).
    """

    def sub(m: re.Match[str]) -> str:
        if isinstance(new, str):
            return f"[COPYUID {new}]"
        v, src, dst = new(int(m.group(1)), m.group(2), m.group(3))
        return f"[COPYUID {v} {src} {dst}]"

    def rewrite(line: str) -> str:
        return _COPYUID.sub(sub, line)

    return rewrite


class ImapProxy:
    """Listens on 127.0.0.1 (``host``, ``port``) and connects each client to *upstream*.

    *upstream* is ``(host, port)`` or an object with ``port`` (and optionally ``host``), such
    as a ``lab.DovecotLab`` or ``lab.LabEnv``; it is read at every connection, so a restarted
    lab server on new ports is followed.
    """

    def __init__(self, upstream: Any, *, connect_timeout: float = 5.0) -> None:
        self._upstream = upstream
        self.connect_timeout = connect_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.rules: list[Rule] = []
        self.transcript: list[Command] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._sessions: list[_Session] = []
        self._stopping = threading.Event()
        self._conn_ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ImapProxy:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(16)
        listener.settimeout(0.25)  # a fallback: stop() shuts the socket down to wake accept()
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"imapproxy-{self.port}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, and wait for all threads.

        Raises ProxyError when a thread is still running afterwards (a hook that hangs)."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            if self._accept_thread is not None:
                self._accept_thread.join(timeout)
            listener.close()
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.shutdown()
        alive = [t.name for s in sessions for t in s.join(timeout)]
        if self._accept_thread is not None and self._accept_thread.is_alive():
            alive.append(self._accept_thread.name)
        if alive:
            raise ProxyError(f"imapproxy threads still running after stop(): {alive}")

    def __enter__(self) -> ImapProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def upstream_address(self) -> tuple[str, int]:
        up = self._upstream
        if isinstance(up, tuple):
            return up[0], int(up[1])
        return getattr(up, "host", "127.0.0.1"), int(up.port)

    def wrap(self, env: Any) -> Any:
        """A copy of a ``lab.LabEnv`` that connects through the proxy (``tls_port`` is 0:
        implicit TLS is not proxied)."""
        return dataclasses.replace(env, host=self.host, port=self.port, tls_port=0)

    # ------------------------------------------------------------------ rules
    def rule(
        self,
        commands: str | Iterable[str],
        *,
        action: str = FORWARD,
        nth: int = 1,
        times: int | None = 1,
        where: Callable[[str], bool] | None = None,
        reply: str | None = None,
        status: str = "NO",
        untagged: Iterable[str] = (),
        rewrite: LineRewrite | None = None,
        before: Hook | None = None,
        after: Hook | None = None,
        drop_untagged: bool | None = None,
    ) -> Rule:
        """Add a rule (the helpers below are shorthands); returns it (``rule.hits``)."""
        names = [commands] if isinstance(commands, str) else list(commands)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"commands must be command names, not {commands!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}, not {action!r}")
        if nth < 1 or (times is not None and times < 1):
            raise ValueError("nth and times count from 1")
        if action in (CUT_BEFORE, ANSWER_OK, REFUSE) and rewrite is not None:
            raise ValueError(f"{action}: nothing comes back from the server to rewrite")
        if action == CUT_BEFORE and after is not None:
            raise ValueError("cut_before: there is no completion to run after= on")
        if status.upper() not in ("NO", "BAD"):
            raise ValueError("status must be NO or BAD")
        for text in (reply or "", *untagged):
            if "\r" in text or "\n" in text:
                raise ValueError("reply and untagged lines are single lines, without CRLF")
        if not all(u.startswith("* ") for u in untagged):
            raise ValueError("untagged lines start with '* '")
        rule = Rule(
            commands=frozenset(_norm(n) for n in names),
            nth=nth,
            times=times,
            where=where,
            action=action,
            reply=reply,
            status=status.upper(),
            untagged=tuple(untagged),
            rewrite=rewrite,
            before=before,
            after=after,
            drop_untagged=drop_untagged,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def cut_before(self, commands: str | Iterable[str], **match: Any) -> Rule:
        """Close the connection when the command arrives; the server never sees it."""
        return self.rule(commands, action=CUT_BEFORE, **match)

    def cut_after(self, commands: str | Iterable[str], **match: Any) -> Rule:
        """Forward the command, wait for its tagged completion, then close the connection
        without passing the completion on (nor, unless ``drop_untagged=False``, the untagged
        responses that came with it)."""
        return self.rule(commands, action=CUT_AFTER, **match)

    def answer_no(
        self,
        commands: str | Iterable[str],
        reply: str = "[UNAVAILABLE] Refused by the test proxy",
        **match: Any,
    ) -> Rule:
        """Forward the command (the server carries it out) and replace its tagged completion
        by ``TAG NO reply`` (``status="BAD"`` for BAD)."""
        return self.rule(commands, action=ANSWER_NO, reply=reply, **match)

    def answer_ok(
        self, commands: str | Iterable[str], reply: str | None = None, **match: Any
    ) -> Rule:
        """Do not forward the command; answer ``TAG OK reply`` (``untagged=[...]``: lines such
        as ``"* OK [COPYUID 7 3 40] Moved"`` sent before it)."""
        return self.rule(commands, action=ANSWER_OK, reply=reply, **match)

    def refuse(
        self,
        commands: str | Iterable[str],
        reply: str = "[LIMIT] Too many commands, slow down (imapproxy)",
        **match: Any,
    ) -> Rule:
        """Do not forward the command; answer ``TAG NO reply`` (a throttling or over-quota
        server refusing before it does anything)."""
        return self.rule(commands, action=REFUSE, reply=reply, **match)

    def rewrite(self, commands: str | Iterable[str], fn: LineRewrite, **match: Any) -> Rule:
        """Forward the command and pass every response line it gets (untagged and tagged, not
        those carrying a literal; without CRLF) through ``fn``, which returns the new line or
        None to drop it.  ``replace_copyuid(...)`` builds one for COPYUID."""
        return self.rule(commands, rewrite=fn, **match)

    def on(
        self,
        commands: str | Iterable[str],
        *,
        before: Hook | None = None,
        after: Hook | None = None,
        **match: Any,
    ) -> Rule:
        """Forward the command, running ``before(cmd)`` first and/or ``after(cmd)`` once the
        server has completed it, before the client gets the completion."""
        if before is None and after is None:
            raise ValueError("on() needs before= or after=")
        return self.rule(commands, before=before, after=after, **match)

    # ------------------------------------------------------------------ reading the record
    def lines(self, conn: int | None = None) -> list[str]:
        """The commands the client(s) sent, without tags (``conn``: of that connection only)."""
        with self._lock:
            return [c.line for c in self.transcript if conn is None or c.conn == conn]

    def names(self, conn: int | None = None) -> list[str]:
        with self._lock:
            return [c.name for c in self.transcript if conn is None or c.conn == conn]

    def unfired(self) -> list[Rule]:
        """Rules that have not fired on every occurrence they were meant for."""
        with self._lock:
            return [r for r in self.rules if r.fired < (r.times or 1)]

    # ------------------------------------------------------------------ internals
    def _plan(self, cmd: Command) -> _Plan:
        with self._lock:
            firing = []
            for rule in self.rules:
                try:
                    matched = rule._matches(cmd)
                except Exception as exc:  # recorded by the session, which then closes
                    raise ProxyError(
                        f"where= of the rule for {sorted(rule.commands)} raised on {cmd!r}: {exc!r}"
                    ) from exc
                if matched:
                    rule.seen += 1
                    if rule._in_window():
                        rule.hits.append(cmd)
                        firing.append(rule)
            plan = _Plan(cmd, firing)
            for rule in firing:
                if rule.action != FORWARD:
                    plan.action, plan.decider = rule.action, rule
                    break
            cmd.action = plan.action
            if plan.action == FORWARD and plan.rewrites:
                cmd.action = REWRITE
            self.transcript.append(cmd)
        return plan

    def _error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._stopping.is_set():
                client.close()
                return
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                session = _Session(self, next(self._conn_ids), client)
                self._sessions.append(session)
            session.start()


class _Session:
    """One client connection and its upstream: the client-side thread reads commands and drives
    the exchange; the server-side thread reads responses and passes them on."""

    def __init__(self, proxy: ImapProxy, conn_id: int, client: socket.socket) -> None:
        self.proxy = proxy
        self.id = conn_id
        self.client = client
        self.server: socket.socket | None = None
        self._client_lock = threading.Lock()  # both threads write to the client
        self._events: queue.Queue[tuple[str, object]] = queue.Queue()
        self._pending: _Plan | None = None
        self._server_reader: Any = None
        self._expect_literal_plus = False
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock_lock = threading.Lock()

    def start(self) -> None:
        t = threading.Thread(
            target=self._run, name=f"imapproxy-{self.proxy.port}-conn{self.id}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def shutdown(self) -> None:
        """Both connections down (idempotent); the threads see EOF and end."""
        self._closed.set()
        with self._sock_lock:
            for sock in (self.client, self.server):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        self._events.put(("closed", None))

    def join(self, timeout: float) -> list[threading.Thread]:
        for t in list(self._threads):
            t.join(timeout)
        return [t for t in self._threads if t.is_alive()]

    def _to_client(self, data: bytes) -> None:
        with self._client_lock:
            self.client.sendall(data)

    # ------------------------------------------------------------------ client side
    def _run(self) -> None:
        try:
            try:
                server = socket.create_connection(
                    self.proxy.upstream_address(), timeout=self.proxy.connect_timeout
                )
            except OSError:
                return  # upstream down: the client sees the connection closed at once
            server.settimeout(None)
            for sock in (server, self.client):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._sock_lock:
                self.server = server
            if self._closed.is_set():
                return
            reader = threading.Thread(
                target=self._server_loop,
                args=(server,),
                name=f"imapproxy-{self.proxy.port}-conn{self.id}-server",
                daemon=True,
            )
            self._threads.append(reader)
            reader.start()
            with self.client.makefile("rb") as f:
                self._client_loop(f, server)
        except OSError:
            pass
        except BaseException as exc:
            self.proxy._error(exc)
        finally:
            self.shutdown()
            for t in self._threads[1:]:
                t.join(10)  # stop() reports a thread that is still running
            with self._sock_lock:
                self.client.close()
                if self.server is not None:
                    self.server.close()

    def _read_command(self, f: Any) -> list[tuple[bytes, bytes | None, bool]] | None:
        """Segments (line, literal, synchronising) of one whole command; None at EOF."""
        segments: list[tuple[bytes, bytes | None, bool]] = []
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line or self._closed.is_set():
                return None
            if not line.endswith(b"\n"):
                raise ProxyError(f"client line longer than {MAX_LINE} bytes or cut short")
            m = _CLIENT_LITERAL.search(line)
            if not m:
                segments.append((line, None, False))
                return segments
            n, sync = int(m.group(1)), not m.group(2)
            if n > MAX_LITERAL:
                raise ProxyError(f"client literal of {n} bytes")
            if sync:
                self._to_client(b"+ Ready for literal data (imapproxy)\r\n")
            data = f.read(n)
            if len(data) < n:
                return None
            segments.append((line, data, sync))

    def _client_loop(self, f: Any, server: socket.socket) -> None:
        while True:
            segments = self._read_command(f)
            if segments is None:
                return
            if not segments[0][0].strip():  # an empty line: servers ignore it
                server.sendall(segments[0][0])
                continue
            cmd = self._command(segments)
            plan = self.proxy._plan(cmd)
            for hook in plan.hooks("before"):
                if not self._run_hook(hook, cmd):
                    return
            if plan.action == CUT_BEFORE:
                return  # the finally in _run closes both sides
            if plan.action in (ANSWER_OK, REFUSE):
                for hook in plan.hooks("after"):
                    if not self._run_hook(hook, cmd):
                        return
                rule = plan.decider
                assert rule is not None
                reply = rule.reply or f"{cmd.name} completed (imapproxy: not carried out)"
                status = "OK" if plan.action == ANSWER_OK else rule.status
                tagged = f"{cmd.tag} {status} {reply}"
                out = "".join(f"{u}\r\n" for u in rule.untagged) + tagged + "\r\n"
                cmd.client_reply = tagged
                self._to_client(out.encode())
                continue
            while not self._events.empty():  # nothing can be pending between commands
                kind, _ = self._events.get_nowait()
                if kind == "closed":
                    return
            self._pending = plan
            ok = self._send_command(segments, server)
            if ok is None:
                return
            while not ok:
                kind, value = self._events.get()
                if kind == "cont":  # IDLE's "+ idling", an AUTHENTICATE challenge
                    line = f.readline(MAX_LINE + 1)
                    if not line:
                        return
                    server.sendall(line)
                elif kind == "done":
                    ok = True
                    if value and cmd.name in _STREAM_SWITCH:
                        self._copy_raw(f, server)
                        return
                else:
                    return

    def _send_command(
        self, segments: list[tuple[bytes, bytes | None, bool]], server: socket.socket
    ) -> bool | None:
        """Forward a command, waiting for the server's "+" before each synchronising literal.
        False: sent, completion to come; True: completed early (literal refused); None: gone."""
        for line, literal, sync in segments:
            if literal is None:
                server.sendall(line)
                continue
            if not sync:
                server.sendall(line + literal)
                continue
            self._expect_literal_plus = True
            server.sendall(line)
            kind, _ = self._events.get()
            if kind == "literal":
                server.sendall(literal)
            elif kind == "done":
                return True
            else:
                return None
        return False

    def _command(self, segments: list[tuple[bytes, bytes | None, bool]]) -> Command:
        raw = b"".join(line + (lit or b"") for line, lit, _ in segments)
        text = _text(raw).rstrip("\r\n")
        tag, _, rest = text.partition(" ")
        word, _, args = rest.partition(" ")
        name = word.upper()
        if name == "UID" and args:
            sub, _, args = args.partition(" ")
            name = f"UID {sub.upper()}"
        return Command(self.id, tag, name, args)

    def _run_hook(self, hook: Hook, cmd: Command) -> bool:
        try:
            hook(cmd)
            return True
        except Exception as exc:
            self.proxy._error(exc)
            self.shutdown()
            return False

    def _copy_raw(self, src: Any, dst: socket.socket) -> None:
        """Copy bytes until EOF (after STARTTLS or COMPRESS), buffered ones first."""
        while True:
            data = src.read1(65536)
            if not data:
                return
            dst.sendall(data)

    # ------------------------------------------------------------------ server side
    def _server_loop(self, server: socket.socket) -> None:
        f = self._server_reader = server.makefile("rb")
        try:
            while True:
                parts = self._read_response(f)
                if parts is None:
                    return
                if not self._on_response(parts):
                    return
        except OSError:
            pass
        except BaseException as exc:
            self.proxy._error(exc)
        finally:
            self.shutdown()
            f.close()

    def _read_response(self, f: Any) -> list[bytes] | None:
        parts: list[bytes] = []
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return None
            if not line.endswith(b"\n"):
                raise ProxyError(f"server line longer than {MAX_LINE} bytes or cut short")
            parts.append(line)
            if len(parts) == 1 and (line[:1] == b"+" or _UNTAGGED_STATUS.match(line)):
                return parts
            if len(parts) == 1 and line[:2] != b"* ":  # tagged: a status line
                return parts
            m = _SERVER_LITERAL.search(line)
            if not m:
                return parts
            n = int(m.group(1))
            if n > MAX_LITERAL:
                raise ProxyError(f"server literal of {n} bytes")
            data = f.read(n)
            if len(data) < n:
                return None
            parts.append(data)

    def _on_response(self, parts: list[bytes]) -> bool:
        """Pass one response on (or not); False once the connection is to be closed."""
        first = parts[0]
        plan = self._pending
        if first[:1] == b"+":
            if self._expect_literal_plus:
                self._expect_literal_plus = False
                self._events.put(("literal", None))
                return True
            self._to_client(first)
            if plan is not None:
                self._events.put(("cont", None))
            return True
        tag = _text(first).split(" ", 1)[0]
        if first[:2] == b"* " or plan is None or tag != plan.cmd.tag:
            if plan is not None:
                if plan.drop_untagged:
                    return True
                if plan.rules and len(parts) == 1:
                    new = self._rewrite(plan, first)
                    if new is None:
                        return True
                    parts = [new]
            self._to_client(b"".join(parts))
            return True
        # the tagged completion of the pending command
        cmd = plan.cmd
        cmd.server_reply = _text(first).rstrip("\r\n")
        self._expect_literal_plus = False
        for hook in plan.hooks("after"):
            if not self._run_hook(hook, cmd):
                return False
        if plan.action == CUT_AFTER:
            self._pending = None
            return False  # the finally in _server_loop closes both sides
        line = first
        if plan.action == ANSWER_NO:
            rule = plan.decider
            assert rule is not None
            line = f"{cmd.tag} {rule.status} {rule.reply}\r\n".encode()
        elif plan.rules:
            new = self._rewrite(plan, first)
            line = new if new is not None else b""
        status = _text(first).split(" ", 2)[1:2]
        ok = bool(status) and status[0].upper() == "OK"
        if line:  # recorded first: the test may read the transcript as soon as it arrives
            cmd.client_reply = _text(line).rstrip("\r\n")
            self._to_client(line)
        self._pending = None
        self._events.put(("done", ok))
        if ok and cmd.name in _STREAM_SWITCH:
            self._copy_raw(self._server_reader, self.client)
            return False
        return True

    def _rewrite(self, plan: _Plan, raw: bytes) -> bytes | None:
        if not plan.rewrites:
            return raw
        line = raw.decode("utf-8", "surrogateescape")
        body = line.rstrip("\r\n")
        out = plan.rewrite(body)
        if out is None:
            return None
        return (out + line[len(body) :]).encode("utf-8", "surrogateescape")
