"""One error tree. Every message says what the user can do next."""

from __future__ import annotations


class NdrSweeperError(Exception):
    """Base of every error ndr-sweeper raises on purpose."""

    exit_code = 1


class ConfigError(NdrSweeperError, ValueError):
    """The configuration file or the command line is wrong."""

    exit_code = 2


class CredentialError(NdrSweeperError):
    """No password or token could be had for an account."""

    exit_code = 3


class AuthenticationError(NdrSweeperError):
    """The server refused the login."""

    exit_code = 4


class ConnectError(NdrSweeperError, OSError):
    """The server could not be reached, or TLS failed."""

    exit_code = 5


class BusyError(ConnectError):
    """Not a refusal of the credentials: the server is at its limit (it closed the connection
    or said UNAVAILABLE at login), or this machine ran out of file descriptors. The next run
    tries again; no back-off for a wrong password."""


class ServerLimitError(ConnectError):
    """The server sent more than an answer may hold, or too slowly; the connection was closed."""


class MailboxError(NdrSweeperError):
    """The server refused a mailbox operation (missing folder, NO/BAD answer)."""

    exit_code = 6


class CapabilityError(MailboxError):
    """The server lacks a capability an operation needs."""


class StateError(NdrSweeperError):
    """The state database or journal cannot be used; nothing is acted on without it."""

    exit_code = 7


class LockedError(StateError):
    """Another ndr-sweeper process is sweeping the same account."""

    exit_code = 8


class Interrupted(NdrSweeperError):
    """A sweep was asked to stop between two steps; the next sweep continues from there."""
