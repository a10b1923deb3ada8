"""Open an account's mailbox: credentials + IMAP connection, or a local Maildir tree (the I/O
shell's entry point).

``security = "plain"`` sends the password unencrypted, so without ``allow_plaintext = true``
it is only for this machine. The config file only rejects hosts that cannot be loopback by
their form (it does no DNS); here, before any credential is read, every address the host
resolves to must be a loopback address.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ndr_sweeper.config import is_loopback_ip as is_loopback_address
from ndr_sweeper.errors import AuthenticationError, ConfigError, ConnectError

if TYPE_CHECKING:
    from ndr_sweeper.config import Account
    from ndr_sweeper.mailbox.imap import ImapMailbox
    from ndr_sweeper.mailbox.maildir import MaildirMailbox

Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's signature


def resolve_addresses(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """Every address ``host`` resolves to (in the resolver's order, once each).

    A name that does not resolve is a ConnectError, worded as the IMAP connection words it.
    """
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectError(
            f"cannot reach {host}:{port}: unknown host ({exc.strerror or exc}); check host, "
            "port and security"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise ConnectError(f"cannot reach {host}:{port}: {exc}; check host") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def non_loopback(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """The addresses of ``host`` that are not loopback (empty: every one of them is)."""
    addresses = resolve_addresses(host, port, resolve)
    if not addresses:
        raise ConnectError(f"cannot reach {host}:{port}: unknown host (no address); check host")
    return [a for a in addresses if not is_loopback_address(a)]


def check_transport(account: Account, resolve: Resolver = socket.getaddrinfo) -> None:
    """ConfigError unless the account's password may travel as its ``security`` says:
    ``plain`` without ``allow_plaintext`` only when every address of the host is loopback."""
    if account.is_maildir or account.security != "plain" or account.allow_plaintext:
        return
    outside = non_loopback(account.host, account.port, resolve)
    if outside:
        raise ConfigError(
            f'account {account.name!r}: security = "plain" would send the password '
            f"unencrypted to {account.host} ({', '.join(outside[:3])} is not loopback): use "
            "tls or starttls, or set allow_plaintext = true"
        )


def open_mailbox(
    account: Account, *, interactive: bool = False, resolve: Resolver = socket.getaddrinfo
) -> ImapMailbox | MaildirMailbox:
    """Log in to the account's server with its password or OAuth2 token; or, for an account
    with ``maildir``, open that Maildir tree (no credentials; its UID map is kept in the
    state directory; a path that is not there is a ConnectError naming it).

    Sweeps and the service are not ``interactive``: a keyring that does not answer within
    ``credentials.KEYRING_TIMEOUT`` is a CredentialError. ``login`` waits for it (a user is
    there to unlock it).
    """
    if account.maildir is not None:
        from ndr_sweeper.mailbox.maildir import open_maildir
        from ndr_sweeper.paths import default_state_dir

        return open_maildir(
            account.maildir, account.state_dir or default_state_dir(), account=account.name
        )
    from ndr_sweeper.mailbox.imap import connect

    check_transport(account, resolve)
    password = token = None
    if account.uses_oauth2:
        from ndr_sweeper.oauth2 import access_token

        token = access_token(account, interactive=interactive)
    else:
        from ndr_sweeper.credentials import get_password

        password = get_password(account, interactive=interactive)
    try:
        return connect(
            account.host,
            account.port,
            security=account.security,
            username=account.username,
            password=password,
            oauth2_token=token,
            ca_file=str(account.tls_ca_file) if account.tls_ca_file else None,
            timeout=account.timeout,
            account=account.name,
        )
    except AuthenticationError:
        if token is not None:  # refused: the next try gets a new one, not the same refusal
            from ndr_sweeper.oauth2 import forget

            forget(account.name)
        raise
