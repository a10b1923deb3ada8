from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest

from ndr_sweeper import credentials
from ndr_sweeper.config import Account
from ndr_sweeper.errors import CredentialError

from keyrings import MemoryKeyring


class BrokenKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("dbus went away")


@pytest.fixture
def no_keyring() -> Iterator[None]:
    old = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    yield
    keyring.set_keyring(old)


def account(command: str | None = None) -> Account:
    return Account(name="work", host="h", username="u", password_command=command)


# --------------------------------------------------------------------------- password_command


def test_command_first_line_only() -> None:
    assert credentials.get_password(account("printf 'se cret\\nsecond\\n'")) == "se cret"
    assert credentials.get_password(account("printf 'crlf\\r\\n'")) == "crlf"
    assert credentials.get_password(account("printf ' spaced '")) == " spaced "


def test_command_wins_over_keyring(memory: MemoryKeyring) -> None:
    memory.store[("ndr-sweeper", "work")] = "from-keyring"
    assert credentials.get_password(account("printf fromcmd")) == "fromcmd"


def test_command_failure_names_status_not_stdout() -> None:
    with pytest.raises(CredentialError) as info:
        credentials.get_password(
            account("echo hunter2; echo first >&2; echo gpg: no key >&2; exit 3")
        )
    msg = str(info.value)
    assert msg == "password_command of account 'work' failed (exit status 3): gpg: no key"
    assert "hunter2" not in msg


def test_command_false() -> None:
    with pytest.raises(CredentialError, match=r"'work' failed \(exit status 1\)$"):
        credentials.get_password(account("false"))


def test_command_empty_output() -> None:
    with pytest.raises(CredentialError, match="printed nothing"):
        credentials.get_password(account("printf '\\nsecret-on-line-2\\n'"))
    with pytest.raises(CredentialError, match="printed nothing"):
        credentials.get_password(account("true"))


def test_command_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(CredentialError, match=r"did not finish within 0\.5s"):
        credentials.run_secret_command("sleep 10; echo late", account="work", timeout=0.5)
    assert time.monotonic() - start < 5


def test_command_killed_by_signal() -> None:
    with pytest.raises(CredentialError, match="killed by signal 9"):
        credentials.run_secret_command("kill -9 $$", account="work")


def test_client_secret_command() -> None:
    acc = Account(
        name="g", host="h", username="u", auth="oauth2", oauth2_client_secret_command="printf cs"
    )
    assert credentials.get_client_secret(acc) == "cs"
    assert credentials.get_client_secret(account()) is None
    bad = Account(name="g", host="h", username="u", oauth2_client_secret_command="exit 2")
    with pytest.raises(CredentialError, match="oauth2_client_secret_command of account 'g'"):
        credentials.get_client_secret(bad)


# --------------------------------------------------------------------------- keyring


def test_keyring_round_trip(memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError) as info:
        credentials.get_password(account())
    assert str(info.value) == (
        "no password stored for account 'work': run `ndr-sweeper login work`, "
        "or set password_command"
    )
    credentials.set_password("work", "s3cret")
    assert memory.store == {("ndr-sweeper", "work"): "s3cret"}
    assert credentials.get_password(account()) == "s3cret"
    credentials.delete_password("work")
    assert memory.store == {}
    with pytest.raises(CredentialError, match="nothing stored for the password of account 'work'"):
        credentials.delete_password("work")


def test_refresh_token_key(memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match="ndr-sweeper login work"):
        credentials.get_refresh_token("work")
    credentials.set_refresh_token("work", "rt")
    assert memory.store == {("ndr-sweeper", "work:oauth2-refresh-token"): "rt"}
    assert credentials.get_refresh_token("work") == "rt"
    assert credentials.get_secret("work", credentials.REFRESH_TOKEN) == "rt"
    assert credentials.get_secret("work") is None
    credentials.delete_refresh_token("work")
    assert memory.store == {}


