"""The open-file limit: raised at start, and what happens when the watched folders do not fit."""

from __future__ import annotations

import logging
import resource
import threading
import time
from pathlib import Path

import pytest

from ndr_sweeper import fdlimit
from ndr_sweeper import service as svc
from ndr_sweeper.config import Account, Config
from ndr_sweeper.fdlimit import OpenFiles
from ndr_sweeper.mailbox.imap import connect

from fakes import as_run_sweep


class Limits:
    """getrlimit/setrlimit over a pretend (soft, hard); ``cap`` refuses anything above it."""

    def __init__(self, soft: int, hard: int, cap: int | None = None) -> None:
        self.value = (soft, hard)
        self.cap = cap
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.value

    def set(self, which: int, value: tuple[int, int]) -> None:
        self.calls.append(value)
        if self.cap is not None and value[0] > self.cap:
            raise ValueError("not allowed")
        self.value = value


def test_soft_limit_is_raised_to_the_hard_one() -> None:
    lim = Limits(1024, 524288)
    got = fdlimit.raise_open_file_limit(lim.get, lim.set)
    assert got == OpenFiles(before=1024, soft=524288, hard=524288)
    assert lim.value == (524288, 524288)


def test_nothing_to_raise() -> None:
    lim = Limits(4096, 4096)
    assert fdlimit.raise_open_file_limit(lim.get, lim.set) == OpenFiles(4096, 4096, 4096)
    assert lim.calls == []


def test_infinite_hard_limit_takes_what_the_system_allows() -> None:
    inf = resource.RLIM_INFINITY
    lim = Limits(256, inf, cap=fdlimit.ADVICE)  # macOS-like: OPEN_MAX caps the soft limit
    got = fdlimit.raise_open_file_limit(lim.get, lim.set)
    assert got == OpenFiles(256, fdlimit.ADVICE, inf)
    assert lim.calls[0][0] > fdlimit.ADVICE  # tried more first


def test_a_refused_raise_keeps_the_limit() -> None:
    lim = Limits(1024, 4096, cap=1024)
    assert fdlimit.raise_open_file_limit(lim.get, lim.set) == OpenFiles(1024, 1024, 4096)


def test_capacity() -> None:
    assert fdlimit.capacity(None, 4, 4) is None
    r = fdlimit.reserve(4, 4)
    assert 64 <= r <= 256
    assert fdlimit.capacity(1024, 4, 4) == 1024 - r
    assert fdlimit.capacity(r - 10, 4, 4) == 0
    assert fdlimit.reserve(8, 4) > r  # more sweeps at once need more


def test_shortage_line_names_the_fix() -> None:
    skipped = [f"a{i}/INBOX" for i in range(880, 1000)]
    line = fdlimit.shortage(OpenFiles(1024, 1024, 1024), 1000, skipped, 4, 4)
    assert "\n" not in line
    assert "open-file limit of 1024" in line and "watching 880" in line
    assert "a880/INBOX, a881/INBOX, a882/INBOX, a883/INBOX, a884/INBOX and 115 more" in line
    assert "LimitNOFILE=65536" in line and "ulimit -n 65536" in line
    assert "the schedule still sweeps them" in line


# ---------------------------------------------------------------- in the service


def account(name: str, server, **kw: object) -> Account:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": "plain",
        "username": "user",
        "every": 3600.0,
        "min_age": 0.0,
        "timeout": 5.0,
    }
    values.update(kw)
    return Account(name=name, **values)  # type: ignore[arg-type]


def config(tmp_path: Path, *accounts: Account) -> Config:
    return Config(
        path=tmp_path / "c.toml",
        source="cli",
        accounts=accounts,
        state_dir=tmp_path / "state",
        max_parallel=4,
    )


def mailbox(acc: Account):
    return connect(acc.host, acc.port, "plain", "user", "secret", timeout=5)


def wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_service_watches_what_fits_and_says_so_once(fake_imap, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    server = fake_imap()
    limit = fdlimit.reserve(4, 4) + 3  # room for three watched folders
    accounts = [
        account("a", server, watch=True, folders=("INBOX", "Junk")),
        account("b", server),  # not watched: takes no room
        account("c", server, watch=True),
        account("d", server, watch=True),
        account("e", server, watch=True),
    ]
    swept: list[str] = []
    lock = threading.Lock()

    @as_run_sweep
    def sweep(acc, state, factory, reporter):
        from ndr_sweeper.sweep import AccountResult

        with lock:
            swept.append(acc.name)
        return AccountResult(acc.name)

    s = svc.Service(
        config(tmp_path, *accounts),
        sweep=sweep,
        mailbox_factory=mailbox,
        open_file_limit=lambda: OpenFiles(256, limit, limit),
    )
    s.start()
    try:
        assert wait_until(lambda: s._watch.states()["idling"] == 3)
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 1, lines
        assert f"open-file limit of {limit}:" in lines[0]
        assert "watching 3, not d/INBOX, e/INBOX" in lines[0]
        assert "LimitNOFILE" in lines[0]
        assert s._watched == {"a": 2, "c": 1}
        # every account is still scheduled and swept
        assert wait_until(lambda: set(swept) == {"a", "b", "c", "d", "e"})
        # a reload watches what it adds while there is room, and says what does not fit
        more = [account(n, server, watch=True) for n in ("f", "g", "h")]
        s.reload(config(tmp_path, *accounts[1:], *more))  # a (two folders) removed
        assert wait_until(lambda: s._watch.states()["idling"] == 3)
        assert s._watched == {"c": 1, "f": 1, "g": 1}
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 2 and "watching 3, not h/INBOX (" in lines[1], lines
    finally:
        s.stop()


def test_service_raises_the_limit_at_start(tmp_path: Path, fake_imap) -> None:
    server = fake_imap()
    called: list[bool] = []

    def raise_it() -> OpenFiles:
        called.append(True)
        return OpenFiles(1024, 4096, 4096)

    s = svc.Service(
        config(tmp_path, account("a", server)),
        sweep=as_run_sweep(lambda *a: None),
        mailbox_factory=mailbox,
        open_file_limit=raise_it,
    )
    s.start()
    s.stop()
    assert called == [True]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="Linux only")
def test_real_limit_is_raised_in_a_child(tmp_path: Path) -> None:
    """The real resource calls, in a child whose soft limit starts at 256."""
    import subprocess
    import sys

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256 or hard == resource.RLIM_INFINITY:
        pytest.skip(f"hard limit {hard}")
    code = (
        "import resource; from ndr_sweeper import fdlimit; "
        "print(fdlimit.raise_open_file_limit()); "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    ).stdout.split("\n")
    assert out[0] == f"OpenFiles(before=256, soft={hard}, hard={hard})"
    assert out[1] == str(hard)
