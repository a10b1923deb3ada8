"""mailbox/guard.py and the COPYUID check, in process against the fake IMAP server: what is
cut, what is not (a big answer on a slow link), and that a cut connection stays cut."""

from __future__ import annotations

import time

import pytest

from ndr_sweeper.errors import ConnectError, ServerLimitError
from ndr_sweeper.mailbox import guard, uidset
from ndr_sweeper.mailbox.imap import ImapMailbox, _parse_copyuid

import lab
from fakeimap import FakeImapServer, repeat


def connect(server: FakeImapServer, timeout: float = 1.0) -> ImapMailbox:
    return ImapMailbox.connect(
        server.host, server.port, "plain", server.user, server.password, timeout=timeout
    )


# ---------------------------------------------------------------- UID sets from a server


def test_parse_runs_does_not_expand() -> None:
    runs = uidset.parse_runs("1:4000000000,7,12:10")
    assert runs == [(1, 4_000_000_000), (7, 7), (10, 12)]
    assert uidset.count(runs) == 4_000_000_004
    assert list(uidset.expand([(10, 12), (7, 7)])) == [10, 11, 12, 7]
    for bad in ("0", "1:x", "", "5:4294967296", "*"):
        with pytest.raises(ValueError):
            uidset.parse_runs(bad)


@pytest.mark.parametrize(
    ("entry", "sent", "expected"),
    [
        (b"9 1:3,7 10:13", [1, 2, 3, 7], {1: 10, 2: 11, 3: 12, 7: 13}),
        (b"9 1,3 20:21", [1, 2, 3], {1: 20, 3: 21}),  # 2 was expunged meanwhile: fine
        (b"9 1:150000000 1:150000000", [1, 2], {}),  # bigger than what was sent
        (b"9 1:4000000000 1:4000000000", [1, 2], {}),
        (b"9 1:2 5", [1, 2], {}),  # sizes differ
        (b"9 3:4 5:6", [1, 2], {}),  # not our UIDs
        (b"9 1:2 5,5", [1, 2], {}),  # one destination twice
        (b"9 1:2", [1, 2], {}),  # malformed
    ],
)
def test_copyuid_checked_before_use(caplog, entry, sent, expected) -> None:
    assert _parse_copyuid([entry], sent) == expected
    warnings = [r for r in caplog.records if "COPYUID" in r.getMessage()]
    assert len(warnings) == (0 if expected or entry.startswith(b"9 1,3") else 1)


# ---------------------------------------------------------------- limits, in process


@pytest.fixture
def server(fake_imap) -> FakeImapServer:
    s = fake_imap()
    s.add("INBOX", lab.make_message("a@x", body="b" * 600_000 + "\r\n"))
    s.add("INBOX", lab.make_message("b@x"))
    return s


def test_a_cut_connection_stays_cut_and_frees_its_buffers(server) -> None:
    server.on("STATUS").send(repeat(b"* 1 EXISTS\r\n" * 1000))
    mb = connect(server)
    with pytest.raises(ServerLimitError, match=r"more than 100000 responses.*giving up") as info:
        mb.status("INBOX")
    assert isinstance(info.value, ConnectError)
    assert mb.client._imap.untagged_responses == {}
    started = time.monotonic()
    with pytest.raises(ServerLimitError, match="more than 100000 responses"):
        mb.select("INBOX")  # the same one line, at once, without touching the socket
    assert time.monotonic() - started < 0.5
    mb.logout()  # never raises


def test_a_big_answer_on_a_slow_link_is_not_cut(server) -> None:
    """600 KB at 400 KB/s takes 1.5 s, more than the 1 s timeout: the answer keeps coming
    faster than MIN_RATE, so it earns the time."""
    server.on("FETCH").trickle(400_000)
    mb = connect(server)
    mb.select("INBOX", readonly=True)
    started = time.monotonic()
    bodies = dict(mb.fetch_messages([1], max_bytes=1 << 20))
    assert time.monotonic() - started > 1.2
    assert len(bodies[1]) > 600_000
    mb.logout()


def test_silence_mid_session_is_a_timeout_not_a_limit(server) -> None:
    server.on("EXAMINE").hang()
    mb = connect(server)
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"did not answer EXAMINE on folder 'INBOX' within 1 s"):
        mb.select("INBOX", readonly=True)
    assert time.monotonic() - started < 2.5


def test_body_literal_cap_follows_what_was_asked(server) -> None:
    """A server ignoring the partial FETCH sends the whole 600 KB body: the cap is what was
    asked (100 KB) plus 4 KB."""
    whole = server.messages("INBOX")[0].data
    part = whole[: 100 * 1024]
    server.on("FETCH").rewrite(
        lambda r: r.replace(b"{102400}\r\n" + part, b"{%d}\r\n" % len(whole) + whole)
    )
    mb = connect(server)
    mb.select("INBOX", readonly=True)
    with pytest.raises(ServerLimitError, match=rf"sent a {len(whole)}-byte literal .* 104 KB\)"):
        dict(mb.fetch_messages([1], max_bytes=100 * 1024))


def test_untagged_leftovers_are_dropped_at_the_next_command(server) -> None:
    server.on("NOOP").send(b"".join(b"* %d EXISTS\r\n" % n for n in range(3, 503)))
    mb = connect(server)
    mb.select("INBOX", readonly=True)
    mb.client._imap.noop()  # imaplib's: it leaves the untagged responses where they arrived
    untagged = mb.client._imap.untagged_responses
    assert len(untagged.get("EXISTS", [])) == 500
    mb.status("INBOX")
    assert "EXISTS" not in untagged


def test_idle_keeps_a_line_split_across_checks(server) -> None:
    """A line arriving in pieces across idle_check calls is neither lost nor an error."""
    server.on("IDLE").send(b"* 7 EXISTS\r\n").trickle(20)
    mb = connect(server)
    client = mb.client
    client.select_folder("INBOX", readonly=True)
    client.idle()
    got: list[object] = []
    deadline = time.monotonic() + 5
    while (7, b"EXISTS") not in got and time.monotonic() < deadline:
        got.extend(client.idle_check(timeout=0.05))
    assert (7, b"EXISTS") in got
    client.idle_done()
    mb.logout()


def test_idle_flood_returns_control_within_the_window(server) -> None:
    server.on("IDLE").send(repeat(b"* 1 EXISTS\r\n" * 1000))
    mb = connect(server)
    client = mb.client
    client.select_folder("INBOX", readonly=True)
    client.idle()
    started = time.monotonic()
    with pytest.raises(guard.LimitExceeded, match="during IDLE"):
        while True:
            client.idle_check(timeout=0.2)
    assert time.monotonic() - started < 0.2 + 1.0 + 1.5
    with pytest.raises(guard.LimitExceeded):
        client.idle_done()  # the same error, not a confusing second one
    mb.logout()
