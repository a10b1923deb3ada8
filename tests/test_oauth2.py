"""OAuth2 sign-in against a loopback provider (``lab.TokenServer``), and XOAUTH2/OAUTHBEARER
logins against a real Dovecot that checks the tokens with the provider (introspection).

No internet: the "browser" is urllib fetching the authorize URL and following its redirect
to the loopback listener; the device flow's provider approves after a few polls.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from ndr_sweeper import credentials, oauth2
from ndr_sweeper.config import Account
from ndr_sweeper.errors import AuthenticationError, ConnectError, CredentialError

import lab
from keyrings import MemoryKeyring


@dataclass(frozen=True, slots=True)
class DeviceAccount(Account):
    """An Account with the (proposed) oauth2_device_url key of a custom provider."""

    oauth2_device_url: str | None = None


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    oauth2._cache.clear()
    yield
    oauth2._cache.clear()


def account(ts: lab.TokenServer, port: int = 1, **keys: object) -> Account:
    values: dict[str, object] = {
        "name": "hosted",
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "username": ts.user,
        "timeout": 10.0,
        "auth": "oauth2",
        "oauth2_provider": "custom",
        "oauth2_client_id": ts.client_id,
        "oauth2_authorize_url": ts.base + "/authorize",
        "oauth2_token_url": ts.base + "/token",
        "oauth2_scopes": ("imap", "offline_access"),
    }
    values.update(keys)
    cls = DeviceAccount if "oauth2_device_url" in values else Account
    return cls(**values)  # type: ignore[arg-type]


def fetch(url: str) -> None:
    """What the browser does: GET the authorize URL and follow the redirect to us."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        resp.read()


def browser(url: str) -> bool:
    threading.Thread(target=fetch, args=(url,), daemon=True).start()
    return True


def stored_refresh(kr: MemoryKeyring, name: str = "hosted") -> str | None:
    return kr.store.get((credentials.SERVICE, f"{name}:{credentials.REFRESH_TOKEN}"))


def login(acc: Account, said: list[str] | None = None) -> None:
    oauth2.login_browser(acc, browser=browser, say=(said.append if said is not None else print))


# --------------------------------------------------------------------------- presets


def test_provider_presets() -> None:
    base = Account(name="g", host="imap.gmail.com", username="me@example.com")
    google = oauth2.provider(replace(base, auth="oauth2", oauth2_provider="google"))
    assert google.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scopes == ("https://mail.google.com/",)
    assert google.device_url is None
    assert ("access_type", "offline") in google.authorize_params
    ms = oauth2.provider(replace(base, auth="oauth2", oauth2_provider="microsoft"))
    root = "https://login.microsoftonline.com/common/oauth2/v2.0"
    assert (ms.authorize_url, ms.token_url, ms.device_url) == (
        f"{root}/authorize",
        f"{root}/token",
        f"{root}/devicecode",
    )
    assert ms.scopes == ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access")
    tenant = "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
    own = oauth2.provider(
        replace(base, auth="oauth2", oauth2_provider="microsoft", oauth2_token_url=tenant)
    )
    assert own.token_url == tenant


# --------------------------------------------------------------------------- browser flow


