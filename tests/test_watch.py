"""The IDLE watch loop (ndr_sweeper/watch.py) against the fake IMAP server.

Real sockets and the real login code (``ImapMailbox.connect``); the fake server scripts the
misbehaviour (BYE, EOF, floods, silence). The host standing in for the service records what
the loop asks of it. The whole service with many watched accounts is at the end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ndr_sweeper import service as svc
from ndr_sweeper.config import Account, Config
from ndr_sweeper.errors import AuthenticationError
from ndr_sweeper.mailbox.imap import connect
from ndr_sweeper.watch import MAX_RESPONSES, WatchLoop

from fakeimap import DEFAULT_CAPABILITIES, FakeImapServer, repeat
from fakes import as_run_sweep
from lab import make_message


def wait_until(pred: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def acc(name: str, server: FakeImapServer, **kw: object) -> Account:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": "plain",
        "username": "user",
        "timeout": 5.0,
        "min_age": 0.0,
    }
    values.update(kw)
    return Account(name=name, **values)  # type: ignore[arg-type]


class Host:
    """What the loop sees of the service: logins (to the account's server), arrivals."""

    def __init__(self, backoff: tuple[float, float] = (0.1, 0.4), renew: float = 600.0) -> None:
        self.reconnect_backoff = backoff
        self.idle_renew = renew
        self.accounts: dict[str, Account] = {}
        self.arrived: list[tuple[str, float]] = []
        self.logins: list[tuple[str, float]] = []
        self.refuse: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def open_mailbox(self, name: str):
        a = self.accounts[name]
        with self._lock:
            self.logins.append((name, time.monotonic()))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if name in self.refuse:
                self.retry_at[name] = time.monotonic() + 0.5
                raise AuthenticationError(f"login to {a.host} as user refused")
            return connect(a.host, a.port, "plain", "user", "secret", timeout=a.timeout)
        finally:
            with self._lock:
                self.active -= 1

    def auth_wait(self, name: str) -> float:
        return max(self.retry_at.get(name, 0.0) - time.monotonic(), 0.0)

    def mail_arrived(self, name: str) -> None:
        self.arrived.append((name, time.monotonic()))

    def arrivals(self, name: str) -> int:
        return sum(1 for n, _ in self.arrived if n == name)


@pytest.fixture
def watch() -> Iterator[Callable[..., tuple[WatchLoop, Host]]]:
    loops: list[WatchLoop] = []

    def make(*accounts: Account, host: Host | None = None, **kw: object):
        host = host or Host()
        loop = WatchLoop(host, **kw).start()  # type: ignore[arg-type]
        loops.append(loop)
        for a in accounts:
            host.accounts[a.name] = a
            loop.add(a, a.folders)
        return loop, host

    yield make
    for loop in loops:
        loop.stop()


def idling(loop: WatchLoop, n: int = 1) -> Callable[[], bool]:
    return lambda: loop.states()["idling"] >= n


def watch_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ndr_sweeper.watch" and r.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------- new mail, renewal


def test_new_mail_calls_mail_arrived_once_per_growth(fake_imap, watch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    server = fake_imap()
    server.add("INBOX", make_message("old@example.org"))
    loop, host = watch(acc("a", server))
    assert wait_until(idling(loop))
    assert "a: watching INBOX for new mail" in caplog.text
    assert host.arrived == []  # the message that was there is not news
    server.add("INBOX", make_message("new@example.org"))
    assert wait_until(lambda: host.arrivals("a") == 1)
    time.sleep(0.3)
    assert host.arrivals("a") == 1
    server.add("INBOX", make_message("newer@example.org"))
    assert wait_until(lambda: host.arrivals("a") == 2)


def test_idle_is_renewed_on_the_same_connection(fake_imap, watch) -> None:
    server = fake_imap()
    loop, host = watch(acc("a", server), host=Host(renew=0.2))
    assert wait_until(lambda: len(server.received("IDLE")) >= 4)
    assert server.sessions == 1 and len(host.logins) == 1
    assert loop.states()["idling"] + loop.states()["ending"] + loop.states()["starting"] == 1
    server.add("INBOX", make_message("new@example.org"))  # still heard after renewals
    assert wait_until(lambda: host.arrivals("a") == 1)


def test_literal_in_a_response_is_skipped_not_kept(fake_imap, watch, caplog) -> None:
    server = fake_imap()
    # A FETCH whose flag list carries a literal holding a line end, then real news.
    server.on("IDLE").send(b"* 1 FETCH (X {12}\r\n* 99 EXISTS\n)\r\n* 7 EXISTS\r\n")
    loop, host = watch(acc("a", server))
    assert wait_until(lambda: host.arrivals("a") == 1)
    time.sleep(0.2)
    assert host.arrivals("a") == 1 and loop.states()["idling"] == 1
    assert watch_warnings(caplog) == []


# ---------------------------------------------------------------- failures


def test_bye_reconnects_with_growing_backoff_and_one_warning(fake_imap, watch, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ndr_sweeper.watch")
    server = fake_imap()
    server.on("IDLE", times=None).send(b"* BYE going away\r\n")
    _loop, host = watch(acc("a", server), host=Host(backoff=(0.1, 0.4)))
    assert wait_until(lambda: len(host.logins) >= 5, timeout=10)
    times = [t for _, t in host.logins]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4, 0.4), strict=False):
        assert delay - 0.02 <= gap < delay + 1.0, gaps
    warnings = watch_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "a: watching INBOX:" in warnings[0] and "going away" in warnings[0]
    assert "reconnecting in 0.1s" in warnings[0]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "reconnecting" in r.msg]
    assert len(debug) >= 3  # the rest of the series