def test_refuses_empty_secret(memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match="empty"):
        credentials.set_password("work", "")


def test_no_keyring_backend(no_keyring: None) -> None:
    for call in (
        lambda: credentials.get_password(account()),
        lambda: credentials.set_password("work", "x"),
        lambda: credentials.delete_password("work"),
    ):
        with pytest.raises(CredentialError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg
        assert "no keyring backend" in msg and "'work'" in msg
        assert "password_command" in msg and "keyrings.cryptfile" in msg
        assert "keyring diagnose" in msg


def test_no_keyring_backend_does_not_matter_with_command(no_keyring: None) -> None:
    assert credentials.get_password(account("printf ok")) == "ok"


def test_backend_error_is_wrapped() -> None:
    old = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring())
    try:
        with pytest.raises(CredentialError, match="RuntimeError: dbus went away"):
            credentials.get_password(account())
    finally:
        keyring.set_keyring(old)


class StuckKeyring(MemoryKeyring):
    """A keyring waiting for a desktop unlock prompt that nobody answers (until unlock)."""

    def __init__(self) -> None:
        super().__init__()
        self.unlocked = threading.Event()
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        self.unlocked.wait(60)
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.unlocked.wait(60)
        super().set_password(service, username, password)


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> Iterator[StuckKeyring]:
    kr = StuckKeyring()
    old = keyring.get_keyring()
    keyring.set_keyring(kr)
    monkeypatch.setattr(credentials, "KEYRING_TIMEOUT", 0.3)
    yield kr
    kr.unlocked.set()
    keyring.set_keyring(old)


def test_stuck_keyring_read_gives_up_with_one_line(stuck: StuckKeyring) -> None:
    stuck.store[("ndr-sweeper", "work")] = "s3cret"
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(CredentialError) as info:
            credentials.get_password(account())
        assert time.monotonic() - started < 2
        assert str(info.value) == (
            "the keyring did not answer within 0.3s for the password of account 'work' "
            "(locked, waiting for an unlock prompt?): unlock it, or set password_command for "
            "it in the config file"
        )
    assert stuck.reads == 1  # the second caller waited for the read already stuck
    stuck.unlocked.set()
    assert credentials.get_password(account()) == "s3cret"


def test_stuck_keyring_token_read_names_a_fix_for_tokens(stuck: StuckKeyring) -> None:
    with pytest.raises(CredentialError, match=r"did not answer within 0\.3s") as info:
        credentials.get_refresh_token("work")
    assert "password_command" not in str(info.value)
    assert "oauth2-refresh-token of account 'work'" in str(info.value)


def test_interactive_reads_wait_for_the_unlock(stuck: StuckKeyring) -> None:
    stuck.store[("ndr-sweeper", "work")] = "s3cret"
    threading.Timer(0.8, stuck.unlocked.set).start()
    started = time.monotonic()
    assert credentials.get_password(account(), interactive=True) == "s3cret"
    assert time.monotonic() - started >= 0.7


def test_sweep_login_does_not_hang_on_a_stuck_keyring(stuck: StuckKeyring) -> None:
    """What sweeps and the service use to log in: gives up, before any connection."""
    from ndr_sweeper.connect import open_mailbox

    acc = Account(name="work", host="127.0.0.1", port=1, security="plain", username="u")
    started = time.monotonic()
    with pytest.raises(CredentialError, match="did not answer"):
        open_mailbox(acc)
    assert time.monotonic() - started < 2
    oauth = Account(
        name="work",
        host="127.0.0.1",
        port=1,
        security="plain",
        username="u",
        auth="oauth2",
        oauth2_provider="google",
        oauth2_client_id="c",
    )
    with pytest.raises(CredentialError, match="did not answer"):
        open_mailbox(oauth)


def test_keyring_imported_lazily() -> None:
    import subprocess

    code = (
        "import sys, ndr_sweeper.credentials, ndr_sweeper.config; print('keyring' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