def test_browser_login_with_pkce_stores_refresh_token(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    said: list[str] = []
    login(account(token_server), said)
    url = next(s for s in said if s.startswith(token_server.base + "/authorize?"))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 20
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", query["redirect_uri"])
    assert query["scope"] == "imap offline_access"
    assert stored_refresh(memory) in token_server.refresh_tokens()
    assert token_server.grants == ["authorization_code"]


def test_login_without_browser_prints_the_url(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    def user_reads(line: str) -> None:  # the user copies the URL into a browser
        if line.startswith("http"):
            browser(line)

    oauth2.login_browser(account(token_server), browser=None, say=user_reads)
    assert stored_refresh(memory)


def test_state_mismatch_is_ignored(token_server: lab.TokenServer, memory: MemoryKeyring) -> None:
    """A redirect for another sign-in (or a forged one) does not end this one: it is answered
    400 and the login keeps waiting, here until its timeout."""
    token_server.wrong_state = True
    statuses: list[int] = []

    def browser_seeing(url: str) -> None:
        def go() -> None:
            try:
                fetch(url)
                statuses.append(200)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)

        threading.Thread(target=go, daemon=True).start()

    with pytest.raises(CredentialError, match="no answer from the browser within 1s"):
        oauth2.login_browser(account(token_server), browser=browser_seeing, timeout=1.0)
    assert statuses == [400]
    assert stored_refresh(memory) is None
    assert token_server.grants == []  # the code was never exchanged


def _get(port: int, path: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _waiting(catcher: oauth2._RedirectCatcher, timeout: float) -> tuple[threading.Thread, list]:
    """catcher.wait(timeout) in a thread (a hang fails the test instead of stalling it)."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(catcher.wait(timeout))
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_idle_connections_do_not_block_the_redirect() -> None:
    import socket

    catcher = oauth2._RedirectCatcher("st-123", connection_timeout=30.0)
    port = catcher.server.server_address[1]
    waiter, out = _waiting(catcher, 20.0)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    idle[1].sendall(b"GET /?code=half")  # half a request line, never finished
    try:
        assert _get(port, "/favicon.ico") == 404
        assert _get(port, "/?code=c-1&state=other") == 400  # another sign-in's answer
        assert _get(port, "/?code=c-1&state=st-123&state=st-123") == 400  # two states
        started = time.monotonic()
        assert _get(port, "/?code=c-2&state=st-123") == 200
        waiter.join(5)
        assert not waiter.is_alive() and time.monotonic() - started < 5
    finally:
        for s in idle:
            s.close()
    assert out == ["/?code=c-2&state=st-123"]


def test_wall_deadline_holds_with_an_idle_connection() -> None:
    import socket

    catcher = oauth2._RedirectCatcher("st-123", connection_timeout=60.0)
    port = catcher.server.server_address[1]
    started = time.monotonic()
    waiter, out = _waiting(catcher, 0.5)
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        waiter.join(5)
        assert not waiter.is_alive(), "wait() is stuck behind an idle connection"
    finally:
        idle.close()
    assert time.monotonic() - started < 3
    assert isinstance(out[0], CredentialError) and "within 0.5s" in str(out[0])


def test_idle_connection_is_closed_after_its_timeout() -> None:
    import socket

    catcher = oauth2._RedirectCatcher("st-123", connection_timeout=0.3)
    port = catcher.server.server_address[1]
    waiter, out = _waiting(catcher, 10.0)
    idle = socket.create_connection(("127.0.0.1", port))
    idle.settimeout(5)
    try:
        assert idle.recv(100) == b""  # closed by the listener, not by us
    finally:
        idle.close()
    assert _get(port, "/?code=c&state=st-123") == 200
    waiter.join(5)
    assert out == ["/?code=c&state=st-123"]


def test_denied_consent(token_server: lab.TokenServer, memory: MemoryKeyring) -> None:
    token_server.deny = True
    with pytest.raises(CredentialError, match=r"access was not granted.*access_denied"):
        login(account(token_server))
    assert stored_refresh(memory) is None


def test_client_secret_from_command(memory: MemoryKeyring) -> None:
    ts = lab.TokenServer(client_secret="s3cret").start()
    try:
        with pytest.raises(CredentialError, match="oauth2_client_secret_command"):
            login(account(ts))
        login(account(ts, oauth2_client_secret_command="printf %s s3cret"))
        assert stored_refresh(memory)
    finally:
        ts.stop()


def test_no_browser_answer_times_out(token_server: lab.TokenServer, memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match=r"no answer from the browser within 0\.5s"):
        oauth2.login_browser(account(token_server), browser=None, timeout=0.5)


# --------------------------------------------------------------------------- device flow


def test_device_login(token_server: lab.TokenServer, memory: MemoryKeyring) -> None:
    said: list[str] = []
    acc = account(token_server, oauth2_device_url=token_server.base + "/device")
    assert oauth2.supports_device(acc)
    oauth2.login_device(acc, say=said.append, sleep=lambda s: None)
    assert any("WDJB-MJHT" in s and "/activate" in s for s in said)
    assert stored_refresh(memory) in token_server.refresh_tokens()
    device = "urn:ietf:params:oauth:grant-type:device_code"
    assert token_server.grants == [device, device, device]  # pending, pending, tokens


def test_device_login_needs_a_device_endpoint(token_server: lab.TokenServer) -> None:
    acc = account(token_server)
    assert not oauth2.supports_device(acc)
    with pytest.raises(CredentialError, match="set oauth2_device_url"):
        oauth2.login_device(acc)
    google = replace(acc, oauth2_provider="google", oauth2_authorize_url=None)
    with pytest.raises(CredentialError, match="google provider has no device sign-in"):
        oauth2.login_device(google)


# --------------------------------------------------------------------------- access tokens


def test_access_token_is_cached_then_refreshed(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    acc = account(token_server)
    login(acc)
    first = oauth2.access_token(acc)
    assert oauth2.access_token(acc) == first
    assert token_server.grants == ["authorization_code"]  # login's token was reused
    (cached,) = oauth2._cache.values()
    cached.renew_at = 0  # "shortly before expiry"
    second = oauth2.access_token(acc)
    assert second != first
    assert token_server.grants == ["authorization_code", "refresh_token"]


def test_renewal_is_scheduled_before_expiry(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    import time

    login(account(token_server))
    (cached,) = oauth2._cache.values()
    left = cached.renew_at - time.monotonic()
    assert 3600 - 61 < left < 3600 - 59


def test_rotated_refresh_token_is_stored(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    acc = account(token_server)
    login(acc)
    old = stored_refresh(memory)
    token_server.rotate = True
    oauth2._cache.clear()
    oauth2.access_token(acc)
    new = stored_refresh(memory)
    assert new != old and token_server.refresh_tokens() == [new]
    oauth2._cache.clear()
    oauth2.access_token(acc)  # the new one works, the old one is gone
    assert stored_refresh(memory) in token_server.refresh_tokens()


def test_revoked_refresh_token_says_login_again(
    token_server: lab.TokenServer, memory: MemoryKeyring
) -> None:
    acc = account(token_server)
    login(acc)
    refresh = stored_refresh(memory)
    token_server.revoke()
    oauth2._cache.clear()
    with pytest.raises(CredentialError) as info:
        oauth2.access_token(acc)
    msg = str(info.value)
    assert "\n" not in msg and refresh not in msg
    assert msg.endswith("run `ndr-sweeper login hosted` again")
    assert "invalid_grant: Token has been expired or revoked." in msg


def test_no_refresh_token_stored(token_server: lab.TokenServer, memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match="run `ndr-sweeper login hosted`"):
        oauth2.access_token(account(token_server))


def test_network_errors_are_one_line(memory: MemoryKeyring) -> None:
    ts = lab.TokenServer().start()
    acc = account(ts)
    login(acc)
    ts.stop()  # the provider is gone
    oauth2._cache.clear()
    with pytest.raises(ConnectError) as info:
        oauth2.access_token(acc)
    assert re.fullmatch(
        r"cannot reach the OAuth2 token endpoint at 127\.0\.0\.1:\d+: .+; check the network",
        str(info.value),
    )


def test_server_errors_say_try_later(memory: MemoryKeyring) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ts = lab.TokenServer()
        ts._server = srv
        credentials.set_refresh_token("hosted", "rt-x")
        with pytest.raises(ConnectError, match="answered HTTP 503: try again later"):
            oauth2.access_token(account(ts))
    finally:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- endpoint URLs

LOOKALIKES = [
    "http://localhost.attacker.example/token",
    "http://127.0.0.1.nip.io/token",
    "http://localhost@attacker.example/token",
    "http://127.0.0.1:80@attacker.example/token",
    "https://user:secret@attacker.example/token",
    "http://attacker.example/token",
    "http://localhost./token",
    "http://127.1/token",
    "http://local\thost/token",
    "http://attacker.example\\@127.0.0.1/token",
    "ftp://127.0.0.1/token",
    "https:///token",
]


@pytest.mark.parametrize("url", LOOKALIKES)
def test_lookalike_loopback_token_url_is_never_sent_anything(
    url: str, memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Account built without the config file (whose check is the same) is checked too."""

    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a request was about to go to {url}")

    monkeypatch.setattr(urllib.request, "build_opener", no_request)
    credentials.set_refresh_token("hosted", "rt-secret")
    acc = Account(
        name="hosted",
        host="imap.example.org",
        username="me",
        auth="oauth2",
        oauth2_provider="custom",
        oauth2_client_id="c",
        oauth2_client_secret_command="printf %s client-secret",
        oauth2_authorize_url="https://login.example.org/authorize",
        oauth2_token_url=url,
        oauth2_scopes=("imap",),
    )
    with pytest.raises(CredentialError, match="check oauth2_token_url") as info:
        oauth2.access_token(acc)
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CredentialError, match="oauth2_token_url"):
        oauth2.login_browser(acc, browser=None, timeout=0.1)


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.org/token",
        "http://127.0.0.1:8080/token",
        "http://127.0.0.2/token",
        "http://[::1]:9/token",
        "HTTP://LOCALHOST:8080/token",
    ],
)
def test_https_or_literal_loopback_is_accepted(url: str) -> None:
    local = oauth2.check_endpoint(url, "OAuth2 token endpoint", resolve=_resolver("::1"))
    assert local == ("login.example.org" not in url)