def test_eof_reconnects_then_watches_again(fake_imap, watch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper.watch")
    server = fake_imap()
    server.on("IDLE", nth=1).cut_before()
    _loop, host = watch(acc("a", server))
    assert wait_until(lambda: "a: watching INBOX again" in caplog.text)
    assert len(host.logins) == 2
    (warning,) = watch_warnings(caplog)
    assert "closed the connection" in warning
    server.add("INBOX", make_message("new@example.org"))
    assert wait_until(lambda: host.arrivals("a") == 1)


def test_silence_after_idle_times_out(fake_imap, watch, caplog) -> None:
    server = fake_imap()
    server.on("IDLE", nth=1).hang()
    loop, host = watch(acc("a", server, timeout=0.5))
    assert wait_until(lambda: len(host.logins) == 2, timeout=5)
    (warning,) = watch_warnings(caplog)
    assert "did not answer IDLE within 0.5 s" in warning
    assert wait_until(idling(loop))


def test_a_flood_is_cut_with_one_warning_and_others_still_heard(fake_imap, watch, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ndr_sweeper.watch")
    bad, good = fake_imap(), fake_imap()
    bad.add("INBOX", make_message("old@example.org"))
    bad.on("IDLE", times=None).send(repeat(b"* 1 EXISTS\r\n" * 1000))
    _loop, host = watch(acc("bad", bad), acc("good", good), host=Host(backoff=(0.3, 0.6)))
    assert wait_until(lambda: len([n for n, _ in host.logins if n == "bad"]) >= 3, timeout=15)
    good.add("INBOX", make_message("new@example.org"))
    assert wait_until(lambda: host.arrivals("good") == 1, timeout=3)
    (warning,) = watch_warnings(caplog)
    assert f"sent more than {MAX_RESPONSES} responses during IDLE" in warning
    assert warning.startswith("bad: watching INBOX: 127.0.0.1:")
    assert host.arrivals("bad") == 0  # "1 EXISTS" over and over is not new mail


def test_an_endless_line_is_cut(fake_imap, watch, caplog) -> None:
    server = fake_imap()
    server.on("IDLE").send(repeat(b"x" * 4096, total=800 * 1024))  # 800 KB, no line end
    loop, _host = watch(acc("a", server))
    assert wait_until(lambda: watch_warnings(caplog))
    assert "sent a line of more than 64 KB during IDLE" in watch_warnings(caplog)[0]
    assert wait_until(idling(loop))  # the next connection is fine


def test_idle_refused_is_retried_with_backoff(fake_imap, watch, caplog) -> None:
    server = fake_imap()
    server.on("IDLE", nth=1).answer_no("not now", do=False)
    loop, _host = watch(acc("a", server))
    assert wait_until(idling(loop))
    (warning,) = watch_warnings(caplog)
    assert "refused IDLE: 'not now'" in warning


def test_no_idle_capability_warns_once_and_stops_watching(fake_imap, watch, caplog) -> None:
    server = fake_imap(capabilities=DEFAULT_CAPABILITIES - {"IDLE"})
    loop, host = watch(acc("a", server), host=Host(backoff=(0.05, 0.1)))
    assert wait_until(lambda: loop.states()["no idle"] == 1)
    time.sleep(0.5)
    assert len(host.logins) == 1
    (warning,) = watch_warnings(caplog)
    assert "does not support IDLE: not watching INBOX (the schedule still sweeps it)" in warning


def test_refused_login_waits_for_the_services_backoff(fake_imap, watch) -> None:
    server = fake_imap()
    host = Host(backoff=(0.05, 0.1))
    host.refuse.add("a")
    loop, host = watch(acc("a", server), host=host)
    assert wait_until(lambda: len(host.logins) == 1)
    host.refuse.clear()
    assert wait_until(idling(loop))
    first, second = (t for _, t in host.logins)
    assert second - first >= 0.45  # the service's wait, not the quick reconnect back-off


def test_missing_folder_is_retried_with_backoff(fake_imap, watch, caplog) -> None:
    server = fake_imap()
    _loop, host = watch(acc("a", server, folders=("Nope",)), host=Host(backoff=(0.05, 0.1)))
    assert wait_until(lambda: len(host.logins) >= 3)
    (warning,) = watch_warnings(caplog)
    assert "a: watching Nope:" in warning and "reconnecting" in warning


# ---------------------------------------------------------------- connecting many, stopping


def test_connects_are_bounded_and_spread_over_time(fake_imap, watch) -> None:
    server = fake_imap()
    accounts = [acc(f"a{i}", server) for i in range(40)]
    t0 = time.monotonic()
    loop, host = watch(*accounts, connectors=2, connect_rate=20.0)
    assert wait_until(idling(loop, 40), timeout=15)
    took = time.monotonic() - t0
    assert host.max_active <= 2
    # 10 at once (the burst), then 20 a second: the other 30 take 1.5 s at least
    assert took >= 1.4, took
    starts = sorted(t for _, t in host.logins)
    assert starts[-1] - starts[10] >= 1.4


def test_remove_closes_that_account_only(fake_imap, watch) -> None:
    server = fake_imap()
    loop, host = watch(acc("a", server), acc("b", server))
    assert wait_until(idling(loop, 2))
    loop.remove("a")
    assert loop.states() == {"idling": 1}
    assert wait_until(lambda: len(server.received("LOGOUT")) == 1)
    server.add("INBOX", make_message("new@example.org"))
    assert wait_until(lambda: host.arrivals("b") == 1)
    time.sleep(0.2)
    assert host.arrivals("a") == 0
    loop.add(host.accounts["a"], ["INBOX"])  # and back (what a reload does)
    assert wait_until(idling(loop, 2))


def test_stop_is_prompt_with_many_connections(fake_imap, watch) -> None:
    server = fake_imap()
    accounts = [acc(f"a{i}", server) for i in range(60)]
    loop, _host = watch(*accounts, connect_rate=1000.0)
    assert wait_until(idling(loop, 60), timeout=15)
    t0 = time.monotonic()
    loop.stop()
    assert time.monotonic() - t0 < 1.0
    assert not any(t.is_alive() for t in loop.threads)
    assert wait_until(lambda: len(server.received("LOGOUT")) == 60)  # each said goodbye


# ---------------------------------------------------------------- the service


def service_config(tmp_path: Path, *accounts: Account) -> Config:
    return Config(
        path=tmp_path / "config.toml",
        source="cli",
        accounts=accounts,
        state_dir=tmp_path / "state",
        max_parallel=4,
    )


class CountingSweep:
    """Stands in for sweep.run_sweep: counts calls per account, does nothing."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):  # run_sweep's signature, checked
        return as_run_sweep(self._sweep)(*args, **kwargs)

    def _sweep(self, account, state, factory, reporter):
        from ndr_sweeper.sweep import AccountResult

        with self._lock:
            self.times.setdefault(account.name, []).append(time.monotonic())
        return AccountResult(account.name, run_id=None)

    def swept_after(self, name: str, t: float) -> bool:
        return any(x >= t for x in self.times.get(name, ()))


def mailbox_factory(account: Account):
    return connect(account.host, account.port, "plain", "user", "secret", timeout=5)


def test_service_with_200_watched_accounts_uses_a_few_threads(fake_imap, tmp_path) -> None:
    server = fake_imap()
    # 200 mailboxes as far as the service can tell (one fake server stands in for all: the
    # factory below logs in to it whatever the account's user name)
    accounts = [
        acc(f"w{i:03d}", server, every=3600.0, watch=True, username=f"w{i:03d}") for i in range(200)
    ]
    sweep = CountingSweep()
    before = threading.active_count()
    s = svc.Service(
        service_config(tmp_path, *accounts),
        sweep=sweep,
        mailbox_factory=mailbox_factory,
        watch_settle=0.0,
        watch_connect_rate=500.0,
    )
    s.start()
    try:
        assert s._watch is not None
        assert wait_until(idling(s._watch, 200), timeout=30)
        # the loop, 4 connectors, the scheduler and at most max_parallel sweeps
        added = threading.active_count() - before
        assert added <= 1 + 4 + 1 + 4, [t.name for t in threading.enumerate()]
        assert sum(1 for t in threading.enumerate() if t.name.startswith("watch")) == 5
        t0 = time.monotonic()
        server.add("INBOX", make_message("new@example.org"))  # every account sees it
        assert wait_until(lambda: all(sweep.swept_after(a.name, t0) for a in accounts), 20)
    finally:
        t1 = time.monotonic()
        s.stop()
        assert time.monotonic() - t1 < 3
    assert not any(t.name.startswith("watch") for t in threading.enumerate())


def test_service_reload_reconnects_only_the_changed_account(fake_imap, tmp_path, caplog) -> None:
    server = fake_imap()
    a, b = (acc(n, server, every=3600.0, watch=True) for n in ("a", "b"))
    s = svc.Service(
        service_config(tmp_path, a, b), sweep=CountingSweep(), mailbox_factory=mailbox_factory
    )
    s.start()
    try:
        assert wait_until(idling(s._watch, 2))
        logins = len(server.received("LOGIN"))
        s.reload(service_config(tmp_path, a, acc("b", server, every=60.0, watch=True)))
        assert wait_until(lambda: len(server.received("LOGIN")) == logins + 1)
        assert wait_until(idling(s._watch, 2))
        time.sleep(0.3)
        assert len(server.received("LOGIN")) == logins + 1  # a kept its connection
        s.reload(service_config(tmp_path, a))  # b removed: its connection closed
        assert s._watch.states() == {"idling": 1}
    finally:
        s.stop()


# ---------------------------------------------------------------- TLS, on the lab Dovecot


@pytest.mark.imap
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_connections_are_read_without_blocking(dovecot, new_imap_user, watch, security):
    """SSLSocket in the loop: decrypted bytes the selector cannot see are read too, and
    renewing IDLE works over TLS."""
    import lab

    env = new_imap_user(dovecot)
    a = Account(
        name="t",
        host=env.host,
        port=env.tls_port if security == "tls" else env.port,
        security=security,
        username=env.user,
        timeout=5.0,
    )

    class TlsHost(Host):
        def open_mailbox(self, name: str):
            self.logins.append((name, time.monotonic()))
            return connect(
                a.host, a.port, security, env.user, env.password, ca_file=env.cafile, timeout=5
            )

    loop, host = watch(a, host=TlsHost(renew=0.3))
    assert wait_until(idling(loop))
    assert type(loop._watches[("t", "INBOX")].sock).__name__ == "SSLSocket"
    assert wait_until(lambda: loop._watches[("t", "INBOX")].tag >= 3)  # renewed: IDLE again
    client = env.connect()
    try:
        lab.append_messages(client, "INBOX", [make_message("a@example.org")] * 3)
    finally:
        client.logout()
    assert wait_until(lambda: host.arrivals("t") >= 1, timeout=10)
    assert len(host.logins) == 1  # the same connection all along
