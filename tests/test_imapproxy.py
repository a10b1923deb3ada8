"""The fault-injecting IMAP proxy (tests/imapproxy.py) against the lab Dovecot.

Each mode is checked from both ends: what the client behind the proxy sees, and what a second,
direct connection finds on the server.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import imapproxy
import lab
from test_sweep_imap import Box, assert_swept, fill, write_config, xdg_dirs

pytestmark = pytest.mark.imap

# What a client sees when the connection goes: imaplib's abort (EOF) or a socket error.
LOST = (imaplib.IMAP4.abort, OSError)


@contextlib.contextmanager
def lost(client) -> Iterator[None]:
    """The block must lose *client*'s connection; the client is closed afterwards."""
    with pytest.raises(LOST):
        yield
    client.shutdown()


def ids(env: lab.LabEnv, folder: str) -> list[str | None]:
    client = env.connect()
    try:
        return [e.message_id for e in lab.read_folder(client, folder)]
    finally:
        client.logout()


def seed(env: lab.LabEnv, *message_ids: str) -> None:
    client = env.connect()
    try:
        lab.append_messages(client, "INBOX", [lab.make_message(m) for m in message_ids])
    finally:
        client.logout()


def proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("imapproxy-")]


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def user(dovecot, new_imap_user) -> lab.LabEnv:
    env = new_imap_user(dovecot)
    seed(env, "a@example.org", "b@example.org")
    return env


