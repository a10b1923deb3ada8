"""OAuth2 for hosted mail (Gmail / Google Workspace, Microsoft 365, any custom provider).

``login_browser`` (authorization code + PKCE S256, loopback redirect) and ``login_device``
(RFC 8628 device code) get a refresh token and keep it in the keyring; ``access_token`` turns it
into a short-lived access token for each sweep, cached in memory until shortly before it
expires, and keeps a rotated refresh token when the provider sends one.

The OAuth2 logic (PKCE, request bodies, token responses and their errors) is oauthlib's: it has
no dependencies and does no I/O, so it is imported lazily (the ``oauth2`` extra) and the few
HTTP requests go through ``urllib`` (no requests/httpx stack for three form POSTs; proxies from
the environment still apply). Nothing here prints: the login flows talk to the user through the
``say`` callback. Tokens, codes and secrets never appear in a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from . import credentials
from .errors import ConnectError, CredentialError, NdrSweeperError

if TYPE_CHECKING:
    from .config import Account

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'ndr-sweeper[oauth2]'"
EXPIRY_MARGIN: Final = 60.0  # seconds before expiry at which a cached access token is renewed
DEFAULT_LIFETIME: Final = 600.0  # when the provider does not say (expires_in)
LOGIN_TIMEOUT: Final = 300.0  # seconds to wait for the browser's redirect
CONNECTION_TIMEOUT: Final = 10.0  # seconds a connection to the redirect listener may idle
_MAX_BODY: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Provider:
    """Where a provider's endpoints are and what an IMAP sign-in asks for."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    device_url: str | None = None
    # The redirect URI's host; the listener is always on 127.0.0.1.
    redirect_host: str = "127.0.0.1"
    authorize_params: tuple[tuple[str, str], ...] = ()


