"""Open an account's mailbox: credentials + IMAP connection (the I/O shell's entry point)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ndr_sweeper.config import Account
    from ndr_sweeper.mailbox.imap import ImapMailbox


def open_mailbox(account: Account) -> ImapMailbox:
    """Log in to the account's server with its password or OAuth2 token."""
    from ndr_sweeper.mailbox.imap import connect

    password = token = None
    if account.uses_oauth2:
        from ndr_sweeper.oauth2 import access_token

        token = access_token(account)
    else:
        from ndr_sweeper.credentials import get_password

        password = get_password(account)
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
