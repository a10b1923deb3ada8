"""security = "plain" goes only to loopback, decided by every address the host resolves to,
at the moment of connecting (the config file does no DNS). The resolver is injected: no test
here depends on real DNS."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from ndr_sweeper import connect
from ndr_sweeper.config import Account, load_config
from ndr_sweeper.errors import ConfigError, ConnectError


class Resolver:
    """A stand-in for socket.getaddrinfo answering with fixed addresses; records the calls."""

    def __init__(self, *addresses: str, error: OSError | None = None) -> None:
        self.addresses = addresses
        self.error = error
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        out = []
        for a in self.addresses:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            sockaddr = (a, port, 0, 0) if family == socket.AF_INET6 else (a, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out


def plain(host: str, **keys: Any) -> Account:
    return Account(name="lab", host=host, username="me", port=143, security="plain", **keys)


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("evil.localhost", ("203.0.113.5",)),
        ("localhost.", ("127.0.0.1", "198.51.100.7")),  # one outside is enough
        ("localhost", ("::1", "2001:db8::5")),
        ("mail.localhost", ("::ffff:203.0.113.5",)),
        ("localhost", ("fe80::1%lo",)),
    ],
)
def test_plain_to_a_name_that_resolves_outside_is_refused(
    host: str, addresses: tuple[str, ...]
) -> None:
    resolve = Resolver(*addresses)
    with pytest.raises(ConfigError) as info:
        connect.check_transport(plain(host), resolve)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("account 'lab': ") and host in msg
    assert "not loopback" in msg and "allow_plaintext = true" in msg and "tls" in msg
    for a in addresses:
        if not connect.is_loopback_address(a):
            assert a in msg
    assert resolve.calls == [(host, 143)]


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("localhost", ("::1", "127.0.0.1")),
        ("imap.localhost", ("127.0.0.2",)),
        ("localhost", ("::ffff:127.0.0.1",)),
    ],
)
def test_plain_to_loopback_only_is_allowed(host: str, addresses: tuple[str, ...]) -> None:
    connect.check_transport(plain(host), Resolver(*addresses))


def test_link_local_is_not_loopback() -> None:
    assert not connect.is_loopback_address("fe80::1%lo")
    assert not connect.is_loopback_address("not an address")
    assert connect.is_loopback_address("127.255.0.1")


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "127.0.0.1"])
def test_literal_loopback_addresses_need_no_dns(host: str) -> None:
    """getaddrinfo answers a numeric host itself, without asking DNS."""
    connect.check_transport(plain(host))
    connect.check_transport(plain(host), Resolver(host))


def test_not_plain_or_allowed_is_not_resolved() -> None:
    resolve = Resolver(error=AssertionError("must not resolve"))  # type: ignore[arg-type]
    connect.check_transport(plain("imap.example.org", allow_plaintext=True), resolve)
    connect.check_transport(replace_security(plain("imap.example.org"), "tls"), resolve)
    connect.check_transport(replace_security(plain("imap.example.org"), "starttls"), resolve)
    assert resolve.calls == []


def replace_security(acc: Account, security: str) -> Account:
    from dataclasses import replace

    return replace(acc, security=security, port=993)


def test_unknown_host_is_a_connect_error() -> None:
    resolve = Resolver(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(ConnectError, match=r"cannot reach nowhere\.localhost:143: unknown host"):
        connect.check_transport(plain("nowhere.localhost"), resolve)
    with pytest.raises(ConnectError, match=r"unknown host \(no address\)"):
        connect.check_transport(plain("nowhere.localhost"), Resolver())


def test_open_mailbox_refuses_before_reading_the_password(tmp_path: Path) -> None:
    marker = tmp_path / "password-read"
    acc = plain("evil.localhost", password_command=f"touch {marker}; printf %s pw")
    with pytest.raises(ConfigError, match=r"203\.0\.113\.5 is not loopback"):
        connect.open_mailbox(acc, resolve=Resolver("203.0.113.5"))
    assert not marker.exists()


def test_config_loading_does_no_dns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("the config must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "gethostbyname", no_dns)
    path = tmp_path / "config.toml"
    path.write_text(
        '[[accounts]]\nname = "a"\nhost = "evil.localhost"\nusername = "u"\nsecurity = "plain"\n'
    )
    assert load_config(path).accounts[0].host == "evil.localhost"
    # A host that cannot be loopback by its form is still refused right away.
    path.write_text(
        '[[accounts]]\nname = "a"\nhost = "203.0.113.5"\nusername = "u"\nsecurity = "plain"\n'
    )
    with pytest.raises(ConfigError, match="allow_plaintext = true"):
        load_config(path)
