"""The ``login`` and ``logout`` commands: an account's password or OAuth2 token in the keyring.

``cmd_login(args)`` / ``cmd_logout(args)`` take the parsed arguments (``config``, ``account``,
and for login ``device``, ``no_browser``, ``password_stdin``, ``no_verify``); errors are
``NdrSweeperError`` one-liners for the CLI to show. Output goes through ``render`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

from . import credentials
from .errors import ConfigError, ConnectError, CredentialError

if TYPE_CHECKING:
    from .config import Account

log = logging.getLogger(__name__)


def _say(text: str) -> None:
    """A line for the user while signing in (stderr: stdout stays for results)."""
    from . import render

    render.say(text, stderr=True, soft_wrap=True)


def _done(text: str) -> None:
    from . import render

    render.say(text, soft_wrap=True)


def _account(args: argparse.Namespace) -> Account:
    from . import render
    from .config import load_config

    config = load_config(args.config)
    for w in config.warnings:
        render.warning(w)
    return config.account(args.account)


def _check_keyring(name: str, suffix: str | None = None) -> None:
    """Fail before asking anything when there is no keyring to keep the secret in."""
    credentials.get_secret(name, suffix, interactive=True)  # a user is here to unlock it


# --------------------------------------------------------------------------- passwords


def read_password(account: Account, from_stdin: bool) -> str:
    """The password: one line of stdin (``--password-stdin``), else asked without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
        if not password:
            raise CredentialError("no password on the first line of stdin: nothing stored")
        return password
    if not sys.stdin.isatty():
        raise CredentialError(
            "stdin is not a terminal, so the password cannot be asked for: give it on stdin "
            "with --password-stdin (e.g. `pass show mail | ndr-sweeper login "
            f"{account.name} --password-stdin`)"
        )
    import getpass

    try:
        password = getpass.getpass(f"Password for {account.username} at {account.host}: ")
    except EOFError:
        password = ""
    if not password:
        raise CredentialError("empty password: nothing stored")
    return password


def _verify_password(account: Account, password: str) -> None:
    from .connect import check_transport
    from .mailbox.imap import connect

    check_transport(account)
    box = connect(
        account.host,
        account.port,
        security=account.security,  # type: ignore[arg-type]
        username=account.username,
        password=password,
        ca_file=str(account.tls_ca_file) if account.tls_ca_file else None,
        timeout=account.timeout,
        account=account.name,
    )
    box.logout()


def login_password(account: Account, *, from_stdin: bool = False, verify: bool = True) -> None:
    """Ask for the password, check it against the server (unless ``verify`` is False) and
    keep it in the keyring. A refused password is not stored; an unreachable server is only
    a warning (the password is stored, as asked)."""
    from . import render

    if account.password_command:
        render.warning(
            f"account {account.name!r} has password_command, which is used before the keyring: "
            "the stored password counts only once you remove password_command"
        )
    _check_keyring(account.name)
    if verify:
        from .connect import check_transport

        # Refuse plain text to another machine before asking for the password; an unknown
        # host is only a warning, after it (the password is stored, as asked).
        with contextlib.suppress(ConnectError):
            check_transport(account)
    password = read_password(account, from_stdin)
    checked = ""
    if verify:
        try:
            _verify_password(account, password)
            checked = f"; logging in to {account.host} works"
        except ConnectError as exc:
            render.warning(f"the password is stored but could not be checked: {exc}")
    credentials.set_password(account.name, password)
    _done(f"{account.name}: password stored in the keyring{checked}")
    _warn_if_unattended_cannot_read(account.name)


# --------------------------------------------------------------------------- OAuth2


def login_oauth2(
    account: Account, *, device: bool = False, no_browser: bool = False, verify: bool = True
) -> None:
    """Sign in with the provider (browser or device code), keep the refresh token, and check
    that the IMAP server takes the access token."""
    from . import oauth2

    _check_keyring(account.name, credentials.REFRESH_TOKEN)
    if device:
        oauth2.login_device(account, say=_say)
    else:
        browser = None
        if not no_browser:
            import webbrowser

            browser = webbrowser.open
        oauth2.login_browser(account, browser=browser, say=_say)
    checked = ""
    if verify:
        from .connect import open_mailbox

        box = open_mailbox(account, interactive=True)
        box.logout()
        checked = f"; {account.host} accepts it"
    _done(f"{account.name}: signed in, OAuth2 token stored in the keyring{checked}")
    _warn_if_unattended_cannot_read(account.name)


def _warn_if_unattended_cannot_read(name: str) -> None:
    from . import render

    problem = credentials.unattended_problem()
    if problem:
        render.warning(
            f"{problem}: sweeps from cron or `ndr-sweeper run` will fail for {name!r}. For "
            "those, set password_command instead (README, Sign-in: e.g. a chmod 600 file "
            f'read with password_command = "cat ~/.config/ndr-sweeper/{name}.password")'
        )


# --------------------------------------------------------------------------- commands


def cmd_login(args: argparse.Namespace) -> int:
    account = _account(args)
    if account.is_maildir:
        raise ConfigError(
            f"account {account.name!r} is the local Maildir {account.maildir}: it needs no "
            "login (sweep it with `ndr-sweeper sweep`)"
        )
    verify = not getattr(args, "no_verify", False)
    if account.uses_oauth2:
        if getattr(args, "password_stdin", False):
            raise ConfigError(
                f'account {account.name!r} has auth = "oauth2": it signs in with the provider, '
                "not a password (drop --password-stdin)"
            )
        login_oauth2(
            account,
            device=getattr(args, "device", False),
            no_browser=getattr(args, "no_browser", False),
            verify=verify,
        )
    else:
        if getattr(args, "device", False):
            raise ConfigError(
                f'--device is for auth = "oauth2"; account {account.name!r} uses a password'
            )
        login_password(account, from_stdin=getattr(args, "password_stdin", False), verify=verify)
    return 0


def logout(name: str) -> list[str]:
    """Forget the account's stored password and refresh token; what was forgotten."""
    from . import oauth2

    oauth2.forget(name)
    gone = []
    for suffix, what in ((None, "password"), (credentials.REFRESH_TOKEN, "OAuth2 token")):
        if credentials.get_secret(name, suffix, interactive=True) is not None:
            credentials.delete_secret(name, suffix)
            gone.append(what)
    return gone


def cmd_logout(args: argparse.Namespace) -> int:
    from . import render
    from .config import ACCOUNT_NAME_RE

    name = args.account
    try:
        _account(args)
    except ConfigError as exc:
        # A removed account's secrets can still be forgotten, by name.
        if not ACCOUNT_NAME_RE.fullmatch(name):
            raise
        render.warning(f"{exc}; forgetting what the keyring holds for {name!r} anyway")
    gone = logout(name)
    if gone:
        _done(f"{name}: forgot the stored {' and '.join(gone)}")
    else:
        _done(f"{name}: nothing was stored in the keyring")
    return 0