def _resolver(*addresses: str):  # type: ignore[no-untyped-def]
    import socket

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple]:
        fam = socket.AF_INET
        return [(fam, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


def test_http_localhost_must_resolve_to_loopback_only() -> None:
    url = "http://localhost:8080/token"
    assert oauth2.check_endpoint(url, "OAuth2 token endpoint", resolve=_resolver("127.0.0.1"))
    with pytest.raises(CredentialError, match=r"203\.0\.113\.9 \(not loopback\)"):
        oauth2.check_endpoint(
            url, "OAuth2 token endpoint", resolve=_resolver("127.0.0.1", "203.0.113.9")
        )


def test_token_endpoint_redirects_are_not_followed(memory: MemoryKeyring) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    elsewhere: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elsewhere.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    other = HTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://127.0.0.1:{other.server_address[1]}/stolen"

    class Redirects(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Redirects)
    for s in (srv, other):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        credentials.set_refresh_token("hosted", "rt-x")
        acc = Account(
            name="hosted",
            host="127.0.0.1",
            username="me",
            auth="oauth2",
            oauth2_provider="custom",
            oauth2_client_id="c",
            oauth2_authorize_url=f"http://127.0.0.1:{srv.server_address[1]}/authorize",
            oauth2_token_url=f"http://127.0.0.1:{srv.server_address[1]}/token",
            oauth2_scopes=("imap",),
            timeout=10.0,
        )
        with pytest.raises(CredentialError, match="answered HTTP 302"):
            oauth2.access_token(acc)
        assert elsewhere == []
    finally:
        for s in (srv, other):
            s.shutdown()
            s.server_close()


def test_token_endpoint_that_is_not_http_is_one_line(memory: MemoryKeyring) -> None:
    """Another service on the port (here an IMAP greeting), or an answer cut off."""
    import socket

    for answer in (
        b"* OK [CAPABILITY IMAP4rev1] \x1b[2J ready\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        srv = socket.create_server(("127.0.0.1", 0))

        def serve(srv: socket.socket = srv, answer: bytes = answer) -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        try:
            credentials.set_refresh_token("hosted", "rt-x")
            acc = Account(
                name="hosted",
                host="127.0.0.1",
                username="me",
                auth="oauth2",
                oauth2_provider="custom",
                oauth2_client_id="c",
                oauth2_authorize_url="https://login.example.org/authorize",
                oauth2_token_url=f"http://127.0.0.1:{srv.getsockname()[1]}/token",
                oauth2_scopes=("imap",),
                timeout=10.0,
            )
            with pytest.raises(ConnectError) as info:
                oauth2.access_token(acc)
            msg = str(info.value)
            assert "did not answer in HTTP" in msg and "oauth2_token_url" in msg, msg
            assert "\x1b" not in msg and "\n" not in msg
        finally:
            srv.close()


def test_missing_oauthlib_names_the_extra(
    token_server: lab.TokenServer, memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials.set_refresh_token("hosted", "rt-x")
    monkeypatch.setitem(sys.modules, "oauthlib.oauth2", None)
    with pytest.raises(CredentialError) as info:
        oauth2.access_token(account(token_server))
    assert str(info.value) == (
        "OAuth2 needs the oauthlib package: pip install 'ndr-sweeper[oauth2]'"
    )


def test_module_imports_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys, ndr_sweeper.oauth2; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rich', 'apscheduler', 'oauthlib', 'keyring', 'imapclient')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real server


def _methods(server: lab.DovecotLab) -> list[str]:
    return server.log_matches(r"Login: user=<[^>]*>, method=(\w+)")


@pytest.mark.imap
def test_sweep_login_with_oauthbearer(
    token_server: lab.TokenServer, dovecot_oauth2: lab.DovecotLab, memory: MemoryKeyring
) -> None:
    from ndr_sweeper.connect import open_mailbox

    acc = account(token_server, dovecot_oauth2.port)
    login(acc)
    oauth2._cache.clear()  # a later sweep: a fresh access token from the refresh token
    box = open_mailbox(acc)
    try:
        assert box.status("INBOX").messages == 0
        assert "INBOX" in {f.name for f in box.list_folders()}
    finally:
        box.logout()
    assert token_server.grants == ["authorization_code", "refresh_token"]
    assert token_server.introspections >= 1
    assert _methods(dovecot_oauth2) == ["OAUTHBEARER"]


@pytest.mark.imap
def test_device_login_then_xoauth2(
    token_server: lab.TokenServer, dovecot_factory, memory: MemoryKeyring
) -> None:
    from ndr_sweeper.connect import open_mailbox

    server = dovecot_factory(
        oauth2_introspection_url=token_server.introspection_url, oauth2_mechanisms=("xoauth2",)
    )
    server.add_user(token_server.user, "unused-pw")
    acc = account(token_server, server.port, oauth2_device_url=token_server.base + "/device")
    oauth2.login_device(acc, sleep=lambda s: None)
    box = open_mailbox(acc)
    box.logout()
    assert _methods(server) == ["XOAUTH2"]


@pytest.mark.imap
def test_tokens_never_in_logs_or_errors(
    token_server: lab.TokenServer,
    dovecot_oauth2: lab.DovecotLab,
    memory: MemoryKeyring,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ndr_sweeper.connect import open_mailbox

    caplog.set_level(logging.DEBUG)
    acc = account(token_server, dovecot_oauth2.port)
    login(acc)
    open_mailbox(acc).logout()
    token_server.revoke()  # the cached access token dies at the provider: Dovecot refuses it
    with pytest.raises(AuthenticationError) as refused:
        open_mailbox(acc)
    oauth2._cache.clear()
    with pytest.raises(CredentialError) as revoked:
        open_mailbox(acc)
    out = capsys.readouterr()
    seen = caplog.text + out.out + out.err + str(refused.value) + str(revoked.value)
    assert token_server.issued
    for token in token_server.issued:
        assert token not in seen
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("login to 127.0.0.1 as oauth-user refused")


@pytest.mark.imap
def test_a_refused_access_token_is_dropped_before_the_next_try(
    token_server: lab.TokenServer, dovecot_oauth2: lab.DovecotLab, memory: MemoryKeyring
) -> None:
    """The provider kills the access token (password change, admin action) while it is still
    cached: the login refused with it drops it, and the next try (the service's next run)
    gets a fresh one from the refresh token instead of the same refusal until it expires."""
    from ndr_sweeper.connect import open_mailbox

    acc = account(token_server, dovecot_oauth2.port)
    login(acc)
    open_mailbox(acc).logout()
    with token_server._lock:
        token_server._access.clear()  # the access token dies; the refresh token lives
    with pytest.raises(AuthenticationError):
        open_mailbox(acc)
    assert not [k for k in oauth2._cache if k[0] == acc.name]
    box = open_mailbox(acc)  # a new access token, and in
    box.logout()
    assert token_server.grants[-1] == "refresh_token"