# ---------------------------------------------------------------------- pass-through
@pytest.mark.parametrize("server", ["dovecot", "dovecot_nomove"])
def test_a_whole_sweep_passes_through_unchanged(
    server, request, new_imap_user, imap_proxy, tmp_path
) -> None:
    env = new_imap_user(request.getfixturevalue(server))
    backscatter, keep, deleted = fill(env)
    proxy = imap_proxy(env)
    xdg = xdg_dirs(tmp_path)
    config = write_config(tmp_path / "c.toml", env, port=proxy.port)
    box = Box(env, config, xdg, backscatter, keep, deleted)  # box.folders() reads directly
    result = box.run("sweep", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accounts"][0]["acted"] == len(backscatter) == 6
    assert_swept(box)

    names = proxy.names()
    assert proxy.connections >= 1 and names[-1] == "LOGOUT"
    assert {"LOGIN", "UID FETCH"} <= set(names)
    if server == "dovecot":
        assert "UID MOVE" in names and "UID COPY" not in names
    else:
        assert "UID MOVE" not in names and {"UID COPY", "UID STORE"} <= set(names)
    for cmd in proxy.transcript:
        assert cmd.action == "forward"
        assert cmd.server_reply is not None and cmd.client_reply == cmd.server_reply


# ---------------------------------------------------------------------- the six modes
def test_cut_before_the_server_never_sees_the_command(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    rule = proxy.cut_before("UID MOVE")
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    with lost(client):
        client.move([1], "Junk")
    assert ids(user, "INBOX") == ["a@example.org", "b@example.org"]
    assert ids(user, "Junk") == []
    last = proxy.transcript[-1]
    assert (last.line, last.action) == ('UID MOVE 1 "Junk"', "cut_before")
    assert last.server_reply is None and last.client_reply is None
    assert rule.fired == 1

    # the rule fired once: the retry on a new connection goes through
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    client.move([1], "Junk")
    client.logout()
    assert ids(user, "Junk") == ["a@example.org"]
    assert proxy.connections == 2


def test_cut_after_the_server_carried_it_out(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.cut_after("UID MOVE")
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    with lost(client):
        client.move([1], "Junk")
    assert ids(user, "INBOX") == ["b@example.org"]
    assert ids(user, "Junk") == ["a@example.org"]
    last = proxy.transcript[-1]
    assert last.action == "cut_after" and last.client_reply is None
    assert last.server_reply is not None and last.server_reply.split()[1] == "OK"


def test_cut_after_can_pass_the_untagged_responses(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.cut_after("UID MOVE", drop_untagged=False)
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    with lost(client):
        client.move([2], "Junk")
    # the MOVE's untagged COPYUID and EXPUNGE arrived before the connection went
    assert client._imap.untagged_responses.get("COPYUID")
    assert client._imap.untagged_responses.get("EXPUNGE") == [b"2"]
    assert ids(user, "Junk") == ["b@example.org"]


def test_answer_no_after_the_server_carried_it_out(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.answer_no("UID MOVE", "[OVERQUOTA] Quota exceeded")
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match=r"\[OVERQUOTA\] Quota exceeded"):
        client.move([1], "Junk")
    assert ids(user, "Junk") == ["a@example.org"]
    assert ids(user, "INBOX") == ["b@example.org"]
    last = proxy.transcript[-1]
    assert last.client_reply == f"{last.tag} NO [OVERQUOTA] Quota exceeded"
    assert last.server_reply is not None and last.server_reply.startswith(f"{last.tag} OK")
    client.noop()  # the connection is still fine
    client.logout()


def test_answer_ok_without_carrying_it_out(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.answer_ok("UID MOVE", "[COPYUID 4711 1 900] Move completed")
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    untagged = client._imap.untagged_responses
    untagged.pop("COPYUID", None)
    client.move([1], "Junk")
    assert untagged.pop("COPYUID") == [b"4711 1 900"]
    assert ids(user, "INBOX") == ["a@example.org", "b@example.org"]
    assert ids(user, "Junk") == []
    last = proxy.transcript[-1]
    assert last.action == "answer_ok" and last.server_reply is None
    client.logout()


def test_refuse_without_carrying_it_out(user, imap_proxy) -> None:
    import imaplib

    proxy = imap_proxy(user)
    proxy.refuse("UID MOVE", "[OVERQUOTA] Quota exceeded")
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match="OVERQUOTA"):
        client.move([1], "Junk")
    assert ids(user, "INBOX") == ["a@example.org", "b@example.org"]
    assert ids(user, "Junk") == []
    assert proxy.transcript[-1].action == "refuse"
    client.move([1], "Junk")  # the next one goes through
    assert ids(user, "Junk") == ["a@example.org"]
    client.logout()


def test_answer_ok_with_untagged_lines(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.answer_ok("UID MOVE", untagged=["* OK [COPYUID 4711 2 901] Moved UIDs."])
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    client._imap.untagged_responses.pop("COPYUID", None)
    client.move([2], "Junk")
    assert client._imap.untagged_responses["COPYUID"] == [b"4711 2 901"]
    assert ids(user, "Junk") == []
    client.logout()


def test_rewrite_the_copyuid_of_a_move(user, imap_proxy) -> None:
    seen: list[tuple[int, str, str]] = []

    def wrong(v: int, src: str, dst: str) -> tuple[int, str, str]:
        seen.append((v, src, dst))
        return v, src, "77"

    proxy = imap_proxy(user)
    proxy.rewrite("UID MOVE", imapproxy.replace_copyuid(wrong))
    client = proxy.wrap(user).connect()
    uidvalidity = client.select_folder("Junk")[b"UIDVALIDITY"]
    client.select_folder("INBOX")
    client._imap.untagged_responses.pop("COPYUID", None)
    client.move([1, 2], "Junk")
    assert seen == [(uidvalidity, "1:2", "1:2")]  # the server's true mapping, untagged
    assert client._imap.untagged_responses["COPYUID"] == [f"{uidvalidity} 1:2 77".encode()]
    assert ids(user, "Junk") == ["a@example.org", "b@example.org"]
    assert proxy.transcript[-1].action == "rewrite"
    client.logout()


def test_rewrite_the_copyuid_of_a_copy(dovecot_nomove_uidplus, new_imap_user, imap_proxy):
    env = new_imap_user(dovecot_nomove_uidplus)
    seed(env, "a@example.org")
    proxy = imap_proxy(env)
    proxy.rewrite("UID COPY", imapproxy.replace_copyuid("1 1 5"))
    client = proxy.wrap(env).connect()
    assert b"MOVE" not in client.capabilities()
    client.select_folder("INBOX")
    client._imap.untagged_responses.pop("COPYUID", None)
    client.copy([1], "Junk")  # COPYUID comes in the tagged OK
    assert client._imap.untagged_responses["COPYUID"] == [b"1 1 5"]
    last = proxy.transcript[-1]
    assert last.server_reply is not None and last.client_reply is not None
    assert "[COPYUID 1 1 5]" not in last.server_reply
    assert last.client_reply.startswith(f"{last.tag} OK [COPYUID 1 1 5] ")
    client.logout()


def test_hooks_let_a_second_client_act_between_two_commands(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    observed: dict[str, object] = {}

    def other_client_takes_a(cmd: imapproxy.Command) -> None:
        assert cmd.line == 'UID MOVE 1 "Junk"'
        other = user.connect()
        other.select_folder("INBOX")
        other.move([1], "Trash")
        other.logout()

    def look_before_the_client_knows(cmd: imapproxy.Command) -> None:
        observed["junk"] = ids(user, "Junk")
        observed["client_reply"] = cmd.client_reply
        observed["server_reply"] = cmd.server_reply

    proxy.on("UID MOVE", before=other_client_takes_a)
    proxy.on("UID MOVE", nth=2, after=look_before_the_client_knows)
    client = proxy.wrap(user).connect()
    client.select_folder("INBOX")
    client._imap.untagged_responses.pop("COPYUID", None)
    with pytest.raises(imaplib.IMAP4.error, match="EXPUNGEISSUED"):
        client.move([1], "Junk")  # gone meanwhile; Dovecot says so
    assert "COPYUID" not in client._imap.untagged_responses
    client.move([2], "Junk")
    client.logout()
    assert ids(user, "Trash") == ["a@example.org"]
    assert ids(user, "Junk") == ["b@example.org"]
    assert observed["junk"] == ["b@example.org"]  # done on the server ...
    assert observed["client_reply"] is None  # ... before the client was told
    assert str(observed["server_reply"]).split()[1] == "OK"


# ---------------------------------------------------------------------- matching
def test_where_picks_the_store_that_sets_deleted(dovecot_nomove_uidplus, new_imap_user, imap_proxy):
    env = new_imap_user(dovecot_nomove_uidplus)
    seed(env, "a@example.org")
    proxy = imap_proxy(env)
    rule = proxy.answer_no("uid store", "[LIMIT] throttled", where=lambda a: "\\Deleted" in a)
    client = proxy.wrap(env).connect()
    client.select_folder("INBOX")
    client.add_flags([1], [r"\Seen"], silent=True)
    client.copy([1], "Junk")
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\] throttled"):
        client.add_flags([1], [r"\Deleted"], silent=True)
    client.logout()
    assert rule.seen == 1 and [c.line for c in rule.hits] == [
        "UID STORE 1 +FLAGS.SILENT (\\Deleted)"
    ]
    direct = env.connect()
    (entry,) = lab.read_folder(direct, "INBOX")
    assert {r"\Seen", r"\Deleted"} <= entry.flags  # the server did set it
    assert [e.message_id for e in lab.read_folder(direct, "Junk")] == ["a@example.org"]
    direct.logout()


def test_nth_and_times_count_over_all_connections(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    every = proxy.answer_no("NOOP", "[LIMIT] slow down", nth=2, times=None)
    cut = proxy.cut_before("SELECT", nth=2)
    first = proxy.wrap(user).connect()
    first.select_folder("INBOX")
    first.noop()
    for _ in range(2):
        with pytest.raises(imaplib.IMAP4.error, match="slow down"):
            first.noop()
    second = proxy.wrap(user).connect()
    with lost(second):
        second.select_folder("INBOX")
    first.logout()
    assert every.seen == 3 and every.fired == 2 and cut.fired == 1
    assert [(c.conn, c.name, c.action) for c in proxy.transcript if c.name != "CAPABILITY"] == [
        (1, "LOGIN", "forward"),
        (1, "SELECT", "forward"),
        (1, "NOOP", "forward"),
        (1, "NOOP", "answer_no"),
        (1, "NOOP", "answer_no"),
        (2, "LOGIN", "forward"),
        (2, "SELECT", "cut_before"),
        (1, "LOGOUT", "forward"),
    ]
    assert proxy.unfired() == []


def test_rule_arguments_are_checked() -> None:
    proxy = imapproxy.ImapProxy(("127.0.0.1", 1))  # never started
    with pytest.raises(ValueError):
        proxy.rule("NOOP", action="explode")
    with pytest.raises(ValueError):
        proxy.cut_before("NOOP", nth=0)
    with pytest.raises(ValueError):
        proxy.rule("UID MOVE", action="answer_ok", rewrite=lambda line: line)
    with pytest.raises(ValueError):
        proxy.answer_no("NOOP", "two\r\nlines")
    with pytest.raises(ValueError):
        proxy.answer_ok("NOOP", untagged=["OK no star"])


# ---------------------------------------------------------------------- framing
class Raw:
    """A bare socket speaking IMAP, to send exactly what a test needs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.f = self.sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.f.readline()

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            assert line, f"EOF before {tag!r}: {out}"
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def test_literals_both_ways_and_idle(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    raw = Raw(proxy.port)
    assert raw.greeting.startswith(b"* OK")
    name, pw = user.user.encode(), user.password.encode()
    # synchronising literals: the proxy sends "+" and waits for the server's own "+"
    raw.send(b"a1 LOGIN {%d}\r\n" % len(name))
    assert raw.line().startswith(b"+")
    raw.send(name + b" {%d}\r\n" % len(pw))
    assert raw.line().startswith(b"+")
    raw.send(pw + b"\r\n")
    assert raw.until(b"a1")[-1].startswith(b"a1 OK")
    # a non-synchronising literal whose content looks like commands and responses
    body = (
        b"Message-ID: <lit@example.org>\r\nSubject: x\r\n\r\n"
        b"a9 LOGOUT\r\na2 OK not the end\r\n+ no continuation\r\n* 9 EXISTS {3}\r\nend\r\n"
    )
    raw.send(b"a2 APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body))
    assert raw.until(b"a2")[-1].startswith(b"a2 OK")
    raw.send(b"a3 SELECT INBOX\r\n")
    raw.until(b"a3")
    raw.send(b"a4 UID FETCH 3 (BODY.PEEK[])\r\n")
    first = raw.line()
    assert first.endswith(b"{%d}\r\n" % len(body)), first
    assert raw.f.read(len(body)) == body
    assert raw.line() == b")\r\n"
    assert raw.until(b"a4")[-1].startswith(b"a4 OK")

    raw.send(b"a5 IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    seed(user, "during-idle@example.org")
    assert raw.line() == b"* 4 EXISTS\r\n"
    raw.send(b"DONE\r\n")
    assert raw.until(b"a5")[-1].startswith(b"a5 OK")
    raw.send(b"a6 LOGOUT\r\n")
    assert raw.until(b"a6")[-1].startswith(b"a6 OK")
    assert raw.line() == b""  # the server closed, and so did the proxy
    raw.close()
    assert proxy.names() == ["LOGIN", "APPEND", "SELECT", "UID FETCH", "IDLE", "LOGOUT"]
    assert proxy.transcript[1].args.startswith(f"INBOX {{{len(body)}+}}")


def test_authenticate_challenge_goes_to_the_client(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    raw = Raw(proxy.port)
    raw.send(b"b1 AUTHENTICATE PLAIN\r\n")
    assert raw.line().startswith(b"+")
    raw.send(base64.b64encode(f"\0{user.user}\0{user.password}".encode()) + b"\r\n")
    assert raw.until(b"b1")[-1].startswith(b"b1 OK")
    raw.send(b"b2 LOGOUT\r\n")
    raw.until(b"b2")
    raw.close()
    assert proxy.names() == ["AUTHENTICATE", "LOGOUT"]


def test_starttls_is_passed_through(user, imap_proxy) -> None:
    proxy = imap_proxy(user)
    proxy.answer_no("SELECT", "[UNAVAILABLE] would fire in the clear")
    client = proxy.wrap(user).connect(login=False)
    client.starttls(user.ssl_context())  # the lab certificate names 127.0.0.1
    client.login(user.user, user.password)
    client.select_folder("INBOX")  # encrypted: no rule applies any more
    client.logout()
    assert proxy.names()[-1] == "STARTTLS" and "LOGIN" not in proxy.names()


# ---------------------------------------------------------------------- robustness
def test_server_crash_and_return(dovecot_factory, new_imap_user, imap_proxy) -> None:
    server = dovecot_factory()
    env = new_imap_user(server)
    proxy = imap_proxy(server)
    client = proxy.wrap(env).connect()
    client.select_folder("INBOX")
    server.kill()
    with lost(client):
        client.noop()
    assert wait_until(lambda: len(proxy_threads()) == 1)  # only the accept thread is left
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        assert sock.recv(100) == b""  # nobody upstream: the proxy closes at once
    server.start()
    client = proxy.wrap(env).connect()  # follows the server to its (possibly new) port
    client.noop()
    client.logout()


def test_client_vanishing_and_stop_leave_no_threads(user, dovecot) -> None:
    before = set(proxy_threads())
    started = time.monotonic()
    proxy = imapproxy.ImapProxy(dovecot).start()
    gone = proxy.wrap(user).connect()
    gone.select_folder("INBOX")
    gone.shutdown()  # closes the socket without LOGOUT
    idle = proxy.wrap(user).connect()  # still connected when the proxy stops
    idle.select_folder("INBOX")
    proxy.stop()
    assert time.monotonic() - started < 2
    assert set(proxy_threads()) == before
    with lost(idle):
        idle.noop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    assert proxy.errors == []


def test_a_failing_hook_cuts_and_is_recorded(user, dovecot) -> None:
    proxy = imapproxy.ImapProxy(dovecot).start()

    def boom(cmd: imapproxy.Command) -> None:
        raise RuntimeError("hook broke")

    proxy.on("NOOP", before=boom)
    client = proxy.wrap(user).connect()
    with lost(client):
        client.noop()
    proxy.stop()
    assert [str(e) for e in proxy.errors] == ["hook broke"]