_MS: Final = "https://login.microsoftonline.com/common/oauth2/v2.0"
PROVIDERS: Final = {
    "google": Provider(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        scopes=("https://mail.google.com/",),
        # Google hands out a refresh token only for offline access, and only on consent.
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    ),
    "microsoft": Provider(
        authorize_url=f"{_MS}/authorize",
        token_url=f"{_MS}/token",
        scopes=("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
        device_url=f"{_MS}/devicecode",
        # Entra ID registers "http://localhost" for desktop apps (any port); 127.0.0.1 would
        # need an edit of the app manifest.
        redirect_host="localhost",
    ),
}


def provider(account: Account) -> Provider:
    """The account's endpoints: the provider's presets, with the account's own URLs and scopes
    (e.g. a Microsoft tenant instead of ``common``) taking precedence."""
    name = account.oauth2_provider or "custom"
    base = PROVIDERS.get(name, Provider(authorize_url="", token_url="", scopes=()))
    device = account.oauth2_device_url or base.device_url
    return Provider(
        authorize_url=account.oauth2_authorize_url or base.authorize_url,
        token_url=account.oauth2_token_url or base.token_url,
        scopes=account.oauth2_scopes or base.scopes,
        device_url=device,
        redirect_host=base.redirect_host,
        authorize_params=base.authorize_params,
    )


def _client_id(account: Account) -> str:
    if not account.oauth2_client_id:
        raise CredentialError(
            f'account {account.name!r} has auth = "oauth2" but no oauth2_client_id: add the '
            "client id of the app you registered with your mail provider"
        )
    return account.oauth2_client_id


def _oauthlib() -> Any:
    """``oauthlib.oauth2``, or a one-line CredentialError saying how to install it."""
    try:
        import oauthlib.oauth2
    except ImportError:
        raise CredentialError(f"OAuth2 needs the oauthlib package: {INSTALL_HINT}") from None
    return oauthlib.oauth2


# --------------------------------------------------------------------------- HTTP


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


_URL_KEYS: Final = {
    "OAuth2 token endpoint": "oauth2_token_url",
    "OAuth2 device endpoint": "oauth2_device_url",
    "OAuth2 authorization endpoint": "oauth2_authorize_url",
}


def check_endpoint(url: str, what: str, resolve: Any = socket.getaddrinfo) -> bool:
    """CredentialError unless ``url`` may be sent a token or the client secret; True when it
    is on this machine (then no proxy is used).

    The rule is the config file's (``config.endpoint_problem``: https, or http:// to a
    loopback address written out or exactly ``localhost``, no ``user@``), checked again here
    for every URL actually used, presets included. An http://localhost URL must also resolve
    only to loopback addresses (``resolve`` is socket.getaddrinfo's signature).
    """
    from .config import endpoint_problem, is_literal_loopback
    from .textsafe import printable

    key = _URL_KEYS.get(what, "the oauth2_*_url settings")
    shown = "" if "@" in url else f" {printable(repr(url), max_len=200)}"
    problem = endpoint_problem(url)
    if problem is not None:
        raise CredentialError(f"the {what} URL{shown} {problem}: check {key}")
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if not is_literal_loopback(host):
        return False
    if parts.scheme.lower() == "http" and host.lower() == "localhost":
        from .connect import non_loopback

        outside = non_loopback(host, parts.port or 80, resolve)
        if outside:
            raise CredentialError(
                f"the {what} URL{shown} names localhost, which resolves to "
                f"{', '.join(outside[:3])} (not loopback): use http://127.0.0.1:PORT/ or "
                f"https:// in {key}"
            )
    return True


def _no_redirect_handler() -> Any:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # the 3xx answer is returned as it is, and refused as no OAuth2 answer

    return NoRedirect()


def _post(url: str, body: str, timeout: float, what: str) -> tuple[int, bytes]:
    """POST a form; (HTTP status, body). Network trouble is a one-line ConnectError."""
    import http.client
    import urllib.error
    import urllib.request

    from . import __version__

    req = urllib.request.Request(
        url,
        data=body.encode("ascii"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": f"ndr-sweeper/{__version__}",
        },
        method="POST",
    )
    local = check_endpoint(url, what)
    # A token endpoint answers, it does not redirect (a redirect could lead the next request
    # anywhere); a provider on this machine (tests, a local identity server) is never behind
    # a proxy.
    handlers: list[Any] = [_no_redirect_handler()]
    if local:
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    log.debug("POST %s (%s)", url, what)
    try:
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(_MAX_BODY)
    except http.client.HTTPException as exc:
        # Not HTTP at all (another service on that port), or cut off mid-answer.
        raise ConnectError(
            f"the {what} at {_host(url)} did not answer in HTTP ({type(exc).__name__}): check "
            f"{_URL_KEYS.get(what, 'the oauth2_*_url settings')} and the network"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        raise ConnectError(
            f"cannot reach the {what} at {_host(url)}: {text}; check the network"
        ) from None
    except (TimeoutError, OSError) as exc:
        text = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConnectError(
            f"cannot reach the {what} at {_host(url)}: {text}; check the network"
        ) from None


def _json_error(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "error" in data


def _token_response(client: Any, url: str, status: int, body: bytes, what: str) -> dict[str, Any]:
    """The parsed token response; OAuth2 errors raise oauthlib's OAuth2Error subclasses."""
    if status != 200 and not _json_error(body):
        if status >= 500 or status == 429:
            raise ConnectError(
                f"the {what} at {_host(url)} answered HTTP {status}: try again later"
            )
        raise CredentialError(
            f"the {what} at {_host(url)} answered HTTP {status} without an OAuth2 answer: "
            "check oauth2_token_url"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ConnectError(f"the {what} at {_host(url)} sent something that is not text") from None
    # scope=None: providers rename or reorder scopes (Microsoft drops offline_access from the
    # answer); that is no reason to refuse the token.
    return dict(client.parse_request_body_response(text, scope=None))


def _describe(exc: Any) -> str:
    """``error: first line of error_description`` (servers' descriptions hold no tokens)."""
    desc = (getattr(exc, "description", None) or "").strip().splitlines()
    first = desc[0][:200] if desc else ""
    code = getattr(exc, "error", None) or type(exc).__name__
    return f"{code}: {first}" if first else str(code)


def _oauth_error(exc: Any, account: Account, during: str) -> NdrSweeperError:
    """Map an oauthlib OAuth2Error onto our errors, each saying what to do next."""
    name = account.name
    code = getattr(exc, "error", "")
    if code == "invalid_grant":
        if during == "refresh":
            return CredentialError(
                f"the OAuth2 sign-in of account {name!r} is no longer valid (revoked or "
                f"expired: {_describe(exc)}): run `ndr-sweeper login {name}` again"
            )
        return CredentialError(
            f"the provider refused the sign-in of account {name!r} ({_describe(exc)}): run "
            f"`ndr-sweeper login {name}` again"
        )
    if code in ("invalid_client", "unauthorized_client"):
        return CredentialError(
            f"the provider refused the app of account {name!r} ({_describe(exc)}): check "
            "oauth2_client_id and oauth2_client_secret_command (Google desktop apps need the "
            "secret)"
        )
    if code in ("temporarily_unavailable", "server_error"):
        return ConnectError(
            f"the provider could not sign in account {name!r} now ({_describe(exc)}): try "
            "again later"
        )
    if code in ("access_denied", "consent_required", "interaction_required"):
        return CredentialError(
            f"access was not granted for account {name!r} ({_describe(exc)}): run "
            f"`ndr-sweeper login {name}` and allow access to mail"
        )
    if code == "invalid_scope":
        return CredentialError(
            f"the provider refused the scopes of account {name!r} ({_describe(exc)}): check "
            "oauth2_scopes"
        )
    return CredentialError(
        f"OAuth2 {during} for account {name!r} failed ({_describe(exc)}): run "
        f"`ndr-sweeper login {name}` again"
    )


# --------------------------------------------------------------------------- access tokens


@dataclass(slots=True)
class _Cached:
    token: str
    renew_at: float  # time.monotonic()


_cache: dict[tuple[str, str, str], _Cached] = {}
_locks: dict[tuple[str, str, str], threading.Lock] = {}
_cache_lock = threading.Lock()


def _key(account: Account, prov: Provider) -> tuple[str, str, str]:
    return (account.name, account.oauth2_client_id or "", prov.token_url)


def _lock_for(key: tuple[str, str, str]) -> threading.Lock:
    with _cache_lock:
        return _locks.setdefault(key, threading.Lock())


def _remember(key: tuple[str, str, str], token: dict[str, Any]) -> str:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise CredentialError("the provider's answer has no access token: try again later")
    try:
        lifetime = float(token.get("expires_in") or DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    margin = min(EXPIRY_MARGIN, lifetime / 10)
    with _cache_lock:
        _cache[key] = _Cached(access, time.monotonic() + lifetime - margin)
    return access


def forget(account_name: str) -> None:
    """Drop the account's cached access tokens (after ``logout``, or a refused login)."""
    with _cache_lock:
        for key in [k for k in _cache if k[0] == account_name]:
            del _cache[key]


def access_token(account: Account, *, interactive: bool = False) -> str:
    """A valid access token for the account: the cached one, or a new one from the stored
    refresh token. A refresh token the provider rotates is stored in the keyring again.

    Not ``interactive`` (sweeps, the service): keyring calls give up after
    ``credentials.KEYRING_TIMEOUT``."""
    prov = provider(account)
    key = _key(account, prov)
    with _lock_for(key):
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None and time.monotonic() < cached.renew_at:
            log.debug("using the cached OAuth2 access token of account %r", account.name)
            return cached.token
        refresh = credentials.get_refresh_token(account.name, interactive=interactive)
        oauth2 = _oauthlib()
        client = oauth2.WebApplicationClient(_client_id(account))
        body = client.prepare_refresh_body(
            refresh_token=refresh,
            client_id=client.client_id,
            client_secret=credentials.get_client_secret(account),
        )
        log.debug("renewing the OAuth2 access token of account %r", account.name)
        status, raw = _post(prov.token_url, body, account.timeout, "OAuth2 token endpoint")
        try:
            token = _token_response(client, prov.token_url, status, raw, "OAuth2 token endpoint")
        except oauth2.OAuth2Error as exc:
            forget(account.name)
            raise _oauth_error(exc, account, "refresh") from None
        rotated = token.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh:
            try:
                credentials.set_refresh_token(account.name, rotated, interactive=interactive)
            except CredentialError as exc:
                # The access token works: this sweep goes on (a write that did not answer in
                # time may still land); a provider that refuses the old token later says so.
                log.warning(
                    "%s: the rotated refresh token could not be stored: %s; if the next "
                    "sign-in is refused, run `ndr-sweeper login %s`",
                    account.name,
                    exc,
                    account.name,
                )
            else:
                log.info(
                    "the provider rotated the refresh token of account %r: stored", account.name
                )
        return _remember(key, token)


def _store(account: Account, prov: Provider, token: dict[str, Any]) -> None:
    refresh = token.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        hint = (
            "include offline_access in oauth2_scopes"
            if account.oauth2_provider != "google"
            else "remove the app's access at https://myaccount.google.com/permissions and retry"
        )
        raise CredentialError(
            f"the provider signed in account {account.name!r} but gave no refresh token, so "
            f"sweeps could not sign in later: {hint}"
        )
    credentials.set_refresh_token(account.name, refresh)
    _remember(_key(account, prov), token)
    log.info("stored the OAuth2 refresh token of account %r in the keyring", account.name)


# --------------------------------------------------------------------------- browser flow


def _via_https(url: str, build: Callable[[str], str]) -> str:
    """Run an oauthlib URI builder/parser on ``url`` even when it is http://.

    oauthlib refuses http:// (InsecureTransportError) unless OAUTHLIB_INSECURE_TRANSPORT is set
    for the whole process. Our http:// URLs are loopback only: the redirect (RFC 8252 7.3) and
    a provider on this machine (the config accepts no other http URL). The builders only add
    or read the query, so build on https:// and put http:// back.
    """
    scheme, sep, rest = url.partition(":")
    if sep and scheme.lower() == "http":
        return "http:" + build("https:" + rest)[len("https:") :]
    return build(url)


class _RedirectCatcher:
    """The loopback HTTP listener for the provider's redirect back to us.

    Anything on this machine can connect to it (a browser's pre-connect, another process), so:
    each connection is served in its own daemon thread and may stay idle at most
    ``connection_timeout`` seconds, :meth:`wait` has a wall deadline, and only a redirect that
    carries this sign-in's ``state`` counts; anything else gets a harmless answer and the wait
    goes on.
    """

    def __init__(
        self,
        state: str,
        host: str = "127.0.0.1",
        port: int = 0,
        connection_timeout: float = CONNECTION_TIMEOUT,
    ) -> None:
        import hmac
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        catcher = self
        self.target: str | None = None  # path + query of the redirect
        self._done = threading.Event()
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            timeout = connection_timeout  # every read of the connection, and it is closed

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                if parts.path != "/" or not ({"code", "error"} & set(query)):
                    self._answer(404, "Not the sign-in answer.")
                    return
                got = query.get("state", [])
                if len(got) != 1 or not hmac.compare_digest(got[0].encode(), state.encode()):
                    log.debug("ignored a request to the sign-in listener for another sign-in")
                    self._answer(400, "Not the answer to the sign-in in progress.")
                    return
                with catcher._lock:
                    first = catcher.target is None
                    if first:
                        catcher.target = self.path
                if "error" in query:
                    self._answer(200, "Sign-in did not complete: see the terminal.")
                else:
                    self._answer(200, "ndr-sweeper is signed in. You can close this tab.")
                if first:
                    catcher._done.set()  # after the answer: the page reaches the browser

            def _answer(self, status: int, text: str) -> None:
                page = f"<!doctype html><title>ndr-sweeper</title><p>{text}</p>\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line carries the code

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False  # closing never waits for a stalled connection

            def handle_error(self, request: Any, client_address: Any) -> None:
                log.debug("sign-in listener: a connection failed", exc_info=True)

        try:
            self.server = Server(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ConnectError(
                f"cannot listen on 127.0.0.1 for the sign-in redirect: {exc.strerror}"
            ) from None
        self.redirect_uri = f"http://{host}:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.server_close()

    def wait(self, timeout: float) -> str:
        """The redirect's path and query; CredentialError after ``timeout`` seconds."""
        thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="oauth2 redirect listener",
            daemon=True,
        )
        thread.start()
        try:
            if not self._done.wait(timeout):
                raise CredentialError(
                    f"no answer from the browser within {timeout:g}s: run the login again "
                    "(on a machine without a browser: --device where the provider has it, "
                    "or `ssh -L PORT:127.0.0.1:PORT` to this machine)"
                )
        finally:
            self.server.shutdown()
            self.server.server_close()
        assert self.target is not None
        return self.target


def login_browser(
    account: Account,
    *,
    browser: Callable[[str], object] | None = None,
    say: Callable[[str], None] = lambda s: None,
    timeout: float = LOGIN_TIMEOUT,
) -> None:
    """Authorization code flow with PKCE (S256) and a loopback redirect; stores the refresh
    token. ``browser(url)`` opens the URL (None: only ``say`` it, for the user to open)."""
    oauth2 = _oauthlib()
    prov = provider(account)
    check_endpoint(prov.authorize_url, "OAuth2 authorization endpoint")
    check_endpoint(prov.token_url, "OAuth2 token endpoint")  # before the user signs in
    client = oauth2.WebApplicationClient(_client_id(account))
    secret = credentials.get_client_secret(account)  # before the user goes to the browser
    verifier = client.create_code_verifier(64)
    challenge = client.create_code_challenge(verifier, "S256")
    state = secrets.token_urlsafe(24)
    catcher = _RedirectCatcher(state, prov.redirect_host)
    try:
        url = _via_https(
            prov.authorize_url,
            lambda u: client.prepare_request_uri(
                u,
                redirect_uri=catcher.redirect_uri,
                scope=list(prov.scopes),
                state=state,
                code_challenge=challenge,
                code_challenge_method="S256",
                **dict(prov.authorize_params),
            ),
        )
    except BaseException:
        catcher.close()
        raise
    say(f"Sign in to account {account.name!r} ({account.username}) in your browser:")
    say(url)
    if browser is not None:
        try:
            browser(url)
        except Exception:
            log.debug("could not open a browser", exc_info=True)
    say(f"Waiting for the browser (at most {timeout:g}s; Ctrl-C to stop)...")
    target = catcher.wait(timeout)
    try:
        # https: see _via_https (only the query is read)
        code = client.parse_request_uri_response("https://127.0.0.1" + target, state=state)["code"]
    except oauth2.MismatchingStateError:
        raise CredentialError(
            "the browser's answer does not belong to this sign-in (state mismatch): run the "
            "login again"
        ) from None
    except oauth2.OAuth2Error as exc:
        raise _oauth_error(exc, account, "authorization") from None
    body = client.prepare_request_body(
        code=code,
        redirect_uri=catcher.redirect_uri,
        code_verifier=verifier,
        include_client_id=True,
        client_secret=secret,
    )
    status, raw = _post(prov.token_url, body, account.timeout, "OAuth2 token endpoint")
    try:
        token = _token_response(client, prov.token_url, status, raw, "OAuth2 token endpoint")
    except oauth2.OAuth2Error as exc:
        raise _oauth_error(exc, account, "code exchange") from None
    _store(account, prov, token)


# --------------------------------------------------------------------------- device flow


def supports_device(account: Account) -> bool:
    return provider(account).device_url is not None


def login_device(
    account: Account,
    *,
    say: Callable[[str], None] = lambda s: None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Device authorization grant (RFC 8628): the user enters a code on another device;
    stores the refresh token."""
    prov = provider(account)
    if prov.device_url is None:
        what = account.oauth2_provider or "custom"
        extra = "" if what != "custom" else " (set oauth2_device_url if your provider has one)"
        raise CredentialError(
            f"the {what} provider has no device sign-in{extra}: run `ndr-sweeper login "
            f"{account.name}` without --device"
        )
    oauth2 = _oauthlib()
    client = oauth2.DeviceClient(_client_id(account))
    secret = credentials.get_client_secret(account)
    fields = {"client_id": client.client_id, "scope": " ".join(prov.scopes)}
    if secret is not None:
        fields["client_secret"] = secret
    status, raw = _post(
        prov.device_url, urllib.parse.urlencode(fields), account.timeout, "OAuth2 device endpoint"
    )
    try:
        grant = json.loads(raw)
    except ValueError:
        grant = None
    if not isinstance(grant, dict) or status != 200 or "device_code" not in grant:
        if isinstance(grant, dict) and "error" in grant:
            err = oauth2.rfc6749.errors
            try:
                err.raise_from_error(grant["error"], grant)
            except oauth2.OAuth2Error as exc:
                raise _oauth_error(exc, account, "device sign-in") from None
        if status >= 500 or status == 429:
            raise ConnectError(
                f"the OAuth2 device endpoint at {_host(prov.device_url)} answered HTTP "
                f"{status}: try again later"
            )
        raise CredentialError(
            f"the OAuth2 device endpoint at {_host(prov.device_url)} answered HTTP {status} "
            "without a device code: check oauth2_device_url"
        )
    verify = grant.get("verification_uri_complete") or grant.get("verification_uri")
    verify = verify or grant.get("verification_url")  # Google's older name
    say(f"Sign in to account {account.name!r} ({account.username}) on any device:")
    say(f"open {verify} and enter the code {grant.get('user_code')}")
    interval = max(float(grant.get("interval") or 5), 0.1)
    deadline = time.monotonic() + float(grant.get("expires_in") or 900)
    body = client.prepare_request_body(
        grant["device_code"], include_client_id=True, client_secret=secret
    )
    while True:
        if time.monotonic() > deadline:
            raise CredentialError(
                f"the device code expired before the sign-in finished: run `ndr-sweeper login "
                f"{account.name} --device` again"
            )
        sleep(interval)
        status, raw = _post(prov.token_url, body, account.timeout, "OAuth2 token endpoint")
        try:
            token = _token_response(client, prov.token_url, status, raw, "OAuth2 token endpoint")
        except oauth2.OAuth2Error as exc:
            code = getattr(exc, "error", "")
            if code == "authorization_pending":
                continue
            if code == "slow_down":
                interval += 5
                continue
            if code == "expired_token":
                raise CredentialError(
                    f"the device code expired before the sign-in finished: run `ndr-sweeper "
                    f"login {account.name} --device` again"
                ) from None
            raise _oauth_error(exc, account, "device sign-in") from None
        _store(account, prov, token)
        return
